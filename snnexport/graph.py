"""The ANN graph: named nodes of :mod:`snnexport.ops` in topological order, executable with numpy."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .ops import Op, Shape


@dataclass(eq=False)
class Node:
    name: str
    op: Op
    inputs: tuple[str, ...]
    keras_layer: str = ""  # the Keras layer this node came from, for messages and provenance


@dataclass(eq=False)
class Graph:
    """A single-input DAG. ``nodes`` are topologically ordered; the input is not a node."""
    input_name: str
    input_shape: Shape
    nodes: list[Node]
    output: str
    shapes: dict[str, Shape] = field(default_factory=dict)
    producer: str = ""  # what wrote the model file, where the reader can tell (ONNX: tool, version, opset)

    def __post_init__(self) -> None:
        self.infer_shapes()

    def infer_shapes(self) -> None:
        shapes: dict[str, Shape] = {self.input_name: tuple(self.input_shape)}
        for n in self.nodes:
            try:
                shapes[n.name] = tuple(n.op.output_shape(*(shapes[i] for i in n.inputs)))
            except (ValueError, KeyError) as e:
                from .errors import SnnexportError
                raise SnnexportError(f"layer {n.keras_layer or n.name!r}: {e}") from None
        self.shapes = shapes

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def consumers(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {self.input_name: []}
        for n in self.nodes:
            out.setdefault(n.name, [])
            for i in n.inputs:
                out[i].append(n)
        return out

    def run(self, x: np.ndarray, keep: Iterable[str] = (), batch: int = 256) -> dict[str, np.ndarray]:
        """Evaluate the graph on inputs x (N, *input_shape); returns the output and the ``keep`` tensors."""
        x = np.asarray(x, np.float32)
        wanted = set(keep) | {self.output}
        chunks: dict[str, list[np.ndarray]] = {k: [] for k in wanted}
        for start in range(0, max(len(x), 1), batch):
            vals = self._run_batch(x[start:start + batch], wanted)
            for k in wanted:
                chunks[k].append(vals[k])
        return {k: np.concatenate(v) for k, v in chunks.items()}

    def _run_batch(self, x: np.ndarray, wanted: set[str]) -> dict[str, np.ndarray]:
        last_use = {}
        for idx, n in enumerate(self.nodes):
            for i in n.inputs:
                last_use[i] = idx
        vals: dict[str, np.ndarray] = {self.input_name: x}
        for idx, n in enumerate(self.nodes):
            vals[n.name] = n.op.forward(*(vals[i] for i in n.inputs)).astype(np.float32, copy=False)
            for i in n.inputs:  # free what nobody needs any more: keeps big models in memory
                if last_use[i] == idx and i not in wanted:
                    del vals[i]
        return {k: vals[k] for k in wanted}

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)
