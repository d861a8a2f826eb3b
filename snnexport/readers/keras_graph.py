"""Step 3 of reading a Keras model: walk the loaded Keras graph and emit the ops of a :class:`~snnexport.graph.Graph`.

The walk is generic; what each layer class becomes is the handler table of
:mod:`snnexport.readers.keras`, passed in. Layout: the graph is NHWC; Keras tensors of shape (L, C)
(1-D layers) become (1, L, C) (:func:`canonical_shape`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import keras_layers, ops
from ..errors import SnnexportError, UnsupportedLayerError
from ..graph import Graph, Node
from .keras_config import SEE_LAYERS, first_line, quote


MULTI_INPUT = ("Concatenate", "Add", "Average", "Subtract")  # layers that take several tensors


class Loaded:
    """A Keras model whose variables were never materialized, and the values the file gave them.

    Keras builds a model by first giving every variable a random initial value, which for VGG16
    costs 1.4 GB of transient memory and seconds of work, only to overwrite it with the file's
    weights. Loading inside a ``StatelessScope`` defers that initialization; the file's values
    land in the scope instead, from where :meth:`take` copies them out one by one.
    """

    def __init__(self, model: Any, scope: Any) -> None:
        self.model = model
        self.scope = scope

    def peek(self, layer: Any, var: Any) -> Any:
        value = self.scope.get_current_value(var)
        if value is None:
            raise SnnexportError(f"layer {quote(layer.name)}: the file holds no value for its weight "
                                 f"{quote(var.name)}")
        return value

    def view(self, layer: Any, var: Any) -> np.ndarray:
        """A read-only numpy view of a variable's value, without a copy where the backend allows.

        ``np.asarray`` on a JAX array sometimes copies and caches that copy on the array, which
        for VGG16's first dense layer meant 3 x 411 MB at once; DLPack shares the buffer.
        """
        value = self.peek(layer, var)
        try:
            return np.from_dlpack(value)
        except Exception:  # not a DLPack exporter, or a dtype numpy lacks (bfloat16)
            return np.asarray(value)

    def take(self, layer: Any, var: Any) -> np.ndarray:
        """A float32 numpy copy of a variable's value; Keras' buffer is freed right away."""
        value = self.peek(layer, var)
        view = self.view(layer, var)
        arr = np.array(view, dtype=np.float32, copy=True, order="C")
        del view
        delete = getattr(value, "delete", None)  # jax.Array.delete frees the buffer now
        if callable(delete):
            try:
                delete()
            except Exception:
                pass
        self.scope.state_mapping.pop(id(var), None)
        return arr


def canonical_shape(kshape: tuple[int, ...]) -> tuple[int, ...]:
    """Keras per-sample shape → graph shape: (L, C) becomes (1, L, C)."""
    return (1,) + tuple(kshape) if len(kshape) == 2 else tuple(kshape)


@dataclass(frozen=True)
class Ref:
    """A tensor of the graph being built: the node (or input) that makes it and its Keras shape."""
    name: str
    kshape: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return canonical_shape(self.kshape)


def _kshape(tensor: Any, what: str) -> tuple[int, ...]:
    shape = tuple(tensor.shape)[1:]
    if any(d is None for d in shape):
        raise SnnexportError(f"{what} has an unknown dimension in shape {shape}; "
                             "give the model a fully specified input shape")
    return tuple(int(d) for d in shape)


class Builder:
    """The nodes emitted so far, their names, and the handler that converts each layer class."""

    def __init__(self, weights: Loaded, reserved: set[str], handlers: Mapping[str, Handler]) -> None:
        self.take = weights.take
        self.weights = weights
        self.handlers = handlers
        self.nodes: list[Node] = []
        self.reserved = reserved  # every Keras layer name in the model, nested ones included
        self.used: set[str] = set()
        self.seen_layers: set[int] = set()

    # naming ----------------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        """A node name derived from ``base`` that no layer and no other node has."""
        cand, i = base, 2
        while cand in self.reserved or cand in self.used:
            cand, i = f"{base}:{i}", i + 1
        return cand

    def own_name(self, layer_name: str, path: str) -> str:
        # A layer's own name unless a layer elsewhere (another nested model) already took it.
        if layer_name not in self.used:
            return layer_name
        return self.fresh(f"{path}/{layer_name}")

    def add(self, name: str, op: ops.Op, inputs: tuple[str, ...], layer: str) -> str:
        self.used.add(name)
        self.nodes.append(Node(name=name, op=op, inputs=inputs, keras_layer=layer))
        return name

    # walking ---------------------------------------------------------------------------------
    def walk(self, model: Any, inp: Ref, path: str) -> Ref:
        """Emit the nodes of a single-input single-output Keras model fed by ``inp``."""
        fn = _function_of(model)
        inputs, outputs = list(fn.inputs), list(fn.outputs)
        if len(inputs) != 1 or len(outputs) != 1:
            what = "model" if not path else f"nested model {quote(model.name)}"
            raise UnsupportedLayerError(f"{what} has {_io_count(inputs, outputs)}; only "
                                        "single-input single-output models are supported")
        tensors: dict[int, Ref] = {id(inputs[0]): inp}
        for node in _nodes_in_order(fn):
            layer = node.operation
            if layer is None or node.is_input:
                continue
            args = list(node.input_tensors)
            if any(id(t) not in tensors for t in args):
                continue  # not reachable from the input (Keras skips such nodes too)
            if id(layer) in self.seen_layers:
                raise UnsupportedLayerError(
                    f"layer {quote(layer.name)} ({type(layer).__name__}) is used more than once; "
                    "shared layers are not supported")
            self.seen_layers.add(id(layer))
            if len(node.outputs) != 1:
                raise UnsupportedLayerError(
                    f"layer {quote(layer.name)} ({type(layer).__name__}) has {len(node.outputs)} "
                    "outputs; only single-output layers are supported")
            out_kshape = _kshape(node.outputs[0], f"layer {quote(layer.name)}")
            ins = [tensors[id(t)] for t in args]
            ref = self.layer(layer, ins, out_kshape, path)
            if ref.kshape != out_kshape:  # our shape bookkeeping must agree with Keras'
                raise SnnexportError(f"layer {quote(layer.name)}: converted shape {ref.kshape} differs "
                                     f"from Keras' {out_kshape} (please report this)")
            tensors[id(node.outputs[0])] = ref
        if id(outputs[0]) not in tensors:
            raise SnnexportError(f"model {quote(model.name)}: the output is not connected to the input")
        return tensors[id(outputs[0])]

    def layer(self, layer: Any, ins: list[Ref], out_kshape: tuple[int, ...], path: str) -> Ref:
        cls = type(layer).__name__
        if _is_model(layer):
            if len(ins) != 1:
                raise UnsupportedLayerError(
                    f"nested model {quote(layer.name)} takes {len(ins)} inputs; only single-input "
                    "nested models are supported")
            return self.walk(layer, ins[0], f"{path}/{layer.name}" if path else layer.name)
        handler = self.handlers.get(cls)
        if handler is None or not _is_builtin_layer(layer):
            raise UnsupportedLayerError(
                f"layer {quote(layer.name)} ({cls}) is not supported ({SEE_LAYERS})")
        multi = cls in MULTI_INPUT
        if not multi and len(ins) != 1:
            raise UnsupportedLayerError(
                f"layer {quote(layer.name)} ({cls}) is called with {len(ins)} tensors; expected one")
        _check_finite(self.weights, layer)
        return handler(self, layer, ins, out_kshape, path)

    def emit(self, layer: Any, path: str, chain: list[tuple[str, ops.Op]], ins: list[Ref],
             out_kshape: tuple[int, ...]) -> Ref:
        """Emit a chain of ops for one layer; the last one is named after the layer."""
        prev = tuple(r.name for r in ins)
        final = self.own_name(layer.name, path)
        for i, (suffix, op) in enumerate(chain):
            last = i == len(chain) - 1
            name = final if last else self.fresh(f"{layer.name}:{suffix}")
            prev = (self.add(name, op, prev, layer.name),)
        return Ref(prev[0], out_kshape)


def _io_count(inputs: list[Any], outputs: list[Any]) -> str:
    parts = [f"{len(inputs)} inputs"] if len(inputs) != 1 else []
    parts += [f"{len(outputs)} outputs"] if len(outputs) != 1 else []
    return " and ".join(parts) or "1 input and 1 output"


def _is_model(layer: Any) -> bool:
    import keras

    return isinstance(layer, keras.Model)


def _is_builtin_layer(layer: Any) -> bool:
    import keras

    return ((type(layer).__module__.startswith("keras.") and isinstance(layer, keras.layers.Layer))
            or type(layer) in keras_layers.own_classes().values())


def _function_of(model: Any) -> Any:
    """The keras Function (graph) behind a Sequential or Functional model."""
    fn = getattr(model, "_functional", None) if type(model).__name__ == "Sequential" else model
    if fn is None or not hasattr(fn, "_nodes_by_depth"):
        raise SnnexportError(f"model {quote(model.name)} has no defined input shape (it was never built); "
                             "give it an Input layer and save it again")
    try:
        fn.inputs, fn.outputs  # noqa: B018 - raise here rather than deep inside the walk
    except Exception as e:
        raise SnnexportError(f"model {quote(model.name)}: {first_line(e)}") from None
    return fn


def _nodes_in_order(fn: Any) -> Iterator[Any]:
    """Keras graph nodes in topological order (deepest first, as Keras itself runs them)."""
    by_depth = fn._nodes_by_depth
    for depth in sorted(by_depth, reverse=True):
        yield from by_depth[depth]


def _all_layer_names(model: Any, out: set[str]) -> set[str]:
    for layer in model.layers:
        out.add(layer.name)
        if _is_model(layer):
            _all_layer_names(layer, out)
    return out


# weights -------------------------------------------------------------------------------------


def _check_finite(w: Loaded, layer: Any) -> None:
    for var in layer.weights:
        v = w.view(layer, var)
        if not np.issubdtype(v.dtype, np.floating):
            continue
        if np.isnan(v).any():
            raise SnnexportError(f"layer {quote(layer.name)} has NaN weights")
        if np.isinf(v).any():
            raise SnnexportError(f"layer {quote(layer.name)} has Inf weights")


# (builder, layer, inputs, keras output shape, path) -> the layer's output tensor
Handler = Callable[[Builder, Any, list[Ref], tuple[int, ...], str], Ref]


def convert(loaded: Loaded, handlers: Mapping[str, Handler]) -> Graph:
    """The graph of a loaded model, each layer converted by ``handlers[its class name]``."""
    model = loaded.model
    fn = _function_of(model)
    if len(fn.inputs) != 1 or len(fn.outputs) != 1:
        raise UnsupportedLayerError(f"model has {_io_count(fn.inputs, fn.outputs)}; only "
                                    "single-input single-output models are supported")
    inp = fn.inputs[0]
    in_kshape = _kshape(inp, "the model input")
    if not 1 <= len(in_kshape) <= 3:
        raise UnsupportedLayerError(f"the model input has shape {in_kshape}; supported are "
                                    "(features,), (length, channels) and (height, width, channels)")
    hist = getattr(inp, "_keras_history", None)
    input_name = hist.operation.name if hist is not None and hist.operation is not None else "input"
    reserved = _all_layer_names(model, {input_name})
    b = Builder(loaded, reserved, handlers)
    b.used.add(input_name)
    out = b.walk(model, Ref(input_name, in_kshape), "")
    if out.name == input_name or not b.nodes:
        raise SnnexportError("the model has no layers to convert (its output is its input)")
    # Drop nodes nothing uses (a Keras branch that does not reach the output).
    needed, keep = {out.name}, []
    for n in reversed(b.nodes):
        if n.name in needed:
            keep.append(n)
            needed.update(n.inputs)
    return Graph(input_name=input_name, input_shape=canonical_shape(in_kshape),
                 nodes=keep[::-1], output=out.name)
