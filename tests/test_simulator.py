"""The reference simulator on converted models: a literal step-by-step reading of docs/semantics.md
agrees with it, firing rates converge to the ANN, results round-trip, operation counts are exact."""

from __future__ import annotations

import functools
from collections.abc import Callable
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

import model_zoo  # noqa: E402
from conftest import BUNDLED_MODEL, BUNDLED_SAMPLES  # noqa: E402

from snnexport import opcount  # noqa: E402
from snnexport.scriptlib import runtime  # noqa: E402
from snnexport.convert import convert  # noqa: E402
from snnexport.errors import SnnexportError  # noqa: E402
from snnexport.readers.keras import read_model  # noqa: E402
from snnexport.network import Gate, InputSpec, Network, Neuron, Population, Projection  # noqa: E402
from snnexport.ops import Conv2D, Dense, Reshape  # noqa: E402
from snnexport.simulator import ann_activations, ann_predict, results_meta, simulate  # noqa: E402


# --- a literal, slow reading of docs/semantics.md ----------------------------------------------------

def reference(net: Network, x: np.ndarray, steps: int, delay: str = "step", readout: str = "count",
              seed: int = 0, clamp: int = 0) -> list[dict]:
    """Per sample, per step, per population, with synapse lists (runtime.apply_synapses, gate_pass)."""
    pops = net.populations
    gates = [g for g in net.nodes if isinstance(g, Gate)]
    syn = [net.synapses(p) for p in net.projections]
    windows = {g.name: runtime.gate_windows(net.shape_of(g.source), g.pool, g.strides, g.padding) for g in gates}
    theta = np.float32(net.neuron.threshold)
    v0 = np.float32(net.neuron.v_start())
    strict = net.neuron.threshold_rule == "gt"
    out = []
    for i, xi in enumerate(x):
        u = runtime.poisson_input(xi, seed, i, steps) if net.input.encoding == "poisson" else None
        v = {p.name: np.full(p.bias.size, v0, np.float32) for p in pops}
        count = {n.name: np.zeros(net.size_of(n.name), np.int64) for n in net.nodes}
        prev = {n.name: np.zeros(net.size_of(n.name), np.float32) for n in net.nodes}
        since = {n.name: np.zeros(net.size_of(n.name), np.int64) for n in net.nodes}  # step of last change
        out_steps, sps = [], []
        draws = runtime.softmax_draws(seed, i, steps, net.size_of(net.output))
        for t in range(1, steps + 1):
            now: dict[str, np.ndarray] = {net.input.name: (u[t - 1] if u is not None else xi).reshape(-1)}
            row = []
            for node in net.nodes:
                if isinstance(node, Gate):
                    now[node.name] = runtime.gate_pass(windows[node.name], count[node.source], since[node.source],
                                                       now[node.source]).astype(np.float32)
                    count[node.name] += now[node.name].astype(np.int64)
                    since[node.name][now[node.name] != 0] = t
                    continue
                current = node.bias.reshape(-1).astype(np.float32)
                for p, sy in zip(net.projections, syn):
                    if p.target == node.name:
                        src = now[p.source] if (p.source == net.input.name or delay == "zero") else prev[p.source]
                        current = current + runtime.apply_synapses(sy, src, node.bias.size)
                vv = v[node.name]
                if t <= clamp * node.depth:
                    s = np.zeros_like(vv)
                    vv[:] = v0
                elif node.name == net.output and readout != "count":
                    vv += current
                    s = (runtime.softmax_spikes(vv.astype(np.float64), draws[t - 1]).astype(np.float32)
                         if readout == "softmax" else np.zeros_like(vv))
                else:
                    vv += current
                    s = ((vv > theta) if strict else (vv >= theta)).astype(np.float32)
                    if node.activation == "sign":
                        s -= ((vv < -theta) if strict else (vv <= -theta)).astype(np.float32)
                    if net.neuron.reset == "zero":
                        vv[s != 0] = 0
                    else:
                        vv -= theta * s
                now[node.name] = s
                count[node.name] += s.astype(np.int64)
                since[node.name][s != 0] = t
                row.append(int(np.abs(s).sum()))
                if node.name == net.output:
                    out_steps.append(s)
            sps.append(row)
            prev = now
        out.append(dict(counts=[count[p.name] for p in pops], gate_counts=[count[g.name] for g in gates],
                        output_steps=np.array(out_steps), v=v[net.output].copy(), sps=np.array(sps)))
    return out


def converted(build, n: int = 6, **kwargs) -> tuple[Network, np.ndarray]:
    """The model zoo's model, read and converted (calibrated on its n samples), and the samples."""
    graph, x = _read(build, n)
    return convert(graph, x, **kwargs), x


@functools.lru_cache(maxsize=None)
def _read(build, n: int):
    model = build()
    return _graph(model), model_zoo.sample_input(model, n)


def _graph(model):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.h5")
        model.save(path)
        return read_model(path)


def assert_agrees(net: Network, x: np.ndarray, steps: int, **kwargs) -> None:
    r = simulate(net, x, steps=steps, batch=4, **kwargs)
    ref = reference(net, x, steps, **kwargs)
    total = differ = 0
    for i, want in enumerate(ref):
        for k, c in enumerate(want["counts"]):
            differ += int((r[f"counts_{k}"][i] != c).sum())
            total += c.size
        for k, c in enumerate(want["gate_counts"]):
            differ += int((r[f"gate_counts_{k}"][i] != c).sum())
            total += c.size
    # float32 sums in another order may move a spike where V lands within rounding of θ: rare
    assert differ <= max(1, total // 1000), f"{differ} of {total} spike counts differ"
    if differ == 0:
        np.testing.assert_array_equal(r["spikes_per_step"], np.stack([w["sps"] for w in ref]))
        np.testing.assert_array_equal(r["output_steps"], np.stack([w["output_steps"] for w in ref]))
    np.testing.assert_allclose(r["output_v"], np.stack([w["v"] for w in ref]), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("build", [model_zoo.build_lenet, model_zoo.build_maxpool_stride, model_zoo.build_misc,
                                   model_zoo.build_residual, model_zoo.build_zero_padding, model_zoo.build_depthwise])
def test_agrees_with_a_literal_reading_of_the_semantics(build) -> None:
    net, x = converted(build, 3)
    assert_agrees(net, x, 23)  # 23 steps: chunks that do not divide T


def test_agrees_in_zero_delay_mode_with_softmax_and_clamp() -> None:
    net, x = converted(model_zoo.build_lenet, 3)
    assert_agrees(net, x, 20, delay="zero", readout="softmax", clamp=1, seed=4)


def test_agrees_with_poisson_input_and_reset_to_zero() -> None:
    net, x = converted(model_zoo.build_lenet, 3, encoding="poisson", reset="zero")
    assert_agrees(net, x, 20, seed=9)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_agrees_with_a_half_threshold_start_and_the_strict_rule_with_clamp(reset: str) -> None:
    """v_init and threshold_rule "gt" on a network with gates (window-major layouts start at v_init·θ too)."""
    net, x = converted(model_zoo.build_lenet, 3, reset=reset)
    net.neuron.v_init, net.neuron.threshold_rule = 0.5, "gt"
    assert_agrees(net, x, 23, clamp=1)
    assert_agrees(net, x, 23, readout="membrane")


def test_agrees_on_strided_dilated_grouped_padded_convolutions_into_gates() -> None:
    """Convolutions written straight into a gate's window-major layout, in every geometry."""
    rng = np.random.default_rng(3)

    def p(name, shape, depth):
        return Population(name, shape, rng.uniform(-0.05, 0.1, shape).astype(np.float32), "relu", 1.0, depth)

    def k(*shape):
        return rng.normal(0, 0.6, shape).astype(np.float32)

    nodes = [p("a", (8, 8, 4), 1), Gate("ga", "a", (4, 4, 4), (2, 2), (2, 2), ((0, 0), (0, 0)), 1.0, 1),
             p("b", (4, 4, 6), 2), Gate("gb", "b", (2, 2, 6), (2, 2), (2, 2), ((0, 0), (0, 0)), 1.0, 2),
             p("c", (2, 2, 4), 2), Gate("gc", "c", (1, 1, 4), (2, 2), (2, 2), ((0, 0), (0, 0)), 1.0, 2),
             p("o", (3,), 3)]
    projs = [Projection("x", "a", [Conv2D(k(3, 3, 2, 4), padding=((1, 1), (1, 1)))]),
             Projection("ga", "b", [Conv2D(k(3, 3, 2, 6), padding=((2, 2), (2, 2)), dilation=(2, 2), groups=2)]),
             Projection("ga", "c", [Conv2D(k(2, 2, 4, 4), strides=(2, 2), padding=((0, 1), (0, 1)))]),
             Projection("gb", "o", [Reshape((24,)), Dense(k(24, 3))]),
             Projection("gc", "o", [Reshape((4,)), Dense(k(4, 3))])]
    net = Network(InputSpec("x", (8, 8, 2)), nodes, projs, "o", Neuron())
    x = rng.uniform(0, 1, (3, 8, 8, 2)).astype(np.float32)
    assert_agrees(net, x, 30)


# --- convergence to the ANN -----------------------------------------------------------------------------

def test_rates_converge_to_the_ann() -> None:
    net, x = converted(model_zoo.build_lenet, 40)
    T = 200
    r = simulate(net, x, steps=T)
    ann = ann_activations(net, x)
    for k, p in enumerate(net.populations):
        if p.name == net.output:
            continue
        rates = r[f"counts_{k}"] / T
        corr = np.corrcoef(rates.ravel(), ann[p.name].ravel())[0, 1]
        assert corr > 0.95, f"{p.name}: r = {corr:.3f}"
        # rates × λ approximate the activations themselves
        assert abs(rates.mean() * p.scale - ann[p.name].mean() * p.scale) < 0.1 * p.scale
    assert (r["predictions"] == ann_predict(net, x)).mean() >= 0.9


def test_bundled_lenet_classifies_like_its_ann() -> None:
    with np.load(BUNDLED_SAMPLES) as z:
        x, y = z["x"].astype(np.float32), z["y"].astype(np.int64)
    net = convert(read_model(BUNDLED_MODEL), x[:100])
    x, y = x[100:200], y[100:200]
    r = simulate(net, x, y, steps=100)
    ann = ann_predict(net, x)
    assert (ann == y).mean() >= 0.97
    assert (r["predictions"] == y).mean() >= 0.95
    assert (r["predictions"] == ann).mean() >= 0.95


def test_ann_of_the_description_is_the_normalized_model() -> None:
    model = model_zoo.build_lenet()
    graph = _graph(model)
    x = model_zoo.sample_input(model, 8)
    net = convert(graph, x)
    mine = ann_activations(net, x)
    theirs = graph.run(x, keep=[p.name for p in net.populations])
    for p in net.populations:
        if p.name != net.output:
            np.testing.assert_allclose(mine[p.name], theirs[p.name].reshape(len(x), -1) / p.scale,
                                       rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(ann_predict(net, x), model.predict(x, verbose=0).argmax(axis=1))


# --- results file -----------------------------------------------------------------------------------------

def test_results_round_trip_through_the_results_file(tmp_path) -> None:
    net, x = converted(model_zoo.build_lenet, 3)
    r = simulate(net, x, np.arange(3), steps=23, batch=4)
    path = tmp_path / "results.npz"
    runtime.save_results(path, r, results_meta(net, r, steps=23))
    back = runtime.load_results(path)
    assert back["meta"]["simulator"] == "reference" and back["meta"]["steps"] == 23
    for k, v in r.items():
        np.testing.assert_array_equal(back[k], v)
        assert back[k].dtype == v.dtype, k
    ops = opcount.snn_ops(net, back)  # any simulator's file counts the same way
    np.testing.assert_array_equal(ops["total"], opcount.snn_ops(net, r)["total"])


# --- operation counts ---------------------------------------------------------------------------------------

def tiny_counted() -> Network:
    """3×3 input → conv 2×2 (valid) → a (2, 2, 1) → dense → b (2,); a → gate 2×2 → c (1,)."""
    a = Population("a", (2, 2, 1), np.zeros((2, 2, 1), np.float32), "relu", 1.0, 1)
    b = Population("b", (2,), np.zeros(2, np.float32), "relu", 1.0, 2)
    g = Gate("g", "a", (1, 1, 1), (2, 2), (2, 2), ((0, 0), (0, 0)), 1.0, 1)
    c = Population("c", (1,), np.zeros(1, np.float32), "relu", 1.0, 2)
    w = np.array([[1.0, 2.0], [0.0, 3.0]], np.float32)  # one zero weight: no synapse
    projs = [Projection("x", "a", [Conv2D(w.reshape(2, 2, 1, 1))]),
             Projection("a", "b", [Reshape((4,)), Dense(np.ones((4, 2), np.float32))]),
             Projection("g", "c", [Reshape((1,)), Dense(np.ones((1, 1), np.float32))])]
    return Network(InputSpec("x", (3, 3, 1)), [a, g, b, c], projs, "b", Neuron())


def test_operation_counts_by_hand() -> None:
    net = tiny_counted()
    # fan-in: a 3 each (one zero weight), b 4 each, c 1 → (2·3+1)·4 + (2·4+1)·2 + (2·1+1)·1
    assert opcount.ann_ops(net) == 28 + 18 + 3
    fo = opcount.fanouts(net)
    # the zero weight is the kernel's (1, 0): input pixel (i, j) reaches the outputs with ky, kx valid
    np.testing.assert_array_equal(fo["x"], [1, 2, 1, 1, 3, 2, 0, 1, 1])
    np.testing.assert_array_equal(fo["a"], [2, 2, 2, 2])  # to b only: the gate's spikes are g's
    np.testing.assert_array_equal(fo["g"], [1])
    np.testing.assert_array_equal(fo["b"], [0, 0])
    res = {"population_names": np.array(["a", "b", "c"]), "gate_names": np.array(["g"]),
           "counts_0": np.array([[3, 0, 1, 2]]), "counts_1": np.array([[5, 5]]), "counts_2": np.array([[3]]),
           "gate_counts_0": np.array([[3]]),
           "spikes_per_step": np.array([[[2, 0, 0], [2, 1, 1], [2, 1, 2]]])}
    ops = opcount.snn_ops(net, res)
    input_ops = 2 * 12 + 4  # analog input: its synapses' ANN ops, once
    assert ops["per_node"]["a"][0] == 2 * 6 and ops["per_node"]["g"][0] == 3
    assert ops["total"][0] == 12 + 3 + input_ops
    np.testing.assert_allclose(ops["per_step"].sum(axis=1), ops["total"])
    assert ops["per_step"][0, 0] >= input_ops


@pytest.mark.parametrize("build", [model_zoo.build_lenet, model_zoo.build_misc, model_zoo.build_residual,
                                   model_zoo.build_zero_padding, model_zoo.build_avgpool, model_zoo.build_geometry])
def test_fan_in_and_out_match_the_synapse_lists(build) -> None:
    net, _ = converted(build, 2)
    for p in net.projections:
        fin, fout = opcount.projection_degrees(net, p)
        pre, post, _ = net.synapses(p)
        np.testing.assert_array_equal(fin, np.bincount(post, minlength=net.size_of(p.target)))
        np.testing.assert_array_equal(fout, np.bincount(pre, minlength=net.size_of(p.source)))


def test_snn_ops_of_a_simulation() -> None:
    net, x = converted(model_zoo.build_lenet, 3)
    r = simulate(net, x, steps=23, batch=4)
    ops = opcount.snn_ops(net, r)
    fo = opcount.fanouts(net)
    by_hand = sum(np.abs(r[f"counts_{k}"][0]) @ fo[p.name] for k, p in enumerate(net.populations))
    by_hand += sum(np.abs(r[f"gate_counts_{k}"][0]) @ fo[g.name]
                   for k, g in enumerate(n for n in net.nodes if isinstance(n, Gate)))
    assert ops["total"][0] == by_hand + ops["input"][0]
    assert ops["per_step"].shape == (3, 23)
    np.testing.assert_allclose(ops["per_step"].sum(axis=1), ops["total"], rtol=1e-9)
    assert (ops["per_step"] >= 0).all() and ops["ann"] == opcount.ann_ops(net)


def test_early_decision_changes_no_spike_and_counts_operations_to_the_decision() -> None:
    net, x = converted(model_zoo.build_lenet, 3)
    r = simulate(net, x, steps=23, batch=4)
    early = simulate(net, x, steps=23, batch=4, early_decision=True)
    for key in r:
        np.testing.assert_array_equal(early[key], r[key], err_msg=key)  # the settled class is the full run's
    steps, _ = runtime.early_decision(r["output_steps"])
    np.testing.assert_array_equal(early["decision_steps"], steps)
    ops = opcount.snn_ops(net, early)
    d = early["decision_steps"]
    want = [ops["per_step"][i, :d[i]].sum() for i in range(3)]
    np.testing.assert_allclose(ops["decided"], want, rtol=1e-12)
    assert (ops["decided"] <= ops["total"]).all() and "decided" not in opcount.snn_ops(net, r)
    with pytest.raises(SnnexportError, match="early decision needs a readout that counts spikes"):
        simulate(net, x, steps=5, readout="membrane", early_decision=True)
    with pytest.raises(SnnexportError, match="decision margin must be an integer of at least 1"):
        simulate(net, x, steps=5, decision_margin=0)


def test_snn_ops_count_poisson_input_spikes() -> None:
    net, x = converted(model_zoo.build_lenet, 2, encoding="poisson")
    r = simulate(net, x, steps=12, seed=2)
    ops = opcount.snn_ops(net, r, x=x, seed=2)
    fin = opcount.fanouts(net)[net.input.name]
    for i in range(2):
        u = runtime.poisson_input(x[i], 2, i, 12).reshape(12, -1)
        assert ops["input"][i] == int(u.sum(axis=0) @ fin)
    with pytest.raises(Exception, match="Poisson"):
        opcount.snn_ops(net, r)


def test_info_counts_operations_without_jax(tmp_path) -> None:
    """``snnexport info`` (operation counts included) imports neither JAX nor the simulator."""
    path = tmp_path / "net.snn"
    tiny_counted().save(path)
    probe = ("import atexit, runpy, sys\n"
             "atexit.register(lambda: print('loaded:', sorted(m for m in ('jax', 'snnexport.simulator') "
             "if m in sys.modules)))\n"
             f"sys.argv = ['snnexport', 'info', {str(path)!r}]\n"
             "runpy.run_module('snnexport', run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ANN operations per frame (paper Eq. 9): 49" in proc.stdout  # tiny_counted's, by hand above
    assert proc.stdout.strip().endswith("loaded: []"), proc.stdout


# --- the reference simulator's own machinery: batches, tuning overrides, the gate key (from test_semantics) --

def _gated_net(weight: Callable[[tuple[int, ...]], np.ndarray]) -> Network:
    from test_semantics import dense, network, pop
    h = pop("h", (2, 4, 3), 1, weight((2, 4, 3)))
    g = Gate("g", "h", (1, 2, 3), (2, 2), (2, 2), ((0, 0), (0, 0)), 1.0, 1)
    o = pop("o", (3,), 2, 0.0)
    return network([h, g, o], [Projection("x", "h", dense(weight((6, 24)), (2, 4, 3))),
                               Projection("g", "o", dense(weight((6, 3)), None, 6))], "o", (6,))


def test_results_are_deterministic_and_independent_of_batch_size() -> None:
    """Bit for bit, on any CPU: every compiled call has the same rows whatever the batch (simulator.plan)."""
    rng = np.random.default_rng(5)
    net = _gated_net(lambda shape: rng.normal(0, 0.5, shape).astype(np.float32))
    x = rng.uniform(0, 1, (9, 6)).astype(np.float32)
    first = simulate(net, x, steps=33)
    for kwargs in ({}, {"batch": 2}, {"batch": 1}, {"batch": 9}):
        again = simulate(net, x, steps=33, **kwargs)
        assert first.keys() == again.keys()
        for k in first:
            np.testing.assert_array_equal(first[k], again[k], err_msg=f"{k} with {kwargs}")
    alone = simulate(net, x[4:5], steps=33)  # a sample gives the same result in any company
    np.testing.assert_array_equal(alone["output_v"][0], first["output_v"][4])


def test_group_and_chunk_overrides_change_nothing_but_rounding() -> None:
    """The tuning overrides change the rows per call, hence possibly the summation order of a matrix
    product; with weights and inputs whose sums are exact in float32 every order gives the same bits."""
    rng = np.random.default_rng(5)
    net = _gated_net(lambda shape: (rng.integers(-16, 17, shape) / 64).astype(np.float32))
    x = (rng.integers(0, 17, (9, 6)) / 16).astype(np.float32)
    first = simulate(net, x, steps=33)
    for kwargs in ({"batch": 9, "group": 9, "chunk_steps": 1}, {"batch": 4, "group": 2, "chunk_steps": 33},
                   {"group": 1, "chunk_steps": 7}):
        again = simulate(net, x, steps=33, **kwargs)
        for k in first:
            np.testing.assert_array_equal(first[k], again[k], err_msg=f"{k} with {kwargs}")


def test_poisson_sample_indices_run_on_across_batches() -> None:
    """Sample i draws runtime.poisson_input(x_i, seed, i, T) whichever batch it falls in."""
    from test_semantics import dense, network, pop
    T, seed, n = 25, 3, 5
    net = network([pop("out", (n,), 1, 0.0)], [Projection("x", "out", dense(np.eye(n)))], "out", (n,),
                  encoding="poisson")
    x = np.random.default_rng(0).uniform(-0.2, 1.2, (7, n)).astype(np.float32)
    r = simulate(net, x, steps=T, seed=seed, batch=3)
    for i in range(len(x)):
        np.testing.assert_array_equal(r["output_steps"][i], runtime.poisson_input(x[i], seed, i, T))


def test_gate_tie_break_holds_beyond_the_exact_single_key() -> None:
    """At T·(T+1) >= 2**24 the simulator compares (count, since) pairs instead of one float32 key."""
    from test_semantics import tie_net
    T = 4100
    for first in ("a", "b"):
        r = simulate(*tie_net(first), steps=T)
        assert r["gate_counts_0"][0, 0] == T // 2, first
