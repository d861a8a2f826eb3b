"""ONNX reader, step 1: parse the file and check the whole model before anything is converted.

Reading a protobuf runs no code. Here the file's size is checked, the protobuf parsed (external
data not followed), and the whole model checked: only the standard operator domain, only the
operators in :data:`SUPPORTED_OPS`, no model-local functions, no subgraphs (If, Loop, Scan), no
sparse tensors, every tensor's declared size within a cap and equal to the bytes it really has,
external data only from files inside the model's folder and within their length. Then
``onnx.checker`` verifies the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from ..errors import SnnexportError, UnsupportedLayerError
from . import file_size
from .keras_config import first_line, quote

ACCEPTED_EXTENSIONS = (".onnx",)
MIN_OPSET = 11  # older models are brought to it with onnx.version_converter
MAX_FILE_BYTES = 2 ** 31 - 1  # protobuf's limit for one message
MAX_TENSOR_BYTES = 2 ** 32  # one tensor's declared size, checked before any of it is read
_STANDARD_DOMAINS = ("", "ai.onnx")

# Operators that become ops (or vanish at inference), and those evaluated only on constants.
SUPPORTED_OPS: tuple[str, ...] = (
    "Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "Relu", "Clip", "MaxPool", "AveragePool",
    "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax", "Pad", "Concat",
    "Add", "Sub", "Mul", "Div", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout",
    "Softmax", "Cast", "Resize",
    # constants and shape arithmetic only (evaluated in numpy while reading)
    "Constant", "Shape", "Gather", "Slice", "Transpose",
)
SUPPORTED_HINT = ("the ONNX reader converts CNN operators (Conv, ConvTranspose, Gemm/MatMul, pooling, "
                   "BatchNormalization, Relu/Clip, Add/Sub/Mul/Div, Concat, Pad, Flatten/Reshape, "
                   "Resize (nearest, linear), Softmax; the full list is snnexport.readers.onnx.SUPPORTED_OPS)")

# TensorProto data types we read, as numpy dtypes (little-endian, as ONNX stores raw data).
DTYPES: dict[int, str] = {1: "<f4", 2: "u1", 3: "i1", 4: "<u2", 5: "<i2", 6: "<i4", 7: "<i8",
                           9: "?", 10: "<f2", 11: "<f8", 12: "<u4", 13: "<u8"}
FLOAT_TYPES = (1, 10, 11)


def onnx_module() -> Any:
    try:
        import onnx
    except ImportError:
        raise SnnexportError("reading ONNX models needs the onnx package: "
                             "pip install 'snnexport[onnx]'") from None
    return onnx


# --------------------------------------------------------------------------------------------
# Step 1: parse the file and check the whole model before converting anything.


def load(path: Path) -> Any:
    """The ModelProto of ``path`` (external data not followed), or a one-line refusal."""
    size = file_size(path)
    if size == 0:
        raise SnnexportError(f"{path}: not a readable ONNX model (the file is empty)")
    if size > MAX_FILE_BYTES:
        raise SnnexportError(f"{path}: not a readable ONNX model ({size} bytes is more than a protobuf "
                             "can hold; large weights belong in external data files)")
    onnx = onnx_module()
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SnnexportError(f"{path}: cannot read file ({e.strerror or e})") from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as e:  # DecodeError and friends: a damaged or non-protobuf file
        raise SnnexportError(f"{path}: not a readable ONNX model ({first_line(e)})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise SnnexportError(f"{path}: not a readable ONNX model (it holds no graph)")
    return model


def opset_of(model: Any, path: Path) -> int:
    versions = [int(o.version) for o in model.opset_import if o.domain in _STANDARD_DOMAINS]
    if not versions:
        raise SnnexportError(f"{path}: not a valid ONNX model (it imports no version of the standard "
                             "operator set)")
    return max(versions)


def check_model(model: Any, path: Path) -> None:
    """Refuse everything that could run code, hide data, or that we do not convert; then onnx.checker."""
    g = model.graph
    names = [v.name for v in (*g.input, *g.output, *g.initializer)]
    for node in g.node:
        names += [node.name, node.op_type, node.domain, *node.input, *node.output]
    if any(not isinstance(n, str) for n in names):  # protobuf hands invalid UTF-8 back as bytes
        raise SnnexportError(f"{path}: not a readable ONNX model (a name in it is not valid UTF-8)")
    if len(model.functions):
        names = ", ".join(quote(f.name) for f in list(model.functions)[:3])
        raise UnsupportedLayerError(f"{path}: the model defines functions ({names}); only standard "
                                    "ONNX operators are supported (export with inlining, the default)")
    if len(g.sparse_initializer):
        raise UnsupportedLayerError(f"{path}: the model has sparse initializers "
                                    f"({quote(g.sparse_initializer[0].values.name)}), which are not supported")
    folder = path.resolve().parent
    for t in g.initializer:
        check_tensor(t, folder, f"{path}: initializer")
    for idx, node in enumerate(g.node):
        who = label(node, idx)
        if node.domain not in _STANDARD_DOMAINS:
            raise UnsupportedLayerError(f"{who} is in the custom operator domain {quote(node.domain)}; "
                                        "only standard ONNX operators are supported (custom "
                                        "operators need code that snnexport does not run)")
        for a in node.attribute:
            if a.type in (5, 10):  # GRAPH, GRAPHS
                raise UnsupportedLayerError(f"{who} carries a subgraph (attribute {quote(a.name)}); "
                                            "control flow (If, Loop, Scan) is not supported")
            if a.type in (11, 12):  # SPARSE_TENSOR(S)
                raise UnsupportedLayerError(f"{who} has a sparse tensor attribute, which is not supported")
            if a.type == 4:
                check_tensor(a.t, folder, f"{who}: attribute {quote(a.name)}")
            if a.type == 9:
                for t in a.tensors:
                    check_tensor(t, folder, f"{who}: attribute {quote(a.name)}")
        if node.op_type not in SUPPORTED_OPS:
            raise UnsupportedLayerError(f"{who} is not supported; {SUPPORTED_HINT}")
    onnx_module()
    from onnx import checker
    try:  # by path, so that it finds external data beside the model (which we checked above)
        checker.check_model(str(path), full_check=False)
    except Exception as e:  # ValidationError, or anything the checker trips over
        raise SnnexportError(f"{path}: not a valid ONNX model (onnx.checker: {first_line(e)})") from None


@dataclass(frozen=True)
class _ExternalSpan:
    file: Path
    offset: int


def check_tensor(t: Any, folder: Path, where: str) -> _ExternalSpan | None:
    """Check a TensorProto's type, declared size (against the cap) and the bytes it really has.

    Returns where its external data lies, if it has any. Nothing is converted here.
    """
    name = f"{where} {quote(t.name)}" if t.name else where
    if t.data_type not in DTYPES:
        onnx = onnx_module()
        kind = onnx.TensorProto.DataType.Name(t.data_type) if t.data_type in onnx.TensorProto.DataType.values() \
            else str(t.data_type)
        raise UnsupportedLayerError(f"{name} has data type {kind}; supported: float, double, float16, "
                                    "integers and bool")
    if t.HasField("segment"):
        raise UnsupportedLayerError(f"{name} is a segment of a tensor, which is not supported")
    dims = [int(d) for d in t.dims]
    if any(d < 0 for d in dims):
        raise SnnexportError(f"{name} has negative dimensions {dims}")
    count = math.prod(dims)
    item = np.dtype(DTYPES[t.data_type]).itemsize
    nbytes = count * item
    if nbytes > MAX_TENSOR_BYTES:
        raise SnnexportError(f"{name} declares {count} elements ({nbytes} bytes); at most "
                             f"{MAX_TENSOR_BYTES} bytes per tensor are accepted")
    if t.data_location == 1:  # EXTERNAL
        return _external_span(t, folder, nbytes, name)
    if t.raw_data:
        present, unit = len(t.raw_data), "bytes"
        wanted = nbytes
    else:
        present, unit = len(_typed_field(t)), "values"
        wanted = count
    if present != wanted:
        raise SnnexportError(f"{name} holds {present} {unit} but its dims {dims} need {wanted}")
    return None


def _typed_field(t: Any) -> Any:
    dt = t.data_type
    if dt == 1:
        return t.float_data
    if dt == 11:
        return t.double_data
    if dt == 7:
        return t.int64_data
    if dt in (12, 13):
        return t.uint64_data
    return t.int32_data  # int8/16/32, uint8/16, bool and float16 (as bits)


def _external_span(t: Any, folder: Path, nbytes: int, name: str) -> _ExternalSpan:
    info = {e.key: e.value for e in t.external_data}
    loc = info.get("location", "")
    if not loc:
        raise SnnexportError(f"{name} has external data without a location")
    parts = PurePosixPath(loc.replace("\\", "/")).parts
    if PurePosixPath(loc).is_absolute() or PureWindowsPath(loc).is_absolute() or PureWindowsPath(loc).drive:
        raise SnnexportError(f"{name}: external data location {quote(loc)} is an absolute path; only "
                             "files inside the model's folder are read")
    if ".." in parts or "\0" in loc:
        raise SnnexportError(f"{name}: external data location {quote(loc)} leaves the model's folder; "
                             "only files inside it are read")
    target = (folder / loc).resolve()
    if not target.is_relative_to(folder):
        raise SnnexportError(f"{name}: external data location {quote(loc)} leads outside the model's "
                             "folder (a symbolic link?); only files inside it are read")
    if not target.is_file():
        raise SnnexportError(f"{name}: external data file {quote(loc)} does not exist beside the model")
    try:
        offset = int(info.get("offset", "0"))
        length = int(info.get("length", str(nbytes)))
    except ValueError:
        raise SnnexportError(f"{name}: external data offset or length is not a number") from None
    size = target.stat().st_size
    if offset < 0 or length != nbytes or offset + length > size:
        raise SnnexportError(f"{name}: external data ({length} bytes at offset {offset} of {quote(loc)}, "
                             f"a file of {size} bytes) does not hold the {nbytes} bytes its dims need")
    return _ExternalSpan(target, offset)


def tensor_array(t: Any, folder: Path, where: str) -> np.ndarray:
    """The numpy value of a TensorProto, after :func:`check_tensor` (external data read here)."""
    span = check_tensor(t, folder, where)
    dims = tuple(int(d) for d in t.dims)
    if span is None:
        from onnx import numpy_helper
        return np.asarray(numpy_helper.to_array(t)).reshape(dims)
    dtype = np.dtype(DTYPES[t.data_type])
    nbytes = math.prod(dims) * dtype.itemsize
    with open(span.file, "rb") as f:
        f.seek(span.offset)
        raw = f.read(nbytes)
    if len(raw) != nbytes:  # the file shrank since it was checked
        raise SnnexportError(f"{where} {quote(t.name)}: external data file ended early")
    return np.frombuffer(raw, dtype).reshape(dims).copy()


def label(node: Any, idx: int) -> str:
    """How messages name a node: its name, or its index when it has none."""
    who = quote(node.name) if node.name else f"#{idx}"
    return f"node {who} ({node.op_type})"
