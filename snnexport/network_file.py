"""Bounded reading of a network file (``.snn``): its zip members, ``network.json`` and ``.npy`` headers and data.

A ``.snn`` is untrusted: every read here is bounded by what the file's own directory and headers
promise, and :func:`snnexport.network.load_document` compares those promises with what the
network's shapes require before any array is decompressed. This module knows the container (members,
sizes, headers); what the document must say is :mod:`snnexport.network_check`'s.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import SnnexportError

MAX_JSON_BYTES = 64 * 2 ** 20  # network.json: VGG16's is about 20 kB
MAX_NPY_HEADER = 2 ** 16
MEMBER = re.compile(r"arrays/(0|[1-9][0-9]{0,8})\.npy")
# what zipfile, zlib, json and numpy raise on a damaged file (a deeply nested JSON: RecursionError)
READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, UnicodeError, RecursionError,
               NotImplementedError, struct.error)
_CHUNK = 2 ** 24  # bytes decompressed per read


@dataclass(frozen=True)
class ArrayInfo:
    """An array as its ``.npy`` header (or an in-memory array) describes it: enough for geometry."""
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Header:
    """An array member's checked ``.npy`` header."""
    info: ArrayInfo
    fortran: bool
    length: int  # bytes before the data


def show(v: Any) -> str:
    """A value for a message: JSON, ASCII only (so one line whatever it holds), at most 60 characters."""
    if isinstance(v, dict) and set(v) == {"array"}:
        return "an array"
    if isinstance(v, np.ndarray):
        return f"a {v.dtype} array of shape {v.shape}"
    try:
        s = json.dumps(v, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        s = type(v).__name__
    return s if len(s) <= 60 else s[:57] + "..."


def check_finite(a: np.ndarray, label: str) -> None:
    """NaN or ±inf anywhere fails; min and max are fast reductions that propagate NaN, with no temporary."""
    if a.size and not (math.isfinite(float(a.min())) and math.isfinite(float(a.max()))):
        raise SnnexportError(f"{label}: holds NaN or infinite values")


def members(z: zipfile.ZipFile, label: str) -> dict[str, zipfile.ZipInfo]:
    """network.json and arrays/<n>.npy, each once, plainly stored or deflated, nothing else."""
    if "network.json" not in z.namelist():
        raise SnnexportError(f"{label}: not a snnexport network file (no network.json)")
    found: dict[str, zipfile.ZipInfo] = {}
    for info in z.infolist():
        name = info.filename
        if name != "network.json" and not MEMBER.fullmatch(name):
            raise SnnexportError(f"{label}: unexpected member {show(name)} (a network file holds "
                                 "network.json and arrays/<n>.npy)")
        if name in found:
            raise SnnexportError(f"{label}: member {name} appears twice")
        if info.flag_bits & 0x1:
            raise SnnexportError(f"{label}: member {name} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise SnnexportError(f"{label}: member {name} uses compression method {info.compress_type}; "
                                 "a network file is stored or deflated")
        found[name] = info
    return found


def read_json(z: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> Any:
    """network.json decoded, at most MAX_JSON_BYTES of it, with no key twice in one object."""
    if info.file_size > MAX_JSON_BYTES:
        raise SnnexportError(f"{label}: network.json is {info.file_size} bytes; at most "
                             f"{MAX_JSON_BYTES // 2 ** 20} MiB are accepted")
    with z.open(info) as f:
        text = f.read(MAX_JSON_BYTES + 1).decode("utf-8")

    def unique(pairs: list[tuple[str, Any]]) -> dict:
        d = dict(pairs)
        if len(d) != len(pairs):
            seen: set[str] = set()
            dup = next(k for k, _ in pairs if k in seen or seen.add(k))
            raise SnnexportError(f"{label}: network.json: the key {show(dup)} appears twice in one object")
        return d

    try:
        return json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as e:
        raise SnnexportError(f"{label}: network.json is not valid JSON ({e})") from None


def read_header(z: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> Header:
    """The ``.npy`` header alone (a bounded read): shape, dtype and order; the data stays compressed."""
    with z.open(info) as f:
        head = f.read(12)  # magic (6), version (2), header length (2 in version 1, 4 in version 2)
        if len(head) < 10 or head[:6] != b"\x93NUMPY" or head[6] not in (1, 2) or head[7] != 0:
            raise SnnexportError(f"{label}: not a .npy array of version 1 or 2")
        start = 10 if head[6] == 1 else 12
        size = int.from_bytes(head[8:start], "little")
        if size > MAX_NPY_HEADER:
            raise SnnexportError(f"{label}: .npy header of {size} bytes")
        raw = head + f.read(start + size - len(head))
    if len(raw) < start + size:
        raise SnnexportError(f"{label}: .npy header cut short")
    fp = io.BytesIO(raw)
    version = np.lib.format.read_magic(fp)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    try:
        shape, fortran, dtype = read(fp, max_header_size=MAX_NPY_HEADER)
    except (ValueError, TypeError, SyntaxError) as e:  # numpy parses the header with ast.literal_eval
        raise SnnexportError(f"{label}: not a readable .npy header ({' '.join(str(e).split())})") from None
    return Header(ArrayInfo(tuple(shape), dtype), bool(fortran), start + size)


def read_data(z: zipfile.ZipFile, info: zipfile.ZipInfo, header: Header, label: str) -> np.ndarray:
    """Exactly the bytes the header promises, into one buffer, a chunk at a time; then checked finite."""
    a = np.empty(header.info.size, header.info.dtype)
    buf = memoryview(a).cast("B")
    with z.open(info) as f:
        f.read(header.length)
        pos = 0
        while pos < len(buf):
            n = f.readinto(buf[pos:pos + _CHUNK])
            if not n:
                raise SnnexportError(f"{label}: the data is cut short ({pos} of {len(buf)} bytes)")
            pos += n
    shape = header.info.shape
    a = a.reshape(shape[::-1]).T if header.fortran else a.reshape(shape)
    check_finite(a, label)
    return a
