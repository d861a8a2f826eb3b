"""ONNX reader: the handlers that only move elements (Identity, Cast, Dropout, Pad, Concat, Flatten,
Reshape, Squeeze, Unsqueeze); a reshape is exact only where our layout keeps the element order.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from .onnx_check import FLOAT_TYPES
from .onnx_fold import norm_axis, squeezed, unsqueezed
from ..layout import key, ours_shape, same_order
from .onnx_layout import Const, Ctx, Val
from .onnx_ops import as2d

def h_identity(ctx: Ctx) -> list[Const | Val]:
    return [ctx.val(0)]


def h_cast(ctx: Ctx) -> list[Const | Val]:
    """A cast of a computed tensor to a float type changes nothing here (the graph is float32)."""
    if ctx.attr_int("to", 0) not in FLOAT_TYPES:
        raise ctx.refuse("casts a computed tensor to a non-float type, which is not supported")
    return [ctx.val(0)]


def h_dropout(ctx: Ctx) -> list[Const | Val]:
    if ctx.has(2) and bool(np.asarray(ctx.const(2, "training_mode")).reshape(-1)[0]):
        raise ctx.refuse("is in training mode")
    if ctx.output_used(1):
        raise ctx.refuse("its mask output is used; only inference Dropout (the identity) is supported")
    return [ctx.val(0)]


def h_pad(ctx: Ctx) -> list[Const | Val]:
    x = ctx.spatial(0)
    mode = ctx.attr_str("mode", "constant")
    if mode != "constant":
        raise ctx.refuse(f"has mode {mode!r}; only constant (zero) padding is supported")
    rank = len(x.oshape) + 1
    pads = [int(p) for p in np.asarray(ctx.const(1, "pads")).reshape(-1)] if ctx.has(1) else ctx.ints("pads")
    if ctx.has(2) and np.asarray(ctx.const(2, "value")).reshape(-1).any():
        raise ctx.refuse("pads with a value other than 0")
    if ctx.attr_float("value", 0.0) != 0.0:
        raise ctx.refuse("pads with a value other than 0")
    axes = ctx.axes(3) if ctx.has(3) else list(range(rank))
    if pads is None or len(pads) != 2 * len(axes):
        raise ctx.refuse(f"has pads {pads} for axes {axes}")
    full = [(0, 0)] * rank
    for k, a in enumerate(axes):
        full[norm_axis(ctx, a, rank)] = (pads[k], pads[k + len(axes)])
    if full[0] != (0, 0) or full[1] != (0, 0) or any(p < 0 for pair in full for p in pair):
        raise ctx.refuse(f"has pads {pads}; only non-negative padding of the spatial axes is supported")
    spatial = full[2:]
    if all(p == (0, 0) for p in spatial):
        return [x]
    oshape = (x.oshape[0],) + tuple(n + b + e for n, (b, e) in zip(x.oshape[1:], spatial))
    return [ctx.emit([("pad", ops.Pad(as2d(spatial, (0, 0))))], (x.name,), oshape, key(oshape))]


def h_concat(ctx: Ctx) -> list[Const | Val]:
    xs = [ctx.val(k) for k in range(len(ctx.ins))]
    rank = len(xs[0].oshape)
    if any(len(x.oshape) != rank for x in xs):
        raise ctx.refuse(f"joins tensors of different ranks {[('N',) + x.oshape for x in xs]}")
    if any(x.src is not None for x in xs) and rank == 1:
        raise ctx.refuse("joins a convolution's output flattened in NCHW order, which the channels-last "
                         "spiking network does not keep; only Gemm/MatMul can take it")
    axis = norm_axis(ctx, ctx.attr_int("axis", 1), rank + 1)
    if axis == 0:
        raise ctx.refuse("joins along the batch axis")
    if len(xs) == 1:
        return [xs[0]]
    # ONNX axis (batch counted) → our axis: (F,) stays; (C, L) → (1, L, C); (C, H, W) → (H, W, C)
    our_axis = {1: {1: 0}, 2: {1: 2, 2: 1}, 3: {1: 2, 2: 0, 3: 1}}[rank][axis]
    oshape = list(xs[0].oshape)
    oshape[axis - 1] = sum(x.oshape[axis - 1] for x in xs)
    for x in xs:
        if any(a != b for k, (a, b) in enumerate(zip(x.oshape, xs[0].oshape)) if k != axis - 1):
            raise ctx.refuse(f"cannot join shapes {[('N',) + x.oshape for x in xs]} on axis {axis}")
    oshape_t = tuple(oshape)
    return [ctx.emit([("concat", ops.Concat(axis=our_axis))], tuple(x.name for x in xs), oshape_t, key(oshape_t))]


def _reshape_to(ctx: Ctx, x: Val, target: tuple[int, ...]) -> list[Const | Val]:
    """x as ONNX per-sample shape ``target``: a C-order reshape in ONNX, exact here only if our order allows."""
    if target == x.oshape:
        return [x]
    if not 1 <= len(target) <= 3:
        raise ctx.refuse(f"makes shape {('N',) + target}; supported are (N, F), (N, C, L) and (N, C, H, W)")
    if len(target) == 1:
        src = x.src  # a flat tensor may keep any order until a Gemm/MatMul folds it
    else:
        src = key(target)
        if not same_order(x.src, src):
            raise ctx.refuse(f"reshapes {('N',) + x.oshape} into {('N',) + target}, which reorders "
                             "elements between NCHW and the channels-last layout; not supported")
    if ours_shape(target) == ctx.conv.shapes[x.name]:
        return [Val(x.name, target, src)]
    return [ctx.emit([("reshape", ops.Reshape(ours_shape(target)))], (x.name,), target, src)]


def h_flatten(ctx: Ctx) -> list[Const | Val]:
    x = ctx.val(0)
    axis = ctx.attr_int("axis", 1)
    axis = axis + len(x.oshape) + 1 if axis < 0 else axis
    if axis != 1:
        raise ctx.refuse(f"has axis {axis}; only axis 1 (keep the batch axis) is supported")
    return _reshape_to(ctx, x, (math.prod(x.oshape),))


def h_reshape(ctx: Ctx) -> list[Const | Val]:
    """Reshape to a constant target; its batch entry may be 0, -1, the batch size (possibly computed
    from Shape, as in ``x.view(x.size(0), -1)``) or the model's fixed batch size."""
    x = ctx.val(0)
    shp = ctx.ins[1] if len(ctx.ins) > 1 else None
    if not isinstance(shp, Const):
        raise ctx.refuse("its target shape is not a constant")
    n1, n2 = ctx.conv.batch
    t1 = [int(v) for v in shp.value.reshape(-1)]
    t2 = [int(v) for v in shp.alt.reshape(-1)] if shp.alt is not None else t1
    if not t1 or len(t1) != len(t2) or t1[1:] != t2[1:]:
        raise ctx.refuse(f"its target shape {t1} depends on the batch size beyond its first entry")
    allowzero = ctx.attr_int("allowzero", 0)
    first = t1[0]
    if not ((first == 0 and not allowzero) or first == -1 or (first, t2[0]) in ((n1, n2), (n1, n1))):
        raise ctx.refuse(f"reshapes to {t1}, which does not keep the batch axis first")
    # 0 copies the input's dim at the same position (unless allowzero); at most one -1 is inferred
    per = [x.oshape[k] if v == 0 and not allowzero and k < len(x.oshape) else v
           for k, v in enumerate(t1[1:])]
    total = math.prod(x.oshape)
    if any(v < -1 for v in per) or per.count(-1) > (0 if first == -1 else 1):
        raise ctx.refuse(f"has an invalid target shape {t1}")
    if -1 in per:
        known = math.prod(v for v in per if v != -1)
        per[per.index(-1)] = total // known if known and total % known == 0 else -1
    if math.prod(per) != total or -1 in per:
        raise ctx.refuse(f"cannot reshape {('N',) + x.oshape} to {t1} without mixing samples")
    return _reshape_to(ctx, x, tuple(per))


def h_squeeze(ctx: Ctx) -> list[Const | Val]:
    x = ctx.val(0)
    full = squeezed(ctx, (2,) + x.oshape, ctx.axes(1))  # batch 2: never squeezed by "all unit axes"
    if not full or full[0] != 2:
        raise ctx.refuse("squeezes the batch axis")
    return _reshape_to(ctx, x, full[1:])


def h_unsqueeze(ctx: Ctx) -> list[Const | Val]:
    x = ctx.val(0)
    axes = ctx.axes(1)
    if not axes:
        raise ctx.refuse("has no axes")
    full = unsqueezed(ctx, (2,) + x.oshape, axes)
    if full[0] != 2:
        raise ctx.refuse("inserts an axis before the batch axis")
    return _reshape_to(ctx, x, full[1:])
