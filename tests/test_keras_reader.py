"""snnexport.readers.keras: every accepted model runs like Keras; every bad file gets one clear line."""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras import layers as L  # noqa: E402

from snnexport import ops  # noqa: E402
from snnexport.errors import SnnexportError, UnsupportedLayerError  # noqa: E402
from snnexport.readers.keras import SUPPORTED_LAYERS, read_model  # noqa: E402

import model_zoo as zoo  # noqa: E402

FORMATS = ("h5", "keras")


# ---------------------------------------------------------------------------------------------
# accepted models: the graph computes what Keras computes


@pytest.fixture(scope="module")
def zoo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict[str, Path], np.ndarray, np.ndarray]]:
    """Each zoo model built once, saved in both formats, with Keras' own outputs on sample inputs."""
    d = tmp_path_factory.mktemp("zoo")
    out = {}
    for name, build in zoo.BUILDERS.items():
        model = build()
        x = zoo.sample_input(model, n=3)
        y = model.predict(x, verbose=0)
        paths = {}
        for ext in FORMATS:
            paths[ext] = d / f"{name}.{ext}"
            model.save(paths[ext])
        out[name] = (paths, x, y)
    return out


def run_graph(graph, x: np.ndarray) -> np.ndarray:
    """Run on Keras-shaped inputs: 1-D models take (N, L, C), the graph wants (N, 1, L, C)."""
    return graph.run(x.reshape((len(x),) + graph.input_shape))[graph.output]


def assert_matches(got: np.ndarray, want: np.ndarray) -> None:
    got = got.reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("name", list(zoo.BUILDERS))
def test_zoo_model_matches_keras(zoo_files, name: str, ext: str) -> None:
    paths, x, y = zoo_files[name]
    graph = read_model(paths[ext])
    assert np.abs(y).max() > 0  # a dead network would prove nothing
    assert_matches(run_graph(graph, x), y)
    for n in graph.nodes:  # weights are our own float32 copies, not views of Keras buffers
        for v in n.op.params().values():
            if isinstance(v, np.ndarray):
                assert v.dtype == np.float32 and v.flags.writeable


def test_lenet_structure(zoo_files) -> None:
    g = read_model(zoo_files["lenet"][0]["h5"])
    names = [n.name for n in g.nodes]
    # Fused activations become their own node, which carries the layer's name; dropout vanishes.
    assert names == ["conv1:linear", "conv1", "pool1", "conv2:linear", "conv2", "pool2", "flatten",
                     "fc1:linear", "fc1", "out:linear", "out"]
    assert g.output == "out" and g.input_shape == (16, 16, 1)
    assert isinstance(g.node("conv1").op, ops.Activation) and g.node("conv1").op.function == "relu"
    assert isinstance(g.node("conv1:linear").op, ops.Conv2D)
    assert g.node("conv1:linear").keras_layer == "conv1"
    assert isinstance(g.node("pool1").op, ops.MaxPool)
    assert g.node("flatten").op == ops.Reshape((32,))
    assert g.node("out").op.function == "softmax"


def test_flatten_after_pool_keeps_nhwc_order(zoo_files) -> None:
    # Flatten must be a C-order reshape of (H, W, C): check against Keras' flatten output itself.
    model = keras.models.load_model(zoo_files["lenet"][0]["keras"], compile=False)
    x = zoo_files["lenet"][1]
    sub = keras.Model(model.inputs, model.get_layer("flatten").output)
    g = read_model(zoo_files["lenet"][0]["keras"])
    assert_matches(g.run(x, keep=["flatten"])["flatten"], sub.predict(x, verbose=0))


def test_geometry_padding_is_explicit(zoo_files) -> None:
    g = read_model(zoo_files["geometry"][0]["h5"])
    # 'same', kernel 2, stride 2 on 13: output 7, total padding 1, the extra pixel after.
    assert g.node("even_s2:linear").op.padding == ((0, 1), (0, 1))
    # 'same', kernel 4, stride 1: total 3 → (1, 2).
    assert g.node("even_s1:linear").op.padding == ((1, 2), (1, 2))
    assert g.node("valid_s3").op.strides == (3, 3) and g.node("valid_s3").op.padding == ((0, 0), (0, 0))


def test_conv1d_is_canonical_and_causal(zoo_files) -> None:
    g = read_model(zoo_files["conv1d"][0]["keras"])
    assert g.input_shape == (1, 32, 2)
    causal = g.node("causal:linear").op
    assert causal.kernel.shape == (1, 3, 2, 4) and causal.dilation == (1, 2)
    assert causal.padding == ((0, 0), (4, 0))  # (k - 1) * dilation on the left only
    assert g.node("dw1d").op.groups == 4 and g.node("dw1d").op.kernel.shape == (1, 2, 1, 8)
    assert g.shapes["gmp"] == (8,)


def test_depthwise_becomes_grouped_conv(zoo_files) -> None:
    g = read_model(zoo_files["depthwise"][0]["h5"])
    op = g.node("dw:linear").op
    assert op.groups == 3 and op.kernel.shape == (3, 3, 1, 6)


def test_batchnorm_is_an_affine_node(zoo_files) -> None:
    g = read_model(zoo_files["batchnorm"][0]["keras"])
    for name in ("bn1", "bn2", "bn3"):
        assert isinstance(g.node(name).op, ops.Affine)
    model = keras.models.load_model(zoo_files["batchnorm"][0]["keras"], compile=False)
    gamma, beta, mean, var = (np.asarray(w, np.float64) for w in model.get_layer("bn1").get_weights())
    scale = gamma / np.sqrt(var + 1e-3)
    np.testing.assert_allclose(g.node("bn1").op.scale, scale, rtol=1e-6)
    np.testing.assert_allclose(g.node("bn1").op.offset, beta - mean * scale, rtol=1e-6, atol=1e-7)
    assert not np.allclose(mean, 0) and not np.allclose(var, 1)  # non-trivial moving stats


def test_misc_layers(zoo_files) -> None:
    g = read_model(zoo_files["misc"][0]["h5"])
    assert g.node("relu_cap").op == ops.Activation("clip", max_value=0.8)
    assert isinstance(g.node("rescale").op, ops.Affine) and isinstance(g.node("normalize").op, ops.Affine)
    assert g.shapes["dense_rank3"] == (6, 6, 5)
    assert g.shapes["to_seq"] == (1, 4, 3)  # a 2-D Reshape target (L, C) is stored as (1, L, C)
    assert "noise" not in g.shapes and "sdrop" not in g.shapes  # inference no-ops leave no node
    assert g.node("seq_cat").op == ops.Concat(axis=1) and g.shapes["seq_cat"] == (1, 6, 2)


@pytest.mark.parametrize("ext", FORMATS)
def test_adapted_and_inverted_normalization(tmp_path: Path, ext: str) -> None:
    rng = np.random.default_rng(4)
    adapted = L.Normalization(name="adapted")
    adapted.adapt(rng.normal(0.3, 2.0, (40, 4, 4, 2)).astype(np.float32))
    model = keras.Sequential([keras.Input((4, 4, 2)), adapted,
                              L.Normalization(mean=[1.0, -2.0], variance=[4.0, 0.25], invert=True, name="inverted"),
                              L.Flatten(), zoo.Dense(2, name="out")])
    model.get_layer("out").set_weights([rng.normal(size=(32, 2)).astype(np.float32), np.zeros(2, np.float32)])
    model.save(tmp_path / f"m.{ext}")
    x = rng.uniform(-1, 1, (3, 4, 4, 2)).astype(np.float32)
    g = read_model(tmp_path / f"m.{ext}")
    assert isinstance(g.node("adapted").op, ops.Affine) and isinstance(g.node("inverted").op, ops.Affine)
    assert_matches(run_graph(g, x), model.predict(x, verbose=0))


def test_nested_model_is_flattened(zoo_files) -> None:
    g = read_model(zoo_files["nested"][0]["keras"])
    assert [n.name for n in g.nodes][:3] == ["inner_conv:linear", "inner_conv", "inner_pool"]


@pytest.mark.parametrize("ext", FORMATS)
def test_hostile_names_survive_unchanged(zoo_files, ext: str) -> None:
    g = read_model(zoo_files["hostile_names"][0][ext])
    names = {n.name for n in g.nodes}
    for hostile in zoo.HOSTILE_NAMES:
        assert hostile in names
        assert any(n.keras_layer == hostile for n in g.nodes)
    assert g.output == zoo.HOSTILE_NAMES[-1]


def test_derived_names_avoid_layer_names(tmp_path: Path) -> None:
    # A layer literally named like our derived name must keep it; the derived one moves aside.
    m = keras.Sequential([keras.Input((4,)), zoo.Dense(3, activation="relu", name="a"),
                          zoo.Dense(2, name="a:linear")])
    zoo.randomize(m)
    m.save(tmp_path / "m.keras")
    g = read_model(tmp_path / "m.keras")
    names = [n.name for n in g.nodes]
    assert names[1:] == ["a", "a:linear"] and names[0] not in ("a", "a:linear")
    assert len(set(names)) == len(names)


def test_inception_concat_axis_and_input_name(zoo_files) -> None:
    g = read_model(zoo_files["inception"][0]["h5"])
    assert g.input_name == "image"
    assert g.node("mixed").op == ops.Concat(axis=2) and len(g.node("mixed").inputs) == 4


def test_reading_leaves_no_deferred_keras_variables(zoo_files) -> None:
    # The reader loads without initializing Keras variables; none may linger in Keras' registry.
    from keras.src.backend.common import global_state

    before = list(global_state.get_global_attribute("uninitialized_variables") or [])
    read_model(zoo_files["lenet"][0]["h5"])
    assert list(global_state.get_global_attribute("uninitialized_variables") or []) == before


# ---------------------------------------------------------------------------------------------
# refusals: one line, naming the problem


def refused(path: Path, *needles: str, cls: type[Exception] = SnnexportError) -> str:
    with pytest.raises(cls) as info:
        read_model(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def tiny(*layers: L.Layer, shape: tuple[int, ...] = (4, 4, 1)) -> keras.Model:
    return zoo.randomize(keras.Sequential([keras.Input(shape), *layers]))


@pytest.mark.parametrize("ext", FORMATS)
def test_lambda_is_refused_before_any_code_runs(tmp_path: Path, ext: str) -> None:
    marker = tmp_path / "ran"
    path = str(marker)

    def touch(x):
        open(path, "a").close()  # runs while Keras traces the model here; must never run on read
        return x

    m = tiny(L.Lambda(touch, name="sneaky"), L.Flatten(), zoo.Dense(2))
    m.save(tmp_path / f"m.{ext}")
    marker.unlink()
    refused(tmp_path / f"m.{ext}", "'sneaky' (Lambda)", "never runs", cls=UnsupportedLayerError)
    assert not marker.exists()


def test_lambda_inside_a_nested_model_is_refused(tmp_path: Path) -> None:
    inner = keras.Sequential([keras.Input((3,)), L.Lambda(lambda x: x * 2, name="inner_lambda")], name="sub")
    x = keras.Input((3,))
    keras.Model(x, zoo.Dense(2)(inner(x))).save(tmp_path / "m.h5")
    refused(tmp_path / "m.h5", "'inner_lambda' (Lambda)", cls=UnsupportedLayerError)


def test_custom_registered_layer_is_refused(tmp_path: Path) -> None:
    @keras.saving.register_keras_serializable(package="evil")
    class Double(L.Layer):
        def call(self, x):
            return 2 * x

    tiny(Double(name="double"), L.Flatten(), zoo.Dense(2)).save(tmp_path / "m.keras")
    refused(tmp_path / "m.keras", "'double' (custom class 'evil>Double')", "never runs", cls=UnsupportedLayerError)


@pytest.mark.parametrize("layer, needles", [
    (L.LeakyReLU(name="leaky"), ("'leaky' (LeakyReLU)", "LeakyReLU is not supported", "snnexport --layers")),
    (L.Activation("tanh", name="act"), ("'act'", "'tanh'")),
    (zoo.Conv2D(2, 3, activation="sigmoid", name="conv"), ("'conv'", "'sigmoid'")),
    (L.ReLU(negative_slope=0.1, name="lrelu"), ("'lrelu'", "negative_slope")),
    (L.ReLU(threshold=0.5, name="trelu"), ("'trelu'", "threshold")),
    # 'area' exists on Keras' TensorFlow backend only; no fixed interpolation matrix here reproduces it
    (L.UpSampling2D(interpolation="area", name="smooth"), ("'smooth' (UpSampling2D)", "'area'", "'bilinear'")),
])
def test_unsupported_layers_and_activations(tmp_path: Path, layer: L.Layer, needles: tuple[str, ...]) -> None:
    tiny(layer, L.Flatten(), zoo.Dense(2)).save(tmp_path / "m.h5")
    refused(tmp_path / "m.h5", *needles, cls=UnsupportedLayerError)


def test_channels_first_is_refused(tmp_path: Path) -> None:
    m = tiny(zoo.Conv2D(2, 3, data_format="channels_first", name="cf"), L.Flatten(), zoo.Dense(2),
             shape=(1, 5, 5))
    m.save(tmp_path / "m.keras")
    refused(tmp_path / "m.keras", "'cf'", "channels_first", cls=UnsupportedLayerError)


def test_multi_input_and_multi_output_are_refused(tmp_path: Path) -> None:
    a, b = keras.Input((3,), name="a"), keras.Input((3,), name="b")
    keras.Model([a, b], zoo.Dense(2)(L.Concatenate()([a, b]))).save(tmp_path / "in2.keras")
    refused(tmp_path / "in2.keras", "2 inputs", "single-input", cls=UnsupportedLayerError)
    x = keras.Input((3,))
    keras.Model(x, [zoo.Dense(2)(x), zoo.Dense(1)(x)]).save(tmp_path / "out2.h5")
    refused(tmp_path / "out2.h5", "2 outputs", cls=UnsupportedLayerError)


def test_shared_layer_is_refused(tmp_path: Path) -> None:
    x = keras.Input((3,))
    shared = zoo.Dense(3, name="shared")
    keras.Model(x, shared(shared(x))).save(tmp_path / "m.keras")
    refused(tmp_path / "m.keras", "'shared'", "more than once", cls=UnsupportedLayerError)


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "Inf")])
@pytest.mark.parametrize("ext", FORMATS)
def test_non_finite_weights_are_refused(tmp_path: Path, bad: float, word: str, ext: str) -> None:
    m = tiny(zoo.Conv2D(2, 3, name="c"), L.Flatten(), zoo.Dense(2, name="d"))
    k, bias = m.get_layer("d").get_weights()
    k[1, 1] = bad
    m.get_layer("d").set_weights([k, bias])
    m.save(tmp_path / f"m.{ext}")
    refused(tmp_path / f"m.{ext}", f"layer 'd' has {word} weights")


def test_missing_file(tmp_path: Path) -> None:
    refused(tmp_path / "nope.h5", "nope.h5", "no such file")


def test_unknown_extension_names_the_accepted_ones(tmp_path: Path) -> None:
    (tmp_path / "model.pb").write_bytes(b"x")
    refused(tmp_path / "model.pb", "'.pb'", ".h5", ".keras")


@pytest.mark.parametrize("ext", FORMATS)
def test_empty_file(tmp_path: Path, ext: str) -> None:
    (tmp_path / f"m.{ext}").write_bytes(b"")
    refused(tmp_path / f"m.{ext}", "empty")


def test_plain_text_named_h5(tmp_path: Path) -> None:
    (tmp_path / "m.h5").write_text("this is not a model\n")
    refused(tmp_path / "m.h5", "not an HDF5 file")


@pytest.fixture(scope="module")
def small_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("small") / "small.h5"
    tiny(zoo.Conv2D(8, 3), L.Flatten(), zoo.Dense(64), zoo.Dense(3)).save(path)
    return path


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_truncated_h5(tmp_path: Path, small_h5: Path, fraction: float) -> None:
    data = small_h5.read_bytes()
    (tmp_path / "t.h5").write_bytes(data[: int(len(data) * fraction)])
    msg = refused(tmp_path / "t.h5")
    assert any(w in msg for w in ("truncated", "corrupt", "could not load")), msg


def test_h5_without_model(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["data"] = np.arange(10)
    refused(tmp_path / "d.h5", "holds no Keras model")


def test_weights_only_files(tmp_path: Path) -> None:
    from keras.src.legacy.saving import legacy_h5_format

    m = tiny(zoo.Conv2D(2, 3), L.Flatten(), zoo.Dense(2))
    m.save_weights(tmp_path / "m.weights.h5")
    refused(tmp_path / "m.weights.h5", "only weights", "model.save")
    with h5py.File(tmp_path / "legacy.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, m)
    refused(tmp_path / "legacy.h5", "only weights")


def test_corrupt_keras_archives(tmp_path: Path, small_h5: Path) -> None:
    (tmp_path / "junk.keras").write_bytes(os.urandom(2000))
    refused(tmp_path / "junk.keras", "not a valid .keras file")

    with zipfile.ZipFile(tmp_path / "noconf.keras", "w") as z:
        z.writestr("model.weights.h5", b"")
    refused(tmp_path / "noconf.keras", "no config.json")

    with zipfile.ZipFile(tmp_path / "badjson.keras", "w") as z:
        z.writestr("config.json", "{not json")
        z.writestr("model.weights.h5", b"")
    refused(tmp_path / "badjson.keras", "not valid JSON")

    good = tmp_path / "good.keras"
    keras.models.load_model(small_h5, compile=False).save(good)
    with zipfile.ZipFile(good) as z:
        cfg = json.loads(z.read("config.json"))
    with zipfile.ZipFile(tmp_path / "noweights.keras", "w") as z:  # config fine, weights garbage
        z.writestr("config.json", json.dumps(cfg))
        z.writestr("model.weights.h5", b"garbage")
    refused(tmp_path / "noweights.keras", "could not load")

    data = good.read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    refused(tmp_path / "cut.keras", "not a valid .keras file")


def test_a_refusal_names_every_blocker_in_one_short_line(tmp_path: Path) -> None:
    x = keras.Input((4, 4, 2))
    h = [L.Activation("tanh", name=f"tanh{i}")(zoo.Conv2D(2, 1, activation="sigmoid", name=f"sig{i}")(x))
         for i in range(3)]
    y = L.Multiply(name="mul")([L.LayerNormalization(name="ln")(h[0]), h[1]])
    keras.Model(x, L.Flatten()(L.Maximum(name="max")([y, h[2]]))).save(tmp_path / "m.keras")
    msg = refused(tmp_path / "m.keras", "3 layers use activation 'sigmoid' ('sig0', 'sig1', …)", "3 use 'tanh'",
                  "'ln' (LayerNormalization)", "'mul' (Multiply)", "'max' (Maximum)", "ReLU-family",
                  "LayerNormalization, Multiply, Maximum are not supported", cls=UnsupportedLayerError)
    assert len(msg.split(": ", 1)[1]) < 400  # after the file name


def test_the_layer_listing_names_every_supported_layer() -> None:
    from snnexport.cli import main
    from snnexport.readers.keras_config import supported_text
    text = supported_text()
    assert all(re.search(rf"\b{name}\b", text) for name in SUPPORTED_LAYERS if name != "InputLayer")
    assert "UpSampling2D interpolation: 'nearest', 'bilinear', 'bicubic', 'lanczos3', 'lanczos5'" in text
    assert main(["--layers"]) == 0


def test_keras2_style_h5(tmp_path: Path) -> None:
    """A legacy .h5 as TensorFlow's Keras 2 wrote it (old config keys, 'name:0' weight names)."""
    def dense_like(name: str, **cfg: object) -> dict:
        return {"class_name": cfg.pop("cls"), "config": {
            "name": name, "trainable": True, "dtype": "float32", "use_bias": True,
            "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
            "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
            "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
            "bias_constraint": None, **cfg}}

    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 6, 6, 1], "dtype": "float32",
                                                "sparse": False, "ragged": False, "name": "conv2d_input"}},
        dense_like("conv2d", cls="Conv2D", filters=2, kernel_size=[3, 3], strides=[1, 1], padding="valid",
                   data_format="channels_last", dilation_rate=[1, 1], groups=1, activation="relu"),
        {"class_name": "Flatten", "config": {"name": "flatten", "trainable": True, "dtype": "float32",
                                             "data_format": "channels_last"}},
        dense_like("dense", cls="Dense", units=3, activation="softmax"),
    ]}}
    rng = np.random.default_rng(0)
    weights = {"conv2d": [rng.normal(size=(3, 3, 1, 2)), rng.normal(size=2)],
               "dense": [rng.normal(size=(32, 3)), rng.normal(size=3)]}
    path = tmp_path / "k2.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update(keras_version="2.13.1", backend="tensorflow", model_config=json.dumps(config))
        g = f.create_group("model_weights")
        g.attrs.update(layer_names=[b"conv2d_input", b"conv2d", b"flatten", b"dense"],
                       keras_version="2.13.1", backend="tensorflow")
        for layer in ("conv2d_input", "conv2d", "flatten", "dense"):
            lg = g.create_group(layer)
            names = [f"{layer}/kernel:0", f"{layer}/bias:0"] if layer in weights else []
            lg.attrs["weight_names"] = [n.encode() for n in names]
            for n, w in zip(names, weights.get(layer, [])):
                lg.create_dataset(n, data=w.astype(np.float32))
    graph = read_model(path)
    assert [n.name for n in graph.nodes] == ["conv2d:linear", "conv2d", "flatten", "dense:linear", "dense"]
    x = rng.uniform(size=(3, 6, 6, 1)).astype(np.float32)
    want = keras.models.load_model(path, compile=False).predict(x, verbose=0)
    assert_matches(run_graph(graph, x), want)


@pytest.mark.parametrize("layer", [
    L.Conv2DTranspose(3, 3, strides=2, padding="same", output_padding=1, name="t"),
    L.Conv2DTranspose(3, (2, 3), strides=(3, 1), padding="valid", output_padding=(2, 0), name="t"),
    L.Conv2DTranspose(3, 3, padding="same", dilation_rate=2, name="t"),
    L.Conv2DTranspose(3, 1, strides=3, padding="same", name="t"),  # more cells than the kernel reaches
    L.Conv1DTranspose(3, 3, strides=3, padding="valid", output_padding=2, name="t"),
    L.Conv1DTranspose(3, 2, strides=2, padding="same", output_padding=1, name="t"),
], ids=lambda layer: f"{type(layer).__name__}-{layer.strides}-{layer.padding}-{layer.output_padding}")
def test_transposed_convolutions_match_keras(tmp_path: Path, layer: L.Layer) -> None:
    one_d = type(layer).__name__.startswith("Conv1D")
    model = tiny(layer, L.Flatten(), shape=(5, 2) if one_d else (4, 5, 2))
    model.save(tmp_path / "m.keras")
    x = zoo.sample_input(model, 3)
    assert_matches(run_graph(read_model(tmp_path / "m.keras"), x), model.predict(x, verbose=0))
