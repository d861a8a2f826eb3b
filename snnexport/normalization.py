"""Weight normalization (paper §2.2.2): a scale λ per population, and what each linear op contributes.

λ comes from calibration data (:func:`percentile_scales`: the p-th percentile of a population's
nonzero ANN activations) or, without data, from the weights alone (:func:`bound_scales`: the
largest activation any input in [-1, 1] could cause). Binary activations (sign, heaviside) have
activations of magnitude 1 and no scale to normalize: their populations get λ = 1 on the output
side, and on the input side a gain, 1 / the (100 − p)-th percentile of their nonzero
|pre-activation|, so that all but that fraction of the pre-activations drive the neuron beyond
one spike per step: its rate is then the step function itself, not the clipped ramp.

What conversion needs to know of each linear op class is registered with :func:`normalizes`
(:data:`LINEAR`, covering every linear op: tests/test_registries.py): its gain (an upper bound on
max |output| / max |input|), the field holding its constant term (which becomes bias), and the
weight field that a projection's normalization factor is folded into.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .graph import Node
from .ops import (Activation, Add, Affine, AvgPool, Concat, Conv2D, ConvTranspose, Dense, Embed, MaxPool, Op,
                  Pad, Reshape, Scale, Shape, Transpose)
from .op_table import OpTable

OUTPUT_ONLY = ("softmax", "linear")
BINARY = ("sign", "heaviside")

Gain = Callable[[Op], float]


@dataclass(frozen=True)
class Linear:
    """What conversion needs to know of a linear op class."""
    gain: Gain | None  # bound on max |output| / max |input|; None: never inside a chain (conversion expands it)
    weight: str | None = None  # the array field a normalization factor is folded into (None: no weights)
    constant: str | None = None  # the field holding its constant term (bias or offset), or None


LINEAR = OpTable("is not a linear op that conversion knows")


def normalizes(cls: type[Op], *, weight: str | None = None, constant: str | None = None
               ) -> Callable[[Gain], Gain]:
    """Register the decorated gain function, and the named fields, for op class ``cls``."""
    return LINEAR.add(cls, make=lambda gain: Linear(gain, weight, constant))


@normalizes(Dense, weight="weight", constant="bias")
def _dense_gain(op: Dense) -> float:
    return float(np.abs(op.weight).sum(axis=0).max(initial=0.0))


@normalizes(Conv2D, weight="kernel", constant="bias")
def _conv2d_gain(op: Conv2D) -> float:
    return float(np.abs(op.kernel).sum(axis=(0, 1, 2)).max(initial=0.0))


@normalizes(ConvTranspose, weight="kernel", constant="bias")
def _conv_transpose_gain(op: ConvTranspose) -> float:
    return float(np.abs(op.kernel).sum(axis=(0, 1, 2)).max(initial=0.0))  # at most every tap reaches one cell


@normalizes(Affine, weight="scale", constant="offset")
def _affine_gain(op: Affine) -> float:
    return float(np.abs(op.scale).max(initial=0.0))


@normalizes(Scale)
def _scale_gain(op: Scale) -> float:
    return abs(op.factor)


def _moves(op: Op) -> float:
    return 1.0  # pooling averages, padding/reshape/embed/transpose move values


for _cls in (AvgPool, Pad, Reshape, Embed, Transpose):
    normalizes(_cls)(_moves)
for _cls in (Concat, Add):  # split into Embed ops and parallel projections (convert._Structure._expand)
    LINEAR[_cls] = Linear(None)


def constant_term(op: Op, shape: tuple[int, ...]) -> np.ndarray | None:
    """op applied to zeros: its bias (or offset) everywhere, or None where it has none."""
    field = LINEAR.of(op).constant
    const = None if field is None else getattr(op, field)
    if const is None:
        return None
    return np.broadcast_to(const.astype(np.float32), (1,) + tuple(shape)).copy()


CALIBRATION_BATCH_BYTES = 256 * 2**20  # activations kept per calibration batch (about)
PROGRESS_SECONDS = 10.0  # a calibration that runs longer says how far it is on stderr this often


class _Extreme:
    """The k largest (or, ``low``, smallest) values seen and how many values there were: numpy's own
    p-th percentile (linear interpolation, float32 arithmetic) for every p whose two order statistics
    lie among those k, in memory bounded by k.

    Linear time: once k values are kept, a new value not beyond the least extreme of them cannot change
    the k most extreme values (as a multiset), so it is dropped by one comparison; the survivors wait
    in ``pending`` and are merged (one partition) only when they outnumber k. Partitioning the kept
    values on every batch instead made the cost grow with the square of the number of samples."""

    def __init__(self, k: int, low: bool = False) -> None:
        self.k, self.low, self.n = k, low, 0
        self.kept = np.empty(0, np.float32)
        self.pending: list[np.ndarray] = []
        self.pending_size = 0
        self.bound: np.float32 | None = None  # the least extreme kept value, once k values are kept

    def add(self, a: np.ndarray) -> None:
        self.n += a.size
        if self.bound is not None:
            a = a[a < self.bound] if self.low else a[a > self.bound]
        a = self._cut(a)
        if a.size:
            self.pending.append(a)
            self.pending_size += a.size
        if self.pending_size > self.k:
            self._merge()

    def _merge(self) -> None:
        if self.pending:
            self.kept = self._cut(np.concatenate([self.kept, *self.pending]))
            self.pending, self.pending_size = [], 0
        if self.kept.size >= self.k:
            self.bound = self.kept.max() if self.low else self.kept.min()

    def _cut(self, a: np.ndarray) -> np.ndarray:
        if a.size <= self.k:
            return a
        return np.partition(a, self.k - 1)[:self.k] if self.low else np.partition(a, -self.k)[-self.k:]

    def percentile(self, p: float) -> float:
        """Bit for bit ``np.percentile`` of all the values, as numpy computes it for float32 data."""
        self._merge()
        h = (self.n - 1) * np.asanyarray(np.true_divide(p, np.float32(100)))  # numpy's virtual index
        lo = min(int(np.floor(h)), self.n - 1)
        hi = min(lo + 1, self.n - 1)
        t = np.asanyarray(h - np.floor(h), dtype=h.dtype) if lo < self.n - 1 else h.dtype.type(0)
        off = 0 if self.low else self.n - self.kept.size
        if lo < off or hi - off >= self.kept.size:
            raise ValueError("the percentile's order statistics were not kept")
        v = np.sort(self.kept)
        a, b = v[lo - off], v[hi - off]
        d = b - a
        return float(b - d * (1 - t) if t >= 0.5 else a + d * t)  # numpy's _lerp


def _kept(p: float, values: int) -> int:
    """How many of the most extreme of ``values`` values the p-th or (100 − p)-th percentile can need
    (with room for numpy's float32 rounding of the index)."""
    p = max(p, 100.0 - p)
    return int(np.floor((values - 1) * (1.0 - p / 100.0))) + 2 + values // 2**20


# The calibration's ANN: a batch of samples → per population its activation, or for the output and binary
# populations the pre-activation (what λ is the percentile of). The converter evaluates it compiled (JAX).
Forward = Callable[[np.ndarray], dict[str, np.ndarray]]


def percentile_inputs(spiking: list[Node]) -> set[str]:
    """The populations whose λ is a percentile of their pre-activation (output-only and binary), not of
    their activation."""
    return {n.name for n in spiking if isinstance(n.op, Activation) and n.op.function in OUTPUT_ONLY + BINARY}


def percentile_scales(spiking: list[Node], shapes: dict[str, Shape], output: str, forward: Forward,
                      x: np.ndarray, p: float) -> dict[str, float]:
    """λ per population: the p-th percentile of its nonzero ANN activations (pre-activation for the output);
    for binary populations the (100 − p)-th percentile of the nonzero |pre-activation| (module docstring).

    Streaming and exact: batches small enough to keep about CALIBRATION_BATCH_BYTES of activations, and
    per population only the values the percentile can need (the largest (1 − p/100) of them, or the
    smallest for binary populations): memory grows with 0.1 % of the samples at p = 99.9. The result is
    bit for bit np.percentile's over all the values ``forward`` gives. Every batch has the same number of
    rows (the last one padded, its padding dropped): a compiled forward pass is compiled once.
    """
    pops = [n for n in spiking if isinstance(n.op, Activation)]
    q = {n.name: 100.0 - p if n.op.function in BINARY else p for n in pops}
    size = {n.name: int(np.prod(shapes[n.name])) for n in pops}
    extremes = {k: _Extreme(_kept(q[k], size[k] * len(x)), low=q[k] < 50.0) for k in size}
    signed = {n.name for n in pops if n.name != output or n.op.function not in OUTPUT_ONLY}
    batch = int(max(1, min(100, len(x), CALIBRATION_BATCH_BYTES // max(1, 4 * sum(size.values())))))
    started = last = time.monotonic()
    for start in range(0, len(x), batch):
        if time.monotonic() - last >= PROGRESS_SECONDS:  # a large model's calibration takes minutes
            last = time.monotonic()
            print(f"snnexport: calibration: {start} of {len(x)} samples ({last - started:.0f} s)", file=sys.stderr)
        rows = x[start:start + batch]
        if len(rows) < batch:
            rows = np.concatenate([rows, np.zeros((batch - len(rows),) + rows.shape[1:], rows.dtype)])
        acts = forward(rows)
        for name, ext in extremes.items():
            a = acts[name][:len(x) - start].ravel()
            if name in signed:
                a = np.abs(a)  # sign activations spike both ways; relu values are already >= 0
            ext.add(a[a > 0])
        del acts
    out = {}
    for name, ext in extremes.items():
        if ext.n == 0:
            print(f"snnexport: warning: layer {name!r} is silent on the calibration data; λ = 1", file=sys.stderr)
            out[name] = 1.0
        else:
            out[name] = ext.percentile(q[name])
    return out


def bound_scales(input_name: str, spiking: list[Node], paths: dict[str, list[tuple[str, list[Op]]]],
                 bias: dict[str, np.ndarray]) -> dict[str, float]:
    """λ per population from the weights alone: the largest activation any input in [-1, 1] could cause.

    ``paths`` are each population's (source, chain of linear ops) and ``bias`` its constant input.
    A binary population's activation is bounded by 1; its input side gets 1/1000 of its
    pre-activation's bound (a gain of 1000 over the bound: no data tells how small inputs get).
    """
    bound = {input_name: 1.0}
    lam = {}
    for n in spiking:
        if isinstance(n.op, MaxPool):
            bound[n.name] = bound[n.inputs[0]]
            continue
        b = sum(bound[src] * float(np.prod([LINEAR.of(op).gain(op) for op in chain])) for src, chain in paths[n.name])
        b += float(np.abs(bias[n.name]).max(initial=0.0))
        if n.op.function == "clip" and n.op.max_value is not None:
            b = min(b, n.op.max_value)
        b = b if b > 0 else 1.0
        binary = n.op.function in BINARY
        bound[n.name] = 1.0 if binary else b
        lam[n.name] = b * 1e-3 if binary else b
    return lam
