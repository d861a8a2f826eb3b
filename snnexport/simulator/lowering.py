"""Linear op chains in JAX: one lowering per op class, registered with :func:`lowers`.

A lowering turns an op (and the shape it is applied to) into ``fn(x, *arrays)`` on a batch
``x`` of shape (rows, *in_shape), plus the weight arrays that ``fn`` expects (the compiled
programs take them as arguments, so that a program is cached by structure and not by weights).
Constant terms are not lowered: they are the populations' biases. Every op kind a projection may
hold (``network_check.PROJECTION_OPS``) has a lowering (tests/test_registries.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..ops import Affine, AvgPool, Conv2D, ConvTranspose, Dense, Embed, Op, Pad, Reshape, Scale, Transpose
from ..op_table import OpTable

if TYPE_CHECKING:
    from .gates import Layout

HIGHEST = lax.Precision.HIGHEST  # so that a GPU does not drop to TF32

Shape = tuple[int, ...]
Lowered = tuple[Callable[..., jax.Array], list[np.ndarray]]  # fn(x, *arrays), arrays
Lowering = Callable[[Op, Shape], Lowered]
Chain = Callable[[list[jax.Array], jax.Array], jax.Array]

LOWERINGS = OpTable("cannot be part of a projection")
lowers = LOWERINGS.add  # @lowers(Dense): the decorated f(op, in_shape) -> (fn, arrays) lowers Dense


def lower(op: Op, in_shape: Shape) -> Lowered:
    """(fn, arrays) of one op applied to (rows, *in_shape)."""
    return LOWERINGS.of(op)(op, in_shape)


def _spatial_pad(padding) -> tuple[tuple[int, int], ...]:
    """jnp.pad / reduce_window padding of (rows, H, W, C) from an op's ((top, bottom), (left, right))."""
    return ((0, 0),) + tuple(tuple(p) for p in padding) + ((0, 0),)


@lowers(Dense)
def _dense(op: Dense, in_shape: Shape) -> Lowered:
    def fn(x, w):
        return jnp.tensordot(x, w, axes=([x.ndim - 1], [0]), precision=HIGHEST)
    return fn, [np.asarray(op.weight, np.float32)]


@lowers(Conv2D)
def _conv2d(op: Conv2D, in_shape: Shape) -> Lowered:
    strides, padding = tuple(op.strides), tuple(tuple(p) for p in op.padding)
    dilation, groups = tuple(op.dilation), int(op.groups)

    def fn(x, k):
        return lax.conv_general_dilated(x, k, strides, padding, rhs_dilation=dilation,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=groups, precision=HIGHEST)
    return fn, [np.asarray(op.kernel, np.float32)]


@lowers(ConvTranspose)
def _conv_transpose(op: ConvTranspose, in_shape: Shape) -> Lowered:
    """A convolution of the input dilated by the strides, with the kernel flipped: XLA's own transposed form.
    Padding (k − 1)·d − crop per side; a negative padding crops (XLA accepts it)."""
    kh, kw = op.kernel.shape[:2]
    strides, dilation, groups = tuple(op.strides), tuple(op.dilation), int(op.groups)
    padding = tuple(((k - 1) * d - c0, (k - 1) * d - c1) for k, d, (c0, c1) in zip((kh, kw), dilation, op.crop))

    def fn(x, k):
        return lax.conv_general_dilated(x, k, (1, 1), padding, lhs_dilation=strides, rhs_dilation=dilation,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=groups, precision=HIGHEST)
    return fn, [np.ascontiguousarray(op.kernel[::-1, ::-1], np.float32)]


@lowers(Transpose)
def _transpose(op: Transpose, in_shape: Shape) -> Lowered:
    axes = (0,) + tuple(int(a) + 1 for a in op.axes)
    return (lambda x: jnp.transpose(x, axes)), []


@lowers(AvgPool)
def _avgpool(op: AvgPool, in_shape: Shape) -> Lowered:
    (ph, pw), (sh, sw) = op.pool, op.strides
    pad = _spatial_pad(op.padding)
    divisor = jnp.asarray(op.divisor(in_shape)[None, :, :, None], jnp.float32)

    def fn(x):
        s = lax.reduce_window(x, np.float32(0), lax.add, (1, ph, pw, 1), (1, sh, sw, 1), pad)
        return s / divisor
    return fn, []


@lowers(Pad)
def _pad(op: Pad, in_shape: Shape) -> Lowered:
    pad = _spatial_pad(op.padding)
    return (lambda x: jnp.pad(x, pad)), []


@lowers(Reshape)
def _reshape(op: Reshape, in_shape: Shape) -> Lowered:
    out_shape = tuple(op.output_shape(tuple(in_shape)))
    return (lambda x: x.reshape((x.shape[0],) + out_shape)), []


@lowers(Affine)
def _affine(op: Affine, in_shape: Shape) -> Lowered:
    return (lambda x, scale: x * scale), [np.asarray(op.scale, np.float32)]


@lowers(Scale)
def _scale(op: Scale, in_shape: Shape) -> Lowered:
    factor = np.float32(op.factor)
    return (lambda x: x * factor), []


@lowers(Embed)
def _embed(op: Embed, in_shape: Shape) -> Lowered:
    axis, offset, total = int(op.axis), int(op.offset), int(op.total)

    def fn(x):
        pad = [(0, 0)] * x.ndim
        pad[axis + 1] = (offset, total - offset - x.shape[axis + 1])
        return jnp.pad(x, pad)
    return fn, []


def chain(ops: list[Op], in_shape: Shape, blocks: "Layout | None" = None
          ) -> tuple[Chain, list[np.ndarray], Shape]:
    """A projection's op chain as one function ``f(arrays, x)`` on a batch (rows, *in_shape).

    Returns (f, arrays, out_shape); ``arrays`` are the weights f expects, in order. With
    ``blocks``, f returns its output flat in that window-major layout (see :class:`gates.Layout`).
    """
    fns: list[tuple[Callable[..., jax.Array], int, int]] = []
    arrays: list[np.ndarray] = []
    shape = tuple(in_shape)
    for i, op in enumerate(ops):
        last = i == len(ops) - 1
        fn, a = lower(op, shape)
        if last and blocks is not None:
            if isinstance(op, Conv2D):  # written straight into the blocks
                fn = blocks.conv(op, shape)
            else:
                fn = (lambda g: lambda x, *a: blocks.to_blocks(g(x, *a)))(fn)
        shape = tuple(op.output_shape(shape))
        fns.append((fn, len(arrays), len(a)))
        arrays += a
    if not ops and blocks is not None:
        fns.append((blocks.to_blocks, 0, 0))

    def f(params: list[jax.Array], x: jax.Array) -> jax.Array:
        for fn, start, count in fns:
            x = fn(x, *params[start:start + count])
        return x

    return f, arrays, shape
