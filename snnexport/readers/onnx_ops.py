"""ONNX reader: the handlers of the operators that compute (Conv, pooling, Gemm/MatMul, BatchNorm,
activations, element-wise arithmetic). Each takes a :class:`~snnexport.readers.onnx_layout.Ctx` and
returns the node's outputs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import ops, resize
from ..errors import SnnexportError
from .onnx_fold import norm_axis
from ..layout import kernel_to_ours, key, order, same_order
from .onnx_layout import Const, Ctx, Val, to_ours

def _pairs(ctx: Ctx, name: str, rank: int, default: int) -> list[int]:
    v = ctx.ints(name) or [default] * rank
    if len(v) != rank:
        raise ctx.refuse(f"attribute {name} has {len(v)} values; {rank} expected")
    return v


def _padding(ctx: Ctx, size: tuple[int, ...], kernel: list[int], strides: list[int],
             dilations: list[int]) -> list[tuple[int, int]]:
    """Explicit (begin, end) padding per spatial axis from ``pads`` or ``auto_pad``."""
    r = len(size)
    auto = ctx.attr_str("auto_pad", "NOTSET")
    if auto == "NOTSET":
        pads = ctx.ints("pads") or [0] * (2 * r)
        if len(pads) != 2 * r:
            raise ctx.refuse(f"has {len(pads)} pads; {2 * r} expected")
        if any(p < 0 for p in pads):
            raise ctx.refuse(f"has negative pads {pads}")
        return [(pads[k], pads[k + r]) for k in range(r)]
    if auto == "VALID":
        return [(0, 0)] * r
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for n, k, s, d in zip(size, kernel, strides, dilations):
            small, big = ops.same_padding(n, k, s, d)  # the extra cell goes after, as SAME_UPPER
            out.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return out
    raise ctx.refuse(f"has auto_pad {auto!r}; supported: NOTSET, VALID, SAME_UPPER, SAME_LOWER")


def _geometry(ctx: Ctx, x: Val, kernel: list[int], pool: bool
              ) -> tuple[list[int], list[int], list[tuple[int, int]], list[int], tuple[int, ...]]:
    """strides, dilations, explicit padding, ceil_mode's extra end padding and the output size."""
    size = x.oshape[1:]
    r = len(size)
    if len(kernel) != r:
        raise ctx.refuse(f"has a {len(kernel)}-D kernel for a {r}-D input")
    if any(k < 1 for k in kernel):
        raise ctx.refuse(f"has kernel size {kernel}")
    strides = _pairs(ctx, "strides", r, 1)
    dilations = _pairs(ctx, "dilations", r, 1)
    if any(s < 1 for s in strides) or any(d < 1 for d in dilations):
        raise ctx.refuse(f"has strides {strides} and dilations {dilations}; they must be positive")
    pads = _padding(ctx, size, kernel, strides, dilations)
    ceil = bool(ctx.attr_int("ceil_mode", 0)) if pool else False
    extra, out = [], []
    for n, k, s, d, (b, e) in zip(size, kernel, strides, dilations, pads):
        eff = (k - 1) * d + 1
        span = n + b + e - eff
        if span < 0:
            raise ctx.refuse(f"its window {eff} is larger than the padded input {n + b + e}")
        if pool and max(b, e) >= eff:
            raise ctx.refuse(f"has pads {b, e} not smaller than its window {eff}")
        o = span // s + 1
        if ceil:
            o = -(-span // s) + 1
            if (o - 1) * s >= n + b:  # the last window must start inside the input (as PyTorch, ONNX)
                o -= 1
        extra.append(max((o - 1) * s + eff - (n + b + e), 0))
        out.append(o)
    return strides, dilations, pads, extra, tuple(out)


def as2d(values: list[Any], fill: Any) -> tuple[Any, Any]:
    """A 1-D attribute (L axis) as the (H, W) pair of our (1, L, C) layout; 2-D ones unchanged."""
    return (fill, values[0]) if len(values) == 1 else (values[0], values[1])


def h_conv(ctx: Ctx) -> list[Const | Val]:
    x = ctx.spatial(0)
    w = ctx.weights(1, "weight")
    r = len(x.oshape) - 1
    if w.ndim != r + 2:
        raise ctx.refuse(f"has a weight of shape {w.shape} for a {r}-D input")
    groups = ctx.attr_int("group", 1)
    cout, cig = w.shape[:2]
    cin = x.oshape[0]
    if groups < 1 or cig * groups != cin or cout % groups:
        raise ctx.refuse(f"has weight shape {w.shape} and group {groups} for {cin} input channels")
    kernel = list(w.shape[2:])
    if ctx.ints("kernel_shape") not in (None, kernel):
        raise ctx.refuse(f"kernel_shape {ctx.ints('kernel_shape')} differs from its weight's {kernel}")
    strides, dilations, pads, _, out = _geometry(ctx, x, kernel, pool=False)
    return _conv(ctx, x, w, groups, strides, dilations, pads, out)


def _conv(ctx: Ctx, x: Val, w: np.ndarray, groups: int, strides: list[int], dilations: list[int],
          pads: list[tuple[int, int]], out: tuple[int, ...]) -> list[Const | Val]:
    """The Conv2D op of an ONNX (O, I/g, k...) weight and this node's bias (input 2)."""
    cout = w.shape[0]
    bias = ctx.weights(2, "bias").reshape(-1) if ctx.has(2) else None
    if bias is not None and bias.shape != (cout,):
        raise ctx.refuse(f"has a bias of shape {bias.shape} for {cout} output channels")
    # (O, I/g, kh, kw) -> (kh, kw, I/g, O); 1-D (O, I/g, k) -> (1, k, I/g, O)
    kern = kernel_to_ours(w)
    if len(out) == 1:
        kern = kern[None]
    op = ops.Conv2D(kernel=np.array(kern, np.float32, order="C"),
                    bias=None if bias is None else bias.astype(np.float32),
                    strides=as2d(strides, 1), padding=as2d(pads, (0, 0)),
                    dilation=as2d(dilations, 1), groups=groups)
    oshape = (cout,) + out
    return [ctx.emit([("conv", op)], (x.name,), oshape, key(oshape))]


def h_conv_transpose(ctx: Ctx) -> list[Const | Val]:
    """ConvTranspose as :class:`~snnexport.ops.ConvTranspose` (any strides, dilations, groups): the full
    output cropped by ``pads``, extended at the end by ``output_padding``."""
    x = ctx.spatial(0)
    w = ctx.weights(1, "weight")  # (I, O/g, k...)
    r = len(x.oshape) - 1
    groups = ctx.attr_int("group", 1)
    if w.ndim != r + 2 or groups < 1 or w.shape[0] != x.oshape[0] or w.shape[0] % groups:
        raise ctx.refuse(f"has weight shape {w.shape} and group {groups} for {x.oshape[0]} input channels")
    kernel = list(w.shape[2:])
    strides, dilations = _pairs(ctx, "strides", r, 1), _pairs(ctx, "dilations", r, 1)
    if any(s < 1 for s in strides) or any(d < 1 for d in dilations) or ctx.ints("kernel_shape") not in (None, kernel):
        raise ctx.refuse(f"has strides {strides}, dilations {dilations} and kernel_shape {ctx.ints('kernel_shape')} "
                         f"for its weight's {kernel}")
    if ctx.attr_str("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or "output_shape" in ctx.attrs:
        raise ctx.refuse("sets auto_pad SAME or output_shape; only explicit pads are supported")
    extra = _pairs(ctx, "output_padding", r, 0)
    pads = [0] * (2 * r) if ctx.attr_str("auto_pad", "NOTSET") == "VALID" else ctx.ints("pads") or [0] * (2 * r)
    if len(pads) != 2 * r or min(pads) < 0 or min(extra) < 0:
        raise ctx.refuse(f"has pads {pads} and output_padding {extra}; {2 * r} pads and {r} output paddings, "
                         "none negative, expected")
    crop = [(pads[i], pads[i + r] - extra[i]) for i in range(r)]
    out = tuple(ops.transposed_size(n, k, s, d, c)
                for n, k, s, d, c in zip(x.oshape[1:], kernel, strides, dilations, crop))
    if min(out) < 1:
        raise ctx.refuse(f"has pads {pads} that leave no output of an input of shape {x.oshape}")
    cig, cog = w.shape[0] // groups, w.shape[1]
    cout = groups * cog
    # (I, O/g, k...) = (g, I/g, O/g, k...) -> (k..., I/g, g, O/g) -> (k..., I/g, O): output channel g·cog + j
    kern = np.moveaxis(w.reshape((groups, cig, cog) + tuple(kernel)), (0, 1, 2), (-2, -3, -1))
    kern = kern.reshape(tuple(kernel) + (cig, cout))
    if r == 1:
        kern = kern[None]
    bias = ctx.weights(2, "bias").reshape(-1) if ctx.has(2) else None
    if bias is not None and bias.shape != (cout,):
        raise ctx.refuse(f"has a bias of shape {bias.shape} for {cout} output channels")
    op = ops.ConvTranspose(kernel=np.array(kern, np.float32, order="C"),
                           bias=None if bias is None else bias.astype(np.float32),
                           strides=as2d(strides, 1), crop=as2d(crop, (0, 0)), dilation=as2d(dilations, 1),
                           groups=groups)
    oshape = (cout,) + out
    return [ctx.emit([("conv_transpose", op)], (x.name,), oshape, key(oshape))]


def _resize_sizes(ctx: Ctx, x: Val) -> tuple[list[int], list[float]]:
    """Resize's spatial output sizes and scales, from ``sizes`` (input 3) or ``scales`` (input 2), whichever
    is given and not empty; batch and channels must stay (a sizes tensor built from the input's shape may
    name the batch: only its other entries must be fixed)."""
    rank = len(x.oshape) + 1
    given = {}
    for i, what in ((2, "scales"), (3, "sizes")):
        v = ctx.ins[i] if i < len(ctx.ins) else None
        if isinstance(v, Val):
            raise ctx.refuse(f"its {what} (input {i}) is computed from the model input; only constant {what} "
                             "are supported")
        if isinstance(v, Const) and v.value.size:
            if v.alt is not None and not np.array_equal(np.asarray(v.alt).reshape(-1)[1:],
                                                        np.asarray(v.value).reshape(-1)[1:]):
                raise ctx.refuse(f"its {what} (input {i}) depends on the batch size beyond the batch entry")
            given[what] = np.asarray(v.value, np.float64).reshape(-1)
    if len(given) != 1:
        raise ctx.refuse("needs exactly one of scales and sizes")
    (what, values), = given.items()
    if len(values) != rank or not np.isfinite(values).all() or (values[1:] <= 0).any():
        raise ctx.refuse(f"has {what} {values.tolist()} for a rank-{rank} input")
    spatial = list(x.oshape[1:])
    if what == "sizes":
        if values[1] != x.oshape[0] or (values != np.round(values)).any():
            raise ctx.refuse(f"has sizes {values.astype(np.int64).tolist()}; only spatial axes may be resized")
        out = [int(v) for v in values[2:]]
        return out, [o / n for o, n in zip(out, spatial)]
    if values[0] != 1 or values[1] != 1:
        raise ctx.refuse(f"has scales {values.tolist()}; only spatial axes may be resized")
    out = [int(math.floor(n * float(sc))) for n, sc in zip(spatial, values[2:])]
    if min(out) < 1:
        raise ctx.refuse(f"has scales {values.tolist()} that leave no output")
    return out, [float(sc) for sc in values[2:]]


def h_resize(ctx: Ctx) -> list[Const | Val]:
    """Resize, modes 'nearest' and 'linear' (any scale, coordinate_transformation_mode half_pixel,
    pytorch_half_pixel, align_corners or asymmetric): a fixed interpolation matrix per spatial axis,
    carried by :func:`snnexport.resize.separable_chain`."""
    x = ctx.spatial(0)
    mode = ctx.attr_str("mode", "nearest")
    coords = ctx.attr_str("coordinate_transformation_mode", "half_pixel")
    nearest = ctx.attr_str("nearest_mode", "round_prefer_floor")
    if mode not in ("nearest", "linear"):
        raise ctx.refuse(f"has mode {mode!r}; supported: 'nearest', 'linear'")
    if coords not in resize.ONNX_COORDINATES:
        raise ctx.refuse(f"has coordinate_transformation_mode {coords!r}; supported: "
                         f"{', '.join(map(repr, resize.ONNX_COORDINATES))}")
    if mode == "nearest" and nearest not in resize.ONNX_NEAREST:
        raise ctx.refuse(f"has nearest_mode {nearest!r}; supported: {', '.join(map(repr, resize.ONNX_NEAREST))}")
    if "axes" in ctx.attrs or ctx.attr_str("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise ctx.refuse("sets axes or keep_aspect_ratio_policy; only scales or sizes of every axis are supported")
    out, scales = _resize_sizes(ctx, x)
    if ctx.attr_int("antialias", 0) and min(scales) < 1:
        raise ctx.refuse("has antialias=1 and shrinks an axis; antialiased downsampling is not supported")
    mats = [resize.onnx_matrix(mode, coords, n, o, sc, nearest) for n, o, sc in zip(x.oshape[1:], out, scales)]
    if len(mats) == 1:  # (C, L) is our (1, L, C)
        mats.insert(0, np.eye(1, dtype=np.float32))
    chain = resize.separable_chain(mats[0], mats[1])
    if not chain:
        return [x]
    oshape = (x.oshape[0],) + tuple(out)
    return [ctx.emit(chain, (x.name,), oshape, key(oshape))]


def _pool_common(ctx: Ctx) -> tuple[Val, list[int]]:
    x = ctx.spatial(0)
    kernel = ctx.ints("kernel_shape")
    if kernel is None:
        raise ctx.refuse("has no kernel_shape")
    if any(d != 1 for d in ctx.ints("dilations") or []):
        raise ctx.refuse(f"has dilations {ctx.ints('dilations')}; only 1 is supported for pooling")
    return x, kernel


def h_maxpool(ctx: Ctx) -> list[Const | Val]:
    x, kernel = _pool_common(ctx)
    if ctx.output_used(1):
        raise ctx.refuse("its second output (the indices) is used; only the pooled values are supported")
    strides, _, pads, extra, out = _geometry(ctx, x, kernel, pool=True)
    padding = [(b, e + x_) for (b, e), x_ in zip(pads, extra)]  # ceil_mode: more end padding
    op = ops.MaxPool(pool=as2d(kernel, 1), strides=as2d(strides, 1), padding=as2d(padding, (0, 0)))
    oshape = (x.oshape[0],) + out
    return [ctx.emit([("pool", op)], (x.name,), oshape, key(oshape))]


def h_avgpool(ctx: Ctx) -> list[Const | Val]:
    x, kernel = _pool_common(ctx)
    strides, _, pads, extra, out = _geometry(ctx, x, kernel, pool=True)
    chain: list[tuple[str, ops.Op]] = []
    if ctx.attr_int("count_include_pad", 0) and any(b or e for b, e in pads):
        # PyTorch's default: padded zeros count. Pad them explicitly, so that each window divides
        # by its size; ceil_mode's extra cells are outside the padded input and never count.
        chain.append(("pad", ops.Pad(as2d(pads, (0, 0)))))
        padding = [(0, x_) for x_ in extra]
    else:  # padded cells excluded from the divisor, as our AvgPool (and Keras) do
        padding = [(b, e + x_) for (b, e), x_ in zip(pads, extra)]
    chain.append(("pool", ops.AvgPool(pool=as2d(kernel, 1), strides=as2d(strides, 1),
                                      padding=as2d(padding, (0, 0)))))
    oshape = (x.oshape[0],) + out
    return [ctx.emit(chain, (x.name,), oshape, key(oshape))]


def _global_pool(ctx: Ctx, x: Val, kind: type[ops.MaxPool] | type[ops.AvgPool], keepdims: bool
                 ) -> list[Const | Val]:
    h, w, c = ctx.conv.shapes[x.name]
    chain: list[tuple[str, ops.Op]] = [("pool", kind(pool=(h, w), strides=(h, w)))]
    oshape = (c,) + (1,) * (len(x.oshape) - 1)
    if not keepdims:
        chain.append(("reshape", ops.Reshape((c,))))
        oshape = (c,)
    return [ctx.emit(chain, (x.name,), oshape, None)]


def h_global_pool(ctx: Ctx) -> list[Const | Val]:
    kind = ops.MaxPool if ctx.node.op_type == "GlobalMaxPool" else ops.AvgPool
    return _global_pool(ctx, ctx.spatial(0), kind, keepdims=True)


def h_reduce(ctx: Ctx) -> list[Const | Val]:
    """ReduceMean/ReduceMax over all spatial axes (PyTorch's x.mean((2, 3))) is global pooling."""
    x = ctx.spatial(0)
    axes = ctx.axes(1)
    rank = len(x.oshape) + 1
    spatial = set(range(2, rank))
    if not axes or {norm_axis(ctx, a, rank) for a in axes} != spatial:
        raise ctx.refuse(f"reduces axes {axes}; only all spatial axes {sorted(spatial)} (global pooling) "
                         "are supported")
    kind = ops.MaxPool if ctx.node.op_type == "ReduceMax" else ops.AvgPool
    return _global_pool(ctx, x, kind, keepdims=bool(ctx.attr_int("keepdims", 1)))


def _dense(ctx: Ctx, x: Val, weight: np.ndarray, bias: np.ndarray | None) -> list[Const | Val]:
    """Dense on a flat tensor: its rows follow our order of the input (the NCHW-flatten fold)."""
    if weight.ndim != 2 or weight.shape[0] != x.oshape[0]:
        raise ctx.refuse(f"has a weight of shape {weight.shape} for {x.oshape[0]} inputs")
    if x.src is not None:
        weight = weight[order(x.src)]
    op = ops.Dense(weight=np.array(weight, np.float32, order="C"),
                   bias=None if bias is None else bias.astype(np.float32))
    return [ctx.emit([("dense", op)], (x.name,), (weight.shape[1],), None)]


def h_gemm(ctx: Ctx) -> list[Const | Val]:
    x = ctx.flat(0)
    if ctx.attr_int("transA", 0):
        raise ctx.refuse("has transA=1; only transA=0 is supported")
    b = ctx.weights(1, "weight")
    if b.ndim != 2:
        raise ctx.refuse(f"has a weight of shape {b.shape}; 2-D expected")
    w = b.T if ctx.attr_int("transB", 0) else b
    alpha = ctx.attr_float("alpha", 1.0)
    w = w if alpha == 1.0 else alpha * w.astype(np.float64)
    bias = None
    if ctx.has(2):
        c = ctx.weights(2, "bias")
        try:
            bias = ctx.attr_float("beta", 1.0) * np.broadcast_to(c, (1, w.shape[1]))[0].astype(np.float64)
        except ValueError:
            raise ctx.refuse(f"has a bias of shape {c.shape} for {w.shape[1]} outputs") from None
    return _dense(ctx, x, w, bias)


def h_matmul(ctx: Ctx) -> list[Const | Val]:
    return _dense(ctx, ctx.flat(0), ctx.weights(1, "weight"), None)


def _channel_vector(ctx: Ctx, x: Val, c: np.ndarray) -> np.ndarray:
    """The constant ``c``, broadcast against ``x`` by ONNX's rules, as one value per element of our last axis."""
    rank = len(x.oshape)
    if c.ndim > rank + 1 or (c.ndim == rank + 1 and c.shape[0] != 1):
        raise ctx.refuse(f"a constant of shape {c.shape} would change the shape {('N',) + x.oshape}")
    if c.ndim == rank + 1:
        c = c[0]
    try:
        full = np.broadcast_to(c, x.oshape)
    except ValueError:
        raise ctx.refuse(f"a constant of shape {c.shape} does not broadcast to {('N',) + x.oshape}") from None
    ours = to_ours(x, full)
    vec = np.array(ours.reshape(-1, ours.shape[-1])[0])
    if not np.array_equal(ours, np.broadcast_to(vec, ours.shape)):
        raise ctx.refuse(f"a constant of shape {c.shape} varies along more than the channel axis; "
                         "only a number or one value per channel is supported")
    return vec


def _affine(ctx: Ctx, x: Val, scale: np.ndarray | None, offset: np.ndarray | None) -> list[Const | Val]:
    """Affine on our last axis from float64 vectors (None: scale 1 / offset 0)."""
    c = ctx.conv.shapes[x.name][-1]
    sc = np.ones(c) if scale is None else scale
    if not (np.isfinite(sc).all() and (offset is None or np.isfinite(offset).all())):
        raise SnnexportError(f"{ctx.label} gives a non-finite scale or offset")
    op = ops.Affine(scale=sc.astype(np.float32), offset=None if offset is None else offset.astype(np.float32))
    return [ctx.emit([("affine", op)], (x.name,), x.oshape, x.src)]


def h_batchnorm(ctx: Ctx) -> list[Const | Val]:
    x = ctx.val(0)
    if ctx.attr_int("training_mode", 0) or any(ctx.output_used(k) for k in range(1, len(ctx.node.output))):
        raise ctx.refuse("is in training mode; only inference BatchNormalization (running statistics) "
                         "is supported")
    c = x.oshape[0]
    params = [ctx.weights(k, what).astype(np.float64)
              for k, what in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance"))]
    if any(p.shape != (c,) for p in params):
        raise ctx.refuse(f"has parameters of shapes {[p.shape for p in params]} for {c} channels")
    gamma, beta, mean, var = params
    eps = ctx.attr_float("epsilon", 1e-5)
    if (var + eps < 0).any():
        raise SnnexportError(f"{ctx.label} has a negative variance")
    # float64 for the fold: var + eps can be small, and the result must match ONNX to 1e-5
    scale = gamma / np.sqrt(var + eps)
    offset = beta - mean * scale
    per = (c,) + (1,) * (len(x.oshape) - 1)
    return _affine(ctx, x, _channel_vector(ctx, x, scale.reshape(per)),
                   _channel_vector(ctx, x, offset.reshape(per)))


def _activation(ctx: Ctx, x: Val, act: ops.Activation) -> list[Const | Val]:
    return [ctx.emit([("activation", act)], (x.name,), x.oshape, x.src)]


def h_relu(ctx: Ctx) -> list[Const | Val]:
    return _activation(ctx, ctx.val(0), ops.Activation("relu"))


def _clip_bound(ctx: Ctx, i: int, attr: str) -> float | None:
    """Clip's min or max: an input (opset 11+) or an attribute (older opsets); None if absent."""
    if ctx.has(i):
        v = np.asarray(ctx.const(i, f"{attr} bound"), np.float64)
        if v.size != 1:
            raise ctx.refuse(f"its {attr} bound is not a single number")
        return float(v.reshape(()))
    return float(ctx.attrs[attr]) if attr in ctx.attrs else None


def h_clip(ctx: Ctx) -> list[Const | Val]:
    x = ctx.val(0)
    lo, hi = _clip_bound(ctx, 1, "min"), _clip_bound(ctx, 2, "max")
    if lo != 0.0:
        raise ctx.refuse(f"has min {lo}; only Clip(min=0, max) (a rectifier such as ReLU6) is supported")
    if hi is None or hi == math.inf:
        return _activation(ctx, x, ops.Activation("relu"))
    if not math.isfinite(hi) or hi <= 0:
        raise ctx.refuse(f"has max {hi}; it must be a positive number")
    return _activation(ctx, x, ops.Activation("clip", max_value=hi))


def h_softmax(ctx: Ctx) -> list[Const | Val]:
    x = ctx.val(0)
    axis = ctx.attr_int("axis", -1 if ctx.conv.opset >= 13 else 1)
    rank = len(x.oshape) + 1
    if len(x.oshape) != 1 or norm_axis(ctx, axis, rank) != 1:
        raise ctx.refuse(f"acts on axis {axis} of shape {('N',) + x.oshape}; only the class axis of an "
                         "(N, classes) tensor is supported")
    return _activation(ctx, x, ops.Activation("softmax"))


def h_arith(ctx: Ctx) -> list[Const | Val]:
    op = ctx.node.op_type
    a, b = ctx.ins[0], ctx.ins[1]
    if isinstance(a, Val) and isinstance(b, Val):
        if op not in ("Add", "Sub"):
            raise ctx.refuse(f"{op} of two computed tensors is not supported (only of a tensor and a constant)")
        if a.oshape != b.oshape or not same_order(a.src, b.src):
            raise ctx.refuse(f"combines shapes {('N',) + a.oshape} and {('N',) + b.oshape}; broadcasting "
                             "between two computed tensors is not supported")
        second = ctx.aux("negate", ops.Scale(-1.0), (b.name,)) if op == "Sub" else b.name
        return [ctx.emit([("add", ops.Add())], (a.name, second), a.oshape, a.src)]
    const_first = isinstance(b, Val)
    x = ctx.val(1 if const_first else 0)
    vec = _channel_vector(ctx, x, ctx.weights(0 if const_first else 1, "constant operand"))
    if op == "Add":
        return _affine(ctx, x, None, vec)
    if op == "Sub":
        return _affine(ctx, x, -np.ones_like(vec), vec) if const_first else _affine(ctx, x, None, -vec)
    if op == "Mul":
        return _affine(ctx, x, vec, None)
    if const_first:
        raise ctx.refuse("divides a constant by a computed tensor, which is not supported")
    if (vec == 0).any():
        raise ctx.refuse("divides by zero")
    return _affine(ctx, x, 1.0 / vec, None)
