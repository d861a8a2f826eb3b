"""Resizing by interpolation as a fixed linear map, carried by ops the network already has.

A resize of an (H, W, C) tensor is separable: each channel becomes A_h · x · A_wᵀ, with A (out × in)
the 1-D interpolation matrix of its axis. :func:`separable_chain` applies A to one axis as a Transpose
that makes the axis last, a bias-free Dense of weight Aᵀ, and a Transpose back. Every back end runs
those ops already, and a Dense's zero weights are no synapses, so the expanded projection holds A's
nonzero entries only: for linear interpolation at most 2 per output cell and axis (4 per cell and
channel in 2-D), never a dense H × Ho block.

The matrices follow the readers' source semantics exactly:
* :func:`keras_matrix`: Keras 3's UpSampling2D (``ops.image.resize`` → ``jax.image.resize``, antialias
  off): half-pixel centres, the kernel evaluated at |sample − j| for every input cell j and each
  output's weights divided by their sum (the renormalization that replaces missing cells at the
  borders).
* :func:`onnx_matrix`: ONNX Resize, modes linear and nearest, with its coordinate transformations;
  outside coordinates read the edge cell (the reference's edge padding).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .ops import Dense, Op, Transpose


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 1.0 - x)


def _keys_cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = −0.5 (jax.image's 'cubic')."""
    near = ((1.5 * x - 2.5) * x) * x + 1.0
    far = ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0
    return np.where(x >= 2.0, 0.0, np.where(x >= 1.0, far, near))


def _lanczos(radius: float) -> Callable[[np.ndarray], np.ndarray]:
    def kernel(x: np.ndarray) -> np.ndarray:
        return np.where(x >= radius, 0.0, np.sinc(x) * np.sinc(x / radius))
    return kernel


# Keras' interpolation names (UpSampling2D) → the kernel jax.image.resize uses for them
KERAS_KERNELS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "bilinear": _triangle, "bicubic": _keys_cubic, "lanczos3": _lanczos(3.0), "lanczos5": _lanczos(5.0)}


def keras_matrix(method: str, n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float32 matrix of Keras' resize ``method`` along one axis (module doc).

    Output o samples input coordinate (o + ½)·n_in/n_out − ½. The distance to cell j is computed as an
    exact fraction, so that a kernel's zeros (at every nonzero integer distance: the kernels interpolate)
    stay exact zeros and add no synapses.
    """
    kernel = KERAS_KERNELS[method]
    if n_out == n_in:  # jax.image.resize leaves an axis of unchanged size alone
        return np.eye(n_in, dtype=np.float32)
    o = np.arange(n_out, dtype=np.int64)[:, None]
    j = np.arange(n_in, dtype=np.int64)[None, :]
    num = np.abs((2 * o + 1) * n_in - n_out - 2 * j * n_out)  # |sample − j| = num / (2·n_out)
    den = 2 * n_out
    w = kernel(num / den)
    w = np.where((num % den == 0) & (num != 0), 0.0, w)
    total = w.sum(axis=1, keepdims=True)
    w = np.where(np.abs(total) > 1000 * np.finfo(np.float32).eps, w / np.where(total != 0, total, 1), 0.0)
    sample2 = (2 * o + 1) * n_in - n_out  # 2·n_out·sample: outside [−½, n_in − ½] reads nothing
    inside = (sample2 >= -n_out) & (sample2 <= (2 * n_in - 1) * n_out)
    return np.where(inside, w, 0.0).astype(np.float32)


ONNX_COORDINATES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")
ONNX_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def onnx_matrix(mode: str, coordinates: str, n_in: int, n_out: int, scale: float,
                nearest_mode: str = "round_prefer_floor") -> np.ndarray:
    """(n_out, n_in) float32 matrix of ONNX Resize along one axis: ``mode`` 'linear' or 'nearest',
    ``coordinates`` one of :data:`ONNX_COORDINATES`, ``scale`` the axis' scale (n_out / n_in where the
    node gives sizes). The input coordinate of output o, x = f(o), is clamped to the map for 'linear'
    (edge padding); 'nearest' picks cell ``nearest_mode``(x), clamped likewise."""
    o = np.arange(n_out, dtype=np.float64)
    resized = n_in * scale  # the resized length in the formulas (onnx.reference's; = n_out given sizes)
    if coordinates == "half_pixel":
        x = (o + 0.5) / scale - 0.5
    elif coordinates == "pytorch_half_pixel":
        x = (o + 0.5) / scale - 0.5 if resized > 1 else np.zeros(n_out)
    elif coordinates == "align_corners":
        x = o * (n_in - 1) / (resized - 1) if resized != 1 else np.zeros(n_out)
    elif coordinates == "asymmetric":
        x = o / scale
    else:
        raise ValueError(f"coordinate transformation {coordinates!r}")
    a = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    if mode == "nearest":
        pick = {"round_prefer_floor": np.ceil(x - 0.5), "round_prefer_ceil": np.floor(x + 0.5),
                "floor": np.floor(x), "ceil": np.ceil(x)}[nearest_mode]
        a[rows, np.clip(pick, 0, n_in - 1).astype(np.int64)] = 1.0
        return a.astype(np.float32)
    if mode != "linear":
        raise ValueError(f"resize mode {mode!r}")
    x = np.clip(x, 0.0, n_in - 1)
    lo = np.floor(x).astype(np.int64)
    frac = x - lo
    hi = np.minimum(lo + 1, n_in - 1)
    np.add.at(a, (rows, lo), 1.0 - frac)
    np.add.at(a, (rows, hi), frac)
    return a.astype(np.float32)


def separable_chain(a_h: np.ndarray, a_w: np.ndarray) -> list[tuple[str, Op]]:
    """The ops (with a name suffix each) that map (H, W, C) to (Ho, Wo, C) by A_h along H and A_w along W
    (module doc). An axis whose matrix is the identity gets no ops; an empty list is the identity."""
    h_moves = not _identity(a_h)
    w_moves = not _identity(a_w)
    chain: list[tuple[str, Op]] = []
    if h_moves:
        chain += [("rows_last", Transpose((1, 2, 0))),  # (W, C, H)
                  ("rows", Dense(np.ascontiguousarray(a_h.T, np.float32)))]  # (W, C, Ho)
        if w_moves:
            chain += [("columns_last", Transpose((2, 1, 0))),  # (Ho, C, W)
                      ("columns", Dense(np.ascontiguousarray(a_w.T, np.float32))),  # (Ho, C, Wo)
                      ("back", Transpose((0, 2, 1)))]  # (Ho, Wo, C)
        else:
            chain.append(("back", Transpose((2, 0, 1))))  # (Ho, W, C)
    elif w_moves:
        chain += [("columns_last", Transpose((0, 2, 1))),  # (H, C, W)
                  ("columns", Dense(np.ascontiguousarray(a_w.T, np.float32))),  # (H, C, Wo)
                  ("back", Transpose((0, 2, 1)))]  # (H, Wo, C)
    return chain


def _identity(a: np.ndarray) -> bool:
    return a.shape[0] == a.shape[1] and bool(np.array_equal(a, np.eye(a.shape[0], dtype=a.dtype)))
