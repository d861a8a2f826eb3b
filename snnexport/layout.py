"""Channels-first (ONNX, PyTorch, NIR: (C, H, W), NCHW flattening, (C_out, C_in, kH, kW) kernels) and
snnexport's channels-last layout ((H, W, C), C-order flattening, (kH, kW, C_in, C_out) kernels).

The one place the two orders meet: the ONNX reader and the NIR reader and writer all use it.
"""

from __future__ import annotations

import math

import numpy as np


def key(cshape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The order our channels-last layout gives a tensor of channels-first shape ``cshape``: None if the
    channels-first C order itself (one channel, or one position), else ``cshape`` (see :func:`order`)."""
    if len(cshape) == 1:
        return None
    c, spatial = cshape[0], math.prod(cshape[1:])
    return None if c == 1 or spatial == 1 else tuple(cshape)


def order(src: tuple[int, ...]) -> np.ndarray:
    """Flat channels-first index of each element of our layout, for a tensor of channels-first shape ``src``."""
    axes = tuple(range(1, len(src))) + (0,)
    return np.arange(math.prod(src)).reshape(src).transpose(axes).ravel()


def same_order(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> bool:
    if a == b:
        return True
    if a is None or b is None or math.prod(a) != math.prod(b):
        return False
    return bool(np.array_equal(order(a), order(b)))


def ours_shape(cshape: tuple[int, ...]) -> tuple[int, ...]:
    """Our shape of a channels-first per-sample shape: (F,), (C, L) → (1, L, C), (C, H, W) → (H, W, C)."""
    if len(cshape) == 1:
        return tuple(cshape)
    if len(cshape) == 2:
        return (1, cshape[1], cshape[0])
    return (cshape[1], cshape[2], cshape[0])


def channels_first_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The inverse of :func:`ours_shape` for flat and (H, W, C) shapes."""
    return tuple(shape) if len(shape) == 1 else (shape[2], shape[0], shape[1])


def kernel_to_ours(w: np.ndarray) -> np.ndarray:
    """(C_out, C_in/g, k...) → (k..., C_in/g, C_out)."""
    return np.moveaxis(w, (0, 1), (-1, -2))


def kernel_to_channels_first(k: np.ndarray) -> np.ndarray:
    """(kH, kW, C_in/g, C_out) → (C_out, C_in/g, kH, kW)."""
    return np.moveaxis(k, (-1, -2), (0, 1))


def to_ours(x: np.ndarray) -> np.ndarray:
    """A channels-first array (C, H, W) (or flat) in our layout."""
    return x if x.ndim == 1 else np.moveaxis(x, 0, -1)


def to_channels_first(x: np.ndarray) -> np.ndarray:
    """An array in our layout (H, W, C) (or flat) channels-first."""
    return x if x.ndim == 1 else np.moveaxis(x, -1, 0)
