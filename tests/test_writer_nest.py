"""The PyNEST writer: exported scripts run on the real NEST and match the reference simulator.

Every script runs in a subprocess with ``import snnexport`` blocked (tests/script_runner.py), as a
user would run it; its results file is compared with ``snnexport.simulator.simulate`` (delay
"step"). NEST integrates in float64 and the reference in float32 with its own summation order, so
a neuron whose V lands within rounding of θ may spike one step apart: the brief allows 0.1 %
(measured on these models: 100 %; on 20 MNIST digits through the bundled LeNet at T = 100:
227,463 of 227,480 counts, and 100 % against a step-by-step numpy reference).

The helpers here (models, export, comparison) are shared with tests/test_writer_pynn.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import model_zoo
from conftest import BUNDLED_MODEL, BUNDLED_SAMPLES, needs
from script_runner import run_for_results, run_script
from snnexport.scriptlib import runtime
from snnexport.compare import identical_fraction
from snnexport.convert import convert
from snnexport.errors import SnnexportError
from snnexport.readers.keras import read_model
from snnexport.network import Gate, Network
from snnexport.writers import get
from snnexport.writers.base import APPROXIMATED, FEATURES, NATIVE, REFUSED, WriteOptions
from snnexport.scriptlib.nest_schedule import schedule, timeline

pytestmark = needs("nest")

STEPS = 50
SAMPLES = 3
AGREEMENT = 0.999  # the brief's bar


# --- models ------------------------------------------------------------------------------------------

MODELS = {
    "lenet": model_zoo.build_lenet,  # Sequential: conv, max-pool gates, flatten, dense, softmax
    "branches": model_zoo.build_branches,  # Concatenate and Add
    "residual": model_zoo.build_residual,  # Add, global average pooling
    "sequence": model_zoo.build_sequence,  # Conv1D, MaxPool1D stride ≠ pool
    "depthwise": model_zoo.build_depthwise,
    "zero_padding": model_zoo.build_zero_padding,  # asymmetric padding, average pooling
    "maxpool_stride": model_zoo.build_maxpool_stride,  # stride ≠ pool, 'same' pooling, a gate on a gate
    "avgpool": model_zoo.build_avgpool,
}


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    """name → (Network, inputs): each model saved, read back by the reader and converted (cached)."""
    folder = tmp_path_factory.mktemp("models")
    cache: dict[str, tuple[Network, np.ndarray]] = {}

    def network(name: str) -> tuple[Network, np.ndarray]:
        if name not in cache:
            model = MODELS[name]()
            model.save(folder / f"{name}.keras")
            graph = read_model(folder / f"{name}.keras")
            x = runtime.coerce_samples(model_zoo.sample_input(model, 16, seed=9), graph.input_shape)
            cache[name] = (convert(graph, x), x[:SAMPLES])
        return cache[name]

    return network


def fresh(net: Network) -> Network:
    """An independent copy of a network (to change its settings), through its file format."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        net.save(Path(d) / "n.snn")
        return Network.load(Path(d) / "n.snn")


def export(writer: str, net: Network, path: Path, samples: np.ndarray | None = None) -> Path:
    rendered = get(writer).render(net, WriteOptions(output=path, samples=samples))
    path.write_bytes(rendered.main)
    for name, data in rendered.beside.items():
        (path.parent / name).write_bytes(data)
    return path


def reference(net: Network, x: np.ndarray, steps: int = STEPS, **kwargs) -> dict:
    from snnexport.simulator import simulate
    return simulate(net, x, steps=steps, delay="step", **kwargs)


def assert_same_spikes(ours: dict, ref: dict, per_step: bool = True) -> None:
    """Spike counts agree for ≥ 99.9 % of the neurons; so do gates and, with per_step, every step's totals.

    (One neuron that spikes a step apart changes several entries of the per-step totals, so on a
    large network those are compared by their sums only.)
    """
    fraction = identical_fraction(ours, ref)
    assert fraction["all"] >= AGREEMENT, fraction
    assert list(ours["population_names"]) == list(ref["population_names"])
    assert list(ours["gate_names"]) == list(ref["gate_names"])
    for k in range(len(ref["gate_names"])):
        assert np.mean(ours[f"gate_counts_{k}"] == ref[f"gate_counts_{k}"]) >= AGREEMENT
    if per_step:
        assert np.mean(ours["output_steps"] == ref["output_steps"]) >= AGREEMENT
        assert np.mean(ours["spikes_per_step"] == ref["spikes_per_step"]) >= AGREEMENT
    else:
        total, other = ours["spikes_per_step"].sum(), ref["spikes_per_step"].sum()
        assert abs(int(total) - int(other)) <= (1 - AGREEMENT) * other
    np.testing.assert_allclose(ours["output_v"], ref["output_v"], atol=1e-3)


def total_spikes(results: dict) -> int:
    return sum(int(np.abs(results[f"counts_{k}"]).sum()) for k in range(len(results["population_names"])))


def with_options(net: Network, encoding="poisson", reset="subtract", clamp=2, sign=True) -> Network:
    """A copy of ``net`` using the optional parts of the contract; the first population becomes ±1 spiking."""
    net = fresh(net)
    net.input.encoding = encoding
    net.neuron.reset = reset
    net.settings.clamp = clamp
    if sign:
        first = net.populations[0]
        first.activation = "sign"
        first.bias = (first.bias - np.float32(0.3)).astype(np.float32)  # some neurons sink below -θ
    return net


# --- tests -------------------------------------------------------------------------------------------

def test_capability_table_covers_every_feature():
    writer = get("nest")
    assert set(writer.capabilities) == set(FEATURES)
    for feature, (status, how) in writer.capabilities.items():
        assert status in (NATIVE, APPROXIMATED, REFUSED) and how, feature
    assert writer.capabilities["maxpool_gate"][0] == NATIVE  # exact gates, never average pooling
    assert writer.capabilities["reset_subtract"][0] == NATIVE


def test_cli_prints_the_capabilities():
    proc = subprocess.run([sys.executable, "-m", "snnexport", "--to", "nest", "--capabilities"],
                          capture_output=True, text=True, check=True)
    for feature in FEATURES:
        assert feature in proc.stdout


def test_schedule_delays_keep_one_step_per_population(networks):
    """Behind a gate a population runs T steps later, and its synapses are longer by as much."""
    net, _ = networks("lenet")
    plan = schedule([{"name": p.name, "depth": p.depth} for p in net.populations],
                    [{"name": g.name, "source": g.source} for g in net.nodes if isinstance(g, Gate)],
                    [{"source": p.source, "target": p.target} for p in net.projections], net.input.name, 10, 0)
    assert [plan["lag"][p.name] for p in net.populations] == [0, 10, 20, 20]
    assert plan["delay"] == [1, 1, 1, 1]  # every projection leaves a gate or a population of the same lag
    assert plan["length"] == 10 + 2 + 20


@pytest.mark.parametrize("name", list(MODELS))
def test_spike_counts_match_the_reference(name, networks, tmp_path):
    net, x = networks(name)
    script = export("nest", net, tmp_path / "net.py", x[:1])
    assert "sample 0: class" in run_script(script, "--steps", "10").stdout  # bare: its bundled sample
    ours = run_for_results(script, x, "--steps", str(STEPS))
    assert ours["meta"]["simulator"] == "nest" and ours["meta"]["steps"] == STEPS
    assert_same_spikes(ours, reference(net, x))
    assert total_spikes(ours) > 0


def test_poisson_clamp_sign_and_softmax(networks, tmp_path):
    """Poisson input, clamp, negative spikes into a gate, spiking softmax chosen by the script's options."""
    net, x = networks("lenet")
    net = with_options(net)
    script = export("nest", net, tmp_path / "net.py")
    ours = run_for_results(script, x, "--steps", str(STEPS), "--readout", "softmax", "--seed", "5")
    assert (ours["counts_0"] < 0).any() and (ours["counts_0"] > 0).any()
    assert ours["spikes_per_step"][:, :2].sum() == 0  # clamped for 2 steps at depth 1
    ref = reference(net, x, readout="softmax", seed=5)
    assert_same_spikes(ours, ref)
    assert np.array_equal(ours["predictions"], ref["predictions"])


def test_reset_to_zero_and_membrane_readout(networks, tmp_path):
    net, x = networks("maxpool_stride")
    net = with_options(net, encoding="analog", reset="zero", clamp=0, sign=False)
    script = export("nest", net, tmp_path / "net.py")
    ours = run_for_results(script, x, "--steps", str(STEPS), "--readout", "membrane")
    assert_same_spikes(ours, reference(net, x, readout="membrane"))
    assert ours["output_counts"].sum() == 0
    assert np.array_equal(ours["predictions"], np.argmax(ours["output_v"], axis=1))


def test_sign_with_reset_to_zero_is_refused(networks):
    net, _ = networks("residual")
    with pytest.raises(SnnexportError, match="negative spikes"):
        get("nest").render(with_options(net, reset="zero"), WriteOptions())


def test_threads_give_the_same_spikes(networks, tmp_path):
    net, x = networks("branches")
    script = export("nest", net, tmp_path / "net.py")
    one = run_for_results(script, x, "--steps", "30")
    two = run_for_results(script, x, "--steps", "30", "--threads", "2")
    assert identical_fraction(one, two)["all"] == 1.0
    assert np.array_equal(one["output_steps"], two["output_steps"])


def test_hostile_names_are_data_not_code(tmp_path):
    model = model_zoo.build_hostile_names()
    model.save(tmp_path / "hostile.keras")
    net = convert(read_model(tmp_path / "hostile.keras"), model_zoo.sample_input(model, 10))
    script = export("nest", net, tmp_path / "net.py", model_zoo.sample_input(model, 2))
    compile(script.read_text(encoding="utf-8"), str(script), "exec")
    proc = run_script(script, "--steps", "20")  # no --input: the bundled samples
    assert "pwned" not in proc.stdout + proc.stderr
    for pop in net.populations:
        assert repr(pop.name) in proc.stdout  # the summary names every population as it is
    x = model_zoo.sample_input(model, 2)
    ours = run_for_results(script, x, "--steps", "20")
    assert list(ours["population_names"]) == [p.name for p in net.populations]
    assert list(ours["gate_names"]) == [n.name for n in net.nodes if isinstance(n, Gate)]
    assert_same_spikes(ours, reference(net, x, steps=20))


def test_same_inputs_give_byte_identical_scripts_and_results(networks, tmp_path):
    net, x = networks("lenet")
    a = get("nest").render(net, WriteOptions(output=tmp_path / "a.py", samples=x)).main
    b = get("nest").render(fresh(net), WriteOptions(output=tmp_path / "a.py", samples=x)).main
    assert a == b
    script = export("nest", net, tmp_path / "net.py", x)
    first = run_for_results(script, x, "--steps", "30")
    second = run_for_results(script, x, "--steps", "30")
    for key in first:
        if key != "meta":
            assert np.array_equal(first[key], second[key]), key


def test_bundled_model_exports_and_runs(tmp_path):
    """The CLI path a user takes: export the bundled LeNet, run it bare and on MNIST digits."""
    env = dict(os.environ, KERAS_BACKEND="jax")
    script = tmp_path / "lenet_nest.py"
    subprocess.run([sys.executable, "-m", "snnexport", str(BUNDLED_MODEL), "--calibration", str(BUNDLED_SAMPLES),
                    "--to", "nest", "-o", str(script)], check=True, capture_output=True, env=env)
    proc = run_script(script, "-n", "2", "--steps", "40")  # no --input: the samples bundled in the script
    assert "accuracy" in proc.stdout and "'conv1'" in proc.stdout
    with np.load(BUNDLED_SAMPLES) as data:
        x, y = data["x"][:SAMPLES], data["y"][:SAMPLES]
    ours = run_for_results(script, x, "--steps", "60")
    net = _network_of_bundled(tmp_path, env)
    ref = reference(net, x, steps=60)
    assert_same_spikes(ours, ref, per_step=False)
    assert np.array_equal(ours["predictions"], ref["predictions"])
    assert (ours["predictions"] == y).mean() >= 2 / 3


def _network_of_bundled(tmp_path: Path, env: dict) -> Network:
    path = tmp_path / "lenet.snn"
    subprocess.run([sys.executable, "-m", "snnexport", str(BUNDLED_MODEL), "--calibration", str(BUNDLED_SAMPLES),
                    "--to", "network", "-o", str(path)], check=True, capture_output=True, env=env)
    return Network.load(path)


def test_timeline_orders_actions_within_a_sample():
    plan = {"lag": {"a": 0, "b": 10}, "release": {"a": 1, "b": 11}, "length": 22}
    pops = [{"name": "a"}, {"name": "b"}]
    steps = dict(timeline(plan, pops, {"g": "a"}, "b", 10))
    assert steps[1] == [("release", "a")]
    assert steps[10] == [("wake", "b")]
    assert steps[11] == [("gates", "a"), ("retire", "a"), ("release", "b")]
    assert steps[12] == [("sleep", "a")]
    assert steps[21] == [("retire", "b")]  # the output never sleeps: its multimeter logs one step late
    assert steps[22] == []
