"""Loading sample data (calibration, evaluation) from .npy / .npz files into the canonical layout."""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

import numpy as np

from . import runtime
from .errors import SnnexportError
from .ops import Shape

X_KEYS = ("x", "x_test", "x_train")
Y_KEYS = ("y", "y_test", "y_train")
X_KEYS_CALIBRATION = ("x", "x_train", "x_test")  # calibration prefers training data


def _load_arrays(path: str | Path, keys: tuple[str, ...], what: str) -> tuple[np.ndarray, np.ndarray | None]:
    p = Path(path)
    if not p.is_file():
        raise SnnexportError(f"{what} file {str(p)!r} does not exist")
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                key = next((k for k in keys if k in z.files), None)
                if key is None:
                    raise SnnexportError(f"{what} file {p.name} holds none of the arrays "
                                         f"{', '.join(keys)} (it has: {', '.join(z.files) or 'nothing'})")
                x = z[key]
                ykey = {"x": "y", "x_test": "y_test", "x_train": "y_train"}[key]
                y = z[ykey] if ykey in z.files else None
        elif p.suffix == ".npy":
            x, y = np.load(p, allow_pickle=False), None
        else:
            raise SnnexportError(f"{what} file {p.name}: expected a .npy or .npz file")
    except SnnexportError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise SnnexportError(f"{what} file {p.name} is not a readable numpy file ({e})") from None
    return x, y


def coerce_samples(x: np.ndarray, shape: Shape, what: str = "data",
                   input_scale: float | None = None) -> np.ndarray:
    """(N, *shape) float32 from a batch or a single sample (see runtime.coerce_samples)."""
    if input_scale is None and np.asarray(x).dtype == np.uint8:
        print(f"snnexport: {what} is uint8: dividing by 255 (use --input-scale 1 to keep raw values)",
              file=sys.stderr)
    try:
        return runtime.coerce_samples(x, shape, what, input_scale)
    except ValueError as e:
        raise SnnexportError(str(e)) from None


def load_samples(path: str | Path, shape: Shape, what: str = "data", calibration: bool = False,
                 input_scale: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Samples (N, *shape) float32 and labels (N,) int64 or None."""
    x, y = _load_arrays(path, X_KEYS_CALIBRATION if calibration else X_KEYS, what)
    x = coerce_samples(x, shape, what, input_scale)
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 2:  # one-hot
            y = y.argmax(axis=1)
        if y.shape != (len(x),):
            y = None
        else:
            y = y.astype(np.int64)
    return x, y


def sha256_of(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()
