"""Read an ONNX model (.onnx) into an ANN :class:`~snnexport.graph.Graph`: the way in for PyTorch.

    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), "model.onnx")
    snnexport model.onnx --calibration x.npz --to brian2 -o net.py

Safety: an ONNX file is a protobuf and reading it runs no code; nothing in it is ever executed.
Before anything is converted the file's size is checked, the protobuf parsed (external data not
followed), and the whole model checked: only the standard operator domain, no model-local
functions, no subgraphs (If, Loop, Scan), no sparse tensors, every tensor's declared size within a
cap and equal to the bytes it really has, external data only from files inside the model's folder
and within their length. Then ``onnx.checker`` verifies the model. Constant subgraphs (the shape
arithmetic of ``x.view(x.size(0), -1)``) are evaluated here in numpy by a handful of whitelisted
operators (:data:`_FOLDERS`); no other operator is ever run.

Layout: ONNX tensors are NCHW (NCL for 1-D) with (O, I/group, kH, kW) kernels; the graph is
channels-last (``ops.py``). The conversion happens once, here. Every tensor of the input's
computation keeps its ONNX shape beside its node, and the order in which our layout stores its
elements (:class:`_Val`). Spatial tensors are always channels-last. A Flatten after a convolution
flattens in NCHW order in ONNX but channels-last here, so the flat tensor keeps a permuted order
until a Gemm/MatMul consumes it, whose weight rows are permuted to match; element-wise ops pass the
order through, and anything else that meets a permuted tensor (the model output, a Concat) is
refused. Where H·W = 1 (after global pooling) the two orders agree and nothing is permuted.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from .. import ops
from ..errors import SnnexportError, UnsupportedLayerError
from ..graph import Graph, Node
from . import file_size
from .keras import _first_line, _q

__all__ = ["read_model", "SUPPORTED_OPS", "ACCEPTED_EXTENSIONS"]

ACCEPTED_EXTENSIONS = (".onnx",)
MIN_OPSET = 11  # older models are brought to it with onnx.version_converter
MAX_FILE_BYTES = 2 ** 31 - 1  # protobuf's limit for one message
MAX_TENSOR_BYTES = 2 ** 32  # one tensor's declared size, checked before any of it is read
MAX_FOLD_ELEMENTS = 2 ** 27  # one constant computed at read time
_STANDARD_DOMAINS = ("", "ai.onnx")

# Operators that become ops (or vanish at inference), and those evaluated only on constants.
SUPPORTED_OPS: tuple[str, ...] = (
    "Conv", "Gemm", "MatMul", "BatchNormalization", "Relu", "Clip", "MaxPool", "AveragePool",
    "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax", "Pad", "Concat",
    "Add", "Sub", "Mul", "Div", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout",
    "Softmax", "Cast",
    # constants and shape arithmetic only (evaluated in numpy while reading)
    "Constant", "Shape", "Gather", "Slice", "Transpose",
)
_NOT_YET = {"ConvTranspose": "ConvTranspose is not supported yet"}
_SUPPORTED_HINT = ("the ONNX reader converts CNN operators (Conv, Gemm/MatMul, pooling, "
                   "BatchNormalization, Relu/Clip, Add/Sub/Mul/Div, Concat, Pad, Flatten/Reshape, "
                   "Softmax; the full list is snnexport.readers.onnx.SUPPORTED_OPS)")

# TensorProto data types we read, as numpy dtypes (little-endian, as ONNX stores raw data).
_DTYPES: dict[int, str] = {1: "<f4", 2: "u1", 3: "i1", 4: "<u2", 5: "<i2", 6: "<i4", 7: "<i8",
                           9: "?", 10: "<f2", 11: "<f8", 12: "<u4", 13: "<u8"}
_FLOAT_TYPES = (1, 10, 11)


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise SnnexportError("reading ONNX models needs the onnx package: "
                             "pip install 'snnexport[onnx]'") from None
    return onnx


# --------------------------------------------------------------------------------------------
# Step 1: parse the file and check the whole model before converting anything.


def _load(path: Path) -> Any:
    """The ModelProto of ``path`` (external data not followed), or a one-line refusal."""
    size = file_size(path)
    if size == 0:
        raise SnnexportError(f"{path}: not a readable ONNX model (the file is empty)")
    if size > MAX_FILE_BYTES:
        raise SnnexportError(f"{path}: not a readable ONNX model ({size} bytes is more than a protobuf "
                             "can hold; large weights belong in external data files)")
    onnx = _onnx()
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SnnexportError(f"{path}: cannot read file ({e.strerror or e})") from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as e:  # DecodeError and friends: a damaged or non-protobuf file
        raise SnnexportError(f"{path}: not a readable ONNX model ({_first_line(e)})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise SnnexportError(f"{path}: not a readable ONNX model (it holds no graph)")
    return model


def _opset(model: Any, path: Path) -> int:
    versions = [int(o.version) for o in model.opset_import if o.domain in _STANDARD_DOMAINS]
    if not versions:
        raise SnnexportError(f"{path}: not a valid ONNX model (it imports no version of the standard "
                             "operator set)")
    return max(versions)


def _check_model(model: Any, path: Path) -> None:
    """Refuse everything that could run code, hide data, or that we do not convert; then onnx.checker."""
    g = model.graph
    names = [v.name for v in (*g.input, *g.output, *g.initializer)]
    for node in g.node:
        names += [node.name, node.op_type, node.domain, *node.input, *node.output]
    if any(not isinstance(n, str) for n in names):  # protobuf hands invalid UTF-8 back as bytes
        raise SnnexportError(f"{path}: not a readable ONNX model (a name in it is not valid UTF-8)")
    if len(model.functions):
        names = ", ".join(_q(f.name) for f in list(model.functions)[:3])
        raise UnsupportedLayerError(f"{path}: the model defines functions ({names}); only standard "
                                    "ONNX operators are supported (export with inlining, the default)")
    if len(g.sparse_initializer):
        raise UnsupportedLayerError(f"{path}: the model has sparse initializers "
                                    f"({_q(g.sparse_initializer[0].values.name)}), which are not supported")
    folder = path.resolve().parent
    for t in g.initializer:
        check_tensor(t, folder, f"{path}: initializer")
    for idx, node in enumerate(g.node):
        label = _label(node, idx)
        if node.domain not in _STANDARD_DOMAINS:
            raise UnsupportedLayerError(f"{label} is in the custom operator domain {_q(node.domain)}; "
                                        "only standard ONNX operators are supported (custom "
                                        "operators need code that snnexport does not run)")
        for a in node.attribute:
            if a.type in (5, 10):  # GRAPH, GRAPHS
                raise UnsupportedLayerError(f"{label} carries a subgraph (attribute {_q(a.name)}); "
                                            "control flow (If, Loop, Scan) is not supported")
            if a.type in (11, 12):  # SPARSE_TENSOR(S)
                raise UnsupportedLayerError(f"{label} has a sparse tensor attribute, which is not supported")
            if a.type == 4:
                check_tensor(a.t, folder, f"{label}: attribute {_q(a.name)}")
            if a.type == 9:
                for t in a.tensors:
                    check_tensor(t, folder, f"{label}: attribute {_q(a.name)}")
        if node.op_type in _NOT_YET:
            raise UnsupportedLayerError(f"{label}: {_NOT_YET[node.op_type]}")
        if node.op_type not in SUPPORTED_OPS:
            raise UnsupportedLayerError(f"{label} is not supported; {_SUPPORTED_HINT}")
    _onnx()
    from onnx import checker
    try:  # by path, so that it finds external data beside the model (which we checked above)
        checker.check_model(str(path), full_check=False)
    except Exception as e:  # ValidationError, or anything the checker trips over
        raise SnnexportError(f"{path}: not a valid ONNX model (onnx.checker: {_first_line(e)})") from None


@dataclass(frozen=True)
class _ExternalSpan:
    file: Path
    offset: int


def check_tensor(t: Any, folder: Path, where: str) -> _ExternalSpan | None:
    """Check a TensorProto's type, declared size (against the cap) and the bytes it really has.

    Returns where its external data lies, if it has any. Nothing is converted here.
    """
    name = f"{where} {_q(t.name)}" if t.name else where
    if t.data_type not in _DTYPES:
        onnx = _onnx()
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
    item = np.dtype(_DTYPES[t.data_type]).itemsize
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
        raise SnnexportError(f"{name}: external data location {_q(loc)} is an absolute path; only "
                             "files inside the model's folder are read")
    if ".." in parts or "\0" in loc:
        raise SnnexportError(f"{name}: external data location {_q(loc)} leaves the model's folder; "
                             "only files inside it are read")
    target = (folder / loc).resolve()
    if not target.is_relative_to(folder):
        raise SnnexportError(f"{name}: external data location {_q(loc)} leads outside the model's "
                             "folder (a symbolic link?); only files inside it are read")
    if not target.is_file():
        raise SnnexportError(f"{name}: external data file {_q(loc)} does not exist beside the model")
    try:
        offset = int(info.get("offset", "0"))
        length = int(info.get("length", str(nbytes)))
    except ValueError:
        raise SnnexportError(f"{name}: external data offset or length is not a number") from None
    size = target.stat().st_size
    if offset < 0 or length != nbytes or offset + length > size:
        raise SnnexportError(f"{name}: external data ({length} bytes at offset {offset} of {_q(loc)}, "
                             f"a file of {size} bytes) does not hold the {nbytes} bytes its dims need")
    return _ExternalSpan(target, offset)


def tensor_array(t: Any, folder: Path, where: str) -> np.ndarray:
    """The numpy value of a TensorProto, after :func:`check_tensor` (external data read here)."""
    span = check_tensor(t, folder, where)
    dims = tuple(int(d) for d in t.dims)
    if span is None:
        from onnx import numpy_helper
        return np.asarray(numpy_helper.to_array(t)).reshape(dims)
    dtype = np.dtype(_DTYPES[t.data_type])
    nbytes = math.prod(dims) * dtype.itemsize
    with open(span.file, "rb") as f:
        f.seek(span.offset)
        raw = f.read(nbytes)
    if len(raw) != nbytes:  # the file shrank since it was checked
        raise SnnexportError(f"{where} {_q(t.name)}: external data file ended early")
    return np.frombuffer(raw, dtype).reshape(dims).copy()


def _label(node: Any, idx: int) -> str:
    """How messages name a node: its name, or its index when it has none."""
    who = _q(node.name) if node.name else f"#{idx}"
    return f"node {who} ({node.op_type})"


# --------------------------------------------------------------------------------------------
# Step 2: walk the nodes, folding constants and emitting ops.


@dataclass(frozen=True)
class _Const:
    """A value known while reading. ``alt`` is its value at another batch size where it depends on it."""
    value: np.ndarray
    alt: np.ndarray | None = None


@dataclass(frozen=True)
class _Val:
    """A tensor computed from the input: the node making it, its ONNX shape (batch excluded) and its order.

    ``src`` is None where our layout stores the elements in ONNX's own (C-order) order, or else
    the ONNX shape whose channels-last transpose gives our order (see :func:`_order`).
    """
    name: str
    oshape: tuple[int, ...]
    src: tuple[int, ...] | None


def _key(oshape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The order our channels-last layout gives a tensor of ONNX shape ``oshape``: None if ONNX's own."""
    if len(oshape) == 1:
        return None
    c, spatial = oshape[0], math.prod(oshape[1:])
    return None if c == 1 or spatial == 1 else tuple(oshape)


def _order(src: tuple[int, ...]) -> np.ndarray:
    """Flat ONNX index of each element of our layout, for a tensor of ONNX shape ``src``."""
    axes = tuple(range(1, len(src))) + (0,)
    return np.arange(math.prod(src)).reshape(src).transpose(axes).ravel()


def _same_order(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> bool:
    if a == b:
        return True
    if a is None or b is None or math.prod(a) != math.prod(b):
        return False
    return bool(np.array_equal(_order(a), _order(b)))


def ours_shape(oshape: tuple[int, ...]) -> tuple[int, ...]:
    """Our shape of a tensor of ONNX per-sample shape: (F,), (C, L) → (1, L, C), (C, H, W) → (H, W, C)."""
    if len(oshape) == 1:
        return tuple(oshape)
    if len(oshape) == 2:
        return (1, oshape[1], oshape[0])
    return (oshape[1], oshape[2], oshape[0])


def _to_ours(val: _Val, full: np.ndarray) -> np.ndarray:
    """An array of ONNX shape ``val.oshape`` rearranged the way our layout stores ``val``."""
    if len(val.oshape) == 1:
        return full[_order(val.src)] if val.src is not None else full
    return np.moveaxis(full, 0, -1).reshape(ours_shape(val.oshape))


class _Ctx:
    """One ONNX node being converted: its inputs, attributes and how messages name it."""

    def __init__(self, conv: "_Converter", node: Any, idx: int, ins: list[_Const | _Val | None]) -> None:
        from onnx import helper
        self.conv = conv
        self.node = node
        self.label = _label(node, idx)
        self.ins = ins
        self.attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        self.base = node.name or (node.output[0] if node.output else "") or f"node{idx}"

    def refuse(self, what: str) -> UnsupportedLayerError:
        return UnsupportedLayerError(f"{self.label}: {what}")

    # inputs ----------------------------------------------------------------------------------
    def has(self, i: int) -> bool:
        return i < len(self.ins) and self.ins[i] is not None

    def val(self, i: int = 0) -> _Val:
        v = self.ins[i] if i < len(self.ins) else None
        if not isinstance(v, _Val):
            what = "missing" if v is None else "a constant"
            raise self.refuse(f"input {i} is {what}; a tensor computed from the model input is expected")
        return v

    def const(self, i: int, what: str) -> np.ndarray:
        v = self.ins[i] if i < len(self.ins) else None
        if not isinstance(v, _Const):
            shown = "missing" if v is None else "computed from the model input"
            raise self.refuse(f"its {what} (input {i}) is {shown}; only constant {what}s are supported")
        if v.alt is not None:
            raise self.refuse(f"its {what} (input {i}) depends on the batch size")
        return v.value

    def weights(self, i: int, what: str) -> np.ndarray:
        """A constant numeric operand, finite: float32 stays float32 (big weights are not doubled),
        other types become float64."""
        arr = self.const(i, what)
        if arr.dtype.kind not in "fiub":
            raise self.refuse(f"its {what} has data type {arr.dtype}")
        if arr.dtype != np.float32:
            arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise SnnexportError(f"{self.label} has NaN or Inf in its {what}")
        return arr

    def spatial(self, i: int = 0) -> _Val:
        v = self.val(i)
        if len(v.oshape) not in (2, 3):
            raise self.refuse(f"expects an (N, C, L) or (N, C, H, W) tensor, got shape "
                              f"{('N',) + v.oshape}")
        return v

    def flat(self, i: int = 0) -> _Val:
        v = self.val(i)
        if len(v.oshape) != 1:
            raise self.refuse(f"expects an (N, features) tensor, got shape {('N',) + v.oshape}; "
                              "flatten it first")
        return v

    def output_used(self, k: int) -> bool:
        return k < len(self.node.output) and self.node.output[k] in self.conv.needed_tensors

    # attributes ------------------------------------------------------------------------------
    def ints(self, name: str, default: list[int] | None = None) -> list[int] | None:
        v = self.attrs.get(name)
        return default if v is None else [int(x) for x in (v if isinstance(v, (list, tuple)) else [v])]

    def attr_int(self, name: str, default: int) -> int:
        v = self.attrs.get(name, default)
        if isinstance(v, (list, tuple)):
            raise self.refuse(f"attribute {name} must be one integer")
        return int(v)

    def attr_float(self, name: str, default: float) -> float:
        return float(self.attrs.get(name, default))

    def attr_str(self, name: str, default: str) -> str:
        v = self.attrs.get(name, default)
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)

    def axes(self, input_index: int) -> list[int] | None:
        """``axes`` as an attribute (older opsets) or as a constant input (newer ones)."""
        if self.has(input_index):
            return [int(a) for a in np.asarray(self.const(input_index, "axes")).reshape(-1)]
        return self.ints("axes")

    # emitting --------------------------------------------------------------------------------
    def aux(self, suffix: str, op: ops.Op, inputs: tuple[str, ...]) -> str:
        """An intermediate node of this ONNX node (named ``base:suffix``)."""
        return self.conv.add(self.conv.fresh(f"{self.base}:{suffix}"), op, inputs, self.label, self.base)

    def emit(self, chain: list[tuple[str, ops.Op]], inputs: tuple[str, ...], oshape: tuple[int, ...],
             src: tuple[int, ...] | None) -> _Val:
        """Add a chain of ops for this node (the last one named after it) and return its tensor."""
        prev = inputs
        for suffix, op in chain[:-1]:
            prev = (self.aux(suffix, op, prev),)
        name = self.conv.add(self.conv.fresh(self.base), chain[-1][1], prev, self.label, self.base)
        out = _Val(name, tuple(oshape), src)
        if self.conv.shapes[out.name] != ours_shape(out.oshape):  # our bookkeeping must agree
            raise SnnexportError(f"{self.label}: converted shape {self.conv.shapes[out.name]} differs from "
                                 f"{ours_shape(out.oshape)} (please report this)")
        return out


class _Converter:
    def __init__(self, model: Any, path: Path, opset: int) -> None:
        self.model = model
        self.graph = model.graph
        self.folder = path.resolve().parent
        self.path = path
        self.opset = opset
        self.nodes: list[Node] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.used: set[str] = set()
        self.env: dict[str, _Const | _Val] = {}
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.needed_tensors: set[str] = set()
        self.batch = (1, 2)  # two batch sizes (set from the input) that tell batch-dependent constants

    def fresh(self, base: str) -> str:
        cand, i = base, 2
        while cand in self.used:
            cand, i = f"{base}:{i}", i + 1
        return cand

    def add(self, name: str, op: ops.Op, inputs: tuple[str, ...], label: str, layer: str) -> str:
        try:
            shape = tuple(op.output_shape(*(self.shapes[i] for i in inputs)))
        except ValueError as e:
            raise SnnexportError(f"{label}: {e}") from None
        self.used.add(name)
        self.shapes[name] = shape
        self.nodes.append(Node(name=name, op=op, inputs=inputs, keras_layer=layer))
        return name

    def value(self, name: str) -> _Const | _Val | None:
        if not name:
            return None
        if name not in self.env:
            t = self.initializers.get(name)
            if t is None:
                raise SnnexportError(f"{self.path}: tensor {_q(name)} is used but nothing produces it")
            self.env[name] = _Const(tensor_array(t, self.folder, "initializer"))
        return self.env[name]

    # the walk --------------------------------------------------------------------------------
    def run(self) -> Graph:
        g = self.graph
        inp = self._input()
        if len(g.output) != 1:
            raise UnsupportedLayerError(f"{self.path}: the model has {len(g.output)} outputs; only "
                                        "single-output models are supported")
        out_name = g.output[0].name
        needed = self._needed(out_name)
        last_use = {name: idx for idx in sorted(needed) for name in g.node[idx].input}
        for idx, node in enumerate(g.node):
            if idx not in needed:
                continue
            ins = [self.value(n) for n in node.input]
            ctx = _Ctx(self, node, idx, ins)
            outs = self._convert_node(ctx)
            del ctx, ins
            for name, v in zip(node.output, outs):
                if name:
                    self.env[name] = v
            for name in node.input:  # a weight read for the last time: drop our copy of it now
                if last_use.get(name) == idx and name != out_name and name in self.initializers:
                    self.env.pop(name, None)
        out = self.env.get(out_name) if out_name in self.env else self.value(out_name)
        if not isinstance(out, _Val) or out.name == inp.name:
            raise UnsupportedLayerError(f"{self.path}: the model output {_q(out_name)} does not depend on "
                                        "its input through any operator")
        if out.src is not None:
            raise UnsupportedLayerError(
                f"{self.path}: the model output (ONNX shape {('N',) + out.oshape}) holds a convolution's "
                "output in NCHW element order, which the channels-last spiking network does not keep; "
                "end the model with global pooling or a Gemm/MatMul (Linear) layer")
        keep, want = [], {out.name}
        for n in reversed(self.nodes):  # drop what the output does not use
            if n.name in want:
                keep.append(n)
                want.update(n.inputs)
        return Graph(input_name=inp.name, input_shape=ours_shape(inp.oshape), nodes=keep[::-1],
                     output=out.name)

    def _input(self) -> _Val:
        inits = set(self.initializers)
        real = [i for i in self.graph.input if i.name not in inits]
        if len(real) != 1:
            raise UnsupportedLayerError(f"{self.path}: the model has {len(real)} inputs; only "
                                        "single-input models are supported")
        i = real[0]
        tt = i.type.tensor_type if i.type.HasField("tensor_type") else None
        if tt is None or tt.elem_type not in _FLOAT_TYPES:
            raise UnsupportedLayerError(f"{self.path}: the model input {_q(i.name)} is not a float tensor")
        if not tt.HasField("shape"):
            raise SnnexportError(f"{self.path}: the model input {_q(i.name)} has no shape; export the "
                                 "model with a fixed input size")
        dims = list(tt.shape.dim)
        per = dims[1:]
        if not 2 <= len(dims) <= 4 or any(not d.HasField("dim_value") or d.dim_value < 1 for d in per):
            shown = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)
            raise UnsupportedLayerError(
                f"{self.path}: the model input {_q(i.name)} has shape {shown}; supported are (N, features), "
                "(N, C, L) and (N, C, H, W) with fixed sizes after the batch axis")
        batch = dims[0].dim_value if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else 0
        self.batch = (batch or 1, (batch or 1) + 1)
        oshape = tuple(int(d.dim_value) for d in per)
        val = _Val(i.name, oshape, _key(oshape))
        self.used.add(i.name)
        self.shapes[i.name] = ours_shape(oshape)
        self.env[i.name] = val
        return val

    def _needed(self, out_name: str) -> set[int]:
        """Indices of the nodes the output depends on; records the tensors they read."""
        producer = {o: k for k, n in enumerate(self.graph.node) for o in n.output if o}
        needed: set[int] = set()
        stack = [out_name]
        self.needed_tensors = {out_name}
        while stack:
            k = producer.get(stack.pop())
            if k is None or k in needed:
                continue
            needed.add(k)
            for name in self.graph.node[k].input:
                if name:
                    self.needed_tensors.add(name)
                    stack.append(name)
        return needed

    def _convert_node(self, ctx: _Ctx) -> list[_Const | _Val]:
        op = ctx.node.op_type
        consts = all(v is None or isinstance(v, _Const) for v in ctx.ins)
        if op in _FOLDERS and (consts or op == "Shape"):
            return self._fold(ctx)
        if op in _HANDLERS:
            return _HANDLERS[op](ctx)
        raise ctx.refuse(f"is evaluated only on constants (shape arithmetic), but here its input is "
                         f"computed from the model input; {_SUPPORTED_HINT}")

    def _fold(self, ctx: _Ctx) -> list[_Const | _Val]:
        fn = _FOLDERS[ctx.node.op_type]
        try:
            if ctx.node.op_type == "Shape" and isinstance(ctx.ins[0], _Val):
                return [_shape_of_val(ctx, ctx.ins[0])]
            first = [c.value if c is not None else None for c in ctx.ins]
            value = fn(ctx, first)
            alt = None
            if any(c is not None and c.alt is not None for c in ctx.ins):
                alt = fn(ctx, [(c.alt if c.alt is not None else c.value) if c is not None else None
                               for c in ctx.ins])
                if alt.shape == value.shape and np.array_equal(alt, value):
                    alt = None
        except SnnexportError:
            raise
        except (ValueError, IndexError, TypeError, ZeroDivisionError, OverflowError) as e:
            raise ctx.refuse(f"cannot evaluate this constant computation ({_first_line(e)})") from None
        return [_Const(value, alt)]


# --------------------------------------------------------------------------------------------
# constant folding: a small whitelist of numpy evaluations, with size caps


def _cap(ctx: _Ctx, shape: tuple[int, ...]) -> None:
    if math.prod(shape) > MAX_FOLD_ELEMENTS:
        raise ctx.refuse(f"would compute a constant of shape {shape}, more than {MAX_FOLD_ELEMENTS} elements")


def _norm_axis(ctx: _Ctx, axis: int, rank: int) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise ctx.refuse(f"axis {axis} is out of range for rank {rank}")
    return a


def _fold_constant(ctx: _Ctx, ins: list[Any]) -> np.ndarray:
    a = ctx.node.attribute[0] if len(ctx.node.attribute) == 1 else None
    if a is None:
        raise ctx.refuse("must have exactly one value attribute")
    if a.name == "value":
        return tensor_array(a.t, ctx.conv.folder, ctx.label)
    v = ctx.attrs[a.name]
    if a.name in ("value_float", "value_floats"):
        return np.asarray(v, np.float32)
    if a.name in ("value_int", "value_ints"):
        return np.asarray(v, np.int64)
    raise ctx.refuse(f"attribute {_q(a.name)} is not supported (only numeric constants)")


def _shape_slice(ctx: _Ctx, shape: tuple[int, ...]) -> np.ndarray:
    end = ctx.attrs.get("end")
    return np.array(shape, np.int64)[ctx.attr_int("start", 0):None if end is None else int(end)]


def _shape_of_val(ctx: _Ctx, x: _Val) -> _Const:
    """Shape of a computed tensor: known but for the batch size, so evaluated at two of them."""
    n1, n2 = ctx.conv.batch
    value, alt = _shape_slice(ctx, (n1,) + x.oshape), _shape_slice(ctx, (n2,) + x.oshape)
    return _Const(value, None if np.array_equal(alt, value) else alt)


def _fold_shape(ctx: _Ctx, ins: list[Any]) -> np.ndarray:
    return _shape_slice(ctx, np.shape(ins[0]))


def _fold_identity(ctx: _Ctx, ins: list[Any]) -> np.ndarray:
    return ins[0]


def _fold_gather(ctx: _Ctx, ins: list[Any]) -> np.ndarray:
    data, idx = np.asarray(ins[0]), np.asarray(ins[1])
    if idx.dtype.kind not in "iu":
        raise ctx.refuse("indices must be integers")
    axis = _norm_axis(ctx, ctx.attr_int("axis", 0), data.ndim)
    n = data.shape[axis]
    idx = np.where(idx < 0, idx + n, idx)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ctx.refuse(f"an index is out of range for an axis of size {n}")
    _cap(ctx, data.shape[:axis] + idx.shape + data.shape[axis + 1:])
    return np.take(data, idx, axis=axis)


def _unsqueezed(ctx: _Ctx, shape: tuple[int, ...], axes: list[int]) -> tuple[int, ...]:
    rank = len(shape) + len(axes)
    norm = sorted(_norm_axis(ctx, a, rank) for a in axes)
    if len(set(norm)) != len(norm):
        raise ctx.refuse("axes repeat")
    out = list(shape)
    for a in norm:
        out.insert(a, 1)
    return tuple(out)


def _squeezed(ctx: _Ctx, shape: tuple[int, ...], axes: list[int] | None) -> tuple[int, ...]:
    if not axes:
        return tuple(d for d in shape if d != 1)
    norm = {_norm_axis(ctx, a, len(shape)) for a in axes}
    if any(shape[a] != 1 for a in norm):
        raise ctx.refuse(f"squeezes an axis of size other than 1 in shape {shape}")
    return tuple(d for k, d in enumerate(shape) if k not in norm)


def _fold_unsqueeze(ctx: _Ctx, ins: list[Any]) -> np.ndarray:
    axes = ctx.axes(1)
    if axes is None:
        raise ctx.refuse("has no axes")
    return np.asarray(ins[0]).reshape(_unsqueezed(ctx, np.shape(ins[0]), axes))


def _fold_squeeze(ctx: _Ctx, ins: list[Any]) -> np.ndarray:
    return np.asarray(ins[0]).reshape(_squeezed(ctx, np.shape(ins[0]), ctx.axes(1)))


def _fold_concat(ctx: _Ctx, ins: list[Any]) -> np.ndarray:
    arrs = [np.asarray(a) for a in ins if a is not None]
    axis = _norm_axis(ctx, ctx.attr_int("axis", 0), arrs[0].ndim)
    return np.concatenate(arrs, axis=axis)


def _fold_slice(ctx: _Ctx, ins: list[Any]) -> np.ndarray:
    data = np.asarray(ins[0])
    starts, ends = np.asarray(ins[1]).reshape(-1), np.asarray(ins[2]).reshape(-1)
    axes = np.asarray(ins[3]).reshape(-1) if len(ins) > 3 and ins[3] is not None else np.arange(len(starts))
    steps = np.asarray(ins[4]).reshape(-1) if len(ins) > 4 and ins[4] is not None else np.ones(len(starts), int)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.refuse("starts, ends, axes and steps differ in length")
    index: list[slice] = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise ctx.refuse("a step is 0")
        index[_norm_axis(ctx, int(a), data.ndim)] = slice(int(s), int(e), int(st))
    return data[tuple(index)].copy()


def _fold_cast(ctx: _Ctx, ins: list[Any]) -> np.ndarray:
    to = ctx.attr_int("to", 0)
    if to not in _DTYPES:
        raise ctx.refuse(f"casts to data type {to}, which is not supported")
    return np.asarray(ins[0]).astype(_DTYPES[to])


def _reshape_target(ctx: _Ctx, shape: tuple[int, ...], target: np.ndarray) -> tuple[int, ...]:
    """ONNX Reshape's target with 0 (copy, unless allowzero) and -1 (infer) resolved."""
    t = [int(v) for v in np.asarray(target).reshape(-1)]
    allowzero = ctx.attr_int("allowzero", 0)
    out = [shape[k] if v == 0 and not allowzero and k < len(shape) else v for k, v in enumerate(t)]
    if out.count(-1) > 1 or any(v < -1 for v in out):
        raise ctx.refuse(f"has an invalid target shape {t}")
    if -1 in out:
        known = math.prod(v for v in out if v != -1)
        total = math.prod(shape)
        if known == 0 or total % known:
            raise ctx.refuse(f"cannot reshape {shape} to {t}")
        out[out.index(-1)] = total // known
    if math.prod(out) != math.prod(shape):
        raise ctx.refuse(f"cannot reshape {shape} to {t}")
    return tuple(out)


def _fold_reshape(ctx: _Ctx, ins: list[Any]) -> np.ndarray:
    data = np.asarray(ins[0])
    return data.reshape(_reshape_target(ctx, data.shape, ins[1]))


def _fold_transpose(ctx: _Ctx, ins: list[Any]) -> np.ndarray:
    data = np.asarray(ins[0])
    perm = ctx.ints("perm") or list(range(data.ndim))[::-1]
    return np.ascontiguousarray(np.transpose(data, perm))


def _fold_arith(ctx: _Ctx, ins: list[Any]) -> np.ndarray:
    a, b = np.asarray(ins[0]), np.asarray(ins[1])
    _cap(ctx, np.broadcast_shapes(a.shape, b.shape))
    op = ctx.node.op_type
    if op == "Add":
        return a + b
    if op == "Sub":
        return a - b
    if op == "Mul":
        return a * b
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":  # ONNX integer division truncates toward zero
        if (b == 0).any():
            raise ctx.refuse("divides by zero")
        q = np.abs(a) // np.abs(b)
        return np.where((a < 0) != (b < 0), -q, q).astype(np.result_type(a, b))
    return a / b


_FOLDERS: dict[str, Callable[[_Ctx, list[Any]], np.ndarray]] = {
    "Constant": _fold_constant, "Identity": _fold_identity, "Shape": _fold_shape,
    "Gather": _fold_gather, "Unsqueeze": _fold_unsqueeze, "Squeeze": _fold_squeeze,
    "Concat": _fold_concat, "Slice": _fold_slice, "Cast": _fold_cast, "Reshape": _fold_reshape,
    "Transpose": _fold_transpose, "Add": _fold_arith, "Sub": _fold_arith, "Mul": _fold_arith,
    "Div": _fold_arith,
}


# --------------------------------------------------------------------------------------------
# handlers: ctx → the node's outputs (only the first, unless the op has more that we convert)

Handler = Callable[[_Ctx], list[_Const | _Val]]


def _pairs(ctx: _Ctx, name: str, rank: int, default: int) -> list[int]:
    v = ctx.ints(name) or [default] * rank
    if len(v) != rank:
        raise ctx.refuse(f"attribute {name} has {len(v)} values; {rank} expected")
    return v


def _padding(ctx: _Ctx, size: tuple[int, ...], kernel: list[int], strides: list[int],
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


def _geometry(ctx: _Ctx, x: _Val, kernel: list[int], pool: bool
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


def _as2d(values: list[Any], fill: Any) -> tuple[Any, Any]:
    """A 1-D attribute (L axis) as the (H, W) pair of our (1, L, C) layout; 2-D ones unchanged."""
    return (fill, values[0]) if len(values) == 1 else (values[0], values[1])


def _h_conv(ctx: _Ctx) -> list[_Const | _Val]:
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
    bias = ctx.weights(2, "bias").reshape(-1) if ctx.has(2) else None
    if bias is not None and bias.shape != (cout,):
        raise ctx.refuse(f"has a bias of shape {bias.shape} for {cout} output channels")
    # (O, I/g, kh, kw) -> (kh, kw, I/g, O); 1-D (O, I/g, k) -> (1, k, I/g, O)
    kern = np.moveaxis(w, (0, 1), (-1, -2))
    if r == 1:
        kern = kern[None]
    op = ops.Conv2D(kernel=np.array(kern, np.float32, order="C"),
                    bias=None if bias is None else bias.astype(np.float32),
                    strides=_as2d(strides, 1), padding=_as2d(pads, (0, 0)),
                    dilation=_as2d(dilations, 1), groups=groups)
    oshape = (cout,) + out
    return [ctx.emit([("conv", op)], (x.name,), oshape, _key(oshape))]


def _pool_common(ctx: _Ctx) -> tuple[_Val, list[int]]:
    x = ctx.spatial(0)
    kernel = ctx.ints("kernel_shape")
    if kernel is None:
        raise ctx.refuse("has no kernel_shape")
    if any(d != 1 for d in ctx.ints("dilations") or []):
        raise ctx.refuse(f"has dilations {ctx.ints('dilations')}; only 1 is supported for pooling")
    return x, kernel


def _h_maxpool(ctx: _Ctx) -> list[_Const | _Val]:
    x, kernel = _pool_common(ctx)
    if ctx.output_used(1):
        raise ctx.refuse("its second output (the indices) is used; only the pooled values are supported")
    strides, _, pads, extra, out = _geometry(ctx, x, kernel, pool=True)
    padding = [(b, e + x_) for (b, e), x_ in zip(pads, extra)]  # ceil_mode: more end padding
    op = ops.MaxPool(pool=_as2d(kernel, 1), strides=_as2d(strides, 1), padding=_as2d(padding, (0, 0)))
    oshape = (x.oshape[0],) + out
    return [ctx.emit([("pool", op)], (x.name,), oshape, _key(oshape))]


def _h_avgpool(ctx: _Ctx) -> list[_Const | _Val]:
    x, kernel = _pool_common(ctx)
    strides, _, pads, extra, out = _geometry(ctx, x, kernel, pool=True)
    chain: list[tuple[str, ops.Op]] = []
    if ctx.attr_int("count_include_pad", 0) and any(b or e for b, e in pads):
        # PyTorch's default: padded zeros count. Pad them explicitly, so that each window divides
        # by its size; ceil_mode's extra cells are outside the padded input and never count.
        chain.append(("pad", ops.Pad(_as2d(pads, (0, 0)))))
        padding = [(0, x_) for x_ in extra]
    else:  # padded cells excluded from the divisor, as our AvgPool (and Keras) do
        padding = [(b, e + x_) for (b, e), x_ in zip(pads, extra)]
    chain.append(("pool", ops.AvgPool(pool=_as2d(kernel, 1), strides=_as2d(strides, 1),
                                      padding=_as2d(padding, (0, 0)))))
    oshape = (x.oshape[0],) + out
    return [ctx.emit(chain, (x.name,), oshape, _key(oshape))]


def _global_pool(ctx: _Ctx, x: _Val, kind: type[ops.MaxPool] | type[ops.AvgPool], keepdims: bool
                 ) -> list[_Const | _Val]:
    h, w, c = ctx.conv.shapes[x.name]
    chain: list[tuple[str, ops.Op]] = [("pool", kind(pool=(h, w), strides=(h, w)))]
    oshape = (c,) + (1,) * (len(x.oshape) - 1)
    if not keepdims:
        chain.append(("reshape", ops.Reshape((c,))))
        oshape = (c,)
    return [ctx.emit(chain, (x.name,), oshape, None)]


def _h_global_pool(ctx: _Ctx) -> list[_Const | _Val]:
    kind = ops.MaxPool if ctx.node.op_type == "GlobalMaxPool" else ops.AvgPool
    return _global_pool(ctx, ctx.spatial(0), kind, keepdims=True)


def _h_reduce(ctx: _Ctx) -> list[_Const | _Val]:
    """ReduceMean/ReduceMax over all spatial axes (PyTorch's x.mean((2, 3))) is global pooling."""
    x = ctx.spatial(0)
    axes = ctx.axes(1)
    rank = len(x.oshape) + 1
    spatial = set(range(2, rank))
    if not axes or {_norm_axis(ctx, a, rank) for a in axes} != spatial:
        raise ctx.refuse(f"reduces axes {axes}; only all spatial axes {sorted(spatial)} (global pooling) "
                         "are supported")
    kind = ops.MaxPool if ctx.node.op_type == "ReduceMax" else ops.AvgPool
    return _global_pool(ctx, x, kind, keepdims=bool(ctx.attr_int("keepdims", 1)))


def _dense(ctx: _Ctx, x: _Val, weight: np.ndarray, bias: np.ndarray | None) -> list[_Const | _Val]:
    """Dense on a flat tensor: its rows follow our order of the input (the NCHW-flatten fold)."""
    if weight.ndim != 2 or weight.shape[0] != x.oshape[0]:
        raise ctx.refuse(f"has a weight of shape {weight.shape} for {x.oshape[0]} inputs")
    if x.src is not None:
        weight = weight[_order(x.src)]
    op = ops.Dense(weight=np.array(weight, np.float32, order="C"),
                   bias=None if bias is None else bias.astype(np.float32))
    return [ctx.emit([("dense", op)], (x.name,), (weight.shape[1],), None)]


def _h_gemm(ctx: _Ctx) -> list[_Const | _Val]:
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


def _h_matmul(ctx: _Ctx) -> list[_Const | _Val]:
    return _dense(ctx, ctx.flat(0), ctx.weights(1, "weight"), None)


def _channel_vector(ctx: _Ctx, x: _Val, c: np.ndarray) -> np.ndarray:
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
    ours = _to_ours(x, full)
    vec = np.array(ours.reshape(-1, ours.shape[-1])[0])
    if not np.array_equal(ours, np.broadcast_to(vec, ours.shape)):
        raise ctx.refuse(f"a constant of shape {c.shape} varies along more than the channel axis; "
                         "only a number or one value per channel is supported")
    return vec


def _affine(ctx: _Ctx, x: _Val, scale: np.ndarray | None, offset: np.ndarray | None) -> list[_Const | _Val]:
    """Affine on our last axis from float64 vectors (None: scale 1 / offset 0)."""
    c = ctx.conv.shapes[x.name][-1]
    sc = np.ones(c) if scale is None else scale
    if not (np.isfinite(sc).all() and (offset is None or np.isfinite(offset).all())):
        raise SnnexportError(f"{ctx.label} gives a non-finite scale or offset")
    op = ops.Affine(scale=sc.astype(np.float32), offset=None if offset is None else offset.astype(np.float32))
    return [ctx.emit([("affine", op)], (x.name,), x.oshape, x.src)]


def _h_batchnorm(ctx: _Ctx) -> list[_Const | _Val]:
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


def _activation(ctx: _Ctx, x: _Val, act: ops.Activation) -> list[_Const | _Val]:
    return [ctx.emit([("activation", act)], (x.name,), x.oshape, x.src)]


def _h_relu(ctx: _Ctx) -> list[_Const | _Val]:
    return _activation(ctx, ctx.val(0), ops.Activation("relu"))


def _clip_bound(ctx: _Ctx, i: int, attr: str) -> float | None:
    """Clip's min or max: an input (opset 11+) or an attribute (older opsets); None if absent."""
    if ctx.has(i):
        v = np.asarray(ctx.const(i, f"{attr} bound"), np.float64)
        if v.size != 1:
            raise ctx.refuse(f"its {attr} bound is not a single number")
        return float(v.reshape(()))
    return float(ctx.attrs[attr]) if attr in ctx.attrs else None


def _h_clip(ctx: _Ctx) -> list[_Const | _Val]:
    x = ctx.val(0)
    lo, hi = _clip_bound(ctx, 1, "min"), _clip_bound(ctx, 2, "max")
    if lo != 0.0:
        raise ctx.refuse(f"has min {lo}; only Clip(min=0, max) (a rectifier such as ReLU6) is supported")
    if hi is None or hi == math.inf:
        return _activation(ctx, x, ops.Activation("relu"))
    if not math.isfinite(hi) or hi <= 0:
        raise ctx.refuse(f"has max {hi}; it must be a positive number")
    return _activation(ctx, x, ops.Activation("clip", max_value=hi))


def _h_softmax(ctx: _Ctx) -> list[_Const | _Val]:
    x = ctx.val(0)
    axis = ctx.attr_int("axis", -1 if ctx.conv.opset >= 13 else 1)
    rank = len(x.oshape) + 1
    if len(x.oshape) != 1 or _norm_axis(ctx, axis, rank) != 1:
        raise ctx.refuse(f"acts on axis {axis} of shape {('N',) + x.oshape}; only the class axis of an "
                         "(N, classes) tensor is supported")
    return _activation(ctx, x, ops.Activation("softmax"))


def _h_identity(ctx: _Ctx) -> list[_Const | _Val]:
    return [ctx.val(0)]


def _h_cast(ctx: _Ctx) -> list[_Const | _Val]:
    """A cast of a computed tensor to a float type changes nothing here (the graph is float32)."""
    if ctx.attr_int("to", 0) not in _FLOAT_TYPES:
        raise ctx.refuse("casts a computed tensor to a non-float type, which is not supported")
    return [ctx.val(0)]


def _h_dropout(ctx: _Ctx) -> list[_Const | _Val]:
    if ctx.has(2) and bool(np.asarray(ctx.const(2, "training_mode")).reshape(-1)[0]):
        raise ctx.refuse("is in training mode")
    if ctx.output_used(1):
        raise ctx.refuse("its mask output is used; only inference Dropout (the identity) is supported")
    return [ctx.val(0)]


def _h_pad(ctx: _Ctx) -> list[_Const | _Val]:
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
        full[_norm_axis(ctx, a, rank)] = (pads[k], pads[k + len(axes)])
    if full[0] != (0, 0) or full[1] != (0, 0) or any(p < 0 for pair in full for p in pair):
        raise ctx.refuse(f"has pads {pads}; only non-negative padding of the spatial axes is supported")
    spatial = full[2:]
    if all(p == (0, 0) for p in spatial):
        return [x]
    oshape = (x.oshape[0],) + tuple(n + b + e for n, (b, e) in zip(x.oshape[1:], spatial))
    return [ctx.emit([("pad", ops.Pad(_as2d(spatial, (0, 0))))], (x.name,), oshape, _key(oshape))]


def _h_concat(ctx: _Ctx) -> list[_Const | _Val]:
    xs = [ctx.val(k) for k in range(len(ctx.ins))]
    rank = len(xs[0].oshape)
    if any(len(x.oshape) != rank for x in xs):
        raise ctx.refuse(f"joins tensors of different ranks {[('N',) + x.oshape for x in xs]}")
    if any(x.src is not None for x in xs) and rank == 1:
        raise ctx.refuse("joins a convolution's output flattened in NCHW order, which the channels-last "
                         "spiking network does not keep; only Gemm/MatMul can take it")
    axis = _norm_axis(ctx, ctx.attr_int("axis", 1), rank + 1)
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
    return [ctx.emit([("concat", ops.Concat(axis=our_axis))], tuple(x.name for x in xs), oshape_t, _key(oshape_t))]


def _h_arith(ctx: _Ctx) -> list[_Const | _Val]:
    op = ctx.node.op_type
    a, b = ctx.ins[0], ctx.ins[1]
    if isinstance(a, _Val) and isinstance(b, _Val):
        if op not in ("Add", "Sub"):
            raise ctx.refuse(f"{op} of two computed tensors is not supported (only of a tensor and a constant)")
        if a.oshape != b.oshape or not _same_order(a.src, b.src):
            raise ctx.refuse(f"combines shapes {('N',) + a.oshape} and {('N',) + b.oshape}; broadcasting "
                             "between two computed tensors is not supported")
        second = ctx.aux("negate", ops.Scale(-1.0), (b.name,)) if op == "Sub" else b.name
        return [ctx.emit([("add", ops.Add())], (a.name, second), a.oshape, a.src)]
    const_first = isinstance(b, _Val)
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


def _reshape_to(ctx: _Ctx, x: _Val, target: tuple[int, ...]) -> list[_Const | _Val]:
    """x as ONNX per-sample shape ``target``: a C-order reshape in ONNX, exact here only if our order allows."""
    if target == x.oshape:
        return [x]
    if not 1 <= len(target) <= 3:
        raise ctx.refuse(f"makes shape {('N',) + target}; supported are (N, F), (N, C, L) and (N, C, H, W)")
    if len(target) == 1:
        src = x.src  # a flat tensor may keep any order until a Gemm/MatMul folds it
    else:
        src = _key(target)
        if not _same_order(x.src, src):
            raise ctx.refuse(f"reshapes {('N',) + x.oshape} into {('N',) + target}, which reorders "
                             "elements between NCHW and the channels-last layout; not supported")
    if ours_shape(target) == ctx.conv.shapes[x.name]:
        return [_Val(x.name, target, src)]
    return [ctx.emit([("reshape", ops.Reshape(ours_shape(target)))], (x.name,), target, src)]


def _h_flatten(ctx: _Ctx) -> list[_Const | _Val]:
    x = ctx.val(0)
    axis = ctx.attr_int("axis", 1)
    axis = axis + len(x.oshape) + 1 if axis < 0 else axis
    if axis != 1:
        raise ctx.refuse(f"has axis {axis}; only axis 1 (keep the batch axis) is supported")
    return _reshape_to(ctx, x, (math.prod(x.oshape),))


def _h_reshape(ctx: _Ctx) -> list[_Const | _Val]:
    """Reshape to a constant target; its batch entry may be 0, -1, the batch size (possibly computed
    from Shape, as in ``x.view(x.size(0), -1)``) or the model's fixed batch size."""
    x = ctx.val(0)
    shp = ctx.ins[1] if len(ctx.ins) > 1 else None
    if not isinstance(shp, _Const):
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


def _h_squeeze(ctx: _Ctx) -> list[_Const | _Val]:
    x = ctx.val(0)
    full = _squeezed(ctx, (2,) + x.oshape, ctx.axes(1))  # batch 2: never squeezed by "all unit axes"
    if not full or full[0] != 2:
        raise ctx.refuse("squeezes the batch axis")
    return _reshape_to(ctx, x, full[1:])


def _h_unsqueeze(ctx: _Ctx) -> list[_Const | _Val]:
    x = ctx.val(0)
    axes = ctx.axes(1)
    if not axes:
        raise ctx.refuse("has no axes")
    full = _unsqueezed(ctx, (2,) + x.oshape, axes)
    if full[0] != 2:
        raise ctx.refuse("inserts an axis before the batch axis")
    return _reshape_to(ctx, x, full[1:])


_HANDLERS: dict[str, Handler] = {
    "Conv": _h_conv, "Gemm": _h_gemm, "MatMul": _h_matmul, "BatchNormalization": _h_batchnorm,
    "Relu": _h_relu, "Clip": _h_clip, "MaxPool": _h_maxpool, "AveragePool": _h_avgpool,
    "GlobalAveragePool": _h_global_pool, "GlobalMaxPool": _h_global_pool,
    "ReduceMean": _h_reduce, "ReduceMax": _h_reduce, "Pad": _h_pad, "Concat": _h_concat,
    "Add": _h_arith, "Sub": _h_arith, "Mul": _h_arith, "Div": _h_arith,
    "Flatten": _h_flatten, "Reshape": _h_reshape, "Squeeze": _h_squeeze, "Unsqueeze": _h_unsqueeze,
    "Identity": _h_identity, "Dropout": _h_dropout, "Softmax": _h_softmax, "Cast": _h_cast,
}
assert set(_HANDLERS) | set(_FOLDERS) == set(SUPPORTED_OPS)


# --------------------------------------------------------------------------------------------


def read_model(path: str | os.PathLike[str]) -> Graph:
    """Read an ONNX model into a Graph, refusing (one line) anything we cannot convert exactly."""
    p = Path(path)
    model = _load(p)
    _check_model(model, p)
    opset = _opset(model, p)
    from onnx import defs
    newest = defs.onnx_opset_version()
    if opset > newest:
        raise UnsupportedLayerError(f"{p}: the model uses ONNX opset {opset}, newer than the {newest} "
                                    "this onnx package knows; upgrade onnx")
    if opset < MIN_OPSET:
        model, opset = _upgrade(model, p, opset)
    try:
        return _Converter(model, p, opset).run()
    except SnnexportError:
        raise
    except Exception as e:  # a model shape we did not foresee: still one line, never a traceback
        raise SnnexportError(f"{p}: cannot convert the model: {type(e).__name__}: {_first_line(e)} "
                             "(please report this)") from None


def _upgrade(model: Any, path: Path, opset: int) -> tuple[Any, int]:
    """An opset < 11 model converted to opset 11 by onnx.version_converter (it rewrites attributes to inputs)."""
    _onnx()
    from onnx import version_converter
    try:
        converted = version_converter.convert_version(model, MIN_OPSET)
    except Exception as e:
        raise UnsupportedLayerError(f"{path}: the model uses ONNX opset {opset}, and onnx could not "
                                    f"convert it to opset {MIN_OPSET} ({_first_line(e)})") from None
    return converted, _opset(converted, path)
