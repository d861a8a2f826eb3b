"""ONNX reader: constants computed while reading (the shape arithmetic of ``x.view(x.size(0), -1)``).

A small whitelist of numpy evaluations (:data:`FOLDERS`), each capped in size; no other operator
is ever run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .keras_config import quote
from .onnx_check import DTYPES, tensor_array
from .onnx_layout import Const, Ctx, Val

MAX_FOLD_ELEMENTS = 2 ** 27  # one constant computed at read time

def _cap(ctx: Ctx, shape: tuple[int, ...]) -> None:
    if math.prod(shape) > MAX_FOLD_ELEMENTS:
        raise ctx.refuse(f"would compute a constant of shape {shape}, more than {MAX_FOLD_ELEMENTS} elements")


def norm_axis(ctx: Ctx, axis: int, rank: int) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise ctx.refuse(f"axis {axis} is out of range for rank {rank}")
    return a


def _fold_constant(ctx: Ctx, ins: list[Any]) -> np.ndarray:
    a = ctx.node.attribute[0] if len(ctx.node.attribute) == 1 else None
    if a is None:
        raise ctx.refuse("must have exactly one value attribute")
    if a.name == "value":
        return tensor_array(a.t, ctx.conv.folder, ctx.label)
    v = ctx.attrs[a.name]
    if a.name in ("value_float", "value_floats"):
        return np.asarray(v, np.float32)
    if a.name in ("value_int", "value_ints"):
        return np.asarray(v, np.int64)
    raise ctx.refuse(f"attribute {quote(a.name)} is not supported (only numeric constants)")


def _shape_slice(ctx: Ctx, shape: tuple[int, ...]) -> np.ndarray:
    end = ctx.attrs.get("end")
    return np.array(shape, np.int64)[ctx.attr_int("start", 0):None if end is None else int(end)]


def shape_of_val(ctx: Ctx, x: Val) -> Const:
    """Shape of a computed tensor: known but for the batch size, so evaluated at two of them."""
    n1, n2 = ctx.conv.batch
    value, alt = _shape_slice(ctx, (n1,) + x.oshape), _shape_slice(ctx, (n2,) + x.oshape)
    return Const(value, None if np.array_equal(alt, value) else alt)


def _fold_shape(ctx: Ctx, ins: list[Any]) -> np.ndarray:
    return _shape_slice(ctx, np.shape(ins[0]))


def _fold_identity(ctx: Ctx, ins: list[Any]) -> np.ndarray:
    return ins[0]


def _fold_gather(ctx: Ctx, ins: list[Any]) -> np.ndarray:
    data, idx = np.asarray(ins[0]), np.asarray(ins[1])
    if idx.dtype.kind not in "iu":
        raise ctx.refuse("indices must be integers")
    axis = norm_axis(ctx, ctx.attr_int("axis", 0), data.ndim)
    n = data.shape[axis]
    idx = np.where(idx < 0, idx + n, idx)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ctx.refuse(f"an index is out of range for an axis of size {n}")
    _cap(ctx, data.shape[:axis] + idx.shape + data.shape[axis + 1:])
    return np.take(data, idx, axis=axis)


def unsqueezed(ctx: Ctx, shape: tuple[int, ...], axes: list[int]) -> tuple[int, ...]:
    rank = len(shape) + len(axes)
    norm = sorted(norm_axis(ctx, a, rank) for a in axes)
    if len(set(norm)) != len(norm):
        raise ctx.refuse("axes repeat")
    out = list(shape)
    for a in norm:
        out.insert(a, 1)
    return tuple(out)


def squeezed(ctx: Ctx, shape: tuple[int, ...], axes: list[int] | None) -> tuple[int, ...]:
    if not axes:
        return tuple(d for d in shape if d != 1)
    norm = {norm_axis(ctx, a, len(shape)) for a in axes}
    if any(shape[a] != 1 for a in norm):
        raise ctx.refuse(f"squeezes an axis of size other than 1 in shape {shape}")
    return tuple(d for k, d in enumerate(shape) if k not in norm)


def _fold_unsqueeze(ctx: Ctx, ins: list[Any]) -> np.ndarray:
    axes = ctx.axes(1)
    if axes is None:
        raise ctx.refuse("has no axes")
    return np.asarray(ins[0]).reshape(unsqueezed(ctx, np.shape(ins[0]), axes))


def _fold_squeeze(ctx: Ctx, ins: list[Any]) -> np.ndarray:
    return np.asarray(ins[0]).reshape(squeezed(ctx, np.shape(ins[0]), ctx.axes(1)))


def _fold_concat(ctx: Ctx, ins: list[Any]) -> np.ndarray:
    arrs = [np.asarray(a) for a in ins if a is not None]
    axis = norm_axis(ctx, ctx.attr_int("axis", 0), arrs[0].ndim)
    return np.concatenate(arrs, axis=axis)


def _fold_slice(ctx: Ctx, ins: list[Any]) -> np.ndarray:
    data = np.asarray(ins[0])
    starts, ends = np.asarray(ins[1]).reshape(-1), np.asarray(ins[2]).reshape(-1)
    axes = np.asarray(ins[3]).reshape(-1) if len(ins) > 3 and ins[3] is not None else np.arange(len(starts))
    steps = np.asarray(ins[4]).reshape(-1) if len(ins) > 4 and ins[4] is not None else np.ones(len(starts), int)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.refuse("starts, ends, axes and steps differ in length")
    index: list[slice] = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise ctx.refuse("a step is 0")
        index[norm_axis(ctx, int(a), data.ndim)] = slice(int(s), int(e), int(st))
    return data[tuple(index)].copy()


def _fold_cast(ctx: Ctx, ins: list[Any]) -> np.ndarray:
    to = ctx.attr_int("to", 0)
    if to not in DTYPES:
        raise ctx.refuse(f"casts to data type {to}, which is not supported")
    return np.asarray(ins[0]).astype(DTYPES[to])


def _reshape_target(ctx: Ctx, shape: tuple[int, ...], target: np.ndarray) -> tuple[int, ...]:
    """ONNX Reshape's target with 0 (copy, unless allowzero) and -1 (infer) resolved."""
    t = [int(v) for v in np.asarray(target).reshape(-1)]
    allowzero = ctx.attr_int("allowzero", 0)
    out = [shape[k] if v == 0 and not allowzero and k < len(shape) else v for k, v in enumerate(t)]
    if out.count(-1) > 1 or any(v < -1 for v in out):
        raise ctx.refuse(f"has an invalid target shape {t}")
    if -1 in out:
        known = math.prod(v for v in out if v != -1)
        total = math.prod(shape)
        if known == 0 or total % known:
            raise ctx.refuse(f"cannot reshape {shape} to {t}")
        out[out.index(-1)] = total // known
    if math.prod(out) != math.prod(shape):
        raise ctx.refuse(f"cannot reshape {shape} to {t}")
    return tuple(out)


def _fold_reshape(ctx: Ctx, ins: list[Any]) -> np.ndarray:
    data = np.asarray(ins[0])
    return data.reshape(_reshape_target(ctx, data.shape, ins[1]))


def _fold_transpose(ctx: Ctx, ins: list[Any]) -> np.ndarray:
    data = np.asarray(ins[0])
    perm = ctx.ints("perm") or list(range(data.ndim))[::-1]
    return np.ascontiguousarray(np.transpose(data, perm))


def _fold_arith(ctx: Ctx, ins: list[Any]) -> np.ndarray:
    a, b = np.asarray(ins[0]), np.asarray(ins[1])
    _cap(ctx, np.broadcast_shapes(a.shape, b.shape))
    op = ctx.node.op_type
    if op == "Add":
        return a + b
    if op == "Sub":
        return a - b
    if op == "Mul":
        return a * b
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":  # ONNX integer division truncates toward zero
        if (b == 0).any():
            raise ctx.refuse("divides by zero")
        q = np.abs(a) // np.abs(b)
        return np.where((a < 0) != (b < 0), -q, q).astype(np.result_type(a, b))
    return a / b


FOLDERS: dict[str, Callable[[Ctx, list[Any]], np.ndarray]] = {
    "Constant": _fold_constant, "Identity": _fold_identity, "Shape": _fold_shape,
    "Gather": _fold_gather, "Unsqueeze": _fold_unsqueeze, "Squeeze": _fold_squeeze,
    "Concat": _fold_concat, "Slice": _fold_slice, "Cast": _fold_cast, "Reshape": _fold_reshape,
    "Transpose": _fold_transpose, "Add": _fold_arith, "Sub": _fold_arith, "Mul": _fold_arith,
    "Div": _fold_arith,
}
