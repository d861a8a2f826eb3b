"""docs/semantics.md pinned on hand-built networks small enough to work out on paper, on every back end.

Every network here is built from Network/Population/Projection objects directly, with weights
and currents that are exact binary fractions, so that the expected spikes are exact too. Each
test runs on the reference simulator and on every installed simulator's exported script (the
``backend`` fixture, tests/backends.py), and asserts the same exact values on each; a back end
whose writer refuses a feature the network needs is skipped, naming it, and where a script breaks
the contract today the test is a strict xfail naming the defect (backends.KNOWN_DEFECTS). Only the
zero-latency mode, which no script offers, is tested on the reference simulator alone; the reference
simulator's own machinery (batches, tuning overrides) is tested in test_simulator.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from backends import Backend
from snnexport.scriptlib import runtime
from snnexport.network import Gate, InputSpec, Network, Neuron, Population, Projection
from snnexport.ops import Conv2D, Dense, Reshape
from snnexport.simulator import simulate


# --- building blocks -----------------------------------------------------------------------------

def pop(name: str, shape: tuple[int, ...], depth: int, bias: float | list[float] = 0.0,
        activation: str = "relu") -> Population:
    b = np.asarray(bias, np.float32)
    b = (np.full(shape, b, np.float32) if b.ndim == 0 else b.reshape(shape)).copy()
    return Population(name, tuple(shape), b, activation, 1.0, depth)


def dense(w: np.ndarray | list, out_shape: tuple[int, ...] | None = None, in_size: int | None = None) -> list:
    """Ops for a projection: flatten (when in_size is given), dense w, reshape to out_shape."""
    w = np.asarray(w, np.float32)
    ops = [Reshape((in_size,))] if in_size is not None else []
    ops.append(Dense(w))
    if out_shape is not None:
        ops.append(Reshape(tuple(out_shape)))
    return ops


def network(nodes: list, projections: list, output: str, input_shape: tuple[int, ...] = (1,),
            encoding: str = "analog", reset: str = "subtract") -> Network:
    return Network(InputSpec("x", tuple(input_shape), encoding), nodes, projections, output, Neuron(1.0, reset))


def constant_current_net(z: list[float], reset: str = "subtract") -> tuple[Network, np.ndarray]:
    """One output population with constant current z_i as its bias."""
    n = len(z)
    p = pop("out", (n,), 1, z)
    return network([p], [Projection("x", "out", dense(np.zeros((1, n))))], "out", reset=reset), \
        np.zeros((1, 1), np.float32)


def input_current_net(n: int) -> Network:
    """One output population of n neurons driven by the analog input x (n values) through weight 1."""
    return network([pop("out", (n,), 1, 0.0)], [Projection("x", "out", dense(np.eye(n)))], "out", (n,))


def identity_chain(depth: int, z: float = 1.0) -> tuple[Network, np.ndarray]:
    """x → p1 → p2 → … → p<depth>, one neuron each, weight 1, input current z."""
    nodes = [pop(f"p{k}", (1,), k) for k in range(1, depth + 1)]
    projs = [Projection("x", "p1", dense([[1.0]]))]
    projs += [Projection(f"p{k}", f"p{k + 1}", dense([[1.0]])) for k in range(1, depth)]
    return network(nodes, projs, f"p{depth}"), np.full((1, 1), z, np.float32)


# --- the neuron ----------------------------------------------------------------------------------

EXACT = [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]


def test_constant_input_spikes_floor_tz_times(backend: Backend) -> None:
    """Reset by subtraction: after t steps of constant z ≤ 1, exactly floor(t·z) spikes (§2.2.3), whether
    z is a bias (the first n neurons) or analog input through weight 1 (the last n)."""
    T, n = 64, len(EXACT)
    p = pop("out", (2 * n,), 1, EXACT + [0.0] * n)
    net = network([p], [Projection("x", "out", dense(np.hstack([np.zeros((n, n)), np.eye(n)])))], "out", (n,))
    r = backend.run(net, np.asarray([EXACT], np.float32), steps=T)
    z = np.asarray(EXACT * 2, np.float32)
    cumulative = np.cumsum(r["output_steps"][0], axis=0)  # (T, 2n)
    t = np.arange(1, T + 1)[:, None]
    np.testing.assert_array_equal(cumulative, np.floor(t * z[None, :]))
    np.testing.assert_array_equal(r["counts_0"][0], np.floor(T * z))
    # the residual stays in the membrane: V(T) = T·z − count
    np.testing.assert_array_equal(r["output_v"][0], T * z - r["counts_0"][0])


def test_input_above_threshold_spikes_every_step_at_most_once(backend: Backend) -> None:
    T = 10
    net, x = constant_current_net([1.5, 3.0])
    r = backend.run(net, x, steps=T)
    np.testing.assert_array_equal(r["counts_0"][0], [T, T])  # r_max = 1 spike per step
    np.testing.assert_array_equal(r["output_v"][0], [0.5 * T, 2.0 * T])  # the excess accumulates


def test_reset_to_zero_loses_the_residual(backend: Backend) -> None:
    """Reset to zero (Eq. 5a): a spike every ceil(1/z) steps, so the rate falls below z."""
    T = 60
    z = [0.25, 0.3, 0.45, 0.6, 0.75, 1.0]
    net, x = constant_current_net(z, reset="zero")
    r = backend.run(net, x, steps=T)
    sub = backend.run(constant_current_net(z)[0], x, steps=T)
    for i, zi in enumerate(z):
        period = int(np.ceil(1 / np.float32(zi)))
        spikes = r["output_steps"][0, :, i]
        np.testing.assert_array_equal(np.nonzero(spikes)[0] + 1, np.arange(period, T + 1, period), err_msg=str(zi))
        assert r["counts_0"][0, i] <= sub["counts_0"][0, i]
        if zi in (0.75, 0.6, 0.45, 0.3):  # a strict loss wherever 1/z is not an integer
            assert r["counts_0"][0, i] < sub["counts_0"][0, i], zi


def test_clamp_discards_the_current_of_clamped_steps(backend: Backend) -> None:
    """Clamp d: a depth-l population holds V = 0 and is silent for t ≤ d·l; nothing accumulates."""
    net, x = identity_chain(2, z=0.5)
    r = backend.run(net, x, steps=12, clamp=1)
    sps = r["spikes_per_step"][0]  # (T, P)
    # p1 (depth 1): clamped at t = 1; V(2) = 0.5, V(3) = 1 → first spike at 3, then every 2 steps
    np.testing.assert_array_equal(np.nonzero(sps[:, 0])[0] + 1, [3, 5, 7, 9, 11])
    # p2 (depth 2): clamped for t ≤ 2; p1's spike of step s arrives at s + 1 with weight 1
    np.testing.assert_array_equal(np.nonzero(sps[:, 1])[0] + 1, [4, 6, 8, 10, 12])
    r2 = backend.run(net, x, steps=12, clamp=3)
    np.testing.assert_array_equal(np.nonzero(r2["spikes_per_step"][0][:, 0])[0] + 1, [5, 7, 9, 11])
    np.testing.assert_array_equal(np.nonzero(r2["spikes_per_step"][0][:, 1])[0] + 1, [8, 10, 12])


# --- the neuron's settings: initial potential and threshold rule ------------------------------------

def with_neuron(net: Network, v_init: float = 0.0, rule: str = "ge") -> Network:
    net.neuron.v_init, net.neuron.threshold_rule = v_init, rule
    return net


@pytest.mark.parametrize("rule", ["ge", "gt"])
def test_half_threshold_start_rounds_the_rate(backend: Backend, rule: str) -> None:
    """v_init 0.5 with reset by subtraction: V(t) = 1/2 + t·z − count stays in [0, 1) ("ge") or (0, 1] ("gt"),
    so after t steps of constant z ≤ 1 the count is exactly ⌊t·z + 1/2⌋ ("ge") or ⌈t·z − 1/2⌉ ("gt"):
    rounding instead of flooring; the two differ where t·z + 1/2 is an integer (V lands on θ). z as a
    bias (the first n neurons) and as analog input through weight 1 (the last n)."""
    T, n = 64, len(EXACT)
    p = pop("out", (2 * n,), 1, EXACT + [0.0] * n)
    net = network([p], [Projection("x", "out", dense(np.hstack([np.zeros((n, n)), np.eye(n)])))], "out", (n,))
    r = backend.run(with_neuron(net, 0.5, rule), np.asarray([EXACT], np.float32), steps=T)
    z = np.asarray(EXACT * 2, np.float64)
    t = np.arange(1, T + 1)[:, None]
    want = np.floor(t * z + 0.5) if rule == "ge" else np.ceil(t * z - 0.5)
    np.testing.assert_array_equal(np.cumsum(r["output_steps"][0], axis=0), want)
    np.testing.assert_array_equal(r["output_v"][0], 0.5 + T * z - r["counts_0"][0])
    assert (want != np.floor(t * z)).sum() > T  # what V = 0 gives differs at many (step, neuron) pairs


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_threshold_rule_decides_a_potential_exactly_at_threshold(backend: Backend, reset: str) -> None:
    """Constant z that brings V exactly onto θ = 1 from V = 0: "ge" fires there, "gt" a step later.
    Reset by subtraction: ⌊t·z⌋ spikes ("ge") against max(0, ⌈t·z⌉ − 1) ("gt"). Reset to zero: a spike
    every ⌈1/z⌉ steps ("ge") against ⌊1/z⌋ + 1 ("gt"); equal where 1/z is no integer (z = 0.375)."""
    T = 24
    z = [0.25, 0.375, 0.5, 1.0]
    net, x = constant_current_net(z, reset=reset)
    ge = backend.run(with_neuron(net, 0.0, "ge"), x, steps=T)
    gt = backend.run(with_neuron(constant_current_net(z, reset=reset)[0], 0.0, "gt"), x, steps=T)
    t = np.arange(1, T + 1)[:, None]
    zz = np.asarray(z)
    if reset == "subtract":
        np.testing.assert_array_equal(np.cumsum(ge["output_steps"][0], axis=0), np.floor(t * zz))
        np.testing.assert_array_equal(np.cumsum(gt["output_steps"][0], axis=0), np.maximum(0, np.ceil(t * zz) - 1))
    else:
        for i, zi in enumerate(z):
            for r, period in ((ge, int(np.ceil(1 / zi))), (gt, int(np.floor(1 / zi)) + 1)):
                np.testing.assert_array_equal(np.nonzero(r["output_steps"][0, :, i])[0] + 1,
                                              np.arange(period, T + 1, period), err_msg=str(zi))
    assert (gt["counts_0"][0] < ge["counts_0"][0])[[0, 2, 3]].all()  # where V hits θ exactly


def test_threshold_rule_gt_mirrors_for_negative_spikes(backend: Backend) -> None:
    """A sign population with "gt": −1 spikes where V < −θ, so currents ∓0.5 reach ∓θ at step 2 and fire
    at step 3; subtraction leaves ∓0.5, and from then on every second step: 3, 5, 7, …"""
    s = pop("s", (2,), 1, [-0.5, 0.5], activation="sign")
    net = network([s], [Projection("x", "s", dense(np.zeros((1, 2))))], "s")
    r = backend.run(with_neuron(net, 0.0, "gt"), np.zeros((1, 1), np.float32), steps=9)
    np.testing.assert_array_equal(r["output_steps"][0, :, 0], [0, 0, -1, 0, -1, 0, -1, 0, -1])
    np.testing.assert_array_equal(r["output_steps"][0, :, 1], [0, 0, 1, 0, 1, 0, 1, 0, 1])


def test_clamp_holds_the_initial_potential(backend: Backend) -> None:
    """While clamped, V stays at v_init·θ (here θ/2), so the first live step starts from there: p1 (clamped
    at t = 1) reaches 0.5 + 0.5 = θ at step 2; p2 (clamped for t ≤ 2) at 0.5 + 1 from p1's spike of step 2,
    arriving at 3. An output clamped for all T steps ends at V = θ/2."""
    net, x = identity_chain(2, z=0.5)
    r = backend.run(with_neuron(net, 0.5), x, steps=12, clamp=1)
    sps = r["spikes_per_step"][0]
    np.testing.assert_array_equal(np.nonzero(sps[:, 0])[0] + 1, [2, 4, 6, 8, 10, 12])
    np.testing.assert_array_equal(np.nonzero(sps[:, 1])[0] + 1, [3, 5, 7, 9, 11])
    np.testing.assert_array_equal(r["output_v"][0], [0.5])  # 0.5 + 1 − 1 after its spike at 11, + 0 at 12
    held = backend.run(with_neuron(identity_chain(2, z=0.5)[0], 0.5), x, steps=2, clamp=1)
    assert held["output_v"][0, 0] == 0.5 and held["counts_1"][0, 0] == 0


# --- time and delays -------------------------------------------------------------------------------

def test_one_step_delay_per_population(backend: Backend) -> None:
    depth = 6
    net, x = identity_chain(depth, z=1.0)
    T = 10
    r = backend.run(net, x, steps=T)
    sps = r["spikes_per_step"][0]  # (T, P)
    for k in range(depth):
        first = int(np.nonzero(sps[:, k])[0][0]) + 1
        assert first == k + 1, f"population at depth {k + 1} first spikes at step {first}"
        assert r[f"counts_{k}"][0, 0] == T - k


def test_zero_latency_mode_reaches_every_depth_in_the_same_step() -> None:
    """The paper's zero latency: the reference simulator's mode only (no exported script offers it)."""
    net, x = identity_chain(6, z=1.0)
    r = simulate(net, x, steps=10, delay="zero")
    sps = r["spikes_per_step"][0]
    assert (sps == 1).all()  # every population spikes in every step, from step 1


def test_analog_input_and_bias_add_without_delay(backend: Backend) -> None:
    p = pop("out", (1,), 1, 0.25)
    net = network([p], [Projection("x", "out", dense([[1.0]]))], "out")
    r = backend.run(net, np.full((1, 1), 0.5, np.float32), steps=8)
    np.testing.assert_array_equal(np.nonzero(r["output_steps"][0, :, 0])[0] + 1, [2, 3, 4, 6, 7, 8])


def gate_chain(clamp: int) -> Network:
    """x (1 value) → a (1x2x1: currents 1 and 0.5, through a 1x1 convolution) → gate (max of the two) → b → c."""
    f32 = np.float32
    a = pop("a", (1, 2, 1), 1)
    g = Gate("g", "a", (1, 1, 1), (1, 2), (1, 2), ((0, 0), (0, 0)), 1.0, 1)
    kernel = np.array([1.0, 0.5], f32).reshape(1, 1, 1, 2)
    projs = [Projection("x", "a", [Reshape((1, 1, 1)), Conv2D(kernel), Reshape((1, 2, 1))]),
             Projection("g", "b", dense([[1.0]], None, 1)), Projection("b", "c", dense([[1.0]]))]
    net = network([a, g, pop("b", (1,), 2), pop("c", (1,), 3)], projs, "c")
    net.settings.clamp = clamp
    return net


@pytest.mark.parametrize("clamp", [0, 2])
def test_a_gate_adds_no_delay_and_no_depth(backend: Backend, clamp: int) -> None:
    """a fires from step 1 (analog current counts in its first step); the gate passes a's first cell in
    the same step; b (depth 2) fires from step 2, c from step 3. With clamp 2, depth l starts at 2l + 1."""
    net = gate_chain(clamp)
    r = backend.run(net, np.ones((1, 1), np.float32), steps=10)
    sps = r["spikes_per_step"][0]
    first = [int(np.nonzero(sps[:, k])[0][0]) + 1 for k in range(3)]
    if clamp == 0:
        assert first == [1, 2, 3]
        np.testing.assert_array_equal(r["counts_0"][0].reshape(-1), [10, 5])
        np.testing.assert_array_equal(r["gate_counts_0"][0], [10])
        np.testing.assert_array_equal(r["counts_1"][0], [9])
        np.testing.assert_array_equal(r["output_steps"][0, :, 0], [0, 0] + [1] * 8)
    else:  # spikes that arrive while a population is clamped are discarded
        assert first == [3, 5, 7]


# --- gates (spiking max-pooling) --------------------------------------------------------------------

def tie_net(first: str) -> tuple[Network, np.ndarray]:
    """Two cells with equal counts at even steps but different spikes there (see the test).

    Cell a: current 0.5, spikes at steps 2, 4, 6, …; cell b: current 1 minus 0.5 from q (which
    spikes every step, arriving one step late), spikes at 1, 3, 5, …. Counts tie after every even step.
    """
    a_first = first == "a"
    q = pop("q", (1,), 1, 1.0)
    p = pop("p", (1, 2, 1), 2, [0.5, 1.0] if a_first else [1.0, 0.5])
    w = [[0.0, -0.5]] if a_first else [[-0.5, 0.0]]
    g = Gate("g", "p", (1, 1, 1), (1, 2), (1, 2), ((0, 0), (0, 0)), 1.0, 2)
    o = pop("o", (1,), 3, 0.0)
    projs = [Projection("x", "q", dense([[0.0]])), Projection("q", "p", dense(w, (1, 2, 1))),
             Projection("g", "o", dense([[1.0]], None, 1))]
    return network([q, p, g, o], projs, "o"), np.zeros((1, 1), np.float32)


@pytest.mark.parametrize("first", ["a", "b"])
def test_gate_tie_goes_to_the_cell_that_reached_the_count_first(backend: Backend, first: str) -> None:
    """Two equally active cells out of phase: the leader keeps the window, nothing is counted twice.

    A rule without memory (ties to the first cell) would pass a's spikes at even steps and b's at odd
    ones when a comes first: twice the rate of either cell, the over-count that made max-pooled
    layers of deep nets correlate at r ≈ 0.96 with their ANN.
    """
    T = 10
    r = backend.run(*tie_net(first), steps=T)
    np.testing.assert_array_equal(r["counts_0"][0], [T])  # q spikes every step
    np.testing.assert_array_equal(r["counts_1"][0].reshape(-1), [5, 5])  # the cells behave as designed
    # b leads from step 1 and keeps the window through every tie: its 5 spikes pass, a's never
    assert r["gate_counts_0"][0, 0] == T // 2
    assert r["counts_2"][0, 0] == T // 2  # and reach o one step later (the last, of step 9, at step 10)


def test_gate_passes_the_most_active_cell_only(backend: Backend) -> None:
    # four cells with currents 0.25, 0.75, 0.5, 0.125: the gate passes exactly the 0.75 cell's spikes
    p = pop("p", (2, 2, 1), 1, [0.25, 0.75, 0.5, 0.125])
    g = Gate("g", "p", (1, 1, 1), (2, 2), (2, 2), ((0, 0), (0, 0)), 1.0, 1)
    o = pop("o", (1,), 2, 0.0)
    net = network([p, g, o], [Projection("x", "p", dense(np.zeros((1, 4)), (2, 2, 1))),
                              Projection("g", "o", dense([[1.0]], None, 1))], "o")
    r = backend.run(net, np.zeros((1, 1), np.float32), steps=40)
    assert r["gate_counts_0"][0, 0] == 30  # floor(40 · 0.75)
    np.testing.assert_array_equal(r["counts_0"][0].reshape(-1), [10, 30, 20, 5])
    assert r["counts_1"][0, 0] == 29  # one step later: the spike of step 40 has not arrived


def test_padded_gate_cells_never_win(backend: Backend) -> None:
    """A sign cell with negative counts beats the padding, which would win if it counted 0."""
    p = pop("p", (1, 1, 1), 1, -1.0, activation="sign")
    g = Gate("g", "p", (1, 1, 1), (1, 2), (1, 1), ((0, 0), (1, 0)), 1.0, 1)  # window = [padding, cell]
    o = pop("o", (1,), 2, 0.0)
    net = network([p, g, o], [Projection("x", "p", dense([[0.0]], (1, 1, 1))),
                              Projection("g", "o", dense([[1.0]], None, 1))], "o")
    r = backend.run(net, np.zeros((1, 1), np.float32), steps=7)
    assert r["counts_0"][0, 0] == -7
    assert r["gate_counts_0"][0, 0] == -7


def test_gate_on_a_gate_uses_the_inner_gates_counts(backend: Backend) -> None:
    # p (1, 4, 1) → g1 pool (1, 2) → g2 pool (1, 2) → o: g2 picks the busier of g1's two outputs
    p = pop("p", (1, 4, 1), 1, [0.25, 0.5, 0.75, 0.125])
    g1 = Gate("g1", "p", (1, 2, 1), (1, 2), (1, 2), ((0, 0), (0, 0)), 1.0, 1)
    g2 = Gate("g2", "g1", (1, 1, 1), (1, 2), (1, 2), ((0, 0), (0, 0)), 1.0, 1)
    o = pop("o", (1,), 2, 0.0)
    net = network([p, g1, g2, o], [Projection("x", "p", dense(np.zeros((1, 4)), (1, 4, 1))),
                                    Projection("g2", "o", dense([[1.0]], None, 1))], "o")
    r = backend.run(net, np.zeros((1, 1), np.float32), steps=16)
    np.testing.assert_array_equal(r["gate_counts_0"][0], [8, 12])
    assert r["gate_counts_1"][0, 0] == 12


# --- negative spikes -------------------------------------------------------------------------------

def test_sign_population_emits_negative_spikes(backend: Backend) -> None:
    s = pop("s", (2,), 1, [-0.5, 0.5], activation="sign")
    o = pop("o", (1,), 2, 0.0, activation="linear")
    net = network([s, o], [Projection("x", "s", dense(np.zeros((1, 2)))),
                           Projection("s", "o", dense([[1.0], [0.0]]))], "o")
    T = 9
    r = backend.run(net, np.zeros((1, 1), np.float32), steps=T, readout="membrane")
    # V: −0.5, −1 → −1 spike and V += θ → 0, …: −1 at every even step; +1 likewise for +0.5
    np.testing.assert_array_equal(r["counts_0"][0], [-(T // 2), T // 2])
    assert (r["spikes_per_step"][0, 1::2, 0] == 2).all()  # spikes per step count both signs
    assert (r["spikes_per_step"][0, 0::2, 0] == 0).all()
    # the output integrates the −1 spikes one step later
    assert r["output_v"][0, 0] == -((T - 1) // 2)


def test_reset_to_zero_after_a_negative_spike(backend: Backend) -> None:
    s = pop("s", (1,), 1, -0.75, activation="sign")
    net = network([s], [Projection("x", "s", dense([[0.0]]))], "s", reset="zero")
    r = backend.run(net, np.zeros((1, 1), np.float32), steps=8)
    np.testing.assert_array_equal(np.nonzero(r["output_steps"][0, :, 0])[0] + 1, [2, 4, 6, 8])
    assert (r["output_steps"][0, 1::2, 0] == -1).all()


# --- readouts ---------------------------------------------------------------------------------------

def test_count_readout_ties_go_to_the_larger_membrane_potential(backend: Backend) -> None:
    """Counts floor(4·0.5) = 2 = floor(4·0.625), V(T) 0 and 0.5: the larger V wins, in either order; a
    full tie of counts and V goes to the lower index. Three samples, one neuron each."""
    x = np.asarray([[0.5, 0.625, 0.0], [0.625, 0.5, 0.0], [0.25, 0.5, 0.5]], np.float32)
    r = backend.run(input_current_net(3), x, steps=4)
    np.testing.assert_array_equal(r["output_counts"], [[2, 2, 0], [2, 2, 0], [1, 2, 2]])
    np.testing.assert_array_equal(r["predictions"], [1, 0, 1])
    assert r["output_counts"].dtype == np.int64 and r["predictions"].dtype == np.int64


def crossing_net() -> tuple[Network, np.ndarray]:
    """Two output classes: o0 has current 0.5 from step 1 (spikes at 2, 4, 6, …); o1 gets 0.75 per step from
    h's spikes (h fires every step), from step 2 on (spikes at 3, 4, 5, 7, 8, 9, 11, …). o0 leads at step 2,
    they tie at 3 and 4, o1 leads from step 5: counts (o0, o1) at step 9 (4, 6), at 17 (8, 12), at 20 (10, 14)."""
    h = pop("h", (1,), 1, 1.0)
    o = pop("o", (2,), 2, [0.5, 0.0])
    net = network([h, o], [Projection("x", "h", dense([[0.0]])), Projection("h", "o", dense([[0.0, 0.75]]))], "o")
    return net, np.zeros((1, 1), np.float32)


@pytest.mark.parametrize("decision, step, label", [(None, None, 1), (0, 17, 1), (1, 2, 0), (2, 9, 1)])
def test_early_decision(backend: Backend, decision: int | None, step: int | None, label: int) -> None:
    """Early decision (0): the first step at which the leader is more spikes ahead than steps are left, 4 > 3
    at step 17; it never changes the class. A margin M: the first step a class leads by M, which may: o0 by 1
    at step 2, o1 by 2 at step 9. The spikes themselves are those of the run without early decision."""
    net, x = crossing_net()
    r = backend.run(net, x, steps=20, decision=decision)
    np.testing.assert_array_equal(r["output_counts"], [[10, 14]])
    np.testing.assert_array_equal(r["predictions"], [label])
    if decision is None:
        assert "decision_steps" not in r
    else:
        np.testing.assert_array_equal(r["decision_steps"], [step])
        assert r["decision_steps"].dtype == np.int32


def test_membrane_readout_never_fires_and_ties_go_to_the_lower_index(backend: Backend) -> None:
    T = 16
    x = np.asarray([[0.25, 0.75, 1.5, 0.5], [0.25, 0.75, 0.75, 0.0]], np.float32)
    r = backend.run(input_current_net(4), x, steps=T, readout="membrane")
    assert not r["output_steps"].any() and not r["counts_0"].any() and not r["spikes_per_step"].any()
    np.testing.assert_array_equal(r["output_v"], T * x)
    np.testing.assert_array_equal(r["predictions"], [2, 1])


def test_spiking_softmax_readout_uses_the_documented_draws(backend: Backend) -> None:
    T, seed = 30, 7
    z = np.asarray([0.0625, 0.125, 0.25], np.float32)
    net, _ = constant_current_net(list(z))
    x = np.zeros((3, 1), np.float32)
    r = backend.run(net, x, steps=T, readout="softmax", seed=seed)
    v = np.arange(1, T + 1)[:, None] * z[None, :]  # V(t) = t·z, never reset
    for i in range(3):  # each sample its own draws: default_rng([seed, i, 1])
        expected = runtime.softmax_spikes(v, runtime.softmax_draws(seed, i, T, 3))
        np.testing.assert_array_equal(r["output_steps"][i], expected)
    np.testing.assert_array_equal(r["output_v"][0], T * z)
    np.testing.assert_array_equal(r["predictions"], runtime.predict(r["output_counts"], r["output_v"]))
    assert r["output_counts"].sum() > 0


# --- input encodings, the results file -----------------------------------------------------------------

def test_poisson_input_uses_runtime_draws_without_delay(backend: Backend) -> None:
    """Weight-1 relays of Poisson input spike exactly when their input does, in the same step."""
    T, seed, n = 25, 3, 5
    p = pop("out", (n,), 1, 0.0)
    net = network([p], [Projection("x", "out", dense(np.eye(n)))], "out", (n,), encoding="poisson")
    x = np.random.default_rng(0).uniform(-0.2, 1.2, (4, n)).astype(np.float32)  # clipped to [0, 1]
    r = backend.run(net, x, steps=T, seed=seed)
    for i in range(len(x)):
        np.testing.assert_array_equal(r["output_steps"][i], runtime.poisson_input(x[i], seed, i, T))


def test_results_have_the_documented_layout(backend: Backend) -> None:
    net, x = identity_chain(3)
    x = np.repeat(x, 4, axis=0)
    r = backend.run(net, x, steps=7, labels=np.arange(4))
    layout = {"predictions": ((4,), np.int64), "output_counts": ((4, 1), np.int64),
              "output_steps": ((4, 7, 1), np.int16), "output_v": ((4, 1), np.float32),
              "spikes_per_step": ((4, 7, 3), np.int32), "labels": ((4,), np.int64),
              "counts_0": ((4, 1), np.int32), "counts_2": ((4, 1), np.int32)}
    for key, (shape, dtype) in layout.items():
        assert r[key].shape == shape and r[key].dtype == dtype, key
    assert list(r["population_names"]) == ["p1", "p2", "p3"] and r["gate_names"].shape == (0,)
    np.testing.assert_array_equal(r["labels"], np.arange(4))
