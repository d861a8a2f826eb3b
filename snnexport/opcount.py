"""Operation counts of the paper's §2.3, from a network description and any simulator's results file.

The ANN needs ``Σ_l (2·f_in,l + 1)·n_l`` operations per frame (Eq. 9: a multiply and an add per
synapse, one bias add per neuron); the SNN needs one synaptic operation per spike and target
synapse (Eq. 10: ``Σ_t Σ_l f_out,l · s_l(t)``). Both need the exact number of synapses of every
neuron, borders and strides included. Those are counted here once, for every consumer, from
the same synapses :mod:`snnexport.connectivity` expands (zero weights are no synapses); the
results file (docs/semantics.md) is the same whichever simulator wrote it, so one function
counts the SNN's operations for all of them.

Counting is exact and cheap: a projection whose op chain holds at most one op that mixes
neurons (a convolution, dense layer or average pooling; padding, reshapes, concatenation
slots and per-channel scales only move or scale them) has exactly one path per synapse, so
its per-neuron fan-in is the chain applied to ones with every weight replaced by ``w != 0``,
and its fan-out is the transpose of that (one vector-Jacobian product). No synapse list is
built, which keeps a VGG16 countable. Chains with two mixing ops (paths can merge, weights can
cancel) are counted from the expanded synapse list of :meth:`Network.synapses`.
"""

from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np

from .scriptlib import runtime
from .errors import SnnexportError
from .network import Gate, Network, Projection
from .ops import AvgPool, Conv2D, Op
from .simulator import chain

_MIXING = ("conv2d", "dense", "avgpool")


def _indicator(op: Op, in_shape: tuple[int, ...]) -> Op:
    """The op with every weight replaced by 1 where it is non-zero (a synapse) and 0 elsewhere."""
    if op.kind == "conv2d":
        return replace(op, kernel=(np.asarray(op.kernel) != 0).astype(np.float32), bias=None)
    if op.kind == "dense":
        return replace(op, weight=(np.asarray(op.weight) != 0).astype(np.float32), bias=None)
    if op.kind == "affine":
        return replace(op, scale=(np.asarray(op.scale) != 0).astype(np.float32), offset=None)
    if op.kind == "scale":
        return replace(op, factor=float(op.factor != 0))
    if isinstance(op, AvgPool):  # a sum over the real cells of each window: a depthwise conv of ones
        c = in_shape[-1]
        return Conv2D(np.ones(tuple(op.pool) + (1, c), np.float32), None, tuple(op.strides),
                      tuple(map(tuple, op.padding)), (1, 1), c)
    return op


def projection_degrees(net: Network, proj: Projection) -> tuple[np.ndarray, np.ndarray]:
    """(fan-in per target neuron, fan-out per source neuron) of one projection, int64, flat."""
    src_shape = tuple(net.shape_of(proj.source))
    n_src, n_tgt = net.size_of(proj.source), net.size_of(proj.target)
    if sum(op.kind in _MIXING for op in proj.ops) > 1:
        pre, post, _ = net.synapses(proj)
        return (np.bincount(post, minlength=n_tgt).astype(np.int64),
                np.bincount(pre, minlength=n_src).astype(np.int64))
    ops, shape = [], src_shape
    for op in proj.ops:
        ops.append(_indicator(op, shape))
        shape = tuple(op.output_shape(shape))
    f, arrays, _ = chain(ops, src_shape)
    params = [jnp.asarray(a) for a in arrays]
    ones = jnp.ones((1,) + src_shape, jnp.float32)
    y, vjp = jax.vjp(lambda x: f(params, x), ones)  # linear: y = A·1 (fan-in), Aᵀ·1 (fan-out)
    (back,) = vjp(jnp.ones_like(y))
    fan_in = np.rint(np.asarray(y, np.float64)).astype(np.int64).reshape(-1)
    fan_out = np.rint(np.asarray(back, np.float64)).astype(np.int64).reshape(-1)
    if fan_in.size != n_tgt or fan_out.size != n_src:
        raise SnnexportError(f"projection {proj.source!r} → {proj.target!r} does not match its populations")
    return fan_in, fan_out


Degrees = list[tuple[np.ndarray, np.ndarray]]  # (fan-in, fan-out) per projection, in network order


def all_degrees(net: Network) -> Degrees:
    """Per projection, the exact (fan-in, fan-out) arrays; pass them on to avoid recounting."""
    return [projection_degrees(net, p) for p in net.projections]


def fan_ins(net: Network, degrees: Degrees | None = None) -> dict[str, np.ndarray]:
    """Exact per-neuron fan-in (synapses into each neuron, flat) of every population."""
    out = {p.name: np.zeros(p.bias.size, np.int64) for p in net.populations}
    for p, (fin, _) in zip(net.projections, degrees or all_degrees(net)):
        out[p.target] += fin
    return out


def fanouts(net: Network, degrees: Degrees | None = None) -> dict[str, np.ndarray]:
    """Exact per-neuron fan-out (synapses out of each neuron, flat) of the input, every population and gate.

    A population's fan-out counts its own projections only: spikes it sends through a gate are
    the gate's, counted with the gate's fan-out (docs/semantics.md, "Operation counts").
    """
    out = {net.input.name: np.zeros(net.size_of(net.input.name), np.int64)}
    for n in net.nodes:
        out[n.name] = np.zeros(net.size_of(n.name), np.int64)
    for p, (_, fout) in zip(net.projections, degrees or all_degrees(net)):
        out[p.source] += fout
    return out


def ann_ops(net: Network, degrees: Degrees | None = None) -> int:
    """ANN operations per frame, Eq. 9: Σ over populations of (2·f_in + 1) per neuron, f_in exact."""
    return int(sum(2 * int(f.sum()) + f.size for f in fan_ins(net, degrees).values()))


def snn_ops(net: Network, results: dict[str, np.ndarray], x: np.ndarray | None = None,
            seed: int | None = None) -> dict[str, object]:
    """SNN synaptic operations per sample (Eq. 10) from a results file's arrays (any simulator).

    Returns a dict of
      * ``total`` (N,) int64: Σ over populations and gates of |spike count| × fan-out, per neuron,
        plus the input's share: for analog input the ANN operations of the input's synapses,
        once per sample (2 per synapse and 1 per neuron fed, as Eq. 9: the current is constant);
        for Poisson input its spikes × fan-out, regenerated from ``x`` and ``seed``
        (``runtime.poisson_input``'s draws; ``seed`` defaults to the results' meta).
      * ``per_node`` {name: (N,) int64} and ``input`` (N,) int64: the parts of ``total``.
      * ``per_step`` (N, T) float64: operations in each step. The results file has spikes per
        step per population but per neuron only in total, so each population's step counts are
        weighted by its mean fan-out, a gate's operations are spread over the steps like the
        spikes of the population it gates, and each sample's spiking part is then rescaled to
        sum exactly to its spiking total. The analog input's operations fall on step 1; Poisson
        input is exact per step. ``per_step.sum(axis=1) == total``; cumsum for ops-versus-time.
      * ``ann`` int: :func:`ann_ops`, for the ratio SNN/ANN.
    For 'sign' populations the file holds net counts (+1 − 1), so their |count| is a lower bound.
    """
    names = [str(s) for s in np.asarray(results["population_names"]).reshape(-1)]
    gate_names = [str(s) for s in np.asarray(results.get("gate_names", np.array([], str))).reshape(-1)]
    pops = net.populations
    if names != [p.name for p in pops]:
        raise SnnexportError("the results file's populations do not match this network")
    gates = [g for g in net.nodes if isinstance(g, Gate)]
    if gate_names != [g.name for g in gates]:
        raise SnnexportError("the results file's gates do not match this network")
    degrees = all_degrees(net)
    fo = fanouts(net, degrees)
    sps = np.asarray(results["spikes_per_step"], np.float64)  # (N, T, P)
    n_samples, steps = sps.shape[0], sps.shape[1]
    per_node: dict[str, np.ndarray] = {}
    raw = np.zeros((n_samples, steps))
    for k, p in enumerate(pops):
        c = np.abs(np.asarray(results[f"counts_{k}"], np.int64))
        per_node[p.name] = c @ fo[p.name]
        raw += sps[:, :, k] * (fo[p.name].mean() if fo[p.name].size else 0.0)
    root = {}
    for k, g in enumerate(gates):
        root[g.name] = root.get(g.source, g.source)
        c = np.abs(np.asarray(results[f"gate_counts_{k}"], np.int64))
        per_node[g.name] = c @ fo[g.name]
        # the gate passes some of its root population's spikes: spread like them over time
        r = sps[:, :, names.index(root[g.name])]
        total = r.sum(axis=1, keepdims=True)
        share = np.divide(r, total, out=np.zeros_like(r), where=total > 0)
        raw += share * per_node[g.name][:, None]
    spiking = sum(per_node.values(), np.zeros(n_samples, np.int64))
    sums = raw.sum(axis=1)
    per_step = raw * np.divide(spiking, sums, out=np.zeros(n_samples), where=sums > 0)[:, None]
    inp = net.input.name
    if net.input.encoding == "poisson":
        if x is None:
            raise SnnexportError("Poisson input: pass the samples (x) to count the input spikes' operations")
        if seed is None:
            meta = results.get("meta")
            seed = int(meta["seed"]) if isinstance(meta, dict) and "seed" in meta else int(net.settings.seed)
        x = runtime.coerce_samples(x, net.input.shape, "samples")
        if len(x) != n_samples:
            raise SnnexportError(f"{len(x)} samples given for {n_samples} results")
        steps_in = np.zeros((n_samples, steps))
        for i in range(n_samples):
            u = runtime.poisson_input(x[i], int(seed), i, steps).reshape(steps, -1)
            steps_in[i] = u @ fo[inp].astype(np.float64)
        input_ops = np.rint(steps_in.sum(axis=1)).astype(np.int64)
        per_step = per_step + steps_in
    else:
        fed = {}
        for p, (fin, _) in zip(net.projections, degrees):
            if p.source == inp:
                fed[p.target] = fed.get(p.target, 0) + 2 * int(fin.sum())
        cost = sum(v + net.size_of(t) for t, v in fed.items())
        input_ops = np.full(n_samples, cost, np.int64)
        if steps:
            per_step[:, 0] += cost
    return {"total": spiking + input_ops, "per_node": per_node, "input": input_ops,
            "per_step": per_step, "ann": ann_ops(net, degrees)}
