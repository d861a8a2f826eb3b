"""Max-pool gates in JAX: which window cell passes its spikes, and the window-major layout.

A gate passes the spikes of the cell with the largest count in its window, ties to the cell
that reached that count earliest, remaining ties to the first cell in row-major (ky, kx) order
(docs/semantics.md). Counts and the step of their last change are compared as one exact float32
key while that is possible (:func:`gate_key`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..network import Gate
from ..ops import Conv2D
from .lowering import HIGHEST

Cell = tuple[jax.Array, "jax.Array | None", jax.Array]  # (count key, since or None, spikes)
GateFn = Callable[[jax.Array, "jax.Array | None", jax.Array], jax.Array]


def gate_fn(gate: Gate) -> GateFn:
    """g(counts, since, spikes) on (rows, H, W, C) → spikes passed, (rows, Ho, Wo, C); any pool, stride, padding.

    ``since`` is the step at which each count last changed. Window positions are visited in
    row-major (ky, kx) order and a later cell replaces the best so far only with a larger count, or
    an equal count reached earlier: remaining ties go to the first cell. Padded cells count −∞, so
    they never win. No gathers: strided slices and selects, which fuse.
    """
    (ph, pw), (sh, sw) = gate.pool, gate.strides
    pad = ((0, 0),) + tuple(tuple(p) for p in gate.padding) + ((0, 0),)
    ho, wo = int(gate.shape[0]), int(gate.shape[1])

    def g(counts: jax.Array, since: jax.Array | None, spikes: jax.Array) -> jax.Array:
        if any(p != (0, 0) for p in pad):
            counts = jnp.pad(counts, pad, constant_values=-np.inf)
            since = None if since is None else jnp.pad(since, pad)
            spikes = jnp.pad(spikes, pad)
        return first_max([(counts[sl], None if since is None else since[sl], spikes[sl]) for sl in (
            (slice(None), slice(ky, ky + (ho - 1) * sh + 1, sh), slice(kx, kx + (wo - 1) * sw + 1, sw))
            for ky in range(ph) for kx in range(pw))])

    return g


def first_max(cells: list[Cell]) -> jax.Array:
    """The spikes of the winning cell: largest count, then earliest to reach it, then first in window order.

    With ``since`` None the counts are already keys that order both (see :func:`gate_key`).
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


def gate_key(steps: int) -> Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array | None]]:
    """(counts, since) → what the gates compare: count·(T+1) − since, one exact float32 key, while
    T·(T+1) < 2**24 (one compare instead of three: measured 28 % of LeNet's simulation time);
    beyond that the pair itself."""
    if steps * (steps + 1) < 2 ** 24:
        k = np.float32(steps + 1)
        return lambda c, l: (c * k - l, None)
    return lambda c, l: (c, l)


def blocked(gate: Gate, src_shape: tuple[int, ...]) -> bool:
    """Whether the gate's windows tile its source exactly (no overlap, padding or remainder)."""
    h, w = src_shape[0], src_shape[1]
    return (len(src_shape) == 3 and tuple(gate.pool) == tuple(gate.strides)
            and all(tuple(p) == (0, 0) for p in gate.padding)
            and h % gate.pool[0] == 0 and w % gate.pool[1] == 0)


class Layout:
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

    def conv(self, op: Conv2D, in_shape: tuple[int, ...]) -> Callable[..., jax.Array]:
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
                                             feature_group_count=groups, precision=HIGHEST)
                    for ky in range(self.ph) for kx in range(self.pw)]
            return jnp.stack(outs, axis=1).reshape(x.shape[0], -1)

        return fn

    def gate(self, counts: jax.Array, since: jax.Array | None, spikes: jax.Array) -> jax.Array:
        r, k = counts.shape[0], self.ph * self.pw
        counts, spikes = counts.reshape(r, k, -1), spikes.reshape(r, k, -1)
        since = None if since is None else since.reshape(r, k, -1)
        return first_max([(counts[:, j], None if since is None else since[:, j], spikes[:, j]) for j in range(k)])


def maxpool_fn(gate: Gate) -> Callable[[jax.Array], jax.Array]:
    """The ANN's max-pooling for a gate; padded cells never win."""
    (ph, pw), (sh, sw) = gate.pool, gate.strides
    pad = ((0, 0),) + tuple(tuple(p) for p in gate.padding) + ((0, 0),)
    return lambda x: lax.reduce_window(x, -np.inf, lax.max, (1, ph, pw, 1), (1, sh, sw, 1), pad)
