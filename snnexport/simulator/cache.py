"""Compiled programs, cached by a network's structure; the weights are their arguments."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from ..network import Network, Population, Projection
from .lowering import chain

_CACHE: OrderedDict[tuple, Callable] = OrderedDict()
_CACHE_SIZE = 32


def signature(net: Network) -> tuple:
    """Everything about a network's structure that the compiled code depends on (not its weights)."""
    def plain(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return ("array", v.shape, str(v.dtype))
        if isinstance(v, (list, tuple)):
            return tuple(plain(i) for i in v)
        return v

    nodes = []
    for n in net.nodes:
        if isinstance(n, Population):
            nodes.append(("pop", n.name, tuple(n.shape), n.activation, n.depth, n.max_value, n.levels))
        else:
            nodes.append(("gate", n.name, n.source, tuple(n.shape), tuple(n.pool), tuple(n.strides),
                          plain(n.padding)))
    projs = tuple((p.source, p.target, tuple((op.kind, tuple(sorted((k, plain(v)) for k, v in op.params().items())))
                                             for op in p.ops)) for p in net.projections)
    return (net.input.name, tuple(net.input.shape), net.input.encoding, tuple(nodes), projs, net.output,
            float(net.neuron.threshold), net.neuron.reset, float(net.neuron.v_init), net.neuron.threshold_rule)


def skeleton(net: Network) -> Network:
    """The network with every array replaced by a zero-strided view of its shape.

    Compiled programs are cached by structure and take the weights as arguments; what they keep
    of the network must not keep its weights alive (a VGG16 holds half a gigabyte).
    """
    def hollow(v: Any) -> Any:
        return np.broadcast_to(np.zeros((), v.dtype), v.shape) if isinstance(v, np.ndarray) else v

    nodes = [replace(n, bias=hollow(n.bias)) if isinstance(n, Population) else n for n in net.nodes]
    projs = [Projection(p.source, p.target, [replace(op, **{k: hollow(v) for k, v in op.params().items()
                                                              if isinstance(v, np.ndarray)}) for op in p.ops])
             for p in net.projections]
    return Network(net.input, nodes, projs, net.output, net.neuron, net.settings)


def params(net: Network) -> dict[str, list]:
    """The arrays the compiled programs take as arguments: biases and projection weights."""
    return {"bias": [np.asarray(p.bias, np.float32).reshape(-1) for p in net.populations],
            "proj": [chain(p.ops, net.shape_of(p.source))[1] for p in net.projections]}


def cached(key: tuple, build: Callable[[], Callable]) -> Callable:
    """The program stored under ``key``, built (and stored, evicting the least recently used) if missing."""
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    fn = build()
    _CACHE[key] = fn
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return fn
