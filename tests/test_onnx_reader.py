"""snnexport.readers.onnx: every supported model computes what ONNX's reference evaluator computes;
the bundled LeNet read from ONNX gives the very network the .h5 gives; every bad or unsupported
file gets one line and exit 1 through the real command; torch is never imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'snnexport[onnx]')")

from onnx import TensorProto, helper, numpy_helper, version_converter  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from snnexport import ops  # noqa: E402
from snnexport.cli import main  # noqa: E402
from snnexport.errors import SnnexportError, UnsupportedLayerError  # noqa: E402
from snnexport.readers import read_model  # noqa: E402
from snnexport.readers.onnx import SUPPORTED_OPS  # noqa: E402
from snnexport.simplify import simplify  # noqa: E402

import onnx_fixtures as fx  # noqa: E402
from conftest import BUNDLED_MODEL, BUNDLED_SAMPLES, ROOT  # noqa: E402


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, path)
    return path


def reference(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """ONNX's own pure-Python evaluation of the model.

    Before opset 14 the reference BatchNormalization mixes in batch statistics whenever
    ``momentum`` takes its default (training behaviour), where the specification and every
    runtime use the running statistics when only Y is asked for; such models are evaluated after
    conversion to opset 14, which states inference explicitly (training_mode=0).
    """
    if model.opset_import[0].version < 14 and any(n.op_type == "BatchNormalization" for n in model.graph.node):
        model = version_converter.convert_version(model, 14)
    return ReferenceEvaluator(model).run(None, {"x": x})[0]


def run_graph(graph, x: np.ndarray) -> np.ndarray:
    return graph.run(fx.to_ours(x))[graph.output]


def assert_matches(got: np.ndarray, want: np.ndarray) -> None:
    got = got.reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


# ---------------------------------------------------------------------------------------------
# accepted models: the graph computes what ONNX computes


@pytest.mark.parametrize("name", list(fx.FIXTURES))
def test_fixture_matches_reference_evaluator(tmp_path: Path, name: str) -> None:
    model = fx.FIXTURES[name]()
    x = fx.sample(model)
    want = reference(model, x)
    assert np.abs(want).max() > 0  # a dead network would prove nothing
    graph = read_model(save(model, tmp_path / f"{name}.onnx"))
    assert_matches(run_graph(graph, x), want)
    assert_matches(run_graph(simplify(graph), x), want)  # the exact rewrites keep it so
    for n in graph.nodes:  # weights are our own float32 arrays
        for v in n.op.params().values():
            if isinstance(v, np.ndarray):
                assert v.dtype == np.float32 and v.flags.writeable


def test_fixtures_cover_every_operator() -> None:
    used = {n.op_type for build in fx.FIXTURES.values() for n in build().graph.node}
    assert set(SUPPORTED_OPS) - used == set()


def test_grouped_conv_transpose_equals_its_block_diagonal_form(tmp_path: Path) -> None:
    """group=2: the same as group=1 with the weight zero between groups, which ReferenceEvaluator gets right."""
    grouped = fx.conv_transpose_case(3, cin=4, cout=6, group=2, pads=[1, 0, 0, 2], strides=[2, 1])()
    w = numpy_helper.to_array(grouped.graph.initializer[0])  # (I, O/group, k, k) = (4, 3, 3, 3)
    dense = onnx.ModelProto()
    dense.CopyFrom(grouped)
    full = np.zeros((4, 6, 3, 3), np.float32)
    full[:2, :3], full[2:, 3:] = w[:2], w[2:]
    dense.graph.initializer[0].CopyFrom(numpy_helper.from_array(full, dense.graph.initializer[0].name))
    next(a for a in dense.graph.node[0].attribute if a.name == "group").i = 1
    x = fx.sample(dense)
    want = reference(dense, x)
    for model, name in ((grouped, "g"), (dense, "d")):
        assert_matches(run_graph(read_model(save(model, tmp_path / f"{name}.onnx")), x), want)


def op_kinds(graph) -> list[str]:
    return [type(n.op).__name__ for n in graph.nodes]


def test_nchw_flatten_is_folded_into_the_dense_weights(tmp_path: Path) -> None:
    model = fx.legacy_flatten()
    graph = read_model(save(model, tmp_path / "m.onnx"))
    # Shape → Gather → Unsqueeze → Concat were evaluated while reading: no trace of them is left
    assert op_kinds(graph) == ["Conv2D", "Activation", "MaxPool", "Reshape", "Dense"]
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    w_onnx = inits[gemm.input[1]].T  # (12 inputs in NCHW order (3, 2, 2), 4 outputs)
    dense = graph.nodes[-1].op
    c, h, w = 3, 2, 2
    for hh in range(h):
        for ww in range(w):
            for cc in range(c):  # our flat index (h, w, c) takes ONNX's (c, h, w) row
                assert np.array_equal(dense.weight[(hh * w + ww) * c + cc], w_onnx[cc * h * w + hh * w + ww])


def test_no_permutation_after_global_pooling(tmp_path: Path) -> None:
    """Where H = W = 1 the NCHW and channels-last orders agree: the weights are copied as they are."""
    model = fx.residual_block()
    graph = read_model(save(model, tmp_path / "m.onnx"))
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert np.array_equal(graph.nodes[-1].op.weight, inits[gemm.input[1]].T)
    # batch-norms became Affine nodes; simplify folds every one of them into its convolution
    assert op_kinds(graph).count("Affine") == 6
    assert "Affine" not in op_kinds(simplify(graph))


def test_average_pool_padding_both_ways(tmp_path: Path) -> None:
    include = read_model(save(fx.FIXTURES["avgpool_include_pad"](), tmp_path / "a.onnx"))
    exclude = read_model(save(fx.FIXTURES["avgpool_exclude_pad"](), tmp_path / "b.onnx"))
    # count_include_pad=1: explicit zeros, then windows that all divide by 9
    pad, pool = include.nodes[1].op, include.nodes[2].op
    assert isinstance(pad, ops.Pad) and pad.padding == ((1, 1), (1, 1))
    assert isinstance(pool, ops.AvgPool) and pool.padding == ((0, 0), (0, 0))
    # count_include_pad=0: our AvgPool's own padding, excluded from the divisor
    pool = exclude.nodes[1].op
    assert isinstance(pool, ops.AvgPool) and pool.padding == ((1, 1), (1, 1))


def test_sub_of_two_tensors_and_kernel_layout(tmp_path: Path) -> None:
    graph = read_model(save(fx.arith_constants(), tmp_path / "m.onnx"))
    kinds = op_kinds(graph)
    assert "Scale" in kinds and "Add" in kinds  # x - y = x + (-1)·y
    conv = next(n.op for n in graph.nodes if isinstance(n.op, ops.Conv2D))
    assert conv.kernel.shape == (3, 3, 3, 4)  # (kh, kw, cin, cout) from ONNX's (4, 3, 3, 3)
    depthwise = read_model(save(fx.FIXTURES["conv_depthwise"](), tmp_path / "d.onnx")).nodes[0].op
    assert depthwise.groups == 4 and depthwise.kernel.shape == (3, 3, 1, 4)


def test_one_d_layout(tmp_path: Path) -> None:
    graph = read_model(save(fx.one_d(), tmp_path / "m.onnx"))
    assert graph.input_shape == (1, 20, 3)  # ONNX (N, 3, 20) is our (N, 1, 20, 3), like Keras 1-D
    assert graph.nodes[0].op.kernel.shape == (1, 5, 3, 4)


def test_external_data_beside_the_model(tmp_path: Path) -> None:
    model = fx.residual_block()
    x = fx.sample(model)
    want = reference(model, x)
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.weights", size_threshold=0)
    assert (tmp_path / "ext.weights").stat().st_size > 0
    assert_matches(run_graph(read_model(path), x), want)


# ---------------------------------------------------------------------------------------------
# the bundled LeNet, written as the ONNX graph PyTorch would export of it


def test_lenet_onnx_gives_the_same_network_and_spikes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bit-identical arrays: the ONNX graph holds the .h5's float32 weights, only transposed and
    permuted (no arithmetic), and every later step runs the same ops on the same numbers."""
    keras_graph = read_model(BUNDLED_MODEL)
    onnx_path = save(fx.lenet_onnx(keras_graph), tmp_path / "lenet.onnx")
    onnx_graph = read_model(onnx_path)
    x = np.load(BUNDLED_SAMPLES)["x"][:20].astype(np.float32) / 255
    assert np.array_equal(keras_graph.run(x)[keras_graph.output], onnx_graph.run(x)[onnx_graph.output])

    nets, results = {}, {}
    for tag, model in (("h5", BUNDLED_MODEL), ("onnx", onnx_path)):
        nets[tag] = tmp_path / f"{tag}.snn"
        results[tag] = tmp_path / f"{tag}.npz"
        assert main([str(model), "--calibration", str(BUNDLED_SAMPLES), "--to", "network", "-o", str(nets[tag])]) == 0
        assert main(["simulate", str(model), "--calibration", str(BUNDLED_SAMPLES), "--data",
                     str(BUNDLED_SAMPLES), "--out", str(results[tag])]) == 0
    capsys.readouterr()
    with zipfile.ZipFile(nets["h5"]) as a, zipfile.ZipFile(nets["onnx"]) as b:
        arrays = sorted(n for n in a.namelist() if n.startswith("arrays/"))
        assert arrays == sorted(n for n in b.namelist() if n.startswith("arrays/")) and len(arrays) >= 8
        for n in arrays:
            assert a.read(n) == b.read(n), n
        docs = [json.loads(z.read("network.json")) for z in (a, b)]
    assert [n["scale"] for n in docs[0]["nodes"]] == [n["scale"] for n in docs[1]["nodes"]]
    keras_prov, onnx_prov = docs[0]["provenance"], docs[1]["provenance"]  # where each network came from
    assert keras_prov["model_format"] == "keras" and keras_prov["keras_version"] and not keras_prov["model_producer"]
    assert onnx_prov["model_format"] == "onnx" and onnx_prov["keras_version"] == ""
    assert onnx_prov["model_producer"] == f"snnexport-tests, opset {fx.DEFAULT_OPSET}", onnx_prov
    ra, rb = np.load(results["h5"]), np.load(results["onnx"])
    compared = [k for k in ra.files if not k.endswith("_names") and k != "meta"]
    assert "predictions" in compared and any(k.startswith("counts_") for k in compared)
    for k in compared:
        assert np.array_equal(ra[k], rb[k]), k
    assert ra["counts_0"].sum() > 0


# ---------------------------------------------------------------------------------------------
# refusals: one line naming the problem, exit 1, never a traceback


def tiny(opset: int = fx.DEFAULT_OPSET) -> fx.Builder:
    return fx.Builder((2, 6, 6), opset=opset)


def unsupported_models(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name → (file, a word its refusal must contain)."""
    out: dict[str, tuple[Path, str]] = {}

    def put(name: str, model: onnx.ModelProto, needle: str) -> None:
        out[name] = (save(model, tmp / f"{name}.onnx"), needle)

    b = fx.Builder((3, 5))
    y = b.op("LSTM", [b.x, b.rand(1, 16, 5), b.rand(1, 16, 4)], hidden_size=4)
    put("lstm", b.model(y), "LSTM")

    b = tiny()
    r = b.op("Resize", [b.relu(b.x), "", b.const([1, 1, 2, 2])], mode="cubic")
    put("resize_cubic", b.model(b.readout(r)), "mode 'cubic'")

    b = tiny()
    r = b.op("Resize", [b.relu(b.x), "", b.const([1, 1, 2, 2])], mode="linear",
             coordinate_transformation_mode="tf_crop_and_resize")
    put("resize_crop", b.model(b.readout(r)), "coordinate_transformation_mode 'tf_crop_and_resize'")

    b = tiny()
    r = b.op("Resize", [b.relu(b.x), "", b.const([1, 2, 2, 2])], mode="linear")
    put("resize_channels", b.model(b.readout(r)), "only spatial axes")

    b = tiny(18)  # antialias: opset 18
    r = b.op("Resize", [b.relu(b.x), "", b.const([1, 1, 0.5, 0.5])], mode="linear", antialias=1)
    put("resize_antialias_down", b.model(b.readout(r)), "antialias")

    b = tiny()
    r = b.op("LRN", [b.relu(b.x)], size=3)
    put("lrn", b.model(r), "LRN")

    b = tiny()
    b.nodes.append(helper.make_node("MyOp", [b.x], ["y"], domain="com.example", name="custom"))
    m = b.model(b.relu(b.x))
    m.graph.node[-1].input[0] = "y"
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    put("custom_domain", m, "custom operator domain")

    b = tiny()
    branch = lambda v: helper.make_graph(  # noqa: E731
        [helper.make_node("Identity", [b.x], [f"o{v}"])], f"g{v}", [],
        [helper.make_tensor_value_info(f"o{v}", TensorProto.FLOAT, None)])
    b.nodes.append(helper.make_node("If", [b.const(True, np.bool_)], ["yif"], then_branch=branch(1),
                                    else_branch=branch(2), name="cond"))
    put("if_subgraph", b.model(b.relu("yif")), "subgraph")

    b = tiny()
    put("conv_transpose", b.model(b.op("ConvTranspose", [b.x, b.rand(2, 3, 2, 2)], strides=[2, 2],
                                       auto_pad="SAME_UPPER")), "only explicit pads")

    b = tiny()
    put("spatial_output", b.model(b.relu(b.conv(b.x, 2, 3, 3))), "NCHW")

    b = tiny()
    f1, f2 = b.flatten(b.relu(b.conv(b.x, 2, 3, 3))), b.flatten(b.relu(b.conv(b.x, 2, 3, 3)))
    put("permuted_concat", b.model(b.gemm(b.op("Concat", [f1, f2], axis=1), 96, 2)), "NCHW")

    b = tiny()
    h = b.relu(b.conv(b.x, 2, 3, 3))
    put("mul_two_tensors", b.model(b.op("GlobalAveragePool", [b.op("Mul", [h, h])])), "two computed")

    b = tiny()
    put("clip_min", b.model(b.flatten(b.op("GlobalAveragePool", [b.op("Clip", [b.x, b.const(-1.0), b.const(1.0)])]))),
        "min")

    b = tiny()
    put("softmax_channels", b.model(b.op("Softmax", [b.conv(b.x, 2, 3, 3)], axis=1)), "class axis")

    b = tiny(opset=15)
    bn, _, _ = b.op("BatchNormalization", [b.conv(b.x, 2, 3, 3), b.rand(3, positive=True), b.rand(3),
                                           b.rand(3), b.rand(3, positive=True)], n_out=3, training_mode=1)
    put("bn_training", b.model(b.flatten(b.op("GlobalAveragePool", [bn]))), "training")

    b = tiny()
    y, idx = b.op("MaxPool", [b.relu(b.x)], n_out=2, kernel_shape=[2, 2], strides=[2, 2])
    s = b.op("Add", [y, b.op("Cast", [idx], to=TensorProto.FLOAT)])
    put("maxpool_indices", b.model(b.flatten(b.op("GlobalAveragePool", [s]))), "indices")

    b = tiny()
    p = b.op("MaxPool", [b.relu(b.x)], kernel_shape=[2, 2], dilations=[2, 2])
    put("maxpool_dilation", b.model(b.flatten(b.op("GlobalAveragePool", [p]))), "dilations")

    b = tiny()
    p = b.op("Pad", [b.relu(b.x), b.const([0, 0, 1, 1, 0, 0, 1, 1], np.int64)], mode="reflect")
    put("pad_reflect", b.model(b.flatten(b.op("GlobalAveragePool", [p]))), "reflect")

    b = tiny()
    g = b.op("Gather", [b.flatten(b.relu(b.x)), b.const([0, 1], np.int64)], axis=1)
    put("gather_on_data", b.model(g), "only on constants")

    b = fx.Builder((8,))
    put("reshape_mixes_samples", b.model(b.op("Reshape", [b.relu(b.x), b.const([-1, 4], np.int64)])), "mixing")

    m = fx.gemm_variants()
    m.graph.input.append(helper.make_tensor_value_info("x2", TensorProto.FLOAT, ["N", 3]))
    put("two_inputs", m, "2 inputs")

    m = fx.gemm_variants()
    m.opset_import[0].version = 99
    put("opset_99", m, "opset")

    m = fx.gemm_variants()
    m.graph.input[0].type.tensor_type.shape.dim[1].ClearField("dim_value")
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "F"
    put("unknown_input_size", m, "fixed sizes")

    m = fx.gemm_variants()
    m.functions.append(onnx.FunctionProto(name="f", domain="local"))
    put("local_function", m, "functions")

    m = fx.gemm_variants()
    sparse = m.graph.sparse_initializer.add()
    sparse.values.CopyFrom(numpy_helper.from_array(np.ones(2, np.float32), "sp"))
    sparse.indices.CopyFrom(numpy_helper.from_array(np.array([0, 1], np.int64), "spi"))
    sparse.dims.extend([4])
    put("sparse_initializer", m, "sparse")

    m = fx.gemm_variants()
    huge = m.graph.initializer[0]
    del huge.dims[:]
    huge.dims.extend([10 ** 6, 10 ** 6])  # 10**12 elements claimed, a few hundred bytes present
    put("huge_dims", m, "declares")

    m = fx.gemm_variants()
    t = m.graph.initializer[0]
    t.raw_data = t.raw_data[:-4]
    put("short_tensor", m, "holds")

    m = fx.gemm_variants()
    s = m.graph.initializer.add()
    s.CopyFrom(helper.make_tensor("names", TensorProto.STRING, [1], [b"a"]))
    put("string_tensor", m, "STRING")

    # external data: outside the folder, absolute, through a symlink, too short, missing
    outside = tmp.parent / f"{tmp.name}-outside.bin"
    outside.write_bytes(b"\0" * 4096)
    (tmp / "sub").mkdir()
    (tmp / "link.bin").symlink_to(outside)
    (tmp / "short.bin").write_bytes(b"\0" * 8)
    for name, loc, needle in (("external_dotdot", f"../{outside.name}", "leaves"),
                              ("external_absolute", str(outside), "absolute"),
                              ("external_symlink", "link.bin", "outside"),
                              ("external_short", "short.bin", "does not hold"),
                              ("external_missing", "nothere.bin", "does not exist")):
        m = fx.gemm_variants()
        t = m.graph.initializer[0]
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        t.external_data.add(key="location", value=loc)
        put(name, m, needle)
    return out


def damaged_files(tmp: Path, model: onnx.ModelProto) -> dict[str, Path]:
    """Empty, text, random bytes, the model cut short at 25 offsets, and bytes flipped in 40 copies
    (10 anywhere, 30 outside the weights' raw bytes, where the protobuf's structure lies)."""
    good = model.SerializeToString()
    rng = np.random.default_rng(0)
    files: dict[str, bytes] = {"empty": b"", "text": b"this is not a model\n" * 5,
                               "json": b'{"graph": {"node": []}}'}
    for k in range(3):
        files[f"random{k}"] = rng.integers(0, 256, int(rng.integers(10, 3000)), np.uint8).tobytes()
    for k, cut in enumerate(np.linspace(1, len(good) - 1, 25).astype(int)):
        files[f"cut{k}"] = good[:cut]
    weights = np.zeros(len(good), bool)
    for t in model.graph.initializer:
        start = good.find(t.raw_data)
        weights[start:start + len(t.raw_data)] = True
    structure = np.flatnonzero(~weights)
    for k in range(40):
        data = bytearray(good)
        for pos in rng.choice(structure, 2) if k >= 10 else rng.integers(0, len(good), 3):
            data[pos] ^= int(rng.integers(1, 256))
        files[f"flip{k}"] = bytes(data)
    out = {}
    for name, data in files.items():
        out[name] = tmp / f"{name}.onnx"
        out[name].write_bytes(data)
    return out


# Runs the real command's main() on each file in a fresh interpreter, then reports which modules
# it imported; one process for all files keeps the test fast.
_DRIVER = r"""
import contextlib, io, json, sys
from snnexport.cli import main
for path in sys.argv[1:]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            rc = main([path, "--to", "network", "-o", path + ".snn"])
        except SystemExit as e:
            rc = f"SystemExit {e.code}"
    print(json.dumps({"path": path, "rc": rc, "stderr": err.getvalue()}))
print(json.dumps({"torch": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))}))
"""


def run_driver(paths: list[Path]) -> tuple[dict[str, dict], list[str]]:
    proc = subprocess.run([sys.executable, "-c", _DRIVER, *map(str, paths)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env={**os.environ, "KERAS_BACKEND": "jax"})
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    return {r["path"]: r for r in lines[:-1]}, lines[-1]["torch"]


def assert_refused(r: dict, needle: str = "") -> None:
    lines = r["stderr"].strip().splitlines()
    assert r["rc"] == 1, r
    assert len(lines) == 1 and lines[0].startswith("snnexport: error:"), r
    assert "Traceback" not in r["stderr"]
    assert needle.lower() in lines[0].lower(), (needle, lines[0])
    assert not Path(r["path"] + ".snn").exists()  # no output file on failure


def test_bad_and_unsupported_files_through_the_cli(tmp_path: Path) -> None:
    bad = unsupported_models(tmp_path)
    good = save(fx.residual_block(), tmp_path / "good.onnx")
    damaged = damaged_files(tmp_path / "sub", fx.residual_block())
    results, torch_modules = run_driver([good, *(p for p, _ in bad.values()), *damaged.values()])

    assert results[str(good)]["rc"] == 0 and Path(str(good) + ".snn").stat().st_size > 0
    for name, (path, needle) in bad.items():
        assert_refused(results[str(path)], needle)
    for name in damaged:
        if not name.startswith("flip"):
            assert_refused(results[str(damaged[name])], "ONNX model")
    refused = 0
    for name, path in damaged.items():
        r = results[str(path)]
        # A flipped weight byte, or one in a name, can leave a valid model: it converts.
        # Anything else is one line and exit 1; never exit 3 (an internal error) or a traceback.
        if r["rc"] != 0:
            assert_refused(r)
            refused += name.startswith("flip")
    assert refused >= 10
    assert torch_modules == []  # reading an ONNX file never imports PyTorch


def test_unsupported_op_message_names_the_node(tmp_path: Path) -> None:
    b = tiny()
    b.nodes.append(helper.make_node("LRN", [b.x], ["r"], size=3, name="local\nnorm"))
    path = save(b.model(b.flatten(b.op("GlobalAveragePool", ["r"]))), tmp_path / "m.onnx")
    with pytest.raises(UnsupportedLayerError) as e:
        read_model(path)
    msg = str(e.value)
    assert "'local\\nnorm'" in msg and "(LRN)" in msg and "SUPPORTED_OPS" in msg and "\n" not in msg
    b = tiny()
    b.nodes.append(helper.make_node("LRN", [b.x], ["r"], size=3))  # unnamed: its index
    path = save(b.model(b.flatten(b.op("GlobalAveragePool", ["r"]))), tmp_path / "n.onnx")
    with pytest.raises(UnsupportedLayerError, match=r"node #0 \(LRN\)"):
        read_model(path)


def test_refusals_in_a_real_process(tmp_path: Path) -> None:
    """The installed entry point: exit status 1 and one stderr line, for a damaged and an unsupported file."""
    (tmp_path / "cut.onnx").write_bytes(fx.residual_block().SerializeToString()[:200])
    (tmp_path / "u").mkdir()
    bad = unsupported_models(tmp_path / "u")
    for path in (tmp_path / "cut.onnx", bad["lstm"][0]):
        proc = subprocess.run([sys.executable, "-m", "snnexport", str(path), "--to", "network"],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("snnexport: error:") and proc.stdout == ""


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(SnnexportError, match="no such file"):
        read_model(tmp_path / "none.onnx")
    (tmp_path / "d.onnx").mkdir()
    with pytest.raises(SnnexportError, match="directory"):
        read_model(tmp_path / "d.onnx")
