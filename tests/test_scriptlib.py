"""snnexport.scriptlib, the code embedded in every exported script, keeps its rules (see its docstring).

* numpy and the standard library only; relative imports only between its own modules, at top level,
  each from a module that comes earlier in the embedding order (scriptlib.MODULES);
* every module, read alone, and every rendered script of every script writer pass pyflakes: no
  undefined name, no unused import (the embedded modules may repeat an import the script made);
* the embedded text runs without snnexport and computes what the package computes;
* the registries keyed by op kind (connectivity.EXPANDERS, the Nengo script's NATIVE_TRANSFORMS)
  cover every linear op a projection can carry.
"""

from __future__ import annotations

import ast
import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import BUNDLED_MODEL, BUNDLED_SAMPLES
from snnexport import scriptlib
from snnexport.network import Gate, InputSpec, Network, Neuron, Population, Projection
from snnexport.network_check import PROJECTION_OPS
from snnexport.ops import OP_TYPES, AvgPool, Conv2D, Dense, Reshape
from snnexport.scriptlib import connectivity, nest_schedule, runtime
from snnexport.writers import available, get
from snnexport.writers.base import WriteOptions
from snnexport.writers.script import ScriptWriter, embedded

FOLDER = Path(scriptlib.__file__).parent
SCRIPT_WRITERS = [name for name in available() if isinstance(get(name), ScriptWriter)]
# linear ops that never reach a projection: a concatenation becomes one embed per input, an addition
# one projection per input (convert.py), so neither has synapses of its own
MULTI_INPUT = {"concat", "add"}


def _flakes(source: str, filename: str) -> list[str]:
    """pyflakes' messages on ``source``, but for an import that repeats one made above (embedded modules)."""
    checker = pytest.importorskip("pyflakes.checker",
                                  reason="pyflakes is not installed (pip install 'snnexport[test]')")
    from pyflakes import messages
    lines = source.splitlines()

    def is_import(lineno: int) -> bool:
        return lines[lineno - 1].lstrip().startswith(("import ", "from "))

    found = checker.Checker(ast.parse(source, filename), filename=filename).messages
    return [f"{filename}:{m.lineno}: {m.message % m.message_args}" for m in found
            if not (isinstance(m, messages.RedefinedWhileUnused) and is_import(m.lineno)
                    and is_import(m.message_args[1]))]


# --- the package's own rules ----------------------------------------------------------------------

def test_every_module_is_listed_in_the_embedding_order() -> None:
    assert sorted(p.stem for p in FOLDER.glob("*.py") if p.stem != "__init__") == sorted(scriptlib.MODULES)


@pytest.mark.parametrize("name", list(scriptlib.MODULES))
def test_a_module_imports_numpy_the_standard_library_and_earlier_modules_only(name: str) -> None:
    order = list(scriptlib.MODULES)
    tree = ast.parse((FOLDER / f"{name}.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                assert top == "numpy" or top in sys.stdlib_module_names, f"{name}:{node.lineno} imports {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            top = node.module.split(".")[0]
            assert top == "numpy" or top in sys.stdlib_module_names, f"{name}:{node.lineno} imports {node.module}"
        elif isinstance(node, ast.ImportFrom):
            where = f"{name}:{node.lineno}: from {'.' * node.level}{node.module or ''}"
            assert node in tree.body and node.level == 1, f"{where}: not a top-level import of a sibling"
            assert node.module in order[:order.index(name)], f"{where}: not a module embedded before {name}"
            assert all(a.name != "*" and a.asname is None for a in node.names), f"{where}: import names as they are"


@pytest.mark.parametrize("name", list(scriptlib.MODULES))
def test_a_module_alone_passes_pyflakes(name: str) -> None:
    path = FOLDER / f"{name}.py"
    assert _flakes(path.read_text(encoding="utf-8"), str(path)) == []


def test_gate_outputs_runs_inside_the_package() -> None:
    """nest_schedule imports the gate functions it calls (once they existed only in a script)."""
    spikes = np.array([[1, 0, 0, 1], [0, 1, 1, 1], [1, 1, 0, 1]], np.int8)  # (T, 4) of a (1, 4, 1) source
    gate = {"name": "g", "source": "p", "pool": (1, 2), "strides": (1, 2), "padding": ((0, 0), (0, 0))}
    out = nest_schedule.gate_outputs([gate], {"p": spikes}, lambda name: (1, 4, 1))["g"]
    # window (a, b): a leads after step 1, b ties it at step 2 but a reached 1 first; (c, d): d always
    np.testing.assert_array_equal(out, [[1, 1], [0, 1], [1, 1]])


def test_the_embedded_text_runs_alone_and_computes_what_the_package_does() -> None:
    text = embedded(scriptlib.MODULES)
    tree = ast.parse(text)
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree))
    banners = [line for line in text.splitlines() if "(embedded from snnexport.scriptlib." in line]
    assert [b.split("scriptlib.")[1].rstrip(")") for b in banners] == list(scriptlib.MODULES)
    space: dict = {"__name__": "embedded"}
    exec(compile(tree, "<embedded scriptlib>", "exec"), space)  # snnexport's own source
    rng = np.random.default_rng(3)
    spikes = (rng.random((30, 2, 6, 3)) < 0.4).astype(np.int8)
    gates = [{"name": "g1", "source": "p", "pool": (2, 2), "strides": (1, 2), "padding": ((0, 0), (0, 1))},
             {"name": "g2", "source": "g1", "pool": (1, 2), "strides": (1, 1), "padding": ((0, 0), (0, 0))}]
    shapes = {"p": (2, 6, 3), "g1": (1, 3, 3)}
    ours = space["gate_outputs"](gates, {"p": spikes.reshape(30, -1)}, shapes.get)
    package = nest_schedule.gate_outputs(gates, {"p": spikes.reshape(30, -1)}, shapes.get)
    for name in ("g1", "g2"):
        np.testing.assert_array_equal(ours[name], package[name])
    ops = [("conv2d", {"kernel": rng.standard_normal((3, 3, 3, 2)).astype(np.float32), "strides": (1, 1),
                       "padding": ((1, 1), (1, 1))}), ("reshape", {"shape": (24,)})]
    for a, b in zip(space["expand"](ops, (2, 6, 3))[0], connectivity.expand(ops, (2, 6, 3))[0]):
        np.testing.assert_array_equal(a, b)


def test_embedding_adds_what_a_module_imports_in_the_fixed_order() -> None:
    text = embedded(["nest_schedule"])
    assert "def gate_pass(" in text and text.index("def gate_pass(") < text.index("def gate_outputs(")
    assert "def expand(" not in text  # connectivity was not asked for and nest_schedule does not need it
    with pytest.raises(ValueError, match="no scriptlib module"):
        embedded(["os"])


# --- readout, meta and the network hash: one place each ---------------------------------------------

def test_softmax_readout_draws_the_documented_spikes_and_none_while_clamped() -> None:
    v = np.random.default_rng(1).standard_normal((12, 4))
    spikes = runtime.softmax_readout(v, 7, 3, 5)
    expected = runtime.softmax_spikes(v, runtime.softmax_draws(7, 3, 12, 4))
    assert not spikes[:5].any() and expected[:5].any()
    np.testing.assert_array_equal(spikes[5:], expected[5:])
    np.testing.assert_array_equal(runtime.softmax_readout(v, 7, 3, 0), expected)


def test_output_prediction_by_readout() -> None:
    steps = np.zeros((2, 4, 3), np.int16)  # two samples, 4 steps, 3 classes
    steps[0, :, 1] = 1
    steps[0, :2, 2] = steps[0, 2:, 2] = 1  # classes 1 and 2 tie at 4 spikes: the larger V wins
    steps[1, 0, 0] = 1
    v = np.array([[0.9, 0.1, 0.5], [0.0, 0.3, 0.3]], np.float32)
    np.testing.assert_array_equal(runtime.output_prediction("count", steps, v), [2, 0])
    np.testing.assert_array_equal(runtime.output_prediction("softmax", steps, v), [2, 0])
    np.testing.assert_array_equal(runtime.output_prediction("membrane", steps, v), [0, 1])  # ties: lower index
    assert runtime.output_prediction("count", steps[0], v[0]) == 2  # one sample


def test_results_meta_has_the_documented_keys() -> None:
    meta = runtime.results_meta("reference", "0.1.0", "0.1.0", 100, 0, "count", "step", "subtract", "analog",
                                "ab" * 32, 7, run_seconds=1.5)
    assert meta == {"simulator": "reference", "simulator_version": "0.1.0", "snnexport_version": "0.1.0",
                    "steps": 100, "seed": 0, "readout": "count", "delay": "step", "reset": "subtract",
                    "encoding": "analog", "network_sha256": "ab" * 32, "samples": 7, "early_decision": None,
                    "run_seconds": 1.5}


def _decision_by_hand(spikes: np.ndarray, margin: int | None) -> tuple[int, int]:
    """docs/semantics.md's early decision for one sample (T, classes), step by step."""
    steps = len(spikes)
    counts = np.zeros(spikes.shape[1], np.int64)
    for t in range(1, steps + 1):
        counts += spikes[t - 1]
        order = np.sort(counts)
        lead = order[-1] - order[-2]
        if lead > steps - t or (margin is not None and lead >= margin):
            return t, int(np.argmax(counts))
    return steps, -1


@pytest.mark.parametrize("margin", [None, 1, 3])
def test_early_decision_against_a_step_by_step_reading(margin: int | None) -> None:
    rng = np.random.default_rng(5)
    rates = rng.uniform(0, 0.6, (300, 1, 4))
    spikes = (rng.uniform(0, 1, (300, 25, 4)) < rates).astype(np.int16)
    spikes[:3] = 0  # silent samples: tied to the end
    steps, classes = runtime.early_decision(spikes, margin, block=7)  # blocks that do not divide N
    want = [_decision_by_hand(s, margin) for s in spikes]
    np.testing.assert_array_equal(steps, [w[0] for w in want])
    np.testing.assert_array_equal(classes, [w[1] for w in want])
    assert steps.dtype == np.int32 and classes.dtype == np.int64 and (classes[:3] == -1).all()
    if margin is None:  # a settled decision is the class the full run reads (where counts do not tie)
        full = runtime.output_prediction("count", spikes, np.zeros((300, 4), np.float32))
        assert ((classes == full) | (classes == -1)).all() and (steps < 25).sum() > 100


# --- registries keyed by op kind ---------------------------------------------------------------------

def test_connectivity_expands_every_linear_op_a_projection_can_carry() -> None:
    linear = {kind for kind, cls in OP_TYPES.items() if cls.linear}
    assert set(connectivity.EXPANDERS) == set(PROJECTION_OPS) == linear - MULTI_INPUT
    assert MULTI_INPUT <= linear


def test_the_nengo_script_maps_every_op_kind_to_a_kernel_product_or_none() -> None:
    if "nengo" not in SCRIPT_WRITERS:
        pytest.skip("the nengo writer is not available")
    text = get("nengo").render(_network(), WriteOptions()).main.decode("utf-8")
    table = next(node.value for node in ast.parse(text).body if isinstance(node, ast.Assign)
                 and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["KERNEL_PRODUCTS"])
    kinds = [key.value for key in table.keys]
    assert sorted(kinds) == sorted(connectivity.EXPANDERS)  # nothing refused: a replicated Sparse takes every other case


# --- every rendered script passes pyflakes ----------------------------------------------------------

def _network(encoding: str = "analog", readout: str = "count", clamp: int = 0, reset: str = "subtract") -> Network:
    """A small network with a gate on a gate, a sign population, an addition and every readout path:
    x (4, 4, 1) -> p (4, 4, 2) conv -> g1 (2, 2, 2) -> g2 (1, 1, 2) -> out (3,), and x -> s (2,) sign -> out."""
    rng = np.random.default_rng(0)

    def pop(name: str, shape: tuple[int, ...], depth: int, activation: str = "relu") -> Population:
        return Population(name, shape, rng.uniform(-0.1, 0.2, shape).astype(np.float32), activation, 1.0, depth)

    nodes = [pop("p", (4, 4, 2), 1), Gate("g1", "p", (2, 2, 2), (2, 2), (2, 2), ((0, 0), (0, 0)), 1.0, 1),
             Gate("g2", "g1", (1, 1, 2), (2, 2), (2, 2), ((0, 0), (0, 0)), 1.0, 1), pop("s", (2,), 1, "sign"),
             pop("out", (3,), 2, "softmax")]
    weight = lambda *shape: rng.uniform(-1, 1, shape).astype(np.float32)  # noqa: E731
    projections = [
        Projection("x", "p", [Conv2D(weight(3, 3, 1, 2), padding=((1, 1), (1, 1)))]),
        Projection("x", "s", [AvgPool((2, 2), (2, 2)), Reshape((4,)), Dense(weight(4, 2))]),
        Projection("g2", "out", [Reshape((2,)), Dense(weight(2, 3))]),
        Projection("s", "out", [Dense(weight(2, 3))]),
    ]
    net = Network(InputSpec("x", (4, 4, 1), encoding), nodes, projections, "out", Neuron(1.0, reset))
    net.settings.readout, net.settings.clamp = readout, clamp
    return net


@pytest.fixture(scope="module")
def bundled(tmp_path_factory) -> Network:
    from snnexport.cli import main
    path = tmp_path_factory.mktemp("bundled") / "lenet.snn"
    assert main([str(BUNDLED_MODEL), "--calibration", str(BUNDLED_SAMPLES), "-o", str(path)]) == 0
    return Network.load(path)


CASES = {
    "analog": {},
    "poisson": {"encoding": "poisson"},
    "softmax": {"readout": "softmax", "clamp": 1},
    "membrane": {"readout": "membrane"},
    "reset_zero": {"reset": "zero"},
}


@pytest.mark.parametrize("writer", SCRIPT_WRITERS)
def test_every_rendered_script_passes_pyflakes(writer: str, bundled: Network, tmp_path: Path) -> None:
    rendered = 0
    for case, settings in CASES.items():
        net = _network(**settings)
        if case == "reset_zero" and writer in ("nest", "pynn"):
            net.nodes = [n for n in net.nodes if n.name != "s"]  # NEST refuses sign neurons that reset to zero
            net.projections = [p for p in net.projections if "s" not in (p.source, p.target)]
        text = get(writer).render(net, WriteOptions()).main.decode("utf-8")
        assert _flakes(text, f"{writer}-{case}.py") == []
        rendered += 1
    # the bundled LeNet, its weights beside the script (the other branch of the data block)
    out = tmp_path / f"snn_{writer}.py"
    result = get(writer).render(bundled, WriteOptions(output=out, embed_limit=0))
    assert result.beside and _flakes(result.main.decode("utf-8"), out.name) == []
    assert rendered == len(CASES)


def test_a_script_carries_the_network_hash(bundled: Network, tmp_path: Path) -> None:
    bundled.save(tmp_path / "n.snn")
    digest = hashlib.sha256((tmp_path / "n.snn").read_bytes()).hexdigest()
    assert bundled.sha256() == digest
    text = get(SCRIPT_WRITERS[0]).render(bundled, WriteOptions()).main.decode("utf-8")
    assert f"NETWORK_SHA256 = {digest!r}" in text
