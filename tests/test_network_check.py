"""The network file's schema (snnexport.network_check): every field of a real file mutated, and every
damaged file a user might meet, gives one line and exit 1, or a network that simulates; never a
crash, never exit 3, never a model reader's message for a damaged .snn.
"""

import copy
import io
import json
import math
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import jax
import numpy as np
import pytest

from snnexport import ops
from snnexport.errors import SnnexportError
from snnexport.network import (Gate, InputSpec, Network, Neuron, Normalization, Population, Projection,
                               Provenance, Settings, networks_equal)
from snnexport.network import _CLASSES, check_network
from snnexport.network_check import _OP_PARAMS, ArrayInfo, check_document
from snnexport.simulator import simulate
from snnexport.summary import describe

from conftest import BUNDLED_MODEL, BUNDLED_SAMPLES

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
ENV.pop("SNNEXPORT_DEBUG", None)


# --- files as (network.json document, member bytes) ----------------------------------------------

def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


def unpack(data: bytes) -> tuple[dict, dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        doc = json.loads(z.read("network.json"))
        return doc, {n: z.read(n) for n in z.namelist() if n != "network.json"}


def pack(doc, members: dict[str, bytes]) -> bytes:
    """A network file as the writer lays it out (ASCII JSON: a mutant may hold a lone surrogate)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("network.json", json.dumps(doc, ensure_ascii=True), zipfile.ZIP_DEFLATED)
        for name, data in members.items():
            z.writestr(name, data, zipfile.ZIP_STORED)
    return buf.getvalue()


def array_of(members: dict[str, bytes], name: str) -> np.ndarray:
    return np.lib.format.read_array(io.BytesIO(members[name]), allow_pickle=False)


# --- the networks the fuzz starts from ---------------------------------------------------------------

@pytest.fixture(scope="module")
def lenet(tmp_path_factory) -> bytes:
    """The bundled LeNet, converted by the real command with its bundled calibration samples."""
    path = tmp_path_factory.mktemp("lenet") / "lenet.snn"
    r = subprocess.run([sys.executable, "-m", "snnexport", BUNDLED_MODEL, "--calibration", BUNDLED_SAMPLES,
                        "--calibration-samples", "50", "-o", path], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    return path.read_bytes()


def every_feature() -> Network:
    """A small network with every projection op, a gate on a gate (padded), a sign population,
    a concatenation (two embeddings into one target), analog input into two populations, clip."""
    rng = np.random.default_rng(4)

    def k(*shape):
        return rng.normal(0, 0.5, shape).astype(np.float32)

    def pop(name, shape, activation, depth, max_value=None, levels=None):
        return Population(name, shape, rng.uniform(-0.05, 0.1, shape).astype(np.float32), activation, 1.5,
                          depth, max_value, levels)

    nodes = [pop("a", (6, 6, 2), "relu", 1),
             Gate("g1", "a", (3, 3, 2), (2, 2), (2, 2), ((0, 0), (0, 0)), 1.5, 1),
             Gate("g2", "g1", (2, 2, 2), (2, 2), (2, 2), ((0, 1), (0, 1)), 1.5, 1),
             pop("b", (2, 2, 4), "sign", 2),
             pop("c", (3,), "clip", 3, 6.0, 8),
             pop("out", (3,), "softmax", 4)]
    projs = [Projection("in", "a", [ops.Conv2D(k(3, 3, 1, 2), padding=((1, 1), (1, 1)))]),
             Projection("g2", "b", [ops.Conv2D(k(1, 1, 2, 4))]),
             Projection("in", "b", [ops.AvgPool((3, 3), (3, 3)), ops.Conv2D(k(1, 1, 1, 4))]),
             Projection("b", "c", [ops.Conv2D(k(3, 2, 2, 4), None, (2, 1), ((1, 0), (0, 1)), (1, 2), 2),
                                   ops.Pad(((1, 2), (3, 4))), ops.AvgPool((2, 2), (1, 2), ((0, 1), (1, 0))),
                                   ops.Affine(k(4)), ops.Reshape((64,)), ops.Dense(k(64, 2)),
                                   ops.Embed(0, 1, 3), ops.Scale(0.75)]),
             Projection("g1", "c", [ops.Reshape((18,)), ops.Dense(k(18, 1)), ops.Embed(0, 0, 3)]),
             Projection("c", "out", [ops.Dense(k(3, 3))]),
             Projection("g1", "b", [ops.ConvTranspose(k(2, 2, 1, 4), None, (2, 2), ((1, 2), (2, -1)), (1, 1), 2),
                                    ops.Transpose((1, 0, 2)), ops.AvgPool((3, 2), (2, 1))])]
    return Network(InputSpec("in", (6, 6, 1), "poisson"), nodes, projs, "out", Neuron(1.0, "zero", 0.25, "gt"),
                   Settings(20, "count", "step", 1, 3), Normalization("percentile", 99.9, 10, "ab" * 32),
                   Provenance("m.h5", "cd" * 32, "3.15.1", "0.1.0"))


# --- mutations of every field ----------------------------------------------------------------------

HOSTILE = 'q"uo\'te\n; import os  # \u2028 ünï 漢'


def _walk(v, path=()):
    yield path, v
    if isinstance(v, dict):
        for key in sorted(v):
            yield from _walk(v[key], path + (key,))
    elif isinstance(v, list):
        for i, item in enumerate(v):
            yield from _walk(item, path + (i,))


def _names(doc) -> list[str]:
    return [doc["input"]["name"]] + [n["name"] for n in doc["nodes"]]


def _value_mutations(v, key, names):
    """(kind, new value) for a JSON value; ``key`` is the field (or list index) that holds it."""
    assert not isinstance(v, bool)  # the format has no boolean field
    if isinstance(v, int):
        return [("int:str", str(v)), ("int:negative", -v - 1), ("int:zero", 0), ("int:huge", 10 ** 30),
                ("int:2**31", 2 ** 31), ("int:next", v + 1), ("int:nan", math.nan), ("int:bool", True),
                ("int:float", v + 0.5), ("int:null", None)]
    if isinstance(v, float):
        return [("float:str", str(v)), ("float:negative", -v if v else -1.0), ("float:zero", 0.0),
                ("float:huge", 1e300), ("float:big", 1e30), ("float:nan", math.nan), ("float:inf", math.inf),
                ("float:bool", True), ("float:int", int(v)), ("float:null", None)]
    if isinstance(v, str):
        out = [("str:int", 1), ("str:empty", ""), ("str:hostile", v + HOSTILE), ("str:long", "x" * 100_000),
               ("str:surrogate", v + "\ud800"), ("str:missing", "no such name"), ("str:null", None)]
        if key in ("name", "source", "target", "output"):
            out += [(f"str:other name {j}", n) for j, n in enumerate(names) if n != v][:2]
        return out
    if v is None:
        return [("null:number", 1.0), ("null:negative", -1), ("null:str", "1"), ("null:list", [])]
    if isinstance(v, list):
        out = [("list:truncate", v[:-1]), ("list:empty", []), ("list:object", {}), ("list:str", "x"),
               ("list:nested", [v])]
        if v:
            out.append(("list:repeat last", v + [v[-1]]))
        return out
    if isinstance(v, dict):
        out = [(f"object:drop {k}", {x: y for x, y in v.items() if x != k}) for k in sorted(v)]
        return out + [("object:unknown key", {**v, "unknown": 1}), ("object:list", [v]), ("object:null", None)]
    raise AssertionError(type(v))


def _set(doc, path, value):
    new = copy.deepcopy(doc)
    if not path:
        return value
    target = new
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value
    return new


def _array_mutations(a: np.ndarray) -> list[tuple[str, np.ndarray]]:
    nan, inf = a.copy(), a.copy()
    nan.flat[0], inf.flat[-1] = np.nan, -np.inf
    return [("array:nan", nan), ("array:inf", inf), ("array:float64", a.astype(np.float64)),
            ("array:int32", a.astype(np.int32)), ("array:one more", np.append(a.ravel(), np.float32(0))),
            ("array:flat", a.ravel() if a.ndim > 1 else a.reshape(1, -1)),
            ("array:transposed", np.ascontiguousarray(a.T) if a.ndim > 1 else a[:-1]),
            ("array:fortran order", np.asfortranarray(a))]


def mutants(data: bytes):
    """(label, file bytes) for every mutation of every field, array and member of a network file."""
    doc, members = unpack(data)
    names = _names(doc)
    for path, v in _walk(doc):
        where = ".".join(map(str, path)) or "(root)"
        for kind, new in _value_mutations(v, path[-1] if path else None, names):
            yield f"{kind} at {where}", pack(_set(doc, path, new), members)
        if isinstance(v, dict) and set(v) == {"array"}:
            for kind, a in _array_mutations(array_of(members, v["array"])):
                yield f"{kind} at {where}", pack(doc, {**members, v["array"]: npy(a)})
            others = [m for m in members if m != v["array"]]
            if others:
                yield f"array:swapped at {where}", pack(doc, {**members, v["array"]: members[others[0]]})


def outcome(data: bytes, x: np.ndarray) -> str:
    """'refused: <line>' or 'ran'; anything else is raised (the test fails)."""
    try:
        net = Network.load(io.BytesIO(data))
    except SnnexportError as e:
        message = str(e)
        assert message.isascii() and message.isprintable() and message.strip(), repr(message)  # one line
        return f"refused: {message}"
    assert networks_equal(net, Network.load(io.BytesIO(net.to_bytes())))  # what loads, round-trips
    try:
        # Eagerly: the same code, where every structural variant would otherwise compile for a second.
        # The unmutated networks run compiled (test_every_field_of_a_network..., the command's simulate).
        with jax.disable_jit():
            describe(net)  # `snnexport info`: exact fan-ins from the kernels
            simulate(net, x, steps=5, batch=2)
    except SnnexportError as e:  # a setting the simulator refuses (e.g. a readout that needs a leaf output)
        assert "\n" not in str(e)
        return f"refused by the simulator: {e}"
    return "ran"


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    return np.load(BUNDLED_SAMPLES)["x"][:2].astype(np.float32) / np.float32(255)


def _check_all(data: bytes, x: np.ndarray) -> dict[str, str]:
    results = {label: outcome(m, x) for label, m in mutants(data)}
    refused = sum(r.startswith("refused") for r in results.values())
    assert refused >= 0.7 * len(results)  # most mutations break the file; the rest must still work
    return results


def test_every_field_of_lenet_is_checked(lenet, samples):
    results = _check_all(lenet, samples.reshape(2, 28, 28, 1))
    assert len(results) > 500
    # a sample of what the user reads: the field, and what was expected
    assert results["int:negative at nodes.0.shape.0"].endswith(
        "nodes[0].shape: expected a shape (1 to 8 positive integers), got [-25, 24, 16]")
    assert "NaN" in results["array:nan at nodes.0.bias"]
    assert results["float:zero at neuron.threshold"].endswith(
        "neuron.threshold: expected a finite number > 0, got 0.0")
    assert results["float:str at neuron.threshold"].endswith(
        'neuron.threshold: expected a finite number > 0, got "1.0"')
    assert results["int:bool at settings.seed"].endswith("settings.seed: expected an integer in [0, 2**63), got true")
    assert results["str:hostile at provenance.keras_version"] == "ran"
    assert results["int:2**31 at settings.seed"] == "ran"
    assert results["float:nan at neuron.v_init"].endswith("neuron.v_init: expected a number in [0, 1) (a fraction "
                                                          "of the threshold), got NaN")
    assert results["float:zero at neuron.v_init"] == "ran"
    assert results["str:empty at neuron.threshold_rule"].endswith(
        'neuron.threshold_rule: expected one of "ge", "gt"; got ""')
    assert results["array:fortran order at projections.0.ops.0.kernel"] == "ran"


def test_every_field_of_a_network_with_every_feature_is_checked(samples):
    net = every_feature()
    check_network(net)
    x = np.random.default_rng(0).uniform(0, 1, (2, 6, 6, 1)).astype(np.float32)
    assert simulate(net, x, steps=5)["spikes_per_step"].sum() > 0
    results = _check_all(net.to_bytes(), x)
    assert results["str:other name 0 at nodes.1.source"].endswith(  # a gate on the input
        'nodes[1].source: expected a population or gate before "g1", got "in"')
    assert results["int:next at nodes.2.padding.0.1"].endswith(  # padding as large as the window
        "nodes[2]: max pooling padding ((0, 2), (0, 1)) is not smaller than its window (2, 2)")
    assert results["str:other name 0 at projections.3.target"].endswith(
        'projections[3].target: "in" is the input; a projection\'s target is a population')
    assert results["str:other name 1 at projections.1.target"].endswith(
        'projections[1].source: "g2" does not come before its target "a" in node order (the network must be '
        'feed-forward)')
    assert results["str:other name 0 at projections.4.source"].endswith(  # the ops' own geometry decides
        "projections[4].ops[0] (reshape): cannot reshape (6, 6, 1) to (18,)")
    assert results["object:drop bias at nodes.3"].endswith("nodes[3].bias: missing")
    assert results["str:hostile at nodes.3.name"].startswith("refused")  # the references no longer match


# --- the real command on a deterministic subset of mutants ---------------------------------------------

def _kind(label: str) -> str:
    """'object:drop bias at nodes.0' → 'object:drop'."""
    return label.split(" at ")[0].split(" ")[0]


def _cli_subset(data: bytes, count: int) -> list[tuple[str, bytes]]:
    """Mutants of every mutation kind, each kind's picks spread over its fields (deterministically)."""
    by_kind: dict[str, list[tuple[str, bytes]]] = {}
    for label, m in mutants(data):
        by_kind.setdefault(_kind(label), []).append((label, m))
    chosen: dict[str, bytes] = {}
    for round_ in range(3):
        for j, kind in enumerate(sorted(by_kind)):
            items = by_kind[kind]
            label, m = items[(37 * j + round_ * len(items) // 3) % len(items)]
            if len(chosen) < count:
                chosen.setdefault(label, m)
    return list(chosen.items())


def _run_cli(args: list, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snnexport", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def _assert_clean(r: subprocess.CompletedProcess, label: str) -> None:
    assert r.returncode in (0, 1), (label, r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, (label, r.stderr)
    if r.returncode == 1:
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("snnexport: error: "), (label, r.stderr)


def test_the_command_on_mutants_gives_one_line_or_works(lenet, tmp_path):
    subset = _cli_subset(lenet, 60)
    kinds = {_kind(label) for label, _ in mutants(lenet)}
    assert len(subset) == 60 and {_kind(label) for label, _ in subset} == kinds and len(kinds) > 40
    codes = []
    for i, (label, data) in enumerate(subset):
        path = tmp_path / f"m{i}.snn"
        path.write_bytes(data)
        r = _run_cli(["info", path])
        _assert_clean(r, label)
        codes.append(r.returncode)
    assert codes.count(1) >= 40 and codes.count(0) >= 1
    # simulate: one refused mutant and one that loads, through the whole command
    path = tmp_path / "s.snn"
    for label, data in [s for s in subset if "threshold" in s[0]][:1] + [("unchanged", lenet)]:
        path.write_bytes(data)
        r = _run_cli(["simulate", path, "--data", BUNDLED_SAMPLES, "-n", 2, "--steps", 5])
        _assert_clean(r, label)


# --- damaged files, one test each --------------------------------------------------------------------------

def _refused_by_every_command(path: Path, *needles: str) -> str:
    """info, simulate and a writer each exit 1 with the same single line; no output is written."""
    first = None
    out = path.with_suffix(".py")
    for args in (["info", path], ["simulate", path, "--data", BUNDLED_SAMPLES, "-n", 2],
                 [path, "--to", "brian2", "-o", out]):
        r = _run_cli(args)
        _assert_clean(r, str(args))
        assert r.returncode == 1, r.stderr
        line = r.stderr.strip()
        assert "unknown model file extension" not in line and str(path) in line
        for needle in needles:
            assert needle in line, line
        assert first in (None, line)
        first = line
    assert not out.exists()
    return first


def _edited(lenet: bytes, tmp_path: Path, edit) -> Path:
    doc, members = unpack(lenet)
    edit(doc, members)
    path = tmp_path / "bad.snn"
    path.write_bytes(pack(doc, members))
    return path


def _population(doc, i: int = 0) -> dict:
    return [n for n in doc["nodes"] if n["type"] == "Population"][i]


def _populations(doc) -> list[dict]:
    return [n for n in doc["nodes"] if n["type"] == "Population"]


def test_truncated_file(lenet, tmp_path):
    path = tmp_path / "cut.snn"
    path.write_bytes(lenet[: len(lenet) // 2])
    _refused_by_every_command(path, "not a readable snnexport network file")


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.snn"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    _refused_by_every_command(path, "not a readable snnexport network file")


def test_a_version_1_file_reads_as_a_keras_model_and_other_versions_are_refused(lenet, tmp_path):
    doc, members = unpack(lenet)
    assert doc["version"] == 4 and doc["provenance"]["model_format"] == "keras"
    old = copy.deepcopy(doc)
    old["version"] = 1
    del old["provenance"]["model_format"], old["provenance"]["model_producer"]
    del old["neuron"]["v_init"], old["neuron"]["threshold_rule"]
    for n in _populations(old):
        del n["levels"]
    path = tmp_path / "v1.snn"
    path.write_bytes(pack(old, members))
    net = Network.load(path)
    assert net.provenance.model_format == "keras" and net.provenance.model_producer == ""
    assert net.sha256() == Network.load(io.BytesIO(lenet)).sha256()
    half = copy.deepcopy(old)  # a version-1 file that already names a format is no version-1 file
    half["provenance"]["model_format"] = "onnx"
    path.write_bytes(pack(half, members))
    _refused_by_every_command(path, "network file version 1 is not supported")
    for version in (5, 0, True):
        path.write_bytes(pack(dict(doc, version=version), members))
        _refused_by_every_command(path, "is not supported (this snnexport reads version 4)")


def test_a_version_2_file_reads_with_v_init_0_and_rule_ge(lenet, tmp_path):
    """Version 3 added the neuron's v_init and threshold_rule: a version-2 file simulates as before."""
    doc, members = unpack(lenet)
    old = copy.deepcopy(doc)
    old["version"] = 2
    del old["neuron"]["v_init"], old["neuron"]["threshold_rule"]
    for n in _populations(old):
        del n["levels"]
    path = tmp_path / "v2.snn"
    path.write_bytes(pack(old, members))
    net = Network.load(path)
    assert net.neuron.v_init == 0.0 and net.neuron.threshold_rule == "ge" and net.version == 4
    assert net.sha256() == Network.load(io.BytesIO(lenet)).sha256()
    half = copy.deepcopy(old)  # a version-2 file that already holds a version-3 field is no version-2 file
    half["neuron"]["v_init"] = 0.5
    path.write_bytes(pack(half, members))
    _refused_by_every_command(path, "network file version 2 is not supported")


def test_a_version_3_file_reads_without_levels(lenet, tmp_path):
    """Version 4 added a population's levels (QuantizedReLU): a version-3 file has none."""
    doc, members = unpack(lenet)
    old = copy.deepcopy(doc)
    old["version"] = 3
    for n in _populations(old):
        del n["levels"]
    path = tmp_path / "v3.snn"
    path.write_bytes(pack(old, members))
    net = Network.load(path)
    assert [p.levels for p in net.populations] == [None] * len(net.populations) and net.version == 4
    assert net.sha256() == Network.load(io.BytesIO(lenet)).sha256()
    half = copy.deepcopy(old)  # a version-3 file that already holds a version-4 field is no version-3 file
    _populations(half)[0]["levels"] = 4
    path.write_bytes(pack(half, members))
    _refused_by_every_command(path, "network file version 3 is not supported")


@pytest.mark.parametrize("levels, activation, message", [
    (0, "clip", "levels: expected an integer in [1, 1025), got 0"),
    (4, "relu", "levels: quantization levels need a 'clip' population with a max_value, not \"relu\""),
])
def test_bad_levels(lenet, tmp_path, levels, activation, message):
    doc, members = unpack(lenet)
    _populations(doc)[0].update(levels=levels, activation=activation, max_value=2.0)
    path = tmp_path / "levels.snn"
    path.write_bytes(pack(doc, members))
    _refused_by_every_command(path, message)


@pytest.mark.parametrize("field, value, message", [
    ("v_init", 1.0, "neuron.v_init: expected a number in [0, 1) (a fraction of the threshold), got 1.0"),
    ("v_init", -0.25, "neuron.v_init: expected a number in [0, 1) (a fraction of the threshold), got -0.25"),
    ("v_init", "0.5", 'neuron.v_init: expected a number in [0, 1) (a fraction of the threshold), got "0.5"'),
    ("v_init", True, "neuron.v_init: expected a number in [0, 1) (a fraction of the threshold), got true"),
    ("threshold_rule", "le", 'neuron.threshold_rule: expected one of "ge", "gt"; got "le"'),
])
def test_bad_neuron_setting(lenet, tmp_path, field, value, message):
    def edit(doc, members):
        doc["neuron"][field] = value
    _refused_by_every_command(_edited(lenet, tmp_path, edit), message)


def test_network_json_is_a_list(lenet, tmp_path):
    _, members = unpack(lenet)
    path = tmp_path / "list.snn"
    path.write_bytes(pack([1, 2, 3], members))
    _refused_by_every_command(path, "network.json: expected a JSON object, got [1, 2, 3]")


def test_dense_weight_of_the_wrong_size(lenet, tmp_path):
    def edit(doc, members):
        for pr in doc["projections"]:
            for op in pr["ops"]:
                if op["op"] == "dense" and array_of(members, op["weight"]["array"]).shape == (512, 100):
                    members[op["weight"]["array"]] = npy(np.ones((500, 100), np.float32))
                    return
        raise AssertionError("LeNet has a 512 → 100 dense layer")
    _refused_by_every_command(_edited(lenet, tmp_path, edit),
                              "needs 500 values on the input's last axis, got shape (512,)")


def test_bias_of_length_7(lenet, tmp_path):
    def edit(doc, members):
        members[_population(doc, 1)["bias"]["array"]] = npy(np.zeros(7, np.float32))
    line = _refused_by_every_command(_edited(lenet, tmp_path, edit), "bias: expected", "the array holds 7")
    assert "network.json: nodes[" in line


def test_no_nodes(lenet, tmp_path):
    def edit(doc, members):
        doc["nodes"] = []
    _refused_by_every_command(_edited(lenet, tmp_path, edit), "nodes: expected a list of 1 to")


def test_unknown_output(lenet, tmp_path):
    def edit(doc, members):
        doc["output"] = "nosuch"
    _refused_by_every_command(_edited(lenet, tmp_path, edit), 'output: "nosuch" is not a population')


def test_nan_weights(lenet, tmp_path):
    def edit(doc, members):
        name = doc["projections"][1]["ops"][0]["kernel"]["array"]
        a = array_of(members, name)
        a.flat[3] = np.nan
        members[name] = npy(a)
    _refused_by_every_command(_edited(lenet, tmp_path, edit), "projections[1].ops[0].kernel", "NaN")


@pytest.mark.parametrize("value, shown", [(0, "0"), ("1", '"1"'), (-1.0, "-1.0"), (True, "true")])
def test_bad_threshold(lenet, tmp_path, value, shown):
    def edit(doc, members):
        doc["neuron"]["threshold"] = value
    _refused_by_every_command(_edited(lenet, tmp_path, edit),
                              f"neuron.threshold: expected a finite number > 0, got {shown}")


def test_code_in_a_setting_is_refused(lenet, tmp_path):
    def edit(doc, members):
        doc["settings"]["seed"] = "1\nimport os"
    _refused_by_every_command(_edited(lenet, tmp_path, edit),
                              'settings.seed: expected an integer in [0, 2**63), got "1\\nimport os"')


def test_members_must_be_exactly_the_referenced_arrays(lenet, tmp_path):
    doc, members = unpack(lenet)
    for extra, needle in [({"arrays/99.npy": members["arrays/0.npy"]}, "arrays/99.npy: is not referenced"),
                          ({"notes.txt": b"hi"}, 'unexpected member "notes.txt"')]:
        path = tmp_path / "extra.snn"
        path.write_bytes(pack(doc, {**members, **extra}))
        with pytest.raises(SnnexportError, match="^" + str(path).replace(".", r"\.") + ".*" + needle):
            Network.load(path)
    del members["arrays/0.npy"]
    path.write_bytes(pack(doc, members))
    with pytest.raises(SnnexportError, match="the file has no member arrays/0.npy"):
        Network.load(path)


def test_a_zip_without_network_json_named_snn(tmp_path):
    path = tmp_path / "other.snn"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", "{}")
    _refused_by_every_command(path, "not a snnexport network file (no network.json)")


# --- the deflate bomb ------------------------------------------------------------------------------

BOMB_ZEROS = 2 ** 30  # the zeros that the bomb member inflates to, after its .npy header
_CHUNK = bytes(2 ** 24)


def _raw_zip(members: list[tuple[str, int, int, bytes, int]]) -> bytes:
    """A zip from (name, method, crc, compressed bytes, size) taken as given, so that a member may lie."""
    out, central = io.BytesIO(), []
    for name, method, crc, data, size in members:
        offset, n = out.tell(), name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), size, len(n), 0))
        out.write(n + data)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(data),
                                   size, len(n), 0, 0, 0, 0, 0, offset) + n)
    start = out.tell()
    out.write(b"".join(central))
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), out.tell() - start, start, 0))
    return out.getvalue()


def _npy_header(shape: tuple[int, ...]) -> bytes:
    h = io.BytesIO()
    np.lib.format.write_array_header_1_0(h, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return h.getvalue()


def _bomb_member(head: bytes) -> tuple[bytes, int]:
    """A raw deflate stream of head + BOMB_ZEROS zeros (about 1 MB) and its CRC, without holding the zeros.

    After a full flush the compressor starts afresh, so every 16 MiB of zeros compresses to the same piece.
    """
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    prefix = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    piece = c.compress(_CHUNK) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(_CHUNK) + c.flush(zlib.Z_FULL_FLUSH) == piece
    crc = zlib.crc32(head)
    for _ in range(BOMB_ZEROS // len(_CHUNK)):
        crc = zlib.crc32(_CHUNK, crc)
    return prefix + piece * (BOMB_ZEROS // len(_CHUNK)) + c.flush(zlib.Z_FINISH), crc


@pytest.fixture(scope="module")
def bombs(lenet, tmp_path_factory) -> dict[str, Path]:
    """LeNet's first bias (arrays/0.npy) replaced by a member that inflates to 1 GiB, three ways."""
    doc, members = unpack(lenet)
    assert doc["nodes"][0]["bias"] == {"array": "arrays/0.npy"}
    shape = array_of(members, "arrays/0.npy").shape
    text = json.dumps(doc).encode()
    rest = [("network.json", 0, zlib.crc32(text), text, len(text))]
    rest += [(n, 0, zlib.crc32(d), d, len(d)) for n, d in members.items() if n != "arrays/0.npy"]
    right, huge = _npy_header(shape), _npy_header((BOMB_ZEROS // 4,))
    right_bomb, right_crc = _bomb_member(right)
    huge_bomb, huge_crc = _bomb_member(huge)
    folder = tmp_path_factory.mktemp("bombs")
    files = {
        # a true zip: the right header, then 1 GiB; the directory says so
        "oversized": [("arrays/0.npy", 8, right_crc, right_bomb, len(right) + BOMB_ZEROS)],
        # a true zip: a header that asks for 1 GiB, and 1 GiB of data
        "huge header": [("arrays/0.npy", 8, huge_crc, huge_bomb, len(huge) + BOMB_ZEROS)],
        # the directory claims the right size; the stream goes on for 1 GiB
        "lying directory": [("arrays/0.npy", 8, right_crc, right_bomb, len(right) + 4 * math.prod(shape))],
    }
    out = {}
    for name, member in files.items():
        out[name] = folder / (name.replace(" ", "_") + ".snn")
        out[name].write_bytes(_raw_zip(rest[:1] + member + rest[1:]))
        assert out[name].stat().st_size < 2 * 2 ** 20  # about 1 MB on disk
    with zipfile.ZipFile(out["oversized"]) as z:
        assert z.getinfo("arrays/0.npy").file_size > BOMB_ZEROS  # a real bomb, not a damaged zip
    return out


_MEASURE = """
import json, resource, sys, time
from snnexport.errors import SnnexportError
from snnexport.network import Network
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
try:
    Network.load(sys.argv[1])
    result = "loaded"
except SnnexportError as e:
    result = "refused: " + str(e)
seconds = time.perf_counter() - t
growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"result": result, "seconds": seconds, "growth_mib": growth / 1024}))
"""


@pytest.mark.parametrize("kind, needle", [("oversized", "the zip directory says it holds"),
                                          ("huge header", "nodes[0].bias: expected 9216 float32 values"),
                                          ("lying directory", "")])
def test_deflate_bomb_is_refused_quickly_in_little_memory(bombs, kind, needle):
    r = subprocess.run([sys.executable, "-c", _MEASURE, bombs[kind]], capture_output=True, text=True, env=ENV,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    # the old loader took 2.5-3.5 GB and seconds; reading only what the shapes need takes a few MB and ms
    assert m["growth_mib"] < 64 and m["seconds"] < 10, m
    if kind == "lying directory":  # zipfile stops at the claimed size, where the CRC does not match
        assert m["result"].startswith("refused:") and "not a readable snnexport network file" in m["result"], m
    else:
        assert m["result"].startswith("refused:") and needle in m["result"], m


def test_deflate_bomb_through_the_command(bombs):
    r = _run_cli(["info", bombs["oversized"]])
    _assert_clean(r, "bomb")
    assert r.returncode == 1 and "the zip directory says it holds" in r.stderr


# --- the schema's own completeness ---------------------------------------------------------------------

def test_every_registered_op_has_a_complete_parameter_schema():
    import dataclasses
    assert set(_OP_PARAMS) == set(ops.OP_TYPES)
    for kind, cls in ops.OP_TYPES.items():
        assert set(_OP_PARAMS[kind]) == {f.name for f in dataclasses.fields(cls)}, kind


def _set_attr(get, attr, value):
    def edit(net):
        setattr(get(net), attr, value)
    return edit


def _kernel(net):
    return net.projections[1].ops[0].kernel


# (what to change in every_feature(), the message: a regular expression)
IN_CODE = {
    "float64 bias": (lambda net: setattr(net.nodes[0], "bias", net.nodes[0].bias.astype(np.float64)),
                     r"^network: nodes\[0\]\.bias: expected a float32 array"),
    "infinite weight": (lambda net: net.projections[0].ops[0].kernel.__setitem__((0, 0, 0, 0), np.inf),
                        r"^network: projections\[0\]\.ops\[0\]\.kernel: holds NaN or infinite values$"),
    "max-pool op": (lambda net: setattr(net.projections[1], "ops", [ops.MaxPool((1, 1), (1, 1)),
                                                                    ops.Conv2D(_kernel(net))]),
                    r"projections\[1\]\.ops\[0\]: a maxpool op cannot be part of a projection"),
    "constant term": (lambda net: setattr(net.projections[1], "ops", [ops.Conv2D(_kernel(net), np.ones(4, np.float32))]),
                      r"ops\[0\]\.bias: expected null: the ops of a projection carry no constant term"),
    "gate target": (_set_attr(lambda net: net.projections[1], "target", "g1"),
                    r'projections\[1\]\.target: "g1" is gate nodes\[1\]; a projection\'s target is a population'),
    "duplicate name": (_set_attr(lambda net: net.nodes[3], "name", "a"),
                       r'nodes\[3\]\.name: "a" is already the name of population nodes\[0\]'),
    "hidden softmax": (_set_attr(lambda net: net.nodes[4], "activation", "softmax"),
                       r'nodes\[4\]\.activation: "softmax" is allowed only for the output population \("out"\)'),
    "v_init of one": (_set_attr(lambda net: net.neuron, "v_init", np.float32(1.0)),
                      r"neuron\.v_init: expected a number in \[0, 1\) \(a fraction of the threshold\), got 1\.0"),
    "numpy bool": (_set_attr(lambda net: net.settings, "steps", np.True_),
                   r"settings\.steps: expected an integer in \[1, 2\*\*24\), got bool"),
}


@pytest.mark.parametrize("case", sorted(IN_CODE))
def test_check_network_on_networks_built_in_code(case):
    net = every_feature()
    check_network(net)
    edit, pattern = IN_CODE[case]
    edit(net)
    with pytest.raises(SnnexportError, match=pattern):
        check_network(net)


def test_the_simulator_checks_first():
    net = every_feature()
    net.settings.clamp = -1
    with pytest.raises(SnnexportError, match=r"settings\.clamp: expected an integer in \[0, 2\*\*24\), got -1"):
        simulate(net, np.zeros((1, 6, 6, 1), np.float32))
    with pytest.raises(SnnexportError, match="expected a Network, got str"):
        check_network("net.snn")


def test_check_document_takes_array_descriptions_only():
    """The document check never needs array data: shapes and dtypes (from .npy headers) are enough."""
    arrays: list[np.ndarray] = []
    from snnexport.network import FORMAT, _encode
    doc = {"format": FORMAT, **_encode(every_feature(), arrays)}
    infos = {f"arrays/{i}.npy": ArrayInfo(a.shape, a.dtype) for i, a in enumerate(arrays)}
    fields = check_document(doc, infos, _CLASSES)
    assert fields["arrays/0.npy"] == "nodes[0].bias"
    doc["nodes"][0]["depth"] = 2
    with pytest.raises(SnnexportError, match=r"nodes\[0\]\.depth: expected 1, one more than the deepest"):
        check_document(doc, infos, _CLASSES)


def test_clamp_times_depth_fits_in_32_bits():
    """Clamped steps (clamp * depth) are counted in 32-bit integers: a deep chain bounds the clamp."""
    n = 130
    pops = [Population(f"p{i}", (1,), np.full(1, 0.5, np.float32), "relu", 1.0, i + 1) for i in range(n)]
    projs = [Projection("x" if i == 0 else f"p{i - 1}", f"p{i}", [ops.Dense(np.ones((1, 1), np.float32))])
             for i in range(n)]
    net = Network(InputSpec("x", (1,)), pops, projs, f"p{n - 1}")
    net.settings.clamp = 2 ** 31 // n
    check_network(net)
    net.settings.clamp += 1
    with pytest.raises(SnnexportError, match=r"settings\.clamp: expected clamp \* the deepest population's depth "
                                             r"\(130\) below 2\*\*31, got 16519105$"):
        simulate(net, np.zeros((1, 1), np.float32), steps=5)
