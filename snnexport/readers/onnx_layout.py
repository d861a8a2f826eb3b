"""ONNX reader, step 2: the values met while walking the nodes, the NCHW ↔ channels-last layout,
and :class:`Ctx`, one ONNX node being converted (its inputs, attributes, and how it emits ops).

Every tensor of the input's computation keeps its ONNX shape beside its node, and the order in
which our layout stores its elements (:class:`Val`). Spatial tensors are always channels-last. A
Flatten after a convolution flattens in NCHW order in ONNX but channels-last here, so the flat
tensor keeps a permuted order until a Gemm/MatMul consumes it, whose weight rows are permuted to
match; element-wise ops pass the order through, and anything else that meets a permuted tensor
(the model output, a Concat) is refused. Where H·W = 1 (after global pooling) the two orders agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import ops
from ..layout import order, ours_shape
from ..errors import SnnexportError, UnsupportedLayerError
from .onnx_check import label

if TYPE_CHECKING:
    from .onnx_convert import Converter

@dataclass(frozen=True)
class Const:
    """A value known while reading. ``alt`` is its value at another batch size where it depends on it."""
    value: np.ndarray
    alt: np.ndarray | None = None


@dataclass(frozen=True)
class Val:
    """A tensor computed from the input: the node making it, its ONNX shape (batch excluded) and its order.

    ``src`` is None where our layout stores the elements in ONNX's own (C-order) order, or else
    the ONNX shape whose channels-last transpose gives our order (see :func:`order`).
    """
    name: str
    oshape: tuple[int, ...]
    src: tuple[int, ...] | None


def to_ours(val: Val, full: np.ndarray) -> np.ndarray:
    """An array of ONNX shape ``val.oshape`` rearranged the way our layout stores ``val``."""
    if len(val.oshape) == 1:
        return full[order(val.src)] if val.src is not None else full
    return np.moveaxis(full, 0, -1).reshape(ours_shape(val.oshape))


class Ctx:
    """One ONNX node being converted: its inputs, attributes and how messages name it."""

    def __init__(self, conv: "Converter", node: Any, idx: int, ins: list[Const | Val | None]) -> None:
        from onnx import helper
        self.conv = conv
        self.node = node
        self.label = label(node, idx)
        self.ins = ins
        self.attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        self.base = node.name or (node.output[0] if node.output else "") or f"node{idx}"

    def refuse(self, what: str) -> UnsupportedLayerError:
        return UnsupportedLayerError(f"{self.label}: {what}")

    # inputs ----------------------------------------------------------------------------------
    def has(self, i: int) -> bool:
        return i < len(self.ins) and self.ins[i] is not None

    def val(self, i: int = 0) -> Val:
        v = self.ins[i] if i < len(self.ins) else None
        if not isinstance(v, Val):
            what = "missing" if v is None else "a constant"
            raise self.refuse(f"input {i} is {what}; a tensor computed from the model input is expected")
        return v

    def const(self, i: int, what: str) -> np.ndarray:
        v = self.ins[i] if i < len(self.ins) else None
        if not isinstance(v, Const):
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

    def spatial(self, i: int = 0) -> Val:
        v = self.val(i)
        if len(v.oshape) not in (2, 3):
            raise self.refuse(f"expects an (N, C, L) or (N, C, H, W) tensor, got shape "
                              f"{('N',) + v.oshape}")
        return v

    def flat(self, i: int = 0) -> Val:
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
             src: tuple[int, ...] | None) -> Val:
        """Add a chain of ops for this node (the last one named after it) and return its tensor."""
        prev = inputs
        for suffix, op in chain[:-1]:
            prev = (self.aux(suffix, op, prev),)
        name = self.conv.add(self.conv.fresh(self.base), chain[-1][1], prev, self.label, self.base)
        out = Val(name, tuple(oshape), src)
        if self.conv.shapes[out.name] != ours_shape(out.oshape):  # our bookkeeping must agree
            raise SnnexportError(f"{self.label}: converted shape {self.conv.shapes[out.name]} differs from "
                                 f"{ours_shape(out.oshape)} (please report this)")
        return out
