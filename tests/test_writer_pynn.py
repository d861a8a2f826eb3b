"""What is specific to the PyNN scripts: the two ways they build synapses on pyNN.nest, and the
fallback to another PyNN back end. The contract every writer keeps is in test_writer_contract.py; what
PyNN shares with PyNEST (schedule, refusals) in test_writer_nest.py.
"""

from __future__ import annotations

import numpy as np

from conftest import STEPS, needs
from script_runner import export, run_script
from snnexport.scriptlib import runtime
from snnexport.compare import identical_fraction
from test_semantics import identity_chain
from test_writer_nest import assert_batches_agree, bundled_nine

pytestmark = [needs("pyNN"), needs("nest")]


def test_pynn_projections_give_the_same_spikes(zoo_runs):
    """FromListConnector Projections (portable) build the synapses the array nest.Connect (fast, the
    default; the run of the contract's zoo test) does: the same spikes."""
    script, _, fast = zoo_runs("pynn", "branches")
    out = script.parent / "portable.npz"
    run_script(script, "--steps", str(STEPS), "--pynn-projections", "--out", str(out), "--quiet")
    portable = runtime.load_results(out)
    assert identical_fraction(fast, portable)["all"] == 1.0
    for key in ("output_steps", "spikes_per_step", "predictions", "gate_counts_0"):
        np.testing.assert_array_equal(fast[key], portable[key], err_msg=key)
    # float32 sums in another order: V (up to ~70 here) may differ by a few ulps of the summed currents
    np.testing.assert_allclose(fast["output_v"], portable["output_v"], rtol=1e-5, atol=1e-5)


def test_batches_give_the_same_results(bundled, tmp_path):
    """Seven copies of the bundled LeNet as PyNN populations of 7 x n neurons (9 samples: batches of 7 and
    2) give what one copy at a time gives, and what the reference simulator gives."""
    net, x = bundled_nine(bundled)
    assert_batches_agree("pynn", net, x, tmp_path, 7, STEPS, per_step=False)


@needs("brian2")
def test_another_pynn_back_end_runs_and_says_it_approximates(tmp_path):
    """On pyNN.brian2 the script falls back to IF_curr_delta (reset to zero) and says so on stderr. A
    population the input drives with z = 1/2 spikes every other step under either reset: there the
    fallback still gives the exact spikes."""
    net, x = identity_chain(2, z=0.5)
    script = export("pynn", net, tmp_path / "snn_pynn.py", x)
    assert "IF_curr_delta" in script.read_text(encoding="utf-8")  # the script names its approximation
    (tmp_path / "brian_preferences").write_text("codegen.target = 'numpy'\n")  # no C++ build (minutes)
    out = tmp_path / "results.npz"
    proc = run_script(script, "--backend", "brian2", "--steps", "10", "--out", str(out))
    assert "approximation: pyNN.brian2" in proc.stderr
    ours = runtime.load_results(out)
    assert [str(n) for n in ours["population_names"]] == ["p1", "p2"]
    np.testing.assert_array_equal(ours["counts_0"], [[5]])
