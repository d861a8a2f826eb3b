"""Exact rewrites of the ANN graph before conversion.

Each pass leaves the graph's function unchanged (up to float rounding) and makes the spiking
network smaller or possible: BatchNormalization folded into the weights before it, consecutive
rectifiers merged, and max-pooling moved after its rectifier (relu and max commute), because in
the spiking network max-pooling is a gate on spikes and needs a spiking population before it.

A max-pool of a tensor that is not a population is then rewritten wherever an exact construction
exists (:func:`_gate_maxpools`): a zero padding of a non-negative tensor joins the pool's own padding
(a padded zero never beats a value ≥ 0, and padded cells never win); a pool of a channel
concatenation becomes a concatenation of pools (pooling is per channel); a pool of a per-channel
affine map with non-negative scale pools before the map (max commutes with non-decreasing maps);
any other provably non-negative tensor (a sum of rectified tensors, say) gets a ReLU population of
its own, an identity there. What remains, a max-pool of a signed linear tensor, is refused by
:mod:`snnexport.convert`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .graph import Graph, Node
from .ops import (Activation, Add, Affine, AvgPool, Concat, Conv2D, ConvTranspose, Dense, Embed, MaxPool, Pad, Reshape,
                  Scale, Transpose)

_MONOTONE = ("relu", "clip")


def simplify(graph: Graph) -> Graph:
    nodes = list(graph.nodes)
    nodes = _fold_affine_into_previous(nodes, graph.output)
    nodes = _merge_rectifiers(nodes, graph.output)
    nodes = _rectify_before_maxpool(nodes, graph.output)
    nodes = _gate_maxpools(graph.input_name, graph.input_shape, nodes, graph.output)
    return Graph(graph.input_name, graph.input_shape, nodes, graph.output)


def _consumers(nodes: list[Node]) -> dict[str, list[Node]]:
    out: dict[str, list[Node]] = {}
    for n in nodes:
        for i in n.inputs:
            out.setdefault(i, []).append(n)
    return out


def _fold_affine_into_previous(nodes: list[Node], output: str) -> list[Node]:
    """conv/transposed conv/dense → affine (a BatchNormalization) becomes one op with scaled weights."""
    by_name = {n.name: n for n in nodes}
    consumers = _consumers(nodes)
    drop: set[str] = set()
    out: list[Node] = []
    for n in nodes:
        if isinstance(n.op, Affine) and len(n.inputs) == 1:
            prev = by_name.get(n.inputs[0])
            if (prev is not None and isinstance(prev.op, (Conv2D, ConvTranspose, Dense)) and prev.name != output
                    and len(consumers.get(prev.name, [])) == 1):
                n = Node(n.name, _fold(prev.op, n.op), prev.inputs, n.keras_layer)
                drop.add(prev.name)
        out.append(n)
    return [n for n in out if n.name not in drop]


def _fold(op: Conv2D | ConvTranspose | Dense, aff: Affine) -> Conv2D | ConvTranspose | Dense:
    scale = aff.scale.astype(np.float32)
    offset = aff.offset if aff.offset is not None else np.zeros_like(scale)
    bias = op.bias if op.bias is not None else np.zeros_like(scale)
    new_bias = (bias * scale + offset).astype(np.float32)
    if isinstance(op, (Conv2D, ConvTranspose)):  # kernels end with the output channel
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


# --- max-pooling of tensors that are not populations ----------------------------------------------

_MOVES = (AvgPool, MaxPool, Pad, Reshape, Transpose, Concat, Embed, Add)  # move, copy, sum or average their inputs


def _nonnegative(nodes: list[Node]) -> set[str]:
    """The nodes whose output is ≥ 0 for every input (the input itself is not assumed to be)."""
    out: set[str] = set()
    for n in nodes:
        op, ins = n.op, all(i in out for i in n.inputs)
        if isinstance(op, Activation):
            ok = op.function in ("relu", "clip", "heaviside") or (op.function == "linear" and ins)
        elif isinstance(op, _MOVES):
            ok = ins
        elif isinstance(op, Affine):
            ok = ins and _at_least_zero(op.scale, op.offset)
        elif isinstance(op, Scale):
            ok = ins and op.factor >= 0
        elif isinstance(op, (Conv2D, ConvTranspose)):
            ok = ins and _at_least_zero(op.kernel, op.bias)
        elif isinstance(op, Dense):
            ok = ins and _at_least_zero(op.weight, op.bias)
        else:
            ok = False
        if ok:
            out.add(n.name)
    return out


def _at_least_zero(*arrays: np.ndarray | None) -> bool:
    return all(a is None or not (np.asarray(a) < 0).any() for a in arrays)


def _gate_maxpools(input_name: str, input_shape: tuple[int, ...], nodes: list[Node], output: str) -> list[Node]:
    """Rewrite every max-pool of a non-population tensor that has an exact construction (module doc)."""
    while True:
        by_name = {n.name: n for n in nodes}
        shapes = Graph(input_name, input_shape, nodes, output).shapes
        positive = _nonnegative(nodes)
        for pool in nodes:
            src = by_name.get(pool.inputs[0]) if isinstance(pool.op, MaxPool) else None
            if src is None or not src.op.linear:
                continue
            new = _rewrite_pool(pool, src, shapes, positive, {n.name for n in nodes})
            if new is not None:
                at = nodes.index(pool)
                nodes = _live(nodes[:at] + new + nodes[at + 1:], output)
                break
        else:
            return nodes


def _rewrite_pool(pool: Node, src: Node, shapes: dict[str, tuple[int, ...]], positive: set[str],
                  taken: set[str]) -> list[Node] | None:
    """The nodes that replace ``pool`` (the last one keeps its name), or None if no rewrite applies."""
    op, layer = pool.op, pool.keras_layer
    assert isinstance(op, MaxPool)

    def fresh(suffix: str) -> str:
        name, i = f"{pool.name}:{suffix}", 1
        while name in taken:
            name, i = f"{pool.name}:{suffix}{i}", i + 1
        taken.add(name)
        return name

    if isinstance(src.op, Pad) and src.inputs[0] in positive:
        padding = tuple((a + c, b + d) for (a, b), (c, d) in zip(op.padding, src.op.padding))
        if all(p < k for pads, k in zip(padding, op.pool) for p in pads):  # every window keeps a real cell
            return [Node(pool.name, replace(op, padding=padding), src.inputs, layer)]
    if isinstance(src.op, Concat) and src.op.axis == len(shapes[src.name]) - 1:
        parts = [Node(fresh(f"branch{i}"), op, (x,), layer) for i, x in enumerate(src.inputs)]
        return parts + [Node(pool.name, src.op, tuple(p.name for p in parts), layer)]
    if (isinstance(src.op, Affine) and _at_least_zero(src.op.scale)) or (isinstance(src.op, Scale)
                                                                          and src.op.factor >= 0):
        inner = Node(fresh("pooled"), op, src.inputs, layer)
        return [inner, Node(pool.name, src.op, (inner.name,), src.keras_layer)]
    if src.name in positive:
        relu = Node(fresh("rectified"), Activation("relu"), (src.name,), src.keras_layer)
        return [relu, Node(pool.name, op, (relu.name,), layer)]
    return None


def _live(nodes: list[Node], output: str) -> list[Node]:
    """The nodes the output depends on (a rewrite can leave a padding or concatenation unused)."""
    needed = {output}
    for n in reversed(nodes):
        if n.name in needed:
            needed.update(n.inputs)
    return [n for n in nodes if n.name in needed]
