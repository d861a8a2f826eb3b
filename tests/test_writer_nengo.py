"""The Nengo writer: exported scripts run on the real Nengo and match the reference simulator spike for spike.

Every script runs in its own process with `import snnexport` blocked (script_runner), exactly as a
user would run it. Agreement is measured with compare.identical_fraction against
snnexport.simulator.simulate (delay "step"); the measured figure on every model here is 1.0 (all
arrays identical); the assertion leaves 0.1 % for the rare neuron whose V lands within float32
rounding of θ (Nengo's convolution sums in another order than XLA's), except for the hand-built
timing network, whose numbers are exact.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import model_zoo
from conftest import BUNDLED_MODEL, BUNDLED_SAMPLES, ROOT, needs
from script_runner import run_for_results, run_script
from snnexport import ops
from snnexport.scriptlib import runtime
from snnexport.compare import identical_fraction
from snnexport.convert import convert
from snnexport.readers.keras import read_model
from snnexport.network import Gate, InputSpec, Network, Population, Projection
from snnexport.writers import get
from snnexport.writers.base import FEATURES, NATIVE, WriteOptions

pytestmark = needs("nengo")

STEPS = 60
SAMPLES = 4
AGREEMENT = 0.999


# --- models ---------------------------------------------------------------------------------------

MODELS = {
    "lenet": model_zoo.build_lenet,  # Sequential, conv, max-pool gates, dense
    "concat": model_zoo.build_branches,  # functional with Concatenate (channels and flat)
    "residual": model_zoo.build_residual,  # functional with Add, global average pooling
    "conv1d": model_zoo.build_sequence,
    "depthwise": model_zoo.build_depthwise,
    "zero_padding": model_zoo.build_zero_padding,  # asymmetric padding
    "maxpool_stride": model_zoo.build_maxpool_stride,  # stride != pool, 'same' max-pooling
    "avgpool": model_zoo.build_avgpool,
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("nengo")


_NETWORKS: dict[str, tuple[Network, np.ndarray]] = {}


def network(name: str, workdir: Path) -> tuple[Network, np.ndarray]:
    """The converted network of a test model (calibrated on 20 samples) and SAMPLES inputs for it."""
    if name not in _NETWORKS:
        model = (MODELS[name] if name in MODELS else getattr(model_zoo, f"build_{name}"))()
        path = workdir / f"{name}.keras"
        model.save(path)
        graph = read_model(path)
        net = convert(graph, runtime.coerce_samples(model_zoo.sample_input(model, 20), graph.input_shape))
        _NETWORKS[name] = (net, model_zoo.sample_input(model, SAMPLES, seed=3))
    return _NETWORKS[name]


def export(net: Network, path: Path, samples: np.ndarray | None = None, **options) -> Path:
    rendered = get("nengo").render(net, WriteOptions(output=path, samples=samples, **options))
    path.write_bytes(rendered.main)
    for name, content in rendered.beside.items():
        (path.parent / name).write_bytes(content)
    return path


def reference(net: Network, x: np.ndarray, steps: int = STEPS, **kwargs) -> dict:
    from snnexport.simulator import simulate
    return simulate(net, x, steps=steps, delay="step", **kwargs)


def assert_agrees(ours: dict, ref: dict, exact: bool = False) -> None:
    """Spike counts identical for >= 99.9 % of (sample, neuron); with exact, every recorded array identical."""
    fraction = identical_fraction(ours, ref)
    assert fraction["all"] >= AGREEMENT, fraction
    gates = [k for k in ref if k.startswith("gate_counts_")]
    if gates:
        same = sum(int((ours[k] == ref[k]).sum()) for k in gates) / sum(ref[k].size for k in gates)
        assert same >= AGREEMENT, same
    if exact:
        for key in ref:
            if key.startswith(("counts_", "gate_counts_")) or key in ("output_steps", "spikes_per_step"):
                np.testing.assert_array_equal(ours[key], ref[key], err_msg=key)
        np.testing.assert_allclose(ours["output_v"], ref["output_v"], atol=1e-3)
    assert list(ours["population_names"]) == list(ref["population_names"])
    assert list(ours["gate_names"]) == list(ref["gate_names"])


# --- the contract ------------------------------------------------------------------------------------

def test_capability_table_covers_every_feature():
    writer = get("nengo")
    assert set(writer.capabilities) == set(FEATURES)
    assert all(status == NATIVE and how for status, how in writer.capabilities.values())


@pytest.mark.parametrize("name", list(MODELS))
def test_spike_counts_match_reference(name, workdir):
    net, x = network(name, workdir)
    script = export(net, workdir / f"{name}_net.py", x[:2])
    plain = run_script(script, "--steps", "10")  # no --input: the two bundled samples
    assert "sample 1: class" in plain.stdout and "nengo: connections:" in plain.stdout
    ours = run_for_results(script, x, "--steps", str(STEPS))
    assert_agrees(ours, reference(net, x))
    assert ours["meta"]["simulator"] == "nengo" and ours["meta"]["steps"] == STEPS


def _chain_network(clamp: int = 0) -> Network:
    """input (1 value) → a (1x2x1: currents 1 and 0.5) → gate (max of the two) → b → c, all weights 1.

    a's first neuron fires in every step from step 1 (analog current counts in step 1), its second
    from step 2; the gate passes the first (it leads the count from step 1); b (depth 2) fires from
    step 2, c (depth 3) from step 3: one step per population, none for the gate.
    """
    f32 = np.float32
    pops = [
        Population("a", (1, 2, 1), np.zeros((1, 2, 1), f32), "relu", 1.0, 1),
        Gate("g", "a", (1, 1, 1), (1, 2), (1, 2), ((0, 0), (0, 0)), 1.0, 1),
        Population("b", (1,), np.zeros(1, f32), "relu", 1.0, 2),
        Population("c", (1,), np.zeros(1, f32), "relu", 1.0, 3),
    ]
    projs = [
        Projection("x", "a", [ops.Reshape((1, 1, 1)), ops.Conv2D(np.array([[[[1.0, 0.5]]]], f32).reshape(1, 1, 1, 2)),
                              ops.Reshape((1, 2, 1))]),
        Projection("g", "b", [ops.Reshape((1,)), ops.Dense(np.ones((1, 1), f32))]),
        Projection("b", "c", [ops.Dense(np.ones((1, 1), f32))]),
    ]
    net = Network(InputSpec("x", (1,)), pops, projs, "c")
    net.settings.clamp = clamp
    return net


def _first_spikes(results: dict) -> list[int]:
    sps = results["spikes_per_step"][0]  # (T, P)
    return [int(np.argmax(sps[:, k] > 0)) + 1 if sps[:, k].any() else 0 for k in range(sps.shape[1])]


@pytest.mark.parametrize("clamp", [0, 2])
def test_one_step_delay_per_population(clamp, workdir):
    net = _chain_network(clamp)
    x = np.ones((1, 1), np.float32)
    script = export(net, workdir / f"chain_{clamp}.py", x)
    ours = run_for_results(script, x, "--steps", "10")
    if clamp == 0:
        # analog current counts from step 1: a fires at once; then one step per population
        assert _first_spikes(ours) == [1, 2, 3]
        np.testing.assert_array_equal(ours["counts_0"][0], [10, 5])  # currents 1 and 0.5 for 10 steps
        np.testing.assert_array_equal(ours["gate_counts_0"][0], [10])
        np.testing.assert_array_equal(ours["counts_1"][0], [9])
        np.testing.assert_array_equal(ours["output_steps"][0, :, 0], [0, 0] + [1] * 8)
    else:
        # clamp d = 2: depth l holds V = 0 for the first 2l steps; spikes arriving then are discarded
        assert _first_spikes(ours) == [3, 5, 7]
    assert_agrees(ours, reference(net, x, steps=10), exact=True)


def test_options_and_encodings(workdir):
    """Poisson input, reset to zero, clamp, negative (sign) spikes; then the softmax and membrane readouts."""
    base, x = network("maxpool_stride", workdir)
    net = _copy(base, workdir)
    net.input.encoding = "poisson"
    net.neuron.reset = "zero"
    net.settings.clamp = 1
    net.populations[0].activation = "sign"
    script = export(net, workdir / "variant.py", x[:1])
    ours = run_for_results(script, x, "--steps", str(STEPS), "--seed", "7")
    assert ours["counts_0"].min() < 0, "sign neurons emit negative spikes"
    assert_agrees(ours, reference(net, x, seed=7))
    for readout in ("softmax", "membrane"):
        ours = run_for_results(script, x, "--steps", str(STEPS), "--seed", "3", "--readout", readout)
        ref = reference(net, x, seed=3, readout=readout)
        assert_agrees(ours, ref)
        np.testing.assert_array_equal(ours["predictions"], ref["predictions"])
        assert ours["meta"]["readout"] == readout


def _copy(net: Network, workdir: Path) -> Network:
    path = workdir / "copy.snn"
    net.save(path)
    return Network.load(path)


# --- determinism, names, files ---------------------------------------------------------------------

def test_same_inputs_give_byte_identical_scripts(workdir):
    net, x = network("lenet", workdir)
    path = workdir / "det.snn"
    net.save(path)
    first = get("nengo").render(Network.load(path), WriteOptions(output=workdir / "a.py", samples=x)).main
    again = get("nengo").render(Network.load(path), WriteOptions(output=workdir / "a.py", samples=x)).main
    assert first == again
    # and in another process with another hash seed
    code = ("import sys, numpy as np; from pathlib import Path; from snnexport.network import Network; "
            "from snnexport.writers import get; from snnexport.writers.base import WriteOptions; "
            "sys.stdout.buffer.write(get('nengo').render(Network.load(sys.argv[1]), WriteOptions("
            "output=Path(sys.argv[2]), samples=np.load(sys.argv[3]))).main)")
    np.save(workdir / "det_x.npy", x)
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code, str(path), str(workdir / "a.py"), str(workdir / "det_x.npy")],
                         capture_output=True, env=env, check=True).stdout
    assert out == first


def test_hostile_names_export_to_a_working_script(workdir):
    net, x = network("hostile_names", workdir)
    script = export(net, workdir / "hostile.py", x[:2])
    text = script.read_text(encoding="utf-8")
    proc = run_script(script)  # no arguments: the bundled samples
    assert "pwned" not in proc.stdout.replace("echo pwned", "")  # the code in a name never ran
    for pop in net.populations:
        assert repr(pop.name) in proc.stdout  # the summary prints every name, escaped
        assert repr(pop.name) in text
    ours = run_for_results(script, x, "--steps", "30")
    assert [str(n) for n in ours["population_names"]] == [p.name for p in net.populations]
    assert [str(n) for n in ours["gate_names"]] == [n.name for n in net.nodes if isinstance(n, Gate)]
    assert_agrees(ours, reference(net, x, steps=30))


def test_weights_beside_the_script(workdir):
    net, x = network("avgpool", workdir)
    script = export(net, workdir / "big.py", x[:1], embed_limit=100)
    assert (workdir / "big.npz").is_file()
    ours = run_for_results(script, x[:2], "--steps", "20")
    assert_agrees(ours, reference(net, x[:2], steps=20))


def test_bundled_model_runs_and_matches(workdir):
    script = workdir / "mnist_net.py"
    subprocess.run([sys.executable, "-m", "snnexport", str(BUNDLED_MODEL), "--calibration", str(BUNDLED_SAMPLES),
                    "--to", "nengo", "-o", str(script)], check=True, capture_output=True, cwd=ROOT)
    proc = run_script(script, "--steps", "30", "-n", "2")  # no --input: the bundled samples
    assert "accuracy" in proc.stdout and "sample 1: class" in proc.stdout
    net = Network.load(_save_converted(script.with_suffix(".snn")))
    with np.load(BUNDLED_SAMPLES) as z:
        x = z["x"][:3]
    ours = run_for_results(script, x, "--steps", "50")
    assert_agrees(ours, reference(net, x, steps=50))


def _save_converted(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "snnexport", str(BUNDLED_MODEL), "--calibration", str(BUNDLED_SAMPLES),
                    "--to", "network", "-o", str(path)], check=True, capture_output=True, cwd=ROOT)
    return path
