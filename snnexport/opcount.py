"""Operation counts of the paper's §2.3, from a network description and any simulator's results file.

The ANN needs ``Σ_l (2·f_in,l + 1)·n_l`` operations per frame (Eq. 9: a multiply and an add per
synapse, one bias add per neuron); the SNN needs one synaptic operation per spike and target
synapse (Eq. 10: ``Σ_t Σ_l f_out,l · s_l(t)``). Both need the exact number of synapses of every
neuron, borders and strides included. Those are counted here once, for every consumer, from
the same synapses :mod:`snnexport.scriptlib.connectivity` expands (zero weights are no synapses); the
results file (docs/semantics.md) is the same whichever simulator wrote it, so one function
counts the SNN's operations for all of them.

Counting is exact and cheap: a projection whose op chain holds at most one op that mixes
neurons (a convolution, dense layer or average pooling; padding, reshapes, concatenation
slots and per-channel scales only move or scale them) has exactly one path per synapse, so
its per-neuron fan-in is the chain applied to ones with every weight replaced by ``w != 0``,
and its fan-out is the transpose of that chain applied to ones. No synapse list is built, which
keeps a VGG16 countable. Chains with two mixing ops (paths can merge, weights can cancel) are
counted from the expanded synapse list of :meth:`Network.synapses`.

Each op class registers how it is counted with :func:`counts` (every op kind a projection may
hold has an entry: tests/test_registries.py). numpy only: ``snnexport info`` imports no JAX.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .scriptlib import runtime
from .errors import SnnexportError
from .network import Gate, Network, Projection
from .ops import Affine, AvgPool, Conv2D, ConvTranspose, Dense, Embed, Op, Pad, Reshape, Scale, Transpose
from .op_table import OpTable

Shape = tuple[int, ...]
Map = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Indicator:
    """An op's synapses as a linear map on (1, *shape) float32 arrays: entry 1 per synapse (weight ≠ 0)."""
    forward: Map  # (1, *in) → (1, *out): A·x
    transpose: Map  # (1, *out) → (1, *in): Aᵀ·y


@dataclass(frozen=True)
class Counting:
    mixing: bool  # connects a neuron to several (at most one such op in a chain counted without synapse lists)
    indicator: Callable[[Op, Shape], Indicator]


COUNTING = OpTable("cannot be part of a projection")


def counts(cls: type[Op], *, mixing: bool) -> Callable[[Callable[[Op, Shape], Indicator]], Callable]:
    """Register the decorated ``f(op, in_shape) -> Indicator`` as how op class ``cls`` is counted."""
    return COUNTING.add(cls, make=lambda fn: Counting(mixing, fn))


def _nonzero(a: np.ndarray) -> np.ndarray:
    return (np.asarray(a) != 0).astype(np.float32)


@counts(Dense, mixing=True)
def _dense(op: Dense, in_shape: Shape) -> Indicator:
    m = _nonzero(op.weight)
    return Indicator(lambda x: np.tensordot(x, m, axes=([x.ndim - 1], [0])),
                     lambda y: np.tensordot(y, m, axes=([y.ndim - 1], [1])))


def _grouped(a: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(P, g, i) × (i, g, o) → (P, g, o): one product per group (one BLAS call when g = 1)."""
    if a.shape[1] == 1:
        return (a[:, 0] @ k[:, 0])[:, None]
    return np.einsum("pgi,igo->pgo", a, k)


def _conv_indicator(k: np.ndarray, strides: tuple[int, int], padding, dilation: tuple[int, int], groups: int,
                    in_shape: Shape) -> Indicator:
    """A grouped, strided, dilated, padded convolution with 0/1 kernel ``k`` (kh, kw, cin/groups, cout):
    one matrix product per kernel cell on strided slices (the adjoint scatters them back)."""
    (pt, pb), (pl, pr) = padding
    (sh, sw), (dh, dw) = strides, dilation
    h, w, cin = in_shape
    kh, kw, cig, cout = k.shape
    ho = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    wo = (w + pl + pr - (kw - 1) * dw - 1) // sw + 1
    g, cog = groups, cout // groups
    cells = [(np.s_[:, ky * dh:ky * dh + (ho - 1) * sh + 1:sh, kx * dw:kx * dw + (wo - 1) * sw + 1:sw],
              k[ky, kx].reshape(cig, g, cog)) for ky in range(kh) for kx in range(kw)]

    def forward(x: np.ndarray) -> np.ndarray:
        xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
        y = np.zeros((ho * wo, g, cog), np.float32)
        for sl, kk in cells:
            y += _grouped(xp[sl].reshape(ho * wo, g, cig), kk)
        return y.reshape(1, ho, wo, cout)

    def transpose(y: np.ndarray) -> np.ndarray:
        xp = np.zeros((1, h + pt + pb, w + pl + pr, cin), np.float32)
        y = y.reshape(ho * wo, g, cog)
        for sl, kk in cells:
            xp[sl] += _grouped(y, kk.transpose(2, 1, 0)).reshape(1, ho, wo, cin)
        return xp[:, pt:pt + h, pl:pl + w]

    return Indicator(forward, transpose)


@counts(Conv2D, mixing=True)
def _conv2d(op: Conv2D, in_shape: Shape) -> Indicator:
    return _conv_indicator(_nonzero(op.kernel), tuple(op.strides), op.padding, tuple(op.dilation), int(op.groups),
                           in_shape)


@counts(ConvTranspose, mixing=True)
def _conv_transpose(op: ConvTranspose, in_shape: Shape) -> Indicator:
    """The op itself with a 0/1 kernel; its adjoint gathers, per kernel cell, the strided slice of the
    uncropped output that the cell reached (the forward scatter read backwards)."""
    k = _nonzero(op.kernel)
    ind = replace(op, kernel=k, bias=None)
    h, w, cin = in_shape
    kh, kw, cig, cout = k.shape
    (sh, sw), (dh, dw), g = op.strides, op.dilation, op.groups
    (ct, cb), (cl, cr) = op.crop
    ho, wo, _ = ind.output_shape(in_shape)
    full_h, full_w = (h - 1) * sh + (kh - 1) * dh + 1, (w - 1) * sw + (kw - 1) * dw + 1

    def transpose(y: np.ndarray) -> np.ndarray:
        # y back in the uncropped output, extended as in ConvTranspose.forward; then per cell its strided slice
        full = np.zeros((full_h + max(-ct, 0) + max(-cb, 0), full_w + max(-cl, 0) + max(-cr, 0), g, cout // g),
                        np.float32)
        full[max(ct, 0):max(ct, 0) + ho, max(cl, 0):max(cl, 0) + wo] = y.reshape(ho, wo, g, cout // g)
        oy, ox = max(-ct, 0), max(-cl, 0)
        x = np.zeros((h * w, g, cig), np.float32)
        for ky in range(kh):
            for kx in range(kw):
                y0, x0 = oy + ky * dh, ox + kx * dw
                sl = full[y0:y0 + (h - 1) * sh + 1:sh, x0:x0 + (w - 1) * sw + 1:sw]
                x += _grouped(sl.reshape(h * w, g, cout // g), k[ky, kx].reshape(cig, g, cout // g).transpose(2, 1, 0))
        return x.reshape(1, h, w, cin)

    return Indicator(ind.forward, transpose)


@counts(Transpose, mixing=False)
def _transpose(op: Transpose, in_shape: Shape) -> Indicator:
    inverse = tuple(int(i) + 1 for i in np.argsort(op.axes))
    return Indicator(op.forward, lambda y: y.transpose((0,) + inverse))


@counts(AvgPool, mixing=True)
def _avgpool(op: AvgPool, in_shape: Shape) -> Indicator:
    """A sum over the real cells of each window: a depthwise convolution of ones."""
    c = in_shape[-1]
    return _conv_indicator(np.ones(tuple(op.pool) + (1, c), np.float32), tuple(op.strides), op.padding, (1, 1), c,
                           in_shape)


@counts(Pad, mixing=False)
def _pad(op: Pad, in_shape: Shape) -> Indicator:
    (t, b), (l, r) = op.padding
    h, w = in_shape[0], in_shape[1]
    return Indicator(lambda x: np.pad(x, ((0, 0), (t, b), (l, r), (0, 0))), lambda y: y[:, t:t + h, l:l + w])


@counts(Reshape, mixing=False)
def _reshape(op: Reshape, in_shape: Shape) -> Indicator:
    return Indicator(lambda x: x.reshape((1,) + tuple(op.shape)), lambda y: y.reshape((1,) + tuple(in_shape)))


@counts(Affine, mixing=False)
def _affine(op: Affine, in_shape: Shape) -> Indicator:
    m = _nonzero(op.scale)
    return Indicator(lambda x: x * m, lambda y: y * m)


@counts(Scale, mixing=False)
def _scale(op: Scale, in_shape: Shape) -> Indicator:
    f = np.float32(op.factor != 0)
    return Indicator(lambda x: x * f, lambda y: y * f)


@counts(Embed, mixing=False)
def _embed(op: Embed, in_shape: Shape) -> Indicator:
    axis = int(op.axis) + 1
    size = in_shape[axis - 1]
    pad = [(0, 0)] * (len(in_shape) + 1)
    pad[axis] = (op.offset, op.total - op.offset - size)
    keep = tuple(slice(None) if i != axis else slice(op.offset, op.offset + size) for i in range(len(pad)))
    return Indicator(lambda x: np.pad(x, pad), lambda y: y[keep])


def projection_degrees(net: Network, proj: Projection) -> tuple[np.ndarray, np.ndarray]:
    """(fan-in per target neuron, fan-out per source neuron) of one projection, int64, flat."""
    src_shape = tuple(net.shape_of(proj.source))
    n_src, n_tgt = net.size_of(proj.source), net.size_of(proj.target)
    if sum(COUNTING.of(op).mixing for op in proj.ops) > 1:
        pre, post, _ = net.synapses(proj)
        return (np.bincount(post, minlength=n_tgt).astype(np.int64),
                np.bincount(pre, minlength=n_src).astype(np.int64))
    maps, shape = [], src_shape
    for op in proj.ops:
        maps.append(COUNTING.of(op).indicator(op, shape))
        shape = tuple(op.output_shape(shape))
    y = np.ones((1,) + src_shape, np.float32)  # linear: y = A·1 (fan-in), Aᵀ·1 (fan-out)
    for m in maps:
        y = m.forward(y)
    back = np.ones_like(y)
    for m in reversed(maps):
        back = m.transpose(back)
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
      * ``decided`` (N,) float64, where the results hold ``decision_steps`` (early decision): the
        operations up to and including each sample's step of decision, ``per_step`` summed to it
        (so its spread over steps, for populations and gates, is an estimate; the total is exact).
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
    input_ops, steps_in = _input_ops(net, results, degrees, fo, x, seed)
    per_step = per_step + steps_in
    out = {"total": spiking + input_ops, "per_node": per_node, "input": input_ops,
           "per_step": per_step, "ann": ann_ops(net, degrees)}
    if "decision_steps" in results:  # early decision: the operations stop at each sample's step of decision
        d = np.asarray(results["decision_steps"], np.int64).reshape(-1)
        out["decided"] = np.where(np.arange(1, steps + 1)[None, :] <= d[:, None], per_step, 0.0).sum(axis=1)
    return out


def _input_ops(net: Network, results: dict[str, np.ndarray], degrees: Degrees, fo: dict[str, np.ndarray],
               x: np.ndarray | None, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The input's operations: per sample (N,) int64, and per sample and step (N, T) float64 (see :func:`snn_ops`)."""
    sps = np.asarray(results["spikes_per_step"])
    n_samples, steps = sps.shape[0], sps.shape[1]
    inp = net.input.name
    steps_in = np.zeros((n_samples, steps))
    if net.input.encoding == "poisson":
        if x is None:
            raise SnnexportError("Poisson input: pass the samples (x) to count the input spikes' operations")
        if seed is None:
            meta = results.get("meta")
            seed = int(meta["seed"]) if isinstance(meta, dict) and "seed" in meta else int(net.settings.seed)
        x = runtime.coerce_samples(x, net.input.shape, "samples")
        if len(x) != n_samples:
            raise SnnexportError(f"{len(x)} samples given for {n_samples} results")
        for i in range(n_samples):
            u = runtime.poisson_input(x[i], int(seed), i, steps).reshape(steps, -1)
            steps_in[i] = u @ fo[inp].astype(np.float64)
        return np.rint(steps_in.sum(axis=1)).astype(np.int64), steps_in
    fed = {}  # analog input: its synapses' ANN operations, once per sample, in step 1
    for p, (fin, _) in zip(net.projections, degrees):
        if p.source == inp:
            fed[p.target] = fed.get(p.target, 0) + 2 * int(fin.sum())
    cost = sum(v + net.size_of(t) for t, v in fed.items())
    if steps:
        steps_in[:, 0] = cost
    return np.full(n_samples, cost, np.int64), steps_in
