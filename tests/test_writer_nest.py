"""What is specific to the NEST scripts (PyNEST, and PyNN on NEST where the two share nest_common):
the schedule that keeps one step per population behind gates, the order of actions in a sample, the
refusal of sign neurons with reset to zero, and NEST's threads. The contract every writer keeps is
tested in tests/test_writer_contract.py, the semantics in tests/test_semantics.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from backends import assert_agree, total_spikes, with_options
from conftest import BUNDLED_SAMPLES, STEPS, needs
from script_runner import export, run_for_results, run_script
from snnexport.scriptlib import runtime
from snnexport.errors import FeatureRefused
from snnexport.network import Gate
from snnexport.writers import get
from snnexport.writers.base import WriteOptions
from snnexport.scriptlib.nest_schedule import schedule, timeline
from snnexport.simulator import simulate


def test_schedule_delays_keep_one_step_per_population(zoo):
    """Behind a gate a population runs T steps later, and its synapses are longer by as much."""
    net, _ = zoo("lenet")
    plan = schedule([{"name": p.name, "depth": p.depth} for p in net.populations],
                    [{"name": g.name, "source": g.source} for g in net.nodes if isinstance(g, Gate)],
                    [{"source": p.source, "target": p.target} for p in net.projections], net.input.name, 10, 0)
    assert [plan["lag"][p.name] for p in net.populations] == [0, 10, 20, 20]
    assert plan["delay"] == [1, 1, 1, 1]  # every projection leaves a gate or a population of the same lag
    assert plan["length"] == 10 + 2 + 20


def test_delay_offsets_and_the_zero_delay_schedule_follow_the_depths(zoo):
    """--delay zero: population P runs offset by depth_P - 1 (runtime.delay_offsets, Brian2's time shift), and a
    projection's delay is the offset difference, 2 for the residual skip; NEST's schedule starts a population at
    least one step after each source, its synapses as long as that difference (the lags add the gates' T)."""
    net, _ = zoo("residual")
    pops = [{"name": p.name, "depth": p.depth} for p in net.populations]
    projections = [{"source": p.source, "target": p.target} for p in net.projections]
    offsets, delays = runtime.delay_offsets(pops, [], projections, net.input.name, "zero")
    assert [offsets[p.name] for p in net.populations] == [p.depth - 1 for p in net.populations] == [0, 1, 2, 3]
    assert sorted(delays) == [0, 1, 1, 1, 2]  # the input's, the chain's, the skip stem -> add_relu
    assert runtime.delay_offsets(pops, [], projections, net.input.name, "step") == (
        {p.name: 0 for p in net.populations}, [0 if p.source == net.input.name else 1 for p in net.projections])
    plan = schedule(pops, [], projections, net.input.name, 10, 0, 0, "zero")
    assert [plan["lag"][p.name] for p in net.populations] == [0, 1, 2, 3]
    # (the input's spikes leave one step early in NEST: one step more than the offset)
    assert plan["delay"] == [d + (p.source == net.input.name) for p, d in zip(net.projections, delays)]
    net, _ = zoo("lenet")  # behind a gate: T more steps, as in mode step, and one more per population
    plan = schedule([{"name": p.name, "depth": p.depth} for p in net.populations],
                    [{"name": g.name, "source": g.source} for g in net.nodes if isinstance(g, Gate)],
                    [{"source": p.source, "target": p.target} for p in net.projections], net.input.name, 10, 0, 0,
                    "zero")
    assert [plan["lag"][p.name] for p in net.populations] == [0, 11, 22, 23]
    assert plan["delay"] == [1, 1, 1, 1]


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
    # a population whose spikes reach no synapse is not held after its last step, only put to sleep
    quiet = dict(timeline(plan, pops, {"g": "a"}, "b", 10, held={"b"}))
    assert quiet[11] == [("gates", "a"), ("release", "b")]
    assert quiet[12] == [("sleep", "a")]


def assert_batches_agree(writer: str, net, x: np.ndarray, folder, batch: int, steps: int,
                         per_step: bool = True) -> dict:
    """The script's results at --batch 1 and --batch ``batch`` are identical arrays (a last, smaller
    batch included when len(x) is no multiple), and agree with the reference simulator's
    (backends.assert_agree; ``per_step=False`` for a large network, as the writer contract does)."""
    script = export(writer, net, folder / f"snn_{writer}.py")
    one = run_for_results(script, x, "--steps", str(steps), "--batch", "1")
    many = run_for_results(script, x, "--steps", str(steps), "--batch", str(batch))
    assert (one["meta"]["batch"], many["meta"]["batch"]) == (1, batch)
    assert sorted(one) == sorted(many)
    for key in one:
        if key != "meta":
            np.testing.assert_array_equal(one[key], many[key], err_msg=key)
    assert total_spikes(one) > 0
    reference = simulate(net, x, steps=steps, delay="step")
    assert_agree(many, reference, per_step=per_step)
    np.testing.assert_array_equal(many["predictions"], reference["predictions"])
    return many


def bundled_nine(bundled) -> tuple:
    """The bundled LeNet and its first 9 bundled MNIST samples."""
    _, net, _ = bundled
    with np.load(BUNDLED_SAMPLES) as data:
        x = runtime.coerce_samples(data["x"][:9], net.input.shape)
    return net, x


@needs("nest")
def test_batches_give_the_same_results(bundled, tmp_path):
    """Seven copies of the bundled LeNet in one NEST network (9 samples: batches of 7 and 2) give what one
    copy at a time gives, and what the reference simulator gives."""
    net, x = bundled_nine(bundled)
    assert_batches_agree("nest", net, x, tmp_path, 7, STEPS, per_step=False)


@needs("nest")
def test_batches_with_poisson_input_and_softmax_readout(zoo, tmp_path):
    """Seeded draws per sample, not per copy: a batch of 2 over 3 samples gives the spikes of one at a time."""
    net, x = zoo("lenet")
    net = with_options(net, "poisson", "subtract", 0, False)
    net.settings.readout = "softmax"
    assert_batches_agree("nest", net, x, tmp_path, 2, STEPS)


@pytest.mark.parametrize("writer", ["nest", "pynn"])
def test_sign_with_reset_to_zero_is_refused(writer, zoo):
    """A sign neuron is two NEST neurons that reset each other by subtraction: no reset to zero."""
    net, _ = zoo("residual")
    with pytest.raises(FeatureRefused, match="negative spikes"):
        get(writer).render(with_options(net, "analog", "zero", 0, True), WriteOptions())


@needs("nest")
def test_threads_give_the_same_spikes(zoo_runs):
    """Two NEST threads, the same spikes and currents as one (the run of the contract's zoo test)."""
    script, _, one = zoo_runs("nest", "branches")
    out = script.parent / "threads.npz"
    run_script(script, "--steps", str(STEPS), "--threads", "2", "--out", str(out), "--quiet")
    two = runtime.load_results(out)
    assert two["meta"]["simulator"] == "nest"
    for key in one:
        if key != "meta":
            np.testing.assert_array_equal(one[key], two[key], err_msg=key)
