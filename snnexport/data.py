"""Loading sample data (calibration, evaluation) from .npy / .npz files into the canonical layout.

A data file is untrusted and may be far larger than what a run needs, so only the rows asked for
are read: a ``.npy`` file is memory-mapped; a ``.npz`` member is streamed out of its zip archive and
decompressed only as far as those rows reach. Before any data is read, each array's ``.npy`` header
is checked against the bytes the file (or zip member) really holds, so a damaged header is named as
such and a decompression bomb costs only the rows requested.
"""

from __future__ import annotations

import hashlib
import math
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import SnnexportError
from .ops import Shape
from .scriptlib import runtime

X_KEYS = ("x", "x_test", "x_train")
Y_KEYS = ("y", "y_test", "y_train")
X_KEYS_CALIBRATION = ("x", "x_train", "x_test")  # calibration prefers training data
_LABELS_OF = dict(zip(X_KEYS, Y_KEYS))
_CHUNK = 16 * 2 ** 20  # bytes decompressed per read
# Expanding more than this from a member compressed more than this much is what a decompression bomb
# asks for (deflate's ratio tops out near 1032:1; real sample data compress less than 10:1).
_BOMB_BYTES, _BOMB_RATIO = 512 * 2 ** 20, 100


@dataclass(frozen=True)
class _Header:
    """What an array's .npy header declares, checked against the bytes that follow it."""
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int  # bytes of magic and header

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _size(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return ""  # not reached


def _read_header(f: BinaryIO, where: str, holds: int) -> _Header:
    """The header of the array stored in the ``holds`` bytes at ``f``; SnnexportError if it lies."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
        offset = f.tell()  # a zip member's position counts uncompressed bytes
    except (ValueError, EOFError, OSError, SyntaxError, zipfile.BadZipFile, zlib.error) as e:
        raise SnnexportError(f"{where} is not a readable numpy array ({_one_line(e)})") from None
    if dtype.hasobject:
        raise SnnexportError(f"{where} holds Python objects (pickled data is never loaded)")
    if any(d < 0 for d in shape):
        raise SnnexportError(f"{where} is damaged: its header claims the shape {shape}")
    h = _Header(tuple(int(d) for d in shape), dtype, bool(fortran), offset)
    if h.nbytes > holds - offset:
        raise SnnexportError(f"{where} is damaged: its header claims {dtype} data of shape {h.shape} "
                             f"({_size(h.nbytes)}) but the file holds {_size(max(holds - offset, 0))}")
    return h


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_memory(shape: tuple[int, ...], h: _Header, where: str, raw_copy: bool) -> None:
    """Refuse a read whose arrays (the raw copy, then float32) would not fit in the memory available."""
    elements = math.prod(shape)
    need = elements * 4 + (elements * h.dtype.itemsize if raw_copy else 0)
    free = _available_memory()
    if free is not None and need > free:
        rows = shape[0] if shape else 1
        raise SnnexportError(f"{where}: {rows} samples need {_size(need)} of memory, more than the "
                             f"{_size(free)} available; ask for fewer samples (-n, --calibration-samples)")


class _Array:
    """One array of a data file, its header read and checked, its data not yet read."""

    def __init__(self, where: str, header: _Header, source: Path, member: zipfile.ZipInfo | None):
        self.where, self.header, self.source, self.member = where, header, source, member

    @property
    def shape(self) -> tuple[int, ...]:
        return self.header.shape

    def rows(self, count: int | None) -> np.ndarray:
        """The first ``count`` rows (axis 0), or the whole array when ``count`` is None."""
        h = self.header
        whole = count is None or not h.shape or count >= h.shape[0]
        shape = h.shape if whole else (int(count),) + h.shape[1:]
        if math.prod(shape) == 0:
            return np.zeros(shape, h.dtype)
        if h.fortran and not whole and self.member is not None:  # its rows are scattered over the member
            return self.rows(None)[:count]
        _check_memory(shape, h, self.where, raw_copy=self.member is not None)
        if self.member is None:
            a = np.load(self.source, mmap_mode="r", allow_pickle=False)
            return a if whole else a[:count]
        nbytes = math.prod(shape) * h.dtype.itemsize
        ratio = self.member.file_size / max(self.member.compress_size, 1)
        if nbytes > _BOMB_BYTES and ratio > _BOMB_RATIO:
            raise SnnexportError(
                f"{self.where} decompresses to {_size(self.member.file_size)} from "
                f"{_size(self.member.compress_size)} ({ratio:.0f}:1, as a decompression bomb does); refusing "
                f"to expand {_size(nbytes)} of it: ask for fewer samples (-n, --calibration-samples)")
        raw = np.empty(nbytes, np.uint8)
        view = memoryview(raw)
        try:
            with zipfile.ZipFile(self.source) as z, z.open(self.member) as f:
                f.read(h.offset)  # the header, checked already
                pos = 0
                while pos < nbytes:
                    block = f.read(min(_CHUNK, nbytes - pos))
                    if not block:
                        raise SnnexportError(f"{self.where} is damaged: it ends after {_size(pos)} of data "
                                             f"where its header announces {_size(h.nbytes)}")
                    view[pos:pos + len(block)] = block
                    pos += len(block)
        except SnnexportError:
            raise
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError, NotImplementedError) as e:
            raise SnnexportError(f"{self.where} is damaged ({_one_line(e)})") from None
        return raw.view(h.dtype).reshape(shape, order="F" if h.fortran else "C")


def _open_arrays(path: str | Path, keys: tuple[str, ...], what: str) -> tuple[_Array, _Array | None]:
    """The sample array (the first of ``keys`` present) and its labels, headers checked, nothing read."""
    p = Path(path)
    if not p.is_file():
        raise SnnexportError(f"{what} file {str(p)!r} does not exist")
    try:
        if p.suffix == ".npy":
            size = p.stat().st_size
            with open(p, "rb") as f:
                h = _read_header(f, f"{what} file {p.name}", size)
            return _Array(f"{what} file {p.name}", h, p, None), None
        if p.suffix != ".npz":
            raise SnnexportError(f"{what} file {p.name}: expected a .npy or .npz file")
        with zipfile.ZipFile(p) as z:
            members = {i.filename[:-4]: i for i in z.infolist() if i.filename.endswith(".npy")}
            key = next((k for k in keys if k in members), None)
            if key is None:
                raise SnnexportError(f"{what} file {p.name} holds none of the arrays "
                                     f"{', '.join(keys)} (it has: {', '.join(members) or 'nothing'})")
            arrays = []
            for k in (key, _LABELS_OF[key]):
                if k in members:
                    where = f"{what} file {p.name} (array {k!r})"
                    with z.open(members[k]) as f:
                        arrays.append(_Array(where, _read_header(f, where, members[k].file_size), p, members[k]))
                else:
                    arrays.append(None)
            return arrays[0], arrays[1]
    except SnnexportError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, ValueError,
            NotImplementedError) as e:
        raise SnnexportError(f"{what} file {p.name} is not a readable numpy file ({_one_line(e)})") from None


def coerce_samples(x: np.ndarray, shape: Shape, what: str = "data",
                   input_scale: float | None = None) -> np.ndarray:
    """(N, *shape) float32 from a batch or a single sample (see runtime.coerce_samples).

    Without ``input_scale``: uint8 data are divided by 255 (with a note); other integer data must
    lie in uint8's range 0..255, or the user must say how to read them.
    """
    x = np.asarray(x)
    if input_scale is None and x.dtype == np.uint8:
        print(f"snnexport: {what} is uint8: dividing by 255 (use --input-scale 1 to keep raw values)",
              file=sys.stderr)
    elif input_scale is None and x.dtype.kind in "iu" and x.size:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise SnnexportError(f"{what} holds {x.dtype} integers from {lo} to {hi}, outside uint8's range "
                                 "0..255: give --input-scale S to say how to read them (each value is "
                                 "multiplied by S; --input-scale 1 uses them as they are)")
    try:
        return runtime.coerce_samples(x, shape, what, input_scale)
    except ValueError as e:
        raise SnnexportError(str(e)) from None


def sample_count(path: str | Path, shape: Shape, what: str = "data", calibration: bool = False) -> int:
    """How many samples the file holds (its headers checked, no data read)."""
    return _open_samples(path, shape, what, calibration)[3]


def load_samples(path: str | Path, shape: Shape, what: str = "data", calibration: bool = False,
                 input_scale: float | None = None, limit: int | None = None, start: int = 0
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Samples (N, *shape) float32 and labels (N,) int64 or None: those from ``start`` (a shard's
    first) up to ``limit``; the rows before ``limit`` are the only ones read."""
    xs, ys, layout, total = _open_samples(path, shape, what, calibration)
    count = total if limit is None else min(int(limit), total)
    if start and not 0 < start < count:
        raise SnnexportError(f"{what} has {count} samples to use; none from sample {start}")
    y = None
    if ys is not None:
        if len(ys.shape) not in (1, 2) or ys.shape[0] != total:
            raise SnnexportError(f"{ys.where} holds labels of shape {ys.shape} for {total} samples; "
                                 f"expected ({total},) or one-hot ({total}, classes)")
        if ys.header.dtype.kind not in "uif":
            raise SnnexportError(f"{ys.where} has dtype {ys.header.dtype}; labels must be numbers")
        y = np.asarray(ys.rows(count)[start:])
        if y.ndim == 2:  # one-hot
            y = y.argmax(axis=1)
        if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise SnnexportError(f"{ys.where} holds labels that are not whole numbers")
        y = y.astype(np.int64)
    rows = xs.rows(count)[start:] if layout == "batch" else xs.rows(None)
    x = coerce_samples(rows, shape, what, input_scale)
    return x, y


def _open_samples(path: str | Path, shape: Shape, what: str, calibration: bool
                  ) -> tuple["_Array", "_Array | None", str, int]:
    """(samples, labels or None, layout, how many samples), headers checked, nothing read."""
    xs, ys = _open_arrays(path, X_KEYS_CALIBRATION if calibration else X_KEYS, what)
    if xs.header.dtype.kind not in "uif":
        raise SnnexportError(f"{what} has dtype {xs.header.dtype}; numbers are needed")
    layout = runtime.sample_layout(xs.shape, shape)
    if layout is None:
        # the shape message of runtime.coerce_samples, from a view that holds no data
        stub = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), xs.shape, (0,) * len(xs.shape))
        coerce_samples(stub, shape, what, 1.0)
        raise SnnexportError(f"{what} has shape {xs.shape}; it does not fit the input {tuple(shape)}")
    total = xs.shape[0] if layout == "batch" else 1
    if total == 0:
        raise SnnexportError(f"{what} is empty")
    return xs, ys, layout, total


def sha256_of(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()

