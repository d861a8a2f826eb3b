"""The tensor operations of the ANN graph and of the network description, with their numpy semantics.

Layout is fixed here, once: every tensor is batch-first and channels-last. Spatial tensors are
(N, H, W, C); one-dimensional layers (Conv1D, pooling 1D) use H = 1, so (N, 1, L, C). Flatten is a
C-order reshape of that layout, which is exactly Keras' channels_last Flatten order.

Each op is a plain dataclass. ``forward`` evaluates it on float32 numpy arrays, ``output_shape``
infers shapes without data. Linear ops (everything except :class:`Activation` and
:class:`MaxPool`) also provide ``linear_part`` (the op without its constant term), which is what a
projection between two spiking populations carries; the constant terms become the biases.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Shape = tuple[int, ...]
Pad2 = tuple[tuple[int, int], tuple[int, int]]

OP_TYPES: dict[str, type["Op"]] = {}


def register(cls: type["Op"]) -> type["Op"]:
    """Record an op class under its ``kind`` so that files can name it."""
    OP_TYPES[cls.kind] = cls
    return cls


@dataclass(eq=False)
class Op:
    kind: ClassVar[str] = ""
    linear: ClassVar[bool] = True

    def forward(self, *xs: np.ndarray) -> np.ndarray:
        raise NotImplementedError(type(self).__name__)

    def output_shape(self, *shapes: Shape) -> Shape:
        raise NotImplementedError(type(self).__name__)

    def linear_part(self) -> "Op":
        """The op with its constant term removed (identity for ops that have none)."""
        return self

    def params(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
                    return False
                if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
                    return False
            elif a != b:
                return False
        return True


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """Keras/TensorFlow 'same' padding: output ceil(size/stride), the extra pixel goes after."""
    eff = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def _windows(x: np.ndarray, pool: tuple[int, int], strides: tuple[int, int],
             dilation: tuple[int, int] = (1, 1)) -> np.ndarray:
    """(N, Ho, Wo, C, kh, kw) view of the sliding windows of an already padded (N, H, W, C) tensor."""
    eh = (pool[0] - 1) * dilation[0] + 1
    ew = (pool[1] - 1) * dilation[1] + 1
    win = sliding_window_view(x, (eh, ew), axis=(1, 2))
    return win[:, :: strides[0], :: strides[1], :, :: dilation[0], :: dilation[1]]


def _spatial(s: Shape, what: str) -> tuple[int, int, int]:
    """(height, width, channels) of a spatial op's input; other ranks are refused."""
    if len(s) != 3:
        raise ValueError(f"{what} needs a (height, width, channels) input, got shape {tuple(s)}")
    return s[0], s[1], s[2]


def _pool_shape(op: "AvgPool | MaxPool", s: Shape, what: str) -> Shape:
    """Pooling geometry. Padding must be smaller than the window, so that every window holds a real cell
    (an all-padding window has no maximum and averages over nothing)."""
    h, w, c = _spatial(s, what)
    if any(p >= k for pads, k in zip(op.padding, op.pool) for p in pads):
        raise ValueError(f"{what} padding {tuple(map(tuple, op.padding))} is not smaller than its window "
                         f"{tuple(op.pool)}")
    return (_pooled_size(h, op.padding[0], op.pool[0], op.strides[0]),
            _pooled_size(w, op.padding[1], op.pool[1], op.strides[1]), c)


def _pooled_size(size: int, pad: tuple[int, int], k: int, stride: int, dilation: int = 1) -> int:
    eff = (k - 1) * dilation + 1
    n = size + pad[0] + pad[1] - eff
    if n < 0:
        raise ValueError(f"window {k} larger than padded input {size + pad[0] + pad[1]}")
    return n // stride + 1


@register
@dataclass(eq=False)
class Dense(Op):
    """y = x @ weight + bias over the last axis (Keras Dense applies to the last axis of any rank)."""
    kind: ClassVar[str] = "dense"
    weight: np.ndarray  # (in, out)
    bias: np.ndarray | None = None  # (out,)

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = np.tensordot(x, self.weight, axes=([x.ndim - 1], [0]))
        return y + self.bias if self.bias is not None else y

    def output_shape(self, s: Shape) -> Shape:
        if s[-1] != self.weight.shape[0]:
            raise ValueError(f"a dense weight of shape {tuple(self.weight.shape)} needs {self.weight.shape[0]} "
                             f"values on the input's last axis, got shape {tuple(s)}")
        return s[:-1] + (self.weight.shape[1],)

    def linear_part(self) -> "Dense":
        return replace(self, bias=None)


@register
@dataclass(eq=False)
class Conv2D(Op):
    """Grouped, strided, dilated 2-D convolution (cross-correlation, as in Keras) with explicit padding.

    kernel is (kh, kw, cin // groups, cout); output channel o belongs to group o // (cout // groups).
    DepthwiseConv2D is groups = cin with cout = cin * depth_multiplier.
    """
    kind: ClassVar[str] = "conv2d"
    kernel: np.ndarray
    bias: np.ndarray | None = None
    strides: tuple[int, int] = (1, 1)
    padding: Pad2 = ((0, 0), (0, 0))
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def forward(self, x: np.ndarray) -> np.ndarray:
        kh, kw, cig, cout = self.kernel.shape
        xp = np.pad(x, ((0, 0), self.padding[0], self.padding[1], (0, 0)))
        win = _windows(xp, (kh, kw), self.strides, self.dilation)
        n, ho, wo = win.shape[:3]
        g = self.groups
        win = win.reshape(n, ho, wo, g, cig, kh, kw)
        k = self.kernel.reshape(kh, kw, cig, g, cout // g)
        y = np.einsum("nhwgckl,klcgo->nhwgo", win, k, optimize=True).reshape(n, ho, wo, cout)
        y = y.astype(np.float32, copy=False)
        return y + self.bias if self.bias is not None else y

    def output_shape(self, s: Shape) -> Shape:
        h, w, c = _spatial(s, "a convolution")
        kh, kw, cig, cout = self.kernel.shape
        if cout % self.groups:
            raise ValueError(f"a convolution's {cout} output channels do not split into {self.groups} groups")
        if c != cig * self.groups:
            raise ValueError(f"a convolution kernel of shape {tuple(self.kernel.shape)} in {self.groups} "
                             f"group(s) needs {cig * self.groups} input channels, got shape {tuple(s)}")
        return (_pooled_size(h, self.padding[0], kh, self.strides[0], self.dilation[0]),
                _pooled_size(w, self.padding[1], kw, self.strides[1], self.dilation[1]), cout)

    def linear_part(self) -> "Conv2D":
        return replace(self, bias=None)


def transposed_size(size: int, kernel: int, stride: int, dilation: int, crop: tuple[int, int]) -> int:
    """Output length of a transposed convolution: the full (size − 1)·stride + (kernel − 1)·dilation + 1
    cells, less ``crop`` at each end (a negative crop adds zero cells there)."""
    return (size - 1) * stride + (kernel - 1) * dilation + 1 - crop[0] - crop[1]


@register
@dataclass(eq=False)
class ConvTranspose(Op):
    """Grouped, strided, dilated transposed convolution (Keras Conv2DTranspose, ONNX ConvTranspose).

    Input cell (iy, ix) adds x · kernel[ky, kx] to output cell (iy·sh + ky·dh − top, ix·sw + kx·dw − left):
    the full output, of :func:`transposed_size`, cropped by ``crop`` ((top, bottom), (left, right)); a
    negative crop extends that side with cells nothing reaches (Keras' and ONNX's output_padding).
    kernel is (kh, kw, cin // groups, cout), grouped as in :class:`Conv2D`. Nearest upsampling
    (a depthwise kernel of ones with stride = kernel) and cropping (a 1×1 depthwise kernel of ones)
    are this op too.
    """
    kind: ClassVar[str] = "conv_transpose"
    kernel: np.ndarray
    bias: np.ndarray | None = None
    strides: tuple[int, int] = (1, 1)
    crop: Pad2 = ((0, 0), (0, 0))
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def forward(self, x: np.ndarray) -> np.ndarray:
        kh, kw, cig, cout = self.kernel.shape
        n, h, w, _ = x.shape
        (sh, sw), (dh, dw), g = self.strides, self.dilation, self.groups
        (ct, cb), (cl, cr) = self.crop
        full_h = (h - 1) * sh + (kh - 1) * dh + 1 + max(-ct, 0) + max(-cb, 0)
        full_w = (w - 1) * sw + (kw - 1) * dw + 1 + max(-cl, 0) + max(-cr, 0)
        oy, ox = max(-ct, 0), max(-cl, 0)  # where the uncropped output starts in the extended buffer
        full = np.zeros((n, full_h, full_w, g, cout // g), np.float32)
        xg = x.reshape(n, h, w, g, cig)
        k = self.kernel.reshape(kh, kw, cig, g, cout // g)
        for ky in range(kh):
            for kx in range(kw):
                y0, x0 = oy + ky * dh, ox + kx * dw
                full[:, y0:y0 + (h - 1) * sh + 1:sh, x0:x0 + (w - 1) * sw + 1:sw] += np.einsum(
                    "nhwgc,cgo->nhwgo", xg, k[ky, kx], optimize=True)
        top, left = max(ct, 0), max(cl, 0)
        ho, wo = self.output_shape(x.shape[1:])[:2]
        y = full[:, top:top + ho, left:left + wo].reshape(n, ho, wo, cout)
        return y + self.bias if self.bias is not None else y

    def output_shape(self, s: Shape) -> Shape:
        _, _, c = _spatial(s, "a transposed convolution")
        kh, kw, cig, cout = self.kernel.shape
        if cout % self.groups or c != cig * self.groups:
            raise ValueError(f"a transposed convolution kernel of shape {tuple(self.kernel.shape)} in {self.groups} "
                             f"group(s) does not fit an input of shape {tuple(s)}")
        out = tuple(transposed_size(n, k, st, d, cr)
                    for n, k, st, d, cr in zip(s[:2], (kh, kw), self.strides, self.dilation, self.crop))
        if min(out) < 1:
            raise ValueError(f"a transposed convolution cropped by {tuple(map(tuple, self.crop))} leaves no "
                             f"output of an input of shape {tuple(s)}")
        return out + (cout,)

    def linear_part(self) -> "ConvTranspose":
        return replace(self, bias=None)


@register
@dataclass(eq=False)
class Transpose(Op):
    """Permutation of the non-batch axes (Keras Permute): output axis i is input axis ``axes[i]``."""
    kind: ClassVar[str] = "transpose"
    axes: tuple[int, ...]

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.transpose((0,) + tuple(a + 1 for a in self.axes))

    def output_shape(self, s: Shape) -> Shape:
        if sorted(self.axes) != list(range(len(s))):
            raise ValueError(f"axes {tuple(self.axes)} are not a permutation of the {len(s)} axes of shape "
                             f"{tuple(s)}")
        return tuple(s[a] for a in self.axes)


@register
@dataclass(eq=False)
class AvgPool(Op):
    """Average pooling. Keras excludes padded cells from the divisor, so each window divides by its own count."""
    kind: ClassVar[str] = "avgpool"
    pool: tuple[int, int]
    strides: tuple[int, int]
    padding: Pad2 = ((0, 0), (0, 0))

    def divisor(self, in_shape: Shape) -> np.ndarray:
        """(Ho, Wo) number of real (unpadded) cells under each window."""
        ones = np.pad(np.ones((1, in_shape[0], in_shape[1], 1), np.float32),
                      ((0, 0), self.padding[0], self.padding[1], (0, 0)))
        return _windows(ones, self.pool, self.strides).sum(axis=(-1, -2))[0, :, :, 0]

    def forward(self, x: np.ndarray) -> np.ndarray:
        xp = np.pad(x, ((0, 0), self.padding[0], self.padding[1], (0, 0)))
        s = _windows(xp, self.pool, self.strides).sum(axis=(-1, -2), dtype=np.float32)
        return s / self.divisor(x.shape[1:])[None, :, :, None]

    def output_shape(self, s: Shape) -> Shape:
        return _pool_shape(self, s, "average pooling")


@register
@dataclass(eq=False)
class MaxPool(Op):
    """Max pooling; padded cells never win. In the spiking network this becomes a gate (see network.Gate)."""
    kind: ClassVar[str] = "maxpool"
    linear: ClassVar[bool] = False
    pool: tuple[int, int]
    strides: tuple[int, int]
    padding: Pad2 = ((0, 0), (0, 0))

    def forward(self, x: np.ndarray) -> np.ndarray:
        xp = np.pad(x, ((0, 0), self.padding[0], self.padding[1], (0, 0)), constant_values=-np.inf)
        return _windows(xp, self.pool, self.strides).max(axis=(-1, -2))

    def output_shape(self, s: Shape) -> Shape:
        return _pool_shape(self, s, "max pooling")


@register
@dataclass(eq=False)
class Pad(Op):
    """Zero padding of the two spatial axes, possibly asymmetric."""
    kind: ClassVar[str] = "pad"
    padding: Pad2

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.pad(x, ((0, 0), self.padding[0], self.padding[1], (0, 0)))

    def output_shape(self, s: Shape) -> Shape:
        h, w, c = _spatial(s, "padding")
        (t, b), (l, r) = self.padding
        return (h + t + b, w + l + r, c)


@register
@dataclass(eq=False)
class Reshape(Op):
    """C-order reshape (Flatten included). Neuron i of the input is neuron i of the output."""
    kind: ClassVar[str] = "reshape"
    shape: Shape

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.reshape((x.shape[0],) + tuple(self.shape))

    def output_shape(self, s: Shape) -> Shape:
        if int(np.prod(s)) != int(np.prod(self.shape)):
            raise ValueError(f"cannot reshape {s} to {self.shape}")
        return tuple(self.shape)


@register
@dataclass(eq=False)
class Affine(Op):
    """Per-channel y = x * scale + offset over the last axis (an unfolded BatchNormalization, Rescaling)."""
    kind: ClassVar[str] = "affine"
    scale: np.ndarray
    offset: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = x * self.scale
        return y + self.offset if self.offset is not None else y

    def output_shape(self, s: Shape) -> Shape:
        if tuple(self.scale.shape) != (s[-1],):
            raise ValueError(f"a per-channel scale of shape {tuple(self.scale.shape)} does not fit an input "
                             f"of shape {tuple(s)}")
        return s

    def linear_part(self) -> "Affine":
        return replace(self, offset=None)


@register
@dataclass(eq=False)
class Concat(Op):
    """Concatenation of several inputs along one non-batch axis (0-based, batch excluded)."""
    kind: ClassVar[str] = "concat"
    axis: int

    def forward(self, *xs: np.ndarray) -> np.ndarray:
        return np.concatenate(xs, axis=self.axis + 1)

    def output_shape(self, *shapes: Shape) -> Shape:
        if not 0 <= self.axis < len(shapes[0]):
            raise ValueError(f"concatenation axis {self.axis} is outside shape {tuple(shapes[0])}")
        out = list(shapes[0])
        for s in shapes[1:]:
            if len(s) != len(out) or any(a != b for i, (a, b) in enumerate(zip(s, out)) if i != self.axis):
                raise ValueError(f"cannot concatenate shapes {shapes} on axis {self.axis}")
            out[self.axis] += s[self.axis]
        return tuple(out)


@register
@dataclass(eq=False)
class Embed(Op):
    """Places the input at ``offset`` along ``axis`` inside a zero tensor of size ``total`` there.

    This is one input's share of a Concat, which is how a concatenation enters a projection.
    """
    kind: ClassVar[str] = "embed"
    axis: int
    offset: int
    total: int

    def forward(self, x: np.ndarray) -> np.ndarray:
        pad = [(0, 0)] * x.ndim
        pad[self.axis + 1] = (self.offset, self.total - self.offset - x.shape[self.axis + 1])
        return np.pad(x, pad)

    def output_shape(self, s: Shape) -> Shape:
        if not 0 <= self.axis < len(s):
            raise ValueError(f"embedding axis {self.axis} is outside shape {tuple(s)}")
        if self.offset + s[self.axis] > self.total:
            raise ValueError(f"an input of shape {tuple(s)} at offset {self.offset} does not fit in "
                             f"{self.total} places along axis {self.axis}")
        out = list(s)
        out[self.axis] = self.total
        return tuple(out)


@register
@dataclass(eq=False)
class Add(Op):
    """Element-wise sum of several inputs of one shape."""
    kind: ClassVar[str] = "add"

    def forward(self, *xs: np.ndarray) -> np.ndarray:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out

    def output_shape(self, *shapes: Shape) -> Shape:
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"cannot add shapes {shapes}")
        return shapes[0]


@register
@dataclass(eq=False)
class Scale(Op):
    """Multiplication by one number: a normalization factor on a projection that has no weights to carry it."""
    kind: ClassVar[str] = "scale"
    factor: float

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * np.float32(self.factor)

    def output_shape(self, s: Shape) -> Shape:
        return s


ACTIVATIONS = ("relu", "linear", "softmax", "clip", "sign", "heaviside")


@register
@dataclass(eq=False)
class Activation(Op):
    """The nonlinearity that becomes a spiking population.

    relu; linear (only as a network output); softmax (only as the output); clip = relu capped at
    max_value (Keras ReLU(max_value)); sign (binary -1/+1, negative spikes) and heaviside (binary 0/1).
    A clip with ``levels`` L is snnexport's QuantizedReLU (trained threshold λ = max_value):
    λ · clip(floor(x·L/λ + 1/2) / L, 0, 1), float32 arithmetic in the layer's own order.
    """
    kind: ClassVar[str] = "activation"
    linear: ClassVar[bool] = False
    function: str
    max_value: float | None = None
    levels: int | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        f = self.function
        if f == "relu":
            return np.maximum(x, 0)
        if f == "clip" and self.levels is not None and self.max_value is not None:
            lam, levels = np.float32(self.max_value), np.float32(self.levels)
            steps = np.floor(x.astype(np.float32) * levels / lam + np.float32(0.5)) / levels
            return (lam * np.clip(steps, np.float32(0), np.float32(1))).astype(np.float32)
        if f == "clip":
            return np.clip(x, 0, self.max_value)
        if f == "linear":
            return x
        if f == "softmax":
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)
        if f == "sign":
            return np.where(x >= 0, 1.0, -1.0).astype(np.float32)
        if f == "heaviside":
            return (x >= 0).astype(np.float32)
        raise ValueError(f"unknown activation {f!r}")

    def output_shape(self, s: Shape) -> Shape:
        return s
