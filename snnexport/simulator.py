"""The reference simulator: docs/semantics.md, vectorized over samples and time, compiled with JAX.

How it works
------------
The network is feed-forward and every population sees its sources one step late ("step" delay,
as every exported script) or in the same step ("zero", the paper's zero latency). Either way,
once a population's sources have been simulated over a stretch of steps, its input current over
that whole stretch is known. So time is cut into chunks of Tc steps and, chunk by chunk, every
population is simulated in topological order: its current for the chunk comes from one call
per projection on ``group × Tc`` rows (time folded into the batch), then the integrate-and-fire
recurrence runs over the Tc steps element-wise. Tc = 1 is the plain scan over steps; Tc = T folds
a sample's whole run into one call per projection. A max-pool gate is evaluated inside the step
of the population it gates (it needs that step's spikes and running counts); a population with
one gate whose windows tile it is stored window-major, and the convolution feeding it writes
its output in that order directly (one strided convolution per window cell). The analog
input's current is computed once per sample. One jitted ``lax.scan`` over chunks simulates a
group of samples, ``lax.map`` runs the groups of a call, and on a CPU the calls of a run go to
one thread per core (independent samples; JAX runs concurrent calls in parallel).

What was measured (development machine: 2 shared cores, JAX 0.10.2 CPU; all per row or per
sample-step, CPU time; ``benchmarks/simulator_throughput.py --detail`` repeats the main ones)
-----------------------------------------------------------------------------------------------
* JAX versus numpy. LeNet's second convolution (16→32, 5×5 on 12×12 binary spikes):
  ``lax.conv_general_dilated`` 10–14 µs per row at 10–100 rows per call, 23 µs at 200, 45–110 µs
  at 400–1,000 (out of cache); numpy 80–1,600 µs (im2col + matmul; 1,000 µs ``ops.Conv2D``'s
  einsum). im2col, shifted matmuls and ``conv_general_dilated_patches`` in JAX were 2–5× slower
  than the native convolution. The neuron update alone (9,216 neurons: add, compare, subtract)
  was 4–5 µs in numpy and 2.5–9 µs in a jitted scan, so the element-wise part gave no reason to
  leave JAX either: everything runs in JAX, and the same program runs on a GPU.
* Fold versus scan, the bundled LeNet at T = 100 (CPU µs per sample-step): batch 1 — scan
  (Tc = 1) 39–43, fold Tc = 10 29–31, Tc = 25 27–36, full fold Tc = 100 34–36; batch 100 —
  scan (group 100, Tc = 1) 42–47, group 10 × Tc 10 37–42, group 2 × Tc 10 27–34, group 1 × Tc 25
  27–28, group 1 × Tc 100 29–34. A population's state over a chunk must stay in cache: the first
  layer's update (9,216 neurons and its gate) cost 6 µs per sample-step at 1 sample, 11 at 10
  and 16 at 100. Hence :func:`plan`: rows = group × Tc limited so that the largest population's
  state over a chunk stays under :data:`CPU_BYTES`, about :data:`CPU_STEPS` steps per chunk.
* Gates: comparing window cells stored contiguously was 2.3–2.6× faster than strided slices of
  the natural layout; running counts carried through the steps beat ``cumsum`` over a chunk
  (7× slower at Tc = 100, where it is an ``associative_scan``).
* Against T ANN forward passes of the same batch (same JAX ops, ``ann_program``): CPU-time ratio
  0.2 at batch 1, 0.7–0.8 at batch 100, 0.5–0.7 at batch 1,000 (the benchmark prints wall too;
  on a shared machine the wall clock mostly measures the neighbours).
On a GPU the row budget is :data:`GPU_ROWS` (large calls are what GPUs want), without threads.

Numbers
-------
Spikes, currents and the membrane potential are float32 (JAX's default; no x64 mode);
convolutions and matmuls ask for ``Precision.HIGHEST`` so that a GPU does not drop to TF32.
In one step the current is ``(bias + Σ analog input projections) + Σ spiking projections``
(in projection order), then ``V ← V + I``. A simulator that sums the same float32 numbers in
another order can differ where V lands within rounding of θ: rare (the tests compare with a
literal step-by-step numpy reading of the semantics). Spike counts are carried as float32, exact
below 2**24 steps. For the same inputs and settings the results are the same bit for bit
whatever the batch size and however many samples a run holds: every compiled call has the same
number of rows, fixed by :func:`plan` from the network alone (tested). The tuning overrides
``group`` and ``chunk_steps`` change that row count, and a matrix product may then round its last
bit differently on some CPUs (the back-end allowance of docs/semantics.md); with exactly
representable sums they change nothing (tested).
"""

from __future__ import annotations

import os
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import __version__
from .scriptlib import runtime
from .errors import SnnexportError
from .network import Gate, Network, Population, Projection
from .network import check_network
from .ops import Op

CPU_BYTES = 2 ** 20  # on a CPU, a population's state over one chunk (group × Tc rows) stays under this
CPU_MAX_ROWS = 256  # and a projection call has at most this many rows
CPU_STEPS = 10  # steps per chunk that a group aims at
GPU_ROWS = 4096  # rows per call on an accelerator
GPU_STEPS = 16  # steps per chunk on an accelerator (so 256 samples per group)
_HIGHEST = lax.Precision.HIGHEST
_DELAYS = ("step", "zero")
_READOUTS = ("count", "membrane", "softmax")


# --- linear op chains in JAX ---------------------------------------------------------------------

Chain = Callable[[list[jax.Array], jax.Array], jax.Array]


def _op_arrays(op: Op) -> list[np.ndarray]:
    """The weight arrays an op needs at run time (passed to the jitted program as arguments)."""
    if op.kind == "dense":
        return [np.asarray(op.weight, np.float32)]
    if op.kind == "conv2d":
        return [np.asarray(op.kernel, np.float32)]
    if op.kind == "affine":
        return [np.asarray(op.scale, np.float32)]
    return []


def _op_fn(op: Op, in_shape: tuple[int, ...]) -> tuple[Callable[..., jax.Array], tuple[int, ...]]:
    """fn(x, *arrays) for a batch x of shape (rows, *in_shape); constant terms are ignored (they are biases)."""
    out_shape = tuple(op.output_shape(tuple(in_shape)))
    kind = op.kind
    if kind == "dense":
        def fn(x, w):
            return jnp.tensordot(x, w, axes=([x.ndim - 1], [0]), precision=_HIGHEST)
    elif kind == "conv2d":
        strides, padding = tuple(op.strides), tuple(tuple(p) for p in op.padding)
        dilation, groups = tuple(op.dilation), int(op.groups)

        def fn(x, k):
            return lax.conv_general_dilated(x, k, strides, padding, rhs_dilation=dilation,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            feature_group_count=groups, precision=_HIGHEST)
    elif kind == "avgpool":
        (ph, pw), (sh, sw) = op.pool, op.strides
        pad = ((0, 0),) + tuple(tuple(p) for p in op.padding) + ((0, 0),)
        divisor = jnp.asarray(op.divisor(in_shape)[None, :, :, None], jnp.float32)

        def fn(x):
            s = lax.reduce_window(x, np.float32(0), lax.add, (1, ph, pw, 1), (1, sh, sw, 1), pad)
            return s / divisor
    elif kind == "pad":
        pad = ((0, 0),) + tuple(tuple(p) for p in op.padding) + ((0, 0),)

        def fn(x):
            return jnp.pad(x, pad)
    elif kind == "reshape":
        def fn(x):
            return x.reshape((x.shape[0],) + out_shape)
    elif kind == "affine":
        def fn(x, scale):
            return x * scale
    elif kind == "scale":
        factor = np.float32(op.factor)

        def fn(x):
            return x * factor
    elif kind == "embed":
        axis, offset, total = int(op.axis), int(op.offset), int(op.total)

        def fn(x):
            pad = [(0, 0)] * x.ndim
            pad[axis + 1] = (offset, total - offset - x.shape[axis + 1])
            return jnp.pad(x, pad)
    else:
        raise SnnexportError(f"op {kind!r} cannot be part of a projection")
    return fn, out_shape


def chain(ops: list[Op], in_shape: tuple[int, ...], blocks: "_Layout | None" = None
          ) -> tuple[Chain, list[np.ndarray], tuple[int, ...]]:
    """A projection's op chain as one function ``f(arrays, x)`` on a batch (rows, *in_shape).

    Returns (f, arrays, out_shape); ``arrays`` are the weights f expects, in order. With
    ``blocks``, f returns its output flat in that window-major layout (see :class:`_Layout`).
    """
    fns: list[tuple[Callable[..., jax.Array], int, int]] = []
    arrays: list[np.ndarray] = []
    shape = tuple(in_shape)
    for i, op in enumerate(ops):
        last = i == len(ops) - 1
        if last and blocks is not None and op.kind == "conv2d":
            fn, shape = blocks.conv(op, shape), tuple(op.output_shape(shape))
        else:
            fn, shape = _op_fn(op, shape)
            if last and blocks is not None:
                fn = (lambda g: lambda x, *a: blocks.to_blocks(g(x, *a)))(fn)
        a = _op_arrays(op)
        fns.append((fn, len(arrays), len(a)))
        arrays += a
    if not ops and blocks is not None:
        fns.append((blocks.to_blocks, 0, 0))

    def f(params: list[jax.Array], x: jax.Array) -> jax.Array:
        for fn, start, count in fns:
            x = fn(x, *params[start:start + count])
        return x

    return f, arrays, shape


# --- the compiled programs -------------------------------------------------------------------------

def _signature(net: Network) -> tuple:
    """Everything about a network's structure that the compiled code depends on (not its weights)."""
    def plain(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return ("array", v.shape, str(v.dtype))
        if isinstance(v, (list, tuple)):
            return tuple(plain(i) for i in v)
        return v

    nodes = []
    for n in net.nodes:
        if isinstance(n, Population):
            nodes.append(("pop", n.name, tuple(n.shape), n.activation, n.depth, n.max_value))
        else:
            nodes.append(("gate", n.name, n.source, tuple(n.shape), tuple(n.pool), tuple(n.strides),
                          plain(n.padding)))
    projs = tuple((p.source, p.target, tuple((op.kind, tuple(sorted((k, plain(v)) for k, v in op.params().items())))
                                             for op in p.ops)) for p in net.projections)
    return (net.input.name, tuple(net.input.shape), net.input.encoding, tuple(nodes), projs, net.output,
            float(net.neuron.threshold), net.neuron.reset)


def _skeleton(net: Network) -> Network:
    """The network with every array replaced by a zero-strided view of its shape.

    Compiled programs are cached by structure and take the weights as arguments; what they keep
    of the network must not keep its weights alive (a VGG16 holds half a gigabyte).
    """
    def hollow(v: Any) -> Any:
        return np.broadcast_to(np.zeros((), v.dtype), v.shape) if isinstance(v, np.ndarray) else v

    nodes = [replace(n, bias=hollow(n.bias)) if isinstance(n, Population) else n for n in net.nodes]
    projs = [Projection(p.source, p.target, [replace(op, **{k: hollow(v) for k, v in op.params().items()
                                                              if isinstance(v, np.ndarray)}) for op in p.ops])
             for p in net.projections]
    return Network(net.input, nodes, projs, net.output, net.neuron, net.settings)


def _params(net: Network) -> dict[str, list]:
    """The arrays the compiled programs take as arguments: biases and projection weights."""
    return {"bias": [np.asarray(p.bias, np.float32).reshape(-1) for p in net.populations],
            "proj": [chain(p.ops, net.shape_of(p.source))[1] for p in net.projections]}


_CACHE: OrderedDict[tuple, Callable] = OrderedDict()
_CACHE_SIZE = 32


def _cached(key: tuple, build: Callable[[], Callable]) -> Callable:
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    fn = build()
    _CACHE[key] = fn
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return fn


def _gate_fn(gate: Gate) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """g(counts, since, spikes) on (rows, H, W, C) → spikes passed, (rows, Ho, Wo, C); any pool, stride, padding.

    ``since`` is the step at which each count last changed. Window positions are visited in
    row-major (ky, kx) order and a later cell replaces the best so far only with a larger count, or
    an equal count reached earlier: remaining ties go to the first cell. Padded cells count −∞, so
    they never win. No gathers: strided slices and selects, which fuse.
    """
    (ph, pw), (sh, sw) = gate.pool, gate.strides
    pad = ((0, 0),) + tuple(tuple(p) for p in gate.padding) + ((0, 0),)
    ho, wo = int(gate.shape[0]), int(gate.shape[1])

    def g(counts: jax.Array, since: jax.Array, spikes: jax.Array) -> jax.Array:
        if any(p != (0, 0) for p in pad):
            counts = jnp.pad(counts, pad, constant_values=-np.inf)
            since = None if since is None else jnp.pad(since, pad)
            spikes = jnp.pad(spikes, pad)
        return _first_max([(counts[sl], None if since is None else since[sl], spikes[sl]) for sl in (
            (slice(None), slice(ky, ky + (ho - 1) * sh + 1, sh), slice(kx, kx + (wo - 1) * sw + 1, sw))
            for ky in range(ph) for kx in range(pw))])

    return g


def _first_max(cells: list[tuple[jax.Array, jax.Array | None, jax.Array]]) -> jax.Array:
    """The spikes of the winning cell: largest count, then earliest to reach it, then first in window order.

    With ``since`` None the counts are already keys that order both (see _gate_key).
    """
    best_c, best_l, best_s = cells[0]
    for c, l, s in cells[1:]:
        if l is None:
            better = c > best_c
        else:
            better = (c > best_c) | ((c == best_c) & (l < best_l))
            best_l = jnp.where(better, l, best_l)
        best_c = jnp.where(better, c, best_c)
        best_s = jnp.where(better, s, best_s)
    return best_s


def _gate_key(steps: int) -> Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array | None]]:
    """(counts, since) → what the gates compare: count·(T+1) − since, one exact float32 key, while
    T·(T+1) < 2**24 (one compare instead of three: measured 28 % of LeNet's simulation time);
    beyond that the pair itself."""
    if steps * (steps + 1) < 2 ** 24:
        k = np.float32(steps + 1)
        return lambda c, l: (c * k - l, None)
    return lambda c, l: (c, l)


def _blocked(gate: Gate, src_shape: tuple[int, ...]) -> bool:
    """Whether the gate's windows tile its source exactly (no overlap, padding or remainder)."""
    h, w = src_shape[0], src_shape[1]
    return (len(src_shape) == 3 and tuple(gate.pool) == tuple(gate.strides)
            and all(tuple(p) == (0, 0) for p in gate.padding)
            and h % gate.pool[0] == 0 and w % gate.pool[1] == 0)


class _Layout:
    """A population stored window-major for its one gate: (rows, ph·pw, Ho·Wo·C) instead of (rows, H, W, C).

    Then the gate compares contiguous blocks, which vectorizes, where the strided slices of the
    natural layout do not (2.3–2.6× faster for LeNet's first layer and its gate).
    """

    def __init__(self, gate: Gate, shape: tuple[int, ...]):
        self.h, self.w, self.c = shape
        self.ph, self.pw = gate.pool
        self.ho, self.wo = self.h // self.ph, self.w // self.pw

    def to_blocks(self, x: jax.Array) -> jax.Array:
        r = x.shape[0]
        x = x.reshape(r, self.ho, self.ph, self.wo, self.pw, self.c).transpose(0, 2, 4, 1, 3, 5)
        return x.reshape(r, -1)

    def from_blocks(self, x: jax.Array) -> jax.Array:
        r = x.shape[0]
        x = x.reshape(r, self.ph, self.pw, self.ho, self.wo, self.c).transpose(0, 3, 1, 4, 2, 5)
        return x.reshape(r, -1)

    def conv(self, op: Op, in_shape: tuple[int, ...]) -> Callable[..., jax.Array]:
        """fn(x, kernel): the convolution ``op`` with its output written straight into the blocks.

        Window cell (ky, kx) of every pooling window is a convolution with ph·pw times the stride
        on a shifted input: the same arithmetic as the plain convolution, with no transposition
        afterwards (a transposed operand inside the integrate-and-fire step cost 2–10 µs per
        sample-step on LeNet's second layer).
        """
        (pt, pb), (pl, pr) = op.padding
        sh, sw = op.strides
        dh, dw = op.dilation
        kh, kw = op.kernel.shape[:2]
        rows = (self.ho - 1) * self.ph * sh + (kh - 1) * dh + 1
        cols = (self.wo - 1) * self.pw * sw + (kw - 1) * dw + 1
        groups = int(op.groups)

        def fn(x: jax.Array, k: jax.Array) -> jax.Array:
            if (pt, pb, pl, pr) != (0, 0, 0, 0):
                x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
            outs = [lax.conv_general_dilated(x[:, ky * sh:ky * sh + rows, kx * sw:kx * sw + cols], k,
                                             (self.ph * sh, self.pw * sw), ((0, 0), (0, 0)), rhs_dilation=(dh, dw),
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                             feature_group_count=groups, precision=_HIGHEST)
                    for ky in range(self.ph) for kx in range(self.pw)]
            return jnp.stack(outs, axis=1).reshape(x.shape[0], -1)

        return fn

    def gate(self, counts: jax.Array, since: jax.Array, spikes: jax.Array) -> jax.Array:
        r, k = counts.shape[0], self.ph * self.pw
        counts, spikes = counts.reshape(r, k, -1), spikes.reshape(r, k, -1)
        since = None if since is None else since.reshape(r, k, -1)
        return _first_max([(counts[:, j], None if since is None else since[:, j], spikes[:, j]) for j in range(k)])


def _maxpool_fn(gate: Gate) -> Callable[[jax.Array], jax.Array]:
    """The ANN's max-pooling for a gate; padded cells never win."""
    (ph, pw), (sh, sw) = gate.pool, gate.strides
    pad = ((0, 0),) + tuple(tuple(p) for p in gate.padding) + ((0, 0),)
    return lambda x: lax.reduce_window(x, -np.inf, lax.max, (1, ph, pw, 1), (1, sh, sw, 1), pad)


def _build_kernel(net: Network, group: int, tc: int, chunks: int, steps: int, delay: str, readout: str,
                  clamp: int) -> Callable:
    """The jitted simulation of one group of samples: params, x (B, *in), u (chunks, Tc, B, *in) or None."""
    pops = net.populations
    gates = [n for n in net.nodes if isinstance(n, Gate)]
    pop_index = {p.name: i for i, p in enumerate(pops)}
    gate_index = {g.name: i for i, g in enumerate(gates)}
    inp = net.input.name
    poisson = net.input.encoding == "poisson"
    if net.input.encoding not in ("analog", "poisson"):
        raise SnnexportError(f"unknown input encoding {net.input.encoding!r}")
    theta = np.float32(net.neuron.threshold)
    reset_zero = net.neuron.reset == "zero"
    if net.neuron.reset not in ("subtract", "zero"):
        raise SnnexportError(f"unknown reset {net.neuron.reset!r}")
    out = net.output
    if out not in pop_index:
        raise SnnexportError(f"the output {out!r} is not a population")
    integrate_only = readout in ("membrane", "softmax")
    if integrate_only and any(p.source == out for p in net.projections):
        raise SnnexportError(f"the {readout} readout needs an output population that feeds nothing")
    incoming = {p.name: [(j, pr) for j, pr in enumerate(net.projections) if pr.target == p.name] for p in pops}
    # A gate is evaluated inside the step of the population at the root of its chain of gates:
    # it needs that step's spikes and running counts, and nothing else.
    root: dict[str, str] = {}
    seen = {inp}
    for n in net.nodes:  # feed-forward check: every source is simulated before its targets
        for _, pr in incoming.get(n.name, []):
            if pr.source not in seen:
                raise SnnexportError(f"projection {pr.source!r} → {n.name!r} goes backwards; the network "
                                     "must be feed-forward in node order")
        if isinstance(n, Gate):
            if n.source not in seen or n.source == inp:
                raise SnnexportError(f"gate {n.name!r} needs a population before it as its source, "
                                     f"not {n.source!r}")
            root[n.name] = root.get(n.source, n.source)
        seen.add(n.name)
    gated = {p.name: [g for g in gates if root[g.name] == p.name] for p in pops}
    nested = {g.source for g in gates}  # gates (and populations) that a gate reads
    if integrate_only and gated[out]:
        raise SnnexportError(f"the {readout} readout needs an output population that feeds nothing")
    gate_fns = {g.name: _gate_fn(g) for g in gates}
    gate_key = _gate_key(steps)
    layouts: dict[str, _Layout] = {}  # populations stored window-major for their single gate
    for p in pops:
        direct = [g for g in gates if g.source == p.name]
        if len(direct) == 1 and _blocked(direct[0], tuple(p.shape)):
            layouts[p.name] = _Layout(direct[0], tuple(p.shape))
    chains = [chain(p.ops, net.shape_of(p.source), layouts.get(p.target)) for p in net.projections]
    delayed = delay == "step"
    # nodes whose spikes of a chunk's last step the next chunk needs (one-step delay)
    sources = {pr.source for pr in net.projections}
    late = sorted(sources - {inp}) if delayed else []
    B = group
    pad_steps = chunks * tc > steps

    def kernel(params: dict, x: jax.Array, u: jax.Array | None) -> dict:
        const = []
        for p, b in zip(pops, params["bias"]):
            c = jnp.broadcast_to(b, (B, b.shape[0]))
            if p.name in layouts:
                c = layouts[p.name].to_blocks(c)
            if not poisson:  # analog input: its current is computed once per sample
                for j, pr in incoming[p.name]:
                    if pr.source == inp:
                        c = c + chains[j][0](params["proj"][j], x).reshape(B, -1)
            const.append(c)
        carry0 = {
            "v": [jnp.zeros((B, p.bias.size), jnp.float32) for p in pops],
            "count": [jnp.zeros((B, p.bias.size), jnp.float32) for p in pops],  # exact below 2**24
            "gcount": [jnp.zeros((B, net.size_of(g.name)), jnp.float32) for g in gates],
            # step at which each count last changed, where a gate compares counts (its tie-break)
            "since": [jnp.zeros((B, p.bias.size), jnp.float32) if gated[p.name] else None for p in pops],
            "gsince": [jnp.zeros((B, net.size_of(g.name)), jnp.float32) if g.name in nested else None
                       for g in gates],
            "last": {name: jnp.zeros((B,) + net.shape_of(name), jnp.float32) for name in late},
        }

        def body(carry: dict, xs: tuple) -> tuple[dict, dict]:
            c_idx, u_c = xs
            t = c_idx * tc + jnp.arange(1, tc + 1)  # the steps of this chunk, (Tc,)
            spikes: dict[str, jax.Array] = {}  # (Tc, B, *shape) float32 spikes of this chunk
            new = {"v": list(carry["v"]), "count": list(carry["count"]), "gcount": list(carry["gcount"]),
                   "since": list(carry["since"]), "gsince": list(carry["gsince"]), "last": {}}
            ys: dict[str, Any] = {"sps": []}
            if poisson:
                spikes[inp] = u_c.astype(jnp.float32)
            for node in net.nodes:
                if isinstance(node, Gate):
                    continue  # simulated with its root population
                i = pop_index[node.name]
                shape = tuple(node.shape)
                layout = layouts.get(node.name)
                drive = None  # Σ spiking projections, (Tc, B, n)
                for j, pr in incoming[node.name]:
                    if pr.source == inp and not poisson:
                        continue
                    s = spikes[pr.source]
                    if delayed and pr.source != inp:
                        s = jnp.concatenate([carry["last"][pr.source][None], s[:-1]], axis=0)
                    rows = s.reshape((tc * B,) + s.shape[2:])
                    cur = chains[j][0](params["proj"][j], rows).reshape(tc, B, -1)
                    drive = cur if drive is None else drive + cur
                live = t > clamp * node.depth  # clamp: V held at 0, no spikes
                keep = t <= steps  # steps past T (chunk padding) change nothing
                sign = node.activation == "sign"
                only_v = integrate_only and node.name == out
                my_gates = gated[node.name]

                def step(state, inputs, const_i=const[i], sign=sign, only_v=only_v, my_gates=my_gates,
                         layout=layout, name=node.name):
                    v, cnt, since, gcnt, gsince = state
                    d, lv, kp, tt = inputs
                    v1 = v + (const_i if d is None else const_i + d)
                    if only_v:
                        s = jnp.zeros_like(v1)
                    else:
                        s = (v1 >= theta).astype(jnp.float32)
                        if sign:
                            s = s - (v1 <= -theta).astype(jnp.float32)
                        v1 = jnp.where(s != 0, np.float32(0), v1) if reset_zero else v1 - theta * s
                    v1 = jnp.where(lv, v1, np.float32(0))
                    s = jnp.where(lv & kp, s, np.float32(0))
                    if pad_steps:
                        v1 = jnp.where(kp, v1, v)
                    gcnt, gsince, passed = list(gcnt), list(gsince), []
                    if my_gates:  # the gates of this step, after the population: counts include this step
                        cnt = cnt + s
                        since = jnp.where(s != 0, tt, since)
                        srcs = {name: gate_key(cnt, since) + (s,)}
                        for k, g in enumerate(my_gates):
                            c_src, l_src, s_src = srcs[g.source]
                            if g.source == name and layout is not None:
                                pg = layout.gate(c_src, l_src, s_src).reshape(B, -1)
                            else:
                                src_shape = (B,) + net.shape_of(g.source)
                                pg = gate_fns[g.name](c_src.reshape(src_shape),
                                                      None if l_src is None else l_src.reshape(src_shape),
                                                      s_src.reshape(src_shape))
                                pg = pg.reshape(B, -1)
                            if g.name in nested:  # a gate on this gate needs its running count
                                gcnt[k] = gcnt[k] + pg
                                gsince[k] = jnp.where(pg != 0, tt, gsince[k])
                                srcs[g.name] = gate_key(gcnt[k], gsince[k]) + (pg,)
                            passed.append(pg)
                    return (v1, cnt, since, gcnt, gsince), (s.astype(jnp.int8), passed, v1 if only_v else None)

                # running counts are carried through the steps only where a gate needs them
                state0 = (carry["v"][i], carry["count"][i] if my_gates else None, carry["since"][i],
                          [carry["gcount"][gate_index[g.name]] if g.name in nested else None for g in my_gates],
                          [carry["gsince"][gate_index[g.name]] for g in my_gates])
                (v_end, cnt_end, since_end, g_end, gs_end), (s8, passed, v_traj) = lax.scan(
                    step, state0, (drive, live, keep, t.astype(jnp.float32)), unroll=tc == 1)
                new["since"][i] = since_end
                if not my_gates:
                    cnt_end = carry["count"][i] + s8.astype(jnp.float32).sum(axis=0)
                sps = jnp.abs(s8.astype(jnp.int32)).sum(axis=2)  # (Tc, B)
                if layout is not None:
                    s8 = layout.from_blocks(s8.reshape(tc * B, -1))
                s8 = s8.reshape((tc, B) + shape)
                if node.name in sources:
                    spikes[node.name] = s8.astype(jnp.float32)
                new["v"][i], new["count"][i] = v_end, cnt_end
                for g, pg, gc, gs in zip(my_gates, passed, g_end, gs_end):
                    spikes[g.name] = pg.reshape((tc, B) + tuple(g.shape))
                    k = gate_index[g.name]
                    new["gcount"][k] = gc if g.name in nested else carry["gcount"][k] + pg.sum(axis=0)
                    new["gsince"][k] = gs
                ys["sps"].append(sps)  # (Tc, B)
                if node.name == out:
                    ys["out"] = s8.reshape(tc, B, -1)
                    if v_traj is not None:
                        ys["v"] = v_traj
            for name in late:
                new["last"][name] = spikes[name][-1]
            ys["sps"] = jnp.stack(ys["sps"], axis=-1)  # (Tc, B, P)
            return new, ys

        xs = (jnp.arange(chunks), u)
        final, ys = lax.scan(body, carry0, xs)
        unblock = [layouts[p.name].from_blocks if p.name in layouts else (lambda a: a) for p in pops]
        res = {"count": [f(c).astype(jnp.int32) for f, c in zip(unblock, final["count"])],
               "gcount": [c.astype(jnp.int32) for c in final["gcount"]],
               "v_out": unblock[pop_index[out]](final["v"][pop_index[out]]),
               "sps": ys["sps"], "out": ys["out"]}
        if "v" in ys:
            res["v_traj"] = ys["v"]
        return res

    def batched(params: dict, x: jax.Array, u: jax.Array | None) -> dict:
        """x (G, B, *in), u (G, chunks, Tc, B, *in): the groups one after another, in one program."""
        return lax.map(lambda a: kernel(params, *a), (x, u))

    return jax.jit(batched)


def _accelerated() -> bool:
    return jax.default_backend() != "cpu"


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def plan(steps: int, largest: int) -> tuple[int, int, int]:
    """(group, Tc, chunks) for T steps and ``largest`` neurons in a population.

    A group of samples is simulated together with Tc steps folded into each projection call
    (group × Tc rows); the groups of a batch run one after another inside one compiled program.
    On a CPU both stay small so that every population's state stays in cache (module docstring).
    The plan depends on the network and T alone, never on how many samples there are: a matrix
    product may round its last bit differently for a different number of rows (seen with dense
    layers on some x86-64 CPUs), so a fixed row count is what makes results independent of the
    batch size, bit for bit. A short last group is padded with zero samples.
    """
    if _accelerated():
        rows = GPU_ROWS
        group = max(1, rows // GPU_STEPS)
    else:
        rows = max(1, min(CPU_MAX_ROWS, CPU_BYTES // (4 * max(largest, 1))))
        group = max(1, rows // CPU_STEPS)
    tc = max(1, min(steps, rows // group))
    chunks = -(-steps // tc)
    tc = -(-steps // chunks)  # spread evenly: the least padding for this number of chunks
    return group, tc, chunks


# --- public API -------------------------------------------------------------------------------------

def simulate(net: Network, x: np.ndarray, labels: np.ndarray | None = None, *, steps: int | None = None,
             batch: int = 100, delay: str = "step", readout: str | None = None, seed: int | None = None,
             clamp: int | None = None, progress: bool = False, group: int | None = None,
             chunk_steps: int | None = None) -> dict[str, np.ndarray]:
    """Simulate ``net`` on samples ``x`` (N, *input_shape); returns the results-file arrays.

    The arrays are exactly those of docs/semantics.md ("The results file"), so
    ``runtime.save_results(path, simulate(...), results_meta(...))`` writes the file an exported
    script writes. ``steps``, ``readout``, ``seed`` and ``clamp`` default to ``net.settings``.
    ``delay`` is "step" (one step per population, as every exported script) or "zero" (the
    paper's zero latency). ``batch`` samples are simulated at a time (on a CPU split over one
    thread per core); ``group`` (samples simulated together) and ``chunk_steps`` (Tc, steps folded
    into one projection call) override :func:`plan`, for tuning. The results do not depend on
    ``batch``; the two overrides may move the last bit of a sum (module docstring). ``progress``
    prints the rate to stderr after each compiled call.
    """
    check_network(net)  # the schema of docs/semantics.md' objects: everything below relies on it
    steps = int(net.settings.steps if steps is None else steps)
    readout = readout or net.settings.readout
    seed = int(net.settings.seed if seed is None else seed)
    clamp = int(net.settings.clamp if clamp is None else clamp)
    if delay not in _DELAYS:
        raise SnnexportError(f"delay must be one of {', '.join(_DELAYS)}, not {delay!r}")
    if readout not in _READOUTS:
        raise SnnexportError(f"readout must be one of {', '.join(_READOUTS)}, not {readout!r}")
    if not 1 <= steps < 2 ** 24:  # counts are exact float32 integers below 2**24
        raise SnnexportError(f"steps must be from 1 to {2 ** 24 - 1}, not {steps}")
    if batch < 1:
        raise SnnexportError(f"batch must be at least 1, not {batch}")
    if clamp < 0:
        raise SnnexportError(f"clamp must be at least 0, not {clamp}")
    x = runtime.coerce_samples(x, net.input.shape, "samples")
    n = len(x)
    labels = np.full(n, -1, np.int64) if labels is None else np.asarray(labels, np.int64).reshape(-1)
    if labels.shape != (n,):
        raise SnnexportError(f"labels have shape {labels.shape}; expected ({n},)")
    batch = min(batch, n)
    largest = max(int(p.bias.size) for p in net.populations)
    group_, tc, chunks = plan(steps, largest)
    if group is not None:
        group_ = max(1, int(group))
    group = group_
    groups = -(-batch // group)
    if chunk_steps is not None:
        tc = max(1, min(int(chunk_steps), steps))
        chunks = -(-steps // tc)
    # a call is one compiled run over some groups; on a CPU, calls run on one thread per core
    workers = 1 if _accelerated() else _cores()
    per_call = -(-groups // min(workers, groups))
    size = per_call * group  # samples per call, the last call padded with zeros
    key = (_signature(net), group, tc, chunks, steps, delay, readout, clamp, jax.default_backend())
    kernel = _cached(("snn",) + key,
                     lambda: _build_kernel(_skeleton(net), group, tc, chunks, steps, delay, readout, clamp))
    params = jax.tree_util.tree_map(jnp.asarray, _params(net))
    pops = net.populations
    gates = [g for g in net.nodes if isinstance(g, Gate)]
    out_i = [p.name for p in pops].index(net.output)
    classes = int(pops[out_i].bias.size)
    poisson = net.input.encoding == "poisson"
    counts = [np.zeros((n, p.bias.size), np.int32) for p in pops]
    gcounts = [np.zeros((n, net.size_of(g.name)), np.int32) for g in gates]
    sps = np.zeros((n, steps, len(pops)), np.int32)
    out_steps = np.zeros((n, steps, classes), np.int16)
    out_v = np.zeros((n, classes), np.float32)
    v_traj = np.zeros((n, steps, classes), np.float32) if readout == "softmax" else None

    def call(b0: int) -> tuple[np.ndarray, dict]:
        idx = np.arange(b0, min(b0 + size, n))
        xb = np.zeros((size,) + x.shape[1:], np.float32)
        xb[:len(idx)] = x[idx]
        u = None
        if poisson:  # the same draws as every exported script: runtime.poisson_input per sample
            u = np.zeros((chunks * tc, size) + x.shape[1:], np.uint8)
            for b, i in enumerate(idx):
                u[:steps, b] = runtime.poisson_input(x[i], seed, int(i), steps)
            u = np.moveaxis(u.reshape((chunks, tc, per_call, group) + x.shape[1:]), 2, 0)  # (G, chunks, Tc, B, …)
        return idx, jax.device_get(kernel(params, xb.reshape((per_call, group) + x.shape[1:]), u))

    def calls() -> Iterator[tuple[np.ndarray, dict]]:
        starts = range(0, n, size)
        yield call(starts[0])  # the first call compiles, once, before the threads start
        with ThreadPoolExecutor(max_workers=workers) as pool:
            yield from pool.map(call, starts[1:])  # in order; JAX runs concurrent calls in parallel

    start, compiled, first = time.perf_counter(), None, 0  # the rate counts from the first call's end
    for idx, r in calls():
        m = len(idx)
        for k in range(len(pops)):
            counts[k][idx] = _flat(r["count"][k])[:m]
        for k in range(len(gates)):
            gcounts[k][idx] = _flat(r["gcount"][k])[:m]
        sps[idx] = _time_major(r["sps"], steps)[:m]
        out_steps[idx] = _time_major(r["out"], steps)[:m]
        out_v[idx] = _flat(r["v_out"])[:m]
        if v_traj is not None:
            v_traj[idx] = _time_major(r["v_traj"], steps)[:m]
        if progress:
            done, now = idx[-1] + 1, time.perf_counter()
            if compiled is None:  # the first call compiles: its time says nothing of the rate
                compiled, first = now, done
                how = f"first call, compilation included: {now - start:.1f} s"
            else:
                how = f"{(done - first) * steps / max(now - compiled, 1e-9):.0f} sample-steps/s"
            print(f"snnexport: simulated {done}/{n} samples ({how})", file=sys.stderr, flush=True)
    if readout == "softmax":  # the paper's spiking softmax, drawn on the host exactly as the scripts do
        live = np.arange(1, steps + 1) > clamp * pops[out_i].depth
        for i in range(n):
            s = runtime.softmax_spikes(v_traj[i].astype(np.float64), runtime.softmax_draws(seed, i, steps, classes))
            out_steps[i] = (s * live[:, None]).astype(np.int16)
        counts[out_i] = out_steps.sum(axis=1, dtype=np.int32)
        sps[:, :, out_i] = out_steps.sum(axis=2, dtype=np.int32)
    output_counts = out_steps.sum(axis=1, dtype=np.int64)
    if readout == "membrane":
        predictions = np.argmax(out_v, axis=1).astype(np.int64)
    else:
        predictions = runtime.predict(output_counts, out_v).astype(np.int64)
    arrays: dict[str, np.ndarray] = {
        "predictions": predictions, "output_counts": output_counts, "output_steps": out_steps,
        "output_v": out_v, "population_names": np.array([p.name for p in pops], dtype=str),
        "gate_names": np.array([g.name for g in gates], dtype=str), "spikes_per_step": sps,
        "labels": labels,
    }
    for k, c in enumerate(counts):
        arrays[f"counts_{k}"] = c
    for k, c in enumerate(gcounts):
        arrays[f"gate_counts_{k}"] = c
    return arrays


def _flat(a: np.ndarray) -> np.ndarray:
    """(G, B, ...) per group → (G·B, ...)."""
    a = np.asarray(a)
    return a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:])


def _time_major(a: np.ndarray, steps: int) -> np.ndarray:
    """(G, chunks, Tc, B, ...) from the kernel → (G·B, T, ...), dropping the padding steps."""
    a = np.asarray(a)
    g, c, tc, b = a.shape[:4]
    a = a.reshape((g, c * tc, b) + a.shape[4:])[:, :steps]
    a = np.moveaxis(a, 2, 1)  # (G, B, T, ...)
    return a.reshape((g * b,) + a.shape[2:])


def results_meta(net: Network, arrays: dict[str, np.ndarray], *, steps: int | None = None,
                 seed: int | None = None, readout: str | None = None, delay: str = "step",
                 seconds: float | None = None) -> dict[str, Any]:
    """The ``meta`` of a results file written from :func:`simulate`'s arrays."""
    import hashlib
    return {"simulator": "snnexport", "simulator_version": __version__, "snnexport_version": __version__,
            "steps": int(net.settings.steps if steps is None else steps),
            "seed": int(net.settings.seed if seed is None else seed),
            "readout": readout or net.settings.readout, "delay": delay, "reset": net.neuron.reset,
            "encoding": net.input.encoding, "network_sha256": hashlib.sha256(net.to_bytes()).hexdigest(),
            "run_seconds": seconds, "samples": int(len(arrays["predictions"]))}


def _build_ann(net: Network, keep_all: bool) -> Callable:
    pops = {p.name: i for i, p in enumerate(net.populations)}
    chains = [chain(p.ops, net.shape_of(p.source)) for p in net.projections]
    incoming = {name: [j for j, pr in enumerate(net.projections) if pr.target == name] for name in pops}

    def forward(params: dict, x: jax.Array) -> dict[str, jax.Array] | jax.Array:
        acts = {net.input.name: x}
        rows = x.shape[0]
        for node in net.nodes:
            if isinstance(node, Gate):
                acts[node.name] = _maxpool_fn(node)(acts[node.source])
                continue
            z = params["bias"][pops[node.name]].reshape((1,) + tuple(node.shape))
            for j in incoming[node.name]:
                src = net.projections[j].source
                z = z + chains[j][0](params["proj"][j], acts[src]).reshape((rows,) + tuple(node.shape))
            acts[node.name] = _activation(node, jnp.broadcast_to(z, (rows,) + tuple(node.shape)))
        return acts if keep_all else acts[net.output]

    return jax.jit(forward)


def _activation(p: Population, z: jax.Array) -> jax.Array:
    """A population's ANN activation in normalized units (activation / λ) of its normalized input z."""
    f = p.activation
    if f == "relu":
        return jnp.maximum(z, 0)
    if f == "clip":
        top = np.inf if p.max_value is None else np.float32(p.max_value / p.scale)
        return jnp.clip(z, 0, top)
    if f in ("linear", "softmax"):
        return z  # the output's normalized pre-activation: the argmax of the softmax, what its rates follow
    if f == "sign":
        return jnp.where(z >= 0, np.float32(1), np.float32(-1)) / np.float32(p.scale)
    if f == "heaviside":
        return (z >= 0).astype(jnp.float32) / np.float32(p.scale)
    raise SnnexportError(f"unknown activation {f!r}")


def ann_program(net: Network, keep_all: bool = False) -> Callable[[np.ndarray], Any]:
    """A jitted ANN forward pass of the description: x (N, *in) → output (or every activation)."""
    key = ("ann", _signature(net), keep_all, jax.default_backend())
    fn = _cached(key, lambda: _build_ann(_skeleton(net), keep_all))
    params = jax.tree_util.tree_map(jnp.asarray, _params(net))
    return lambda x: fn(params, jnp.asarray(x, jnp.float32))


def ann_activations(net: Network, x: np.ndarray, batch: int = 100) -> dict[str, np.ndarray]:
    """The normalized ANN of the description itself, per node: activation / λ, flat (N, n).

    Each population is its activation function of Σ projection ops(source) + bias; a gate is the
    max-pooling of its source; the input is the analog sample. Firing rates (spikes per step)
    approximate these values, and the output's argmax is the ANN's prediction. For a softmax or
    linear output it is the normalized pre-activation (same argmax as the softmax). Includes the input.
    """
    x = runtime.coerce_samples(x, net.input.shape, "samples")
    fn = ann_program(net, keep_all=True)
    parts: dict[str, list[np.ndarray]] = {}
    for s in range(0, len(x), batch):
        for k, v in jax.device_get(fn(x[s:s + batch])).items():
            parts.setdefault(k, []).append(np.asarray(v).reshape(len(v), -1))
    return {k: np.concatenate(v) for k, v in parts.items()}


def ann_predict(net: Network, x: np.ndarray, batch: int = 100) -> np.ndarray:
    """The ANN's class per sample (argmax of its output, ties to the lower index), (N,) int64."""
    x = runtime.coerce_samples(x, net.input.shape, "samples")
    fn = ann_program(net)
    out = [np.asarray(jax.device_get(fn(x[s:s + batch]))).reshape(min(batch, len(x) - s), -1)
           for s in range(0, len(x), batch)]
    return np.argmax(np.concatenate(out), axis=1).astype(np.int64)
