"""ONNX reader, step 3: walk the nodes the output needs, in order; fold constants, emit ops.

Each node goes to its handler (:mod:`~snnexport.readers.onnx_ops`, :mod:`~snnexport.readers.onnx_shape`)
or, when all its inputs are constants, to a folder (:mod:`~snnexport.readers.onnx_fold`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import ops
from ..errors import SnnexportError, UnsupportedLayerError
from ..graph import Graph, Node
from .keras_config import first_line, quote
from .onnx_check import FLOAT_TYPES, SUPPORTED_HINT, SUPPORTED_OPS, tensor_array
from .onnx_fold import FOLDERS, shape_of_val
from ..layout import key, ours_shape
from .onnx_layout import Const, Ctx, Val
from . import onnx_ops, onnx_shape


class Converter:
    """The walk over one checked model: the ops emitted so far, their shapes, and every ONNX tensor's value."""

    def __init__(self, model: Any, path: Path, opset: int) -> None:
        self.model = model
        self.graph = model.graph
        self.folder = path.resolve().parent
        self.path = path
        self.opset = opset
        self.nodes: list[Node] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.used: set[str] = set()
        self.env: dict[str, Const | Val] = {}
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

    def value(self, name: str) -> Const | Val | None:
        if not name:
            return None
        if name not in self.env:
            t = self.initializers.get(name)
            if t is None:
                raise SnnexportError(f"{self.path}: tensor {quote(name)} is used but nothing produces it")
            self.env[name] = Const(tensor_array(t, self.folder, "initializer"))
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
            ctx = Ctx(self, node, idx, ins)
            outs = self._convert_node(ctx)
            del ctx, ins
            for name, v in zip(node.output, outs):
                if name:
                    self.env[name] = v
            for name in node.input:  # a weight read for the last time: drop our copy of it now
                if last_use.get(name) == idx and name != out_name and name in self.initializers:
                    self.env.pop(name, None)
        out = self.env.get(out_name) if out_name in self.env else self.value(out_name)
        if not isinstance(out, Val) or out.name == inp.name:
            raise UnsupportedLayerError(f"{self.path}: the model output {quote(out_name)} does not depend on "
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

    def _input(self) -> Val:
        inits = set(self.initializers)
        real = [i for i in self.graph.input if i.name not in inits]
        if len(real) != 1:
            raise UnsupportedLayerError(f"{self.path}: the model has {len(real)} inputs; only "
                                        "single-input models are supported")
        i = real[0]
        tt = i.type.tensor_type if i.type.HasField("tensor_type") else None
        if tt is None or tt.elem_type not in FLOAT_TYPES:
            raise UnsupportedLayerError(f"{self.path}: the model input {quote(i.name)} is not a float tensor")
        if not tt.HasField("shape"):
            raise SnnexportError(f"{self.path}: the model input {quote(i.name)} has no shape; export the "
                                 "model with a fixed input size")
        dims = list(tt.shape.dim)
        per = dims[1:]
        if not 2 <= len(dims) <= 4 or any(not d.HasField("dim_value") or d.dim_value < 1 for d in per):
            shown = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)
            raise UnsupportedLayerError(
                f"{self.path}: the model input {quote(i.name)} has shape {shown}; supported are (N, features), "
                "(N, C, L) and (N, C, H, W) with fixed sizes after the batch axis")
        batch = dims[0].dim_value if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else 0
        self.batch = (batch or 1, (batch or 1) + 1)
        oshape = tuple(int(d.dim_value) for d in per)
        val = Val(i.name, oshape, key(oshape))
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

    def _convert_node(self, ctx: Ctx) -> list[Const | Val]:
        op = ctx.node.op_type
        consts = all(v is None or isinstance(v, Const) for v in ctx.ins)
        if op in FOLDERS and (consts or op == "Shape"):
            return self._fold(ctx)
        if op in HANDLERS:
            return HANDLERS[op](ctx)
        raise ctx.refuse(f"is evaluated only on constants (shape arithmetic), but here its input is "
                         f"computed from the model input; {SUPPORTED_HINT}")

    def _fold(self, ctx: Ctx) -> list[Const | Val]:
        fn = FOLDERS[ctx.node.op_type]
        try:
            if ctx.node.op_type == "Shape" and isinstance(ctx.ins[0], Val):
                return [shape_of_val(ctx, ctx.ins[0])]
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
            raise ctx.refuse(f"cannot evaluate this constant computation ({first_line(e)})") from None
        return [Const(value, alt)]


Handler = Callable[[Ctx], list[Const | Val]]

HANDLERS: dict[str, Handler] = {
    "Conv": onnx_ops.h_conv, "ConvTranspose": onnx_ops.h_conv_transpose,
    "Gemm": onnx_ops.h_gemm, "MatMul": onnx_ops.h_matmul,
    "BatchNormalization": onnx_ops.h_batchnorm, "Relu": onnx_ops.h_relu, "Clip": onnx_ops.h_clip,
    "MaxPool": onnx_ops.h_maxpool, "AveragePool": onnx_ops.h_avgpool, "Resize": onnx_ops.h_resize,
    "GlobalAveragePool": onnx_ops.h_global_pool, "GlobalMaxPool": onnx_ops.h_global_pool,
    "ReduceMean": onnx_ops.h_reduce, "ReduceMax": onnx_ops.h_reduce, "Softmax": onnx_ops.h_softmax,
    "Add": onnx_ops.h_arith, "Sub": onnx_ops.h_arith, "Mul": onnx_ops.h_arith, "Div": onnx_ops.h_arith,
    "Pad": onnx_shape.h_pad, "Concat": onnx_shape.h_concat, "Flatten": onnx_shape.h_flatten,
    "Reshape": onnx_shape.h_reshape, "Squeeze": onnx_shape.h_squeeze, "Unsqueeze": onnx_shape.h_unsqueeze,
    "Identity": onnx_shape.h_identity, "Dropout": onnx_shape.h_dropout, "Cast": onnx_shape.h_cast,
}
assert set(HANDLERS) | set(FOLDERS) == set(SUPPORTED_OPS)
