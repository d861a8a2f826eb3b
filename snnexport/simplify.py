"""Exact rewrites of the ANN graph before conversion.

Each pass leaves the graph's function unchanged (up to float rounding) and makes the spiking
network smaller or possible: BatchNormalization folded into the weights before it, consecutive
rectifiers merged, and max-pooling moved after its rectifier (relu and max commute), because in
the spiking network max-pooling is a gate on spikes and needs a spiking population before it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .graph import Graph, Node
from .ops import Activation, Affine, Conv2D, Dense, MaxPool

_MONOTONE = ("relu", "clip")


def simplify(graph: Graph) -> Graph:
    nodes = list(graph.nodes)
    nodes = _fold_affine_into_previous(nodes, graph.output)
    nodes = _merge_rectifiers(nodes, graph.output)
    nodes = _rectify_before_maxpool(nodes, graph.output)
    return Graph(graph.input_name, graph.input_shape, nodes, graph.output)


def _consumers(nodes: list[Node]) -> dict[str, list[Node]]:
    out: dict[str, list[Node]] = {}
    for n in nodes:
        for i in n.inputs:
            out.setdefault(i, []).append(n)
    return out


def _fold_affine_into_previous(nodes: list[Node], output: str) -> list[Node]:
    """conv/dense → affine (a BatchNormalization) becomes one conv/dense with scaled weights."""
    by_name = {n.name: n for n in nodes}
    consumers = _consumers(nodes)
    drop: set[str] = set()
    out: list[Node] = []
    for n in nodes:
        if isinstance(n.op, Affine) and len(n.inputs) == 1:
            prev = by_name.get(n.inputs[0])
            if (prev is not None and isinstance(prev.op, (Conv2D, Dense)) and prev.name != output
                    and len(consumers.get(prev.name, [])) == 1):
                n = Node(n.name, _fold(prev.op, n.op), prev.inputs, n.keras_layer)
                drop.add(prev.name)
        out.append(n)
    return [n for n in out if n.name not in drop]


def _fold(op: Conv2D | Dense, aff: Affine) -> Conv2D | Dense:
    scale = aff.scale.astype(np.float32)
    offset = aff.offset if aff.offset is not None else np.zeros_like(scale)
    bias = op.bias if op.bias is not None else np.zeros_like(scale)
    new_bias = (bias * scale + offset).astype(np.float32)
    if isinstance(op, Conv2D):
        return replace(op, kernel=(op.kernel * scale).astype(np.float32), bias=new_bias)
    return replace(op, weight=(op.weight * scale).astype(np.float32), bias=new_bias)


def _merge_rectifiers(nodes: list[Node], output: str) -> list[Node]:
    """relu → relu (a fused activation followed by a ReLU layer) is one relu; relu → clip is clip."""
    by_name = {n.name: n for n in nodes}
    consumers = _consumers(nodes)
    drop: set[str] = set()
    out: list[Node] = []
    for n in nodes:
        if isinstance(n.op, Activation) and n.op.function in _MONOTONE:
            prev = by_name.get(n.inputs[0])
            if (prev is not None and prev.name not in drop and isinstance(prev.op, Activation)
                    and prev.op.function == "relu" and prev.name != output
                    and len(consumers.get(prev.name, [])) == 1):
                n = Node(n.name, n.op, prev.inputs, n.keras_layer)
                drop.add(prev.name)
        out.append(n)
    return [n for n in out if n.name not in drop]


def _rectify_before_maxpool(nodes: list[Node], output: str) -> list[Node]:
    """linear → maxpool → relu becomes linear → relu → maxpool: equal, since relu is monotone."""
    while True:
        consumers = _consumers(nodes)
        nonlinear = {n.name for n in nodes if not n.op.linear}
        match = None
        for pool in nodes:
            users = consumers.get(pool.name, [])
            if (isinstance(pool.op, MaxPool) and pool.inputs[0] not in nonlinear and pool.name != output
                    and len(users) == 1 and users[0].name != output and isinstance(users[0].op, Activation)
                    and users[0].op.function in _MONOTONE):
                match = pool, users[0]
                break
        if match is None:
            return nodes
        pool, act = match
        # act takes pool's place: linear → act → pool; whoever read act now reads pool
        out: list[Node] = []
        for n in nodes:
            if n is act:
                continue
            if n is pool:
                out.append(Node(act.name, act.op, pool.inputs, act.keras_layer))
                out.append(Node(pool.name, pool.op, (act.name,), pool.keras_layer))
                continue
            out.append(Node(n.name, n.op, tuple(pool.name if x == act.name else x for x in n.inputs),
                            n.keras_layer))
        nodes = out
