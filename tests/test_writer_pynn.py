"""The PyNN writer: exported scripts run on pyNN.nest and match the reference simulator.

Same checks as tests/test_writer_nest.py (whose models and helpers this file reuses), on fewer
models: a PyNN script costs a few seconds more to build than a PyNEST one.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import model_zoo
from conftest import BUNDLED_MODEL, BUNDLED_SAMPLES, needs
from script_runner import run_for_results, run_script
from snnexport.compare import identical_fraction
from snnexport.convert import convert
from snnexport.readers.keras import read_model
from snnexport.network import Gate
from snnexport.writers import get
from snnexport.writers.base import FEATURES, NATIVE, WriteOptions
from test_writer_nest import (STEPS, _network_of_bundled, assert_same_spikes, export, fresh, networks,  # noqa: F401
                              reference, total_spikes, with_options)

pytestmark = [needs("nest"), needs("pyNN")]


def test_capability_table_covers_every_feature():
    writer = get("pynn")
    assert set(writer.capabilities) == set(FEATURES)
    assert all(status == NATIVE for status, _ in writer.capabilities.values())  # on pyNN.nest, the default


@pytest.mark.parametrize("name", ["lenet", "branches", "sequence", "zero_padding"])
def test_spike_counts_match_the_reference(name, networks, tmp_path):
    net, x = networks(name)
    script = export("pynn", net, tmp_path / "net.py")
    ours = run_for_results(script, x, "--steps", str(STEPS))
    assert ours["meta"]["simulator"] == "pynn"
    assert_same_spikes(ours, reference(net, x))
    assert total_spikes(ours) > 0


def test_poisson_clamp_sign_and_softmax(networks, tmp_path):
    net, x = networks("lenet")
    net = with_options(net)
    script = export("pynn", net, tmp_path / "net.py")
    ours = run_for_results(script, x, "--steps", str(STEPS), "--readout", "softmax", "--seed", "5")
    assert (ours["counts_0"] < 0).any() and (ours["counts_0"] > 0).any()
    ref = reference(net, x, readout="softmax", seed=5)
    assert_same_spikes(ours, ref)
    assert np.array_equal(ours["predictions"], ref["predictions"])


def test_pynn_projections_give_the_same_spikes(networks, tmp_path):
    """FromListConnector Projections (portable) and array nest.Connect (fast) build the same synapses."""
    net, x = networks("branches")
    net = with_options(net, encoding="analog", reset="zero", clamp=0, sign=False)
    script = export("pynn", net, tmp_path / "net.py")
    fast = run_for_results(script, x, "--steps", "30", "--readout", "membrane")
    portable = run_for_results(script, x, "--steps", "30", "--readout", "membrane", "--pynn-projections")
    assert identical_fraction(fast, portable)["all"] == 1.0
    np.testing.assert_allclose(fast["output_v"], portable["output_v"], rtol=1e-5, atol=1e-6)  # float32 sums in another order
    assert_same_spikes(fast, reference(net, x, steps=30, readout="membrane"))


def test_hostile_names_are_data_not_code(tmp_path):
    model = model_zoo.build_hostile_names()
    model.save(tmp_path / "hostile.keras")
    net = convert(read_model(tmp_path / "hostile.keras"), model_zoo.sample_input(model, 10))
    script = export("pynn", net, tmp_path / "net.py", model_zoo.sample_input(model, 2))
    proc = run_script(script, "--steps", "20")
    assert "pwned" not in proc.stdout + proc.stderr
    for pop in net.populations:
        assert repr(pop.name) in proc.stdout
    ours = run_for_results(script, model_zoo.sample_input(model, 2), "--steps", "20")
    assert list(ours["population_names"]) == [p.name for p in net.populations]
    assert list(ours["gate_names"]) == [n.name for n in net.nodes if isinstance(n, Gate)]


def test_same_inputs_give_byte_identical_scripts(networks, tmp_path):
    net, x = networks("sequence")
    a = get("pynn").render(net, WriteOptions(output=tmp_path / "a.py", samples=x)).main
    b = get("pynn").render(fresh(net), WriteOptions(output=tmp_path / "a.py", samples=x)).main
    assert a == b


def test_bundled_model_exports_and_runs(tmp_path):
    env = dict(os.environ, KERAS_BACKEND="jax")
    script = tmp_path / "lenet_pynn.py"
    subprocess.run([sys.executable, "-m", "snnexport", str(BUNDLED_MODEL), "--calibration", str(BUNDLED_SAMPLES),
                    "--to", "pynn", "-o", str(script)], check=True, capture_output=True, env=env)
    proc = run_script(script, "-n", "2", "--steps", "40")
    assert "accuracy" in proc.stdout
    with np.load(BUNDLED_SAMPLES) as data:
        x = data["x"][:2]
    ours = run_for_results(script, x, "--steps", "50")
    ref = reference(_network_of_bundled(tmp_path, env), x, steps=50)
    assert_same_spikes(ours, ref, per_step=False)
    assert np.array_equal(ours["predictions"], ref["predictions"])
