"""Read a trained Keras model (.h5 or .keras) into an ANN :class:`~snnexport.graph.Graph`.

Safety first: the model's config is read and checked as plain JSON *before* Keras deserializes
anything, so a file holding a Lambda layer, a custom class or a custom activation is refused
without any of its code running. Only then does Keras load it (``safe_mode=True``).

Layout: the graph is NHWC. Keras tensors of shape (L, C) (1-D layers) become (1, L, C); every
other rank keeps its shape, so callers feed 1-D models x.reshape((N,) + graph.input_shape).

Memory: Keras loads inside a ``StatelessScope`` so that it never materializes the random initial
weights (see :class:`~snnexport.readers.keras_graph.Loaded`); each weight is copied out as a
float32 numpy array and Keras' buffer freed at once; the Keras model is dropped at the end. VGG16
(553 MB of weights) peaks at about 2.3x its weights' size including the ~270 MB of the Keras/JAX
import, and reads in about 2 s.

The reader in three modules, one per step: :mod:`~snnexport.readers.keras_config` checks the raw
config; this module loads the file with Keras and holds the handler table (what each layer class
becomes); :mod:`~snnexport.readers.keras_graph` walks the Keras graph and calls the handlers.
"""

from __future__ import annotations

import gc
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .. import keras_layers, ops, resize
from ..errors import SnnexportError, UnsupportedLayerError
from ..graph import Graph
from .keras_config import (ACCEPTED_EXTENSIONS, KERAS_ACTIVATIONS, NO_OPS, SUPPORTED_LAYERS, check_config,
                           first_line, quote, read_config)
from .keras_graph import Builder, Handler, Loaded, Ref, canonical_shape, convert

__all__ = ["read_model", "SUPPORTED_LAYERS", "ACCEPTED_EXTENSIONS"]


def read_model(path: str | os.PathLike[str]) -> Graph:
    """Read a Keras .h5/.keras model into a Graph, refusing (one line) anything we cannot convert."""
    p = Path(path)
    try:
        check_config(read_config(p))  # before Keras sees the file: no model code may ever run
        loaded = _load_keras(p)
        try:
            graph = convert(loaded, _HANDLERS)
        except SnnexportError:
            raise
        except Exception as e:  # a model shape we did not foresee: still one line, never a traceback
            raise SnnexportError(f"{p}: cannot convert the model: {type(e).__name__}: {first_line(e)} "
                                 "(please report this)") from None
        finally:
            del loaded
            gc.collect()  # the Keras model and its scope hold the only other copy of the weights
    except SnnexportError as e:
        if str(e).startswith(f"{p}:"):
            raise
        raise type(e)(f"{p}: {e}") from None  # every refusal names the file, e.g. "model.h5: layer 'x': ..."
    return graph


# --------------------------------------------------------------------------------------------
# Step 2: load with Keras (safe mode) and turn every failure into one line.


def _load_keras(path: Path) -> Loaded:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras
        from keras.src.backend.common import global_state
    except Exception as e:  # pragma: no cover - environment problem
        raise SnnexportError(f"cannot import Keras: {first_line(e)}") from None
    # Deferred variables register themselves globally; put the registry back as it was, or a
    # later StatelessScope elsewhere in this process would initialize our 138 M dead weights.
    registry = global_state.get_global_attribute("uninitialized_variables")
    saved = list(registry) if registry else []
    scope = keras.StatelessScope(initialize_variables=False)
    try:
        # Keras' warnings (about an optimizer it skips, say) are Python's multi-line noise to a user
        with scope, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # snnexport's own layers, by their registered names (no code of the file runs)
            custom = keras_layers.own_classes()
            model = keras.models.load_model(str(path), compile=False, safe_mode=True, custom_objects=custom)
    except Exception as e:
        raise SnnexportError(f"{path}: Keras could not load the model: {first_line(e)}") from None
    finally:
        global_state.set_global_attribute("uninitialized_variables", saved)
    return Loaded(model, scope)


# --------------------------------------------------------------------------------------------
# Step 3: what each layer class becomes (keras_graph walks the model and calls these).


def _with_activation(b: Builder, layer: Any, path: str, op: ops.Op, ins: list[Ref],
                     out_kshape: tuple[int, ...]) -> Ref:
    """A weighted op plus its fused ``activation=``, as two nodes when the activation is real."""
    act = _activation_op(layer, getattr(layer, "activation", None))
    chain: list[tuple[str, ops.Op]] = [("linear", op)]
    if act is not None:
        chain.append(("activation", act))
    return b.emit(layer, path, chain, ins, out_kshape)


def _bias(b: Builder, layer: Any) -> np.ndarray | None:
    if not getattr(layer, "use_bias", False) or layer.bias is None:
        return None
    return b.take(layer, layer.bias)


def _activation_op(layer: Any, fn: Any) -> ops.Activation | None:
    import keras

    if fn is None:
        return None
    try:
        name = keras.activations.serialize(fn)
    except Exception:
        name = None
    if not isinstance(name, str) or name not in KERAS_ACTIVATIONS:
        shown = name if isinstance(name, str) else getattr(fn, "__name__", "a custom function")
        raise UnsupportedLayerError(
            f"layer {quote(layer.name)} ({type(layer).__name__}) has activation {shown!r}; supported "
            f"activations: {', '.join(KERAS_ACTIVATIONS)}")
    function, max_value = KERAS_ACTIVATIONS[name]
    return None if function is None else ops.Activation(function, max_value)


def _geometry(layer: Any, size: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int],
              dilation: tuple[int, int] = (1, 1)) -> ops.Pad2:
    """Explicit padding for 'valid', 'same' and (1-D only) 'causal'."""
    mode = str(layer.padding).lower()
    if mode == "valid":
        return ((0, 0), (0, 0))
    if mode == "same":
        return (ops.same_padding(size[0], kernel[0], strides[0], dilation[0]),
                ops.same_padding(size[1], kernel[1], strides[1], dilation[1]))
    if mode == "causal":  # Keras pads the past only: (k-1)*d cells on the left
        return ((0, 0), ((kernel[1] - 1) * dilation[1], 0))
    raise UnsupportedLayerError(f"layer {quote(layer.name)} ({type(layer).__name__}) has padding "
                                f"{layer.padding!r}; supported: 'valid', 'same'")


def _pair(v: Any, one_d: bool) -> tuple[int, int]:
    t = tuple(int(x) for x in (v if isinstance(v, (tuple, list)) else (v,)))
    if one_d:
        return (1, t[0])
    return (t[0], t[1]) if len(t) == 2 else (t[0], t[0])


# handlers: (builder, layer, inputs, keras output shape, path) -> Ref --------------------------


def _h_dense(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    op = ops.Dense(weight=b.take(layer, layer.kernel), bias=_bias(b, layer))
    return _with_activation(b, layer, path, op, ins, out)


def _h_conv(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    cls = type(layer).__name__
    one_d = cls.endswith("1D")
    h, w, _ = ins[0].shape
    kernel = b.take(layer, layer.kernel)
    if cls.startswith("Depthwise"):
        # Keras (k.., cin, m) -> grouped conv with groups=cin; output channel c*m + j matches Keras.
        cin, mult = kernel.shape[-2], kernel.shape[-1]
        kernel = kernel.reshape(kernel.shape[:-2] + (1, cin * mult))
        groups = cin
    else:
        groups = int(getattr(layer, "groups", 1))
    if one_d:
        kernel = kernel[None]  # (k, cin/g, cout) -> (1, k, cin/g, cout)
    ksize = (kernel.shape[0], kernel.shape[1])
    strides = _pair(layer.strides, one_d)
    dilation = _pair(layer.dilation_rate, one_d)
    padding = _geometry(layer, (h, w), ksize, strides, dilation)
    op = ops.Conv2D(kernel=kernel, bias=_bias(b, layer), strides=strides, padding=padding,
                    dilation=dilation, groups=groups)
    return _with_activation(b, layer, path, op, ins, out)


def _h_separable(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    """SeparableConv1D/2D: its depthwise convolution, then the 1×1 pointwise one (with the bias and activation)."""
    one_d = type(layer).__name__.endswith("1D")
    h, w, cin = ins[0].shape
    depth = b.take(layer, layer.depthwise_kernel)  # (k.., cin, m)
    point = b.take(layer, layer.pointwise_kernel)  # (1.., cin*m, cout)
    depth = depth.reshape(depth.shape[:-2] + (1, cin * depth.shape[-1]))
    if one_d:
        depth, point = depth[None], point[None]
    strides, dilation = _pair(layer.strides, one_d), _pair(layer.dilation_rate, one_d)
    padding = _geometry(layer, (h, w), (depth.shape[0], depth.shape[1]), strides, dilation)
    chain: list[tuple[str, ops.Op]] = [
        ("depthwise", ops.Conv2D(kernel=depth, strides=strides, padding=padding, dilation=dilation, groups=cin)),
        ("linear", ops.Conv2D(kernel=point, bias=_bias(b, layer)))]
    act = _activation_op(layer, getattr(layer, "activation", None))
    return b.emit(layer, path, chain + ([("activation", act)] if act is not None else []), ins, out)


def _transpose_crop(layer: Any, kernel: int, stride: int, dilation: int,
                    output_padding: int | None) -> tuple[int, int]:
    """Cells Keras' Conv{1,2}DTranspose removes from each end of the full transposed output (negative: adds).

    Keras pads the stride-dilated input by (left, right) for a convolution with the flipped kernel: a total
    of k' − 1 + k' − 1 + output_padding ('valid', output_padding defaulting to max(k', s) − k'), or
    s + k' − 2 ('same' without output_padding), or k' + k' mod 2 − 2 + output_padding, with left the larger
    half but at most k' − 1 (k' the dilated kernel). A side padded by k' − 1 keeps every cell: crop k' − 1 − pad.
    """
    eff = (kernel - 1) * dilation + 1
    if str(layer.padding).lower() == "valid":
        extra = max(eff, stride) - eff if output_padding is None else output_padding
        return 0, -extra
    total = stride + eff - 2 if output_padding is None else eff + eff % 2 - 2 + output_padding
    left = min(total - total // 2, eff - 1)
    return eff - 1 - left, eff - 1 - (total - left)


def _h_conv_transpose(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    """Conv1DTranspose/Conv2DTranspose: Keras' (k.., cout, cin) kernel as ours (k.., cin, cout)."""
    one_d = type(layer).__name__.startswith("Conv1D")
    kernel = np.swapaxes(b.take(layer, layer.kernel), -1, -2)
    if one_d:
        kernel = kernel[None]
    strides, dilation = _pair(layer.strides, one_d), _pair(layer.dilation_rate, one_d)
    extra = layer.output_padding
    extra = (None, None) if extra is None else _pair(extra, one_d)
    if one_d:
        extra = (0, extra[1])
    crop = tuple(_transpose_crop(layer, k, s, d, e) if not (one_d and axis == 0) else (0, 0)
                 for axis, (k, s, d, e) in enumerate(zip(kernel.shape[:2], strides, dilation, extra)))
    op = ops.ConvTranspose(kernel=np.ascontiguousarray(kernel), bias=_bias(b, layer), strides=strides,
                           crop=crop, dilation=dilation)
    return _with_activation(b, layer, path, op, ins, out)


def _h_upsampling(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    """UpSampling1D/2D. Nearest: every cell copied into a size block, a depthwise transposed convolution of
    ones with stride = size. Bilinear, bicubic, lanczos3/5: Keras' fixed interpolation matrix per axis
    (:mod:`snnexport.resize`)."""
    one_d = type(layer).__name__.endswith("1D")
    method = "nearest" if one_d else str(layer.interpolation)
    size = _pair(layer.size, one_d)
    h, w, c = ins[0].shape
    if method == "nearest":
        op = ops.ConvTranspose(kernel=np.ones(size + (1, c), np.float32), strides=size, groups=c)
        return b.emit(layer, path, [("upsample", op)], ins, out)
    if method not in resize.KERAS_KERNELS:
        raise UnsupportedLayerError(f"layer {quote(layer.name)} (UpSampling2D) interpolates {method!r}; "
                                    f"supported: 'nearest', {', '.join(map(repr, resize.KERAS_KERNELS))}")
    chain = resize.separable_chain(resize.keras_matrix(method, h, h * size[0]),
                                   resize.keras_matrix(method, w, w * size[1]))
    if not chain:  # size (1, 1)
        return Ref(ins[0].name, out)
    return b.emit(layer, path, chain, ins, out)


def _h_cropping(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    """Cropping1D/2D: a 1×1 depthwise transposed convolution of ones that crops its output."""
    if type(layer).__name__ == "Cropping1D":
        crop: ops.Pad2 = ((0, 0), tuple(int(p) for p in layer.cropping))  # type: ignore[assignment]
    else:
        (t, bt), (l, r) = ((int(a), int(c)) for a, c in layer.cropping)
        crop = ((t, bt), (l, r))
    c = ins[0].shape[-1]
    op = ops.ConvTranspose(kernel=np.ones((1, 1, 1, c), np.float32), crop=crop, groups=c)
    return b.emit(layer, path, [("crop", op)], ins, out)


def _h_permute(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    dims = tuple(int(d) - 1 for d in layer.dims)  # Keras counts the batch axis
    rank = len(ins[0].kshape)
    if rank == 1:
        return Ref(ins[0].name, out)
    axes = dims if rank == 3 else (0,) + tuple(d + 1 for d in dims)  # (L, C) is stored as (1, L, C)
    return b.emit(layer, path, [("permute", ops.Transpose(axes))], ins, out)


def _h_pool(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    cls = type(layer).__name__
    one_d = cls.endswith("1D")
    h, w, _ = ins[0].shape
    pool = _pair(layer.pool_size, one_d)
    strides = _pair(layer.strides if layer.strides is not None else layer.pool_size, one_d)
    padding = _geometry(layer, (h, w), pool, strides)
    kind = ops.MaxPool if cls.startswith("Max") else ops.AvgPool
    return b.emit(layer, path, [("pool", kind(pool=pool, strides=strides, padding=padding))], ins, out)


def _h_global_pool(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    h, w, c = ins[0].shape
    kind = ops.MaxPool if "Max" in type(layer).__name__ else ops.AvgPool
    chain: list[tuple[str, ops.Op]] = [("pool", kind(pool=(h, w), strides=(h, w)))]
    if not getattr(layer, "keepdims", False):
        chain.append(("reshape", ops.Reshape((c,))))
    return b.emit(layer, path, chain, ins, out)


def _h_batchnorm(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    rank = len(ins[0].kshape)
    axis = layer.axis if isinstance(layer.axis, int) else None
    if axis is None or axis not in (-1, rank):
        raise UnsupportedLayerError(
            f"layer {quote(layer.name)} (BatchNormalization) normalizes axis {layer.axis}; only the "
            "last (channel) axis is supported")
    c = ins[0].shape[-1]
    # float64 for the fold: var + eps can be small, and the result must match Keras to 1e-5.
    var = b.take(layer, layer.moving_variance).astype(np.float64)
    mean = b.take(layer, layer.moving_mean).astype(np.float64)
    gamma = b.take(layer, layer.gamma).astype(np.float64) if layer.scale else np.ones(c)
    beta = b.take(layer, layer.beta).astype(np.float64) if layer.center else np.zeros(c)
    if (var + layer.epsilon < 0).any():
        raise SnnexportError(f"layer {quote(layer.name)} has a negative moving variance")
    scale = gamma / np.sqrt(var + layer.epsilon)
    offset = beta - mean * scale
    if not (np.isfinite(scale).all() and np.isfinite(offset).all()):
        raise SnnexportError(f"layer {quote(layer.name)} has weights that give a non-finite "
                             "BatchNormalization scale (zero variance with epsilon 0?)")
    op = ops.Affine(scale=scale.astype(np.float32), offset=offset.astype(np.float32))
    return b.emit(layer, path, [("affine", op)], ins, out)


def _h_activation(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    act = _activation_op(layer, layer.activation)
    if act is None:  # Activation('linear') is the identity
        return Ref(ins[0].name, out)
    return b.emit(layer, path, [("activation", act)], ins, out)


def _h_relu(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    slope = float(layer.negative_slope or 0.0)
    threshold = float(layer.threshold or 0.0)
    if slope != 0.0 or threshold != 0.0:
        raise UnsupportedLayerError(
            f"layer {quote(layer.name)} (ReLU) has negative_slope={slope:g}, threshold={threshold:g}; "
            "only the plain ReLU (optionally with max_value) is supported")
    mv = layer.max_value
    if mv is None:
        act = ops.Activation("relu")
    else:
        mv = float(mv)
        if not math.isfinite(mv) or mv <= 0:
            raise UnsupportedLayerError(f"layer {quote(layer.name)} (ReLU) has max_value={mv:g}; "
                                        "it must be a positive number")
        act = ops.Activation("clip", max_value=mv)
    return b.emit(layer, path, [("activation", act)], ins, out)


def _h_softmax(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    rank = len(ins[0].kshape)
    if len(axes) != 1 or int(axes[0]) not in (-1, rank):
        raise UnsupportedLayerError(f"layer {quote(layer.name)} (Softmax) acts on axis {layer.axis}; "
                                    "only the last axis is supported")
    return b.emit(layer, path, [("activation", ops.Activation("softmax"))], ins, out)


def _h_reshape(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    if len(out) > 3:
        raise UnsupportedLayerError(f"layer {quote(layer.name)} ({type(layer).__name__}) makes a "
                                    f"rank-{len(out)} tensor {out}; at most 3 axes are supported")
    # Flatten and Reshape are C-order on the Keras shape, and canonical shapes only add a leading 1.
    return b.emit(layer, path, [("reshape", ops.Reshape(canonical_shape(out)))], ins, out)


def _h_zeropad(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    if type(layer).__name__ == "ZeroPadding1D":
        left, right = (int(p) for p in layer.padding)
        pad: ops.Pad2 = ((0, 0), (left, right))
    else:
        (t, bt), (l, r) = ((int(a), int(c)) for a, c in layer.padding)
        pad = ((t, bt), (l, r))
    return b.emit(layer, path, [("pad", ops.Pad(pad))], ins, out)


def _h_concat(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    rank = len(out)
    axis = int(layer.axis)
    axis = axis - 1 if axis > 0 else rank + axis  # Keras counts the batch axis; we do not
    if not 0 <= axis < rank:
        raise UnsupportedLayerError(f"layer {quote(layer.name)} (Concatenate) joins along axis "
                                    f"{layer.axis}, which is not a feature axis")
    if rank == 2:
        axis += 1  # (L, C) is stored as (1, L, C)
    return b.emit(layer, path, [("concat", ops.Concat(axis=axis))], ins, out)


def _h_add(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    """Add, Average (the sum scaled by 1/n) and Subtract (the second input scaled by -1, then added)."""
    cls = type(layer).__name__
    if any(r.kshape != out for r in ins):
        raise UnsupportedLayerError(f"layer {quote(layer.name)} ({cls}) combines shapes "
                                    f"{[r.kshape for r in ins]}; broadcasting is not supported")
    if cls == "Subtract":
        negated = b.add(b.fresh(f"{layer.name}:negated"), ops.Scale(-1.0), (ins[1].name,), layer.name)
        ins = [ins[0], Ref(negated, ins[1].kshape)]
    chain: list[tuple[str, ops.Op]] = [("add", ops.Add())]
    if cls == "Average":
        chain.append(("scale", ops.Scale(1.0 / len(ins))))
    return b.emit(layer, path, chain, ins, out)


def _per_channel(layer: Any, value: Any, c: int, what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 1:
        return np.full(c, arr.reshape(()), np.float32)
    if arr.shape[-1] == c and arr.size == c:
        return arr.reshape(c).astype(np.float32)
    raise UnsupportedLayerError(f"layer {quote(layer.name)} ({type(layer).__name__}) has a {what} of shape "
                                f"{arr.shape}; only a number or one value per channel is supported")


def _h_rescaling(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    c = ins[0].shape[-1]
    scale = _per_channel(layer, layer.scale, c, "scale")
    offset = _per_channel(layer, layer.offset, c, "offset")
    if not (np.isfinite(scale).all() and np.isfinite(offset).all()):
        raise SnnexportError(f"layer {quote(layer.name)} has NaN or Inf scale or offset")
    return b.emit(layer, path, [("affine", ops.Affine(scale=scale, offset=offset))], ins, out)


def _h_normalization(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    """Normalization (adapted or given mean and variance): (x − mean) / max(√variance, ε), or its inverse."""
    import keras

    c, rank = ins[0].shape[-1], len(ins[0].kshape)
    if tuple(layer.axis) not in ((-1,), (rank,)):
        raise UnsupportedLayerError(f"layer {quote(layer.name)} (Normalization) normalizes axes {tuple(layer.axis)}; "
                                    "only the last (channel) axis is supported")
    if getattr(layer, "input_mean", None) is None:  # adapted: the file's variables, not Keras' deferred copies
        mean, var = b.take(layer, layer.adapt_mean), b.take(layer, layer.adapt_variance)
    else:
        mean, var = np.asarray(layer.mean), np.asarray(layer.variance)
    mean = _per_channel(layer, mean, c, "mean").astype(np.float64)
    std = np.maximum(np.sqrt(_per_channel(layer, var, c, "variance").astype(np.float64)), keras.backend.epsilon())
    scale, offset = (std, mean) if layer.invert else (1.0 / std, -mean / std)
    if not (np.isfinite(scale).all() and np.isfinite(offset).all()):
        raise SnnexportError(f"layer {quote(layer.name)} has a NaN, Inf or negative mean or variance")
    op = ops.Affine(scale=scale.astype(np.float32), offset=offset.astype(np.float32))
    return b.emit(layer, path, [("affine", op)], ins, out)


def _h_binary(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    return b.emit(layer, path, [("activation", ops.Activation(layer.mode))], ins, out)


def _h_quantized(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    """QuantizedReLU: a clip at its trained threshold λ (a weight of the file), quantized to its levels."""
    lam = float(b.take(layer, layer.lam).reshape(()))
    problem = keras_layers.quantized_relu_problem(int(layer.levels), lam)
    if problem is not None:
        raise SnnexportError(f"layer {quote(layer.name)} (QuantizedReLU): its trained {problem}")
    op = ops.Activation("clip", max_value=lam, levels=int(layer.levels))
    return b.emit(layer, path, [("activation", op)], ins, out)


def _h_noop(b: Builder, layer: Any, ins: list[Ref], out: tuple[int, ...], path: str) -> Ref:
    return Ref(ins[0].name, out)  # inference identity: no node


_HANDLERS: dict[str, Handler] = {
    "Dense": _h_dense,
    "Conv1D": _h_conv, "Conv2D": _h_conv, "DepthwiseConv1D": _h_conv, "DepthwiseConv2D": _h_conv,
    "SeparableConv1D": _h_separable, "SeparableConv2D": _h_separable,
    "Conv1DTranspose": _h_conv_transpose, "Conv2DTranspose": _h_conv_transpose,
    "UpSampling1D": _h_upsampling, "UpSampling2D": _h_upsampling,
    "Cropping1D": _h_cropping, "Cropping2D": _h_cropping, "Permute": _h_permute,
    "MaxPooling1D": _h_pool, "MaxPooling2D": _h_pool,
    "AveragePooling1D": _h_pool, "AveragePooling2D": _h_pool,
    "GlobalAveragePooling1D": _h_global_pool, "GlobalAveragePooling2D": _h_global_pool,
    "GlobalMaxPooling1D": _h_global_pool, "GlobalMaxPooling2D": _h_global_pool,
    "BatchNormalization": _h_batchnorm,
    "Activation": _h_activation, "ReLU": _h_relu, "Softmax": _h_softmax,
    "Flatten": _h_reshape, "Reshape": _h_reshape,
    "ZeroPadding1D": _h_zeropad, "ZeroPadding2D": _h_zeropad,
    "Concatenate": _h_concat, "Add": _h_add, "Average": _h_add, "Subtract": _h_add, "Rescaling": _h_rescaling, "Normalization": _h_normalization, "BinaryActivation": _h_binary,
    "QuantizedReLU": _h_quantized,
    **{name: _h_noop for name in NO_OPS},
}
assert set(_HANDLERS) | {"InputLayer"} == set(SUPPORTED_LAYERS)
