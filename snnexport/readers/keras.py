"""Read a trained Keras model (.h5 or .keras) into an ANN :class:`~snnexport.graph.Graph`.

Safety first: the model's config is read and checked as plain JSON *before* Keras deserializes
anything, so a file holding a Lambda layer, a custom class or a custom activation is refused
without any of its code running. Only then does Keras load it (``safe_mode=True``).

Layout: the graph is NHWC. Keras tensors of shape (L, C) (1-D layers) become (1, L, C); every
other rank keeps its shape, so callers feed 1-D models x.reshape((N,) + graph.input_shape).

Memory: Keras loads inside a ``StatelessScope`` so that it never materializes the random initial
weights (see :class:`_Loaded`); each weight is copied out as a float32 numpy array and Keras' buffer
freed at once; the Keras model is dropped at the end. VGG16 (553 MB of weights) peaks at about
2.3x its weights' size including the ~270 MB of the Keras/JAX import, and reads in about 2 s.
"""

from __future__ import annotations

import gc
import json
import math
import os
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import keras_layers, ops
from ..errors import SnnexportError, UnsupportedLayerError
from ..graph import Graph, Node

__all__ = ["read_model", "SUPPORTED_LAYERS", "ACCEPTED_EXTENSIONS"]

ACCEPTED_EXTENSIONS = (".h5", ".hdf5", ".keras")

# Layers that become ops (or vanish at inference). Checked by class name in the raw config.
_CONVERTED = (
    "InputLayer", "Dense", "Conv1D", "Conv2D", "DepthwiseConv1D", "DepthwiseConv2D",
    "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "BatchNormalization", "Activation", "ReLU", "Softmax", "Flatten", "Reshape",
    "ZeroPadding1D", "ZeroPadding2D", "Concatenate", "Add", "Rescaling", "BinaryActivation",
)
# Identity at inference: no node is made for them.
_NO_OPS = (
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization",
)
SUPPORTED_LAYERS: tuple[str, ...] = _CONVERTED + _NO_OPS
_MODEL_CLASSES = ("Sequential", "Functional", "Model")
# Keras names of activation functions that map onto ops.Activation (None means no activation).
_ACTIVATIONS = {"relu": ("relu", None), "relu6": ("clip", 6.0), "softmax": ("softmax", None),
                "linear": (None, None)}
_SUPPORTED_MSG = ", ".join(SUPPORTED_LAYERS)


def _q(name: object) -> str:
    """A layer name quoted for a one-line message (newlines and control characters escaped)."""
    return repr(str(name))


# --------------------------------------------------------------------------------------------
# Step 1: read the raw config without Keras and refuse anything that could run code.


def _read_config(path: Path) -> dict[str, Any]:
    """The model config as JSON, or a one-line SnnexportError saying what the file is instead."""
    if not path.exists():
        raise SnnexportError(f"{path}: no such file")
    if path.is_dir():
        raise SnnexportError(f"{path}: is a directory, not a model file")
    ext = path.suffix.lower()
    if ext not in ACCEPTED_EXTENSIONS:
        raise SnnexportError(f"{path}: unknown model file extension {ext or '(none)'!r}; "
                             f"accepted: {', '.join(ACCEPTED_EXTENSIONS)}")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise SnnexportError(f"{path}: cannot read file ({e.strerror or e})") from None
    if size == 0:
        raise SnnexportError(f"{path}: file is empty")
    raw = _read_keras_config(path) if ext == ".keras" else _read_h5_config(path)
    try:
        cfg = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise SnnexportError(f"{path}: the model config is not valid JSON ({_first_line(e)})") from None
    if not isinstance(cfg, dict):
        raise SnnexportError(f"{path}: the model config is not a JSON object")
    return cfg


def _read_h5_config(path: Path) -> str | bytes:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        if not h5py.is_hdf5(path):
            raise SnnexportError(f"{path}: not an HDF5 file (a Keras .h5 model is HDF5)") from None
        raise SnnexportError(f"{path}: HDF5 file is truncated or corrupt ({_first_line(e)})") from None
    try:
        with f:
            if "model_config" in f.attrs:
                raw = f.attrs["model_config"]
                return raw if isinstance(raw, (str, bytes)) else str(raw)
            if "layer_names" in f.attrs or "model_weights" in f or ("layers" in f and "vars" in f):
                raise SnnexportError(
                    f"{path}: holds only weights (saved with save_weights), not a model; "
                    "save the whole model with model.save('model.keras')")
            raise SnnexportError(f"{path}: HDF5 file holds no Keras model (no 'model_config')")
    except SnnexportError:
        raise
    except Exception as e:  # h5py raises many types on damaged files
        raise SnnexportError(f"{path}: HDF5 file is truncated or corrupt ({_first_line(e)})") from None


def _unsafe_member(name: str) -> bool:
    """A zip member name that would land outside the folder it is extracted to."""
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":") or "\0" in name


def _read_keras_config(path: Path) -> bytes:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            bad = next((n for n in names if _unsafe_member(n)), None)
            if bad is not None:  # Keras would extract the archive; refuse before it sees one that escapes
                raise SnnexportError(f"{path}: the archive holds the member {bad!r}, a path outside the archive "
                                     "(absolute or with '..'); a Keras model never does")
            if "config.json" not in names:
                raise SnnexportError(f"{path}: not a Keras model archive (no config.json inside)")
            if "model.weights.h5" not in names:
                raise SnnexportError(f"{path}: Keras archive has no weights (no model.weights.h5 inside)")
            return z.read("config.json")
    except SnnexportError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
        raise SnnexportError(f"{path}: not a valid .keras file (corrupt zip archive: {_first_line(e)})") from None


def _layer_entries(model_cfg: dict[str, Any]) -> list[Any]:
    cfg = model_cfg.get("config")
    if isinstance(cfg, list):  # very old Keras 2 Sequential configs
        return cfg
    if isinstance(cfg, dict) and isinstance(cfg.get("layers"), list):
        return cfg["layers"]
    raise SnnexportError(f"model {_q(_cfg_name(model_cfg))} has a config without a layer list")


def _cfg_name(entry: dict[str, Any]) -> str:
    cfg = entry.get("config")
    name = entry.get("name")
    if name is None and isinstance(cfg, dict):
        name = cfg.get("name")
    return str(name) if name is not None else "?"


def _is_builtin(entry: dict[str, Any]) -> bool:
    """False for classes registered by user code (Keras 3 writes them as 'package>Class').

    snnexport's own BinaryActivation counts as built in: it is read with this package's code.
    """
    reg = entry.get("registered_name")
    module = entry.get("module")
    if entry.get("class_name") == "BinaryActivation":
        return reg == keras_layers.REGISTERED_NAME and module in (None, "snnexport.keras_layers")
    if reg is not None and reg != entry.get("class_name"):
        return False
    return module is None or module == "keras" or str(module).startswith("keras.")


def check_config(model_cfg: dict[str, Any]) -> None:
    """Refuse, from the raw JSON alone, every layer, activation or layout we do not convert."""
    cls = model_cfg.get("class_name")
    if cls not in _MODEL_CLASSES or not _is_builtin(model_cfg):
        raise UnsupportedLayerError(
            f"model class {cls!r} is not supported: only Sequential and Functional models can be "
            "read (subclassed models hold Python code, which snnexport never runs)")
    for entry in _layer_entries(model_cfg):
        if not isinstance(entry, dict):
            raise SnnexportError(f"model {_q(_cfg_name(model_cfg))} has a malformed layer entry")
        _check_layer_cfg(entry)


def _check_layer_cfg(entry: dict[str, Any]) -> None:
    cls = entry.get("class_name")
    name = _cfg_name(entry)
    if cls in _MODEL_CLASSES and _is_builtin(entry):
        check_config(entry)  # a nested model: check its layers too
        return
    if cls == "Lambda":
        raise UnsupportedLayerError(
            f"layer {_q(name)} (Lambda) is not supported: Lambda layers hold Python code, which "
            f"snnexport never runs; supported: {_SUPPORTED_MSG}")
    if cls not in SUPPORTED_LAYERS or not _is_builtin(entry):
        shown = entry.get("registered_name") or cls
        raise UnsupportedLayerError(
            f"layer {_q(name)} ({shown}) is not supported; supported layers: {_SUPPORTED_MSG}")
    cfg = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    if cfg.get("data_format") == "channels_first":
        raise UnsupportedLayerError(
            f"layer {_q(name)} ({cls}) uses data_format='channels_first'; only channels_last "
            "models are supported")
    if "activation" in cfg:
        act = cfg["activation"]
        if act is not None and (not isinstance(act, str) or act not in _ACTIVATIONS):
            shown = act if isinstance(act, str) else "a custom function"
            raise UnsupportedLayerError(
                f"layer {_q(name)} ({cls}) has activation {shown!r}; supported activations: "
                f"{', '.join(_ACTIVATIONS)}")


# --------------------------------------------------------------------------------------------
# Step 2: load with Keras (safe mode) and turn every failure into one line.


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    line = text.splitlines()[0].strip()
    return line[:300] + ("…" if len(line) > 300 else "")


class _Loaded:
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
            raise SnnexportError(f"layer {_q(layer.name)}: the file holds no value for its weight "
                                 f"{_q(var.name)}")
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


def _load_keras(path: Path) -> _Loaded:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras
        from keras.src.backend.common import global_state
    except Exception as e:  # pragma: no cover - environment problem
        raise SnnexportError(f"cannot import Keras: {_first_line(e)}") from None
    # Deferred variables register themselves globally; put the registry back as it was, or a
    # later StatelessScope elsewhere in this process would initialize our 138 M dead weights.
    registry = global_state.get_global_attribute("uninitialized_variables")
    saved = list(registry) if registry else []
    scope = keras.StatelessScope(initialize_variables=False)
    try:
        # Keras' warnings (about an optimizer it skips, say) are Python's multi-line noise to a user
        with scope, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # snnexport's own layers, by their registered names (no code of the file runs)
            custom = {keras_layers.REGISTERED_NAME: keras_layers.binary_activation_class()}
            model = keras.models.load_model(str(path), compile=False, safe_mode=True, custom_objects=custom)
    except Exception as e:
        raise SnnexportError(f"{path}: Keras could not load the model: {_first_line(e)}") from None
    finally:
        global_state.set_global_attribute("uninitialized_variables", saved)
    return _Loaded(model, scope)


# --------------------------------------------------------------------------------------------
# Step 3: walk the Keras graph and emit ops.


def canonical_shape(kshape: tuple[int, ...]) -> tuple[int, ...]:
    """Keras per-sample shape → graph shape: (L, C) becomes (1, L, C)."""
    return (1,) + tuple(kshape) if len(kshape) == 2 else tuple(kshape)


@dataclass(frozen=True)
class _Ref:
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


class _Builder:
    def __init__(self, weights: _Loaded, reserved: set[str]) -> None:
        self.take = weights.take
        self.weights = weights
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
    def walk(self, model: Any, inp: _Ref, path: str) -> _Ref:
        """Emit the nodes of a single-input single-output Keras model fed by ``inp``."""
        fn = _function_of(model)
        inputs, outputs = list(fn.inputs), list(fn.outputs)
        if len(inputs) != 1 or len(outputs) != 1:
            what = "model" if not path else f"nested model {_q(model.name)}"
            raise UnsupportedLayerError(f"{what} has {_io_count(inputs, outputs)}; only "
                                        "single-input single-output models are supported")
        tensors: dict[int, _Ref] = {id(inputs[0]): inp}
        for node in _nodes_in_order(fn):
            layer = node.operation
            if layer is None or node.is_input:
                continue
            args = list(node.input_tensors)
            if any(id(t) not in tensors for t in args):
                continue  # not reachable from the input (Keras skips such nodes too)
            if id(layer) in self.seen_layers:
                raise UnsupportedLayerError(
                    f"layer {_q(layer.name)} ({type(layer).__name__}) is used more than once; "
                    "shared layers are not supported")
            self.seen_layers.add(id(layer))
            if len(node.outputs) != 1:
                raise UnsupportedLayerError(
                    f"layer {_q(layer.name)} ({type(layer).__name__}) has {len(node.outputs)} "
                    "outputs; only single-output layers are supported")
            out_kshape = _kshape(node.outputs[0], f"layer {_q(layer.name)}")
            ins = [tensors[id(t)] for t in args]
            ref = self.layer(layer, ins, out_kshape, path)
            if ref.kshape != out_kshape:  # our shape bookkeeping must agree with Keras'
                raise SnnexportError(f"layer {_q(layer.name)}: converted shape {ref.kshape} differs "
                                     f"from Keras' {out_kshape} (please report this)")
            tensors[id(node.outputs[0])] = ref
        if id(outputs[0]) not in tensors:
            raise SnnexportError(f"model {_q(model.name)}: the output is not connected to the input")
        return tensors[id(outputs[0])]

    def layer(self, layer: Any, ins: list[_Ref], out_kshape: tuple[int, ...], path: str) -> _Ref:
        cls = type(layer).__name__
        if _is_model(layer):
            if len(ins) != 1:
                raise UnsupportedLayerError(
                    f"nested model {_q(layer.name)} takes {len(ins)} inputs; only single-input "
                    "nested models are supported")
            return self.walk(layer, ins[0], f"{path}/{layer.name}" if path else layer.name)
        handler = _HANDLERS.get(cls)
        if handler is None or not _is_builtin_layer(layer):
            raise UnsupportedLayerError(
                f"layer {_q(layer.name)} ({cls}) is not supported; supported layers: {_SUPPORTED_MSG}")
        multi = cls in ("Concatenate", "Add")
        if not multi and len(ins) != 1:
            raise UnsupportedLayerError(
                f"layer {_q(layer.name)} ({cls}) is called with {len(ins)} tensors; expected one")
        _check_finite(self.weights, layer)
        return handler(self, layer, ins, out_kshape, path)

    def emit(self, layer: Any, path: str, chain: list[tuple[str, ops.Op]], ins: list[_Ref],
             out_kshape: tuple[int, ...]) -> _Ref:
        """Emit a chain of ops for one layer; the last one is named after the layer."""
        prev = tuple(r.name for r in ins)
        final = self.own_name(layer.name, path)
        for i, (suffix, op) in enumerate(chain):
            last = i == len(chain) - 1
            name = final if last else self.fresh(f"{layer.name}:{suffix}")
            prev = (self.add(name, op, prev, layer.name),)
        return _Ref(prev[0], out_kshape)

    def with_activation(self, layer: Any, path: str, op: ops.Op, ins: list[_Ref],
                        out_kshape: tuple[int, ...]) -> _Ref:
        """A weighted op plus its fused ``activation=``, as two nodes when the activation is real."""
        act = _activation_op(layer, getattr(layer, "activation", None))
        chain: list[tuple[str, ops.Op]] = [("linear", op)]
        if act is not None:
            chain.append(("activation", act))
        return self.emit(layer, path, chain, ins, out_kshape)


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
            or type(layer) is keras_layers.binary_activation_class())


def _function_of(model: Any) -> Any:
    """The keras Function (graph) behind a Sequential or Functional model."""
    fn = getattr(model, "_functional", None) if type(model).__name__ == "Sequential" else model
    if fn is None or not hasattr(fn, "_nodes_by_depth"):
        raise SnnexportError(f"model {_q(model.name)} has no defined input shape (it was never built); "
                             "give it an Input layer and save it again")
    try:
        fn.inputs, fn.outputs  # noqa: B018 - raise here rather than deep inside the walk
    except Exception as e:
        raise SnnexportError(f"model {_q(model.name)}: {_first_line(e)}") from None
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


def _check_finite(w: _Loaded, layer: Any) -> None:
    for var in layer.weights:
        v = w.view(layer, var)
        if not np.issubdtype(v.dtype, np.floating):
            continue
        if np.isnan(v).any():
            raise SnnexportError(f"layer {_q(layer.name)} has NaN weights")
        if np.isinf(v).any():
            raise SnnexportError(f"layer {_q(layer.name)} has Inf weights")


def _bias(b: _Builder, layer: Any) -> np.ndarray | None:
    if not getattr(layer, "use_bias", False) or layer.bias is None:
        return None
    return b.take(layer, layer.bias)


def _activation_op(layer: Any, fn: Any) -> ops.Activation | None:
    import keras

    if fn is None:
        return None
    try:
        name = keras.activations.serialize(fn)
    except Exception:
        name = None
    if not isinstance(name, str) or name not in _ACTIVATIONS:
        shown = name if isinstance(name, str) else getattr(fn, "__name__", "a custom function")
        raise UnsupportedLayerError(
            f"layer {_q(layer.name)} ({type(layer).__name__}) has activation {shown!r}; supported "
            f"activations: {', '.join(_ACTIVATIONS)}")
    function, max_value = _ACTIVATIONS[name]
    return None if function is None else ops.Activation(function, max_value)


def _geometry(layer: Any, size: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int],
              dilation: tuple[int, int] = (1, 1)) -> ops.Pad2:
    """Explicit padding for 'valid', 'same' and (1-D only) 'causal'."""
    mode = str(layer.padding).lower()
    if mode == "valid":
        return ((0, 0), (0, 0))
    if mode == "same":
        return (ops.same_padding(size[0], kernel[0], strides[0], dilation[0]),
                ops.same_padding(size[1], kernel[1], strides[1], dilation[1]))
    if mode == "causal":  # Keras pads the past only: (k-1)*d cells on the left
        return ((0, 0), ((kernel[1] - 1) * dilation[1], 0))
    raise UnsupportedLayerError(f"layer {_q(layer.name)} ({type(layer).__name__}) has padding "
                                f"{layer.padding!r}; supported: 'valid', 'same'")


def _pair(v: Any, one_d: bool) -> tuple[int, int]:
    t = tuple(int(x) for x in (v if isinstance(v, (tuple, list)) else (v,)))
    if one_d:
        return (1, t[0])
    return (t[0], t[1]) if len(t) == 2 else (t[0], t[0])


# handlers: (builder, layer, inputs, keras output shape, path) -> _Ref --------------------------

Handler = Callable[[_Builder, Any, list[_Ref], tuple[int, ...], str], _Ref]


def _h_dense(b: _Builder, layer: Any, ins: list[_Ref], out: tuple[int, ...], path: str) -> _Ref:
    op = ops.Dense(weight=b.take(layer, layer.kernel), bias=_bias(b, layer))
    return b.with_activation(layer, path, op, ins, out)


def _h_conv(b: _Builder, layer: Any, ins: list[_Ref], out: tuple[int, ...], path: str) -> _Ref:
    cls = type(layer).__name__
    one_d = cls.endswith("1D")
    h, w, _ = ins[0].shape
    kernel = b.take(layer, layer.kernel)
    if cls.startswith("Depthwise"):
        # Keras (k.., cin, m) -> grouped conv with groups=cin; output channel c*m + j matches Keras.
        cin, mult = kernel.shape[-2], kernel.shape[-1]
        kernel = kernel.reshape(kernel.shape[:-2] + (1, cin * mult))
        groups = cin
    else:
        groups = int(getattr(layer, "groups", 1))
    if one_d:
        kernel = kernel[None]  # (k, cin/g, cout) -> (1, k, cin/g, cout)
    ksize = (kernel.shape[0], kernel.shape[1])
    strides = _pair(layer.strides, one_d)
    dilation = _pair(layer.dilation_rate, one_d)
    padding = _geometry(layer, (h, w), ksize, strides, dilation)
    op = ops.Conv2D(kernel=kernel, bias=_bias(b, layer), strides=strides, padding=padding,
                    dilation=dilation, groups=groups)
    return b.with_activation(layer, path, op, ins, out)


def _h_pool(b: _Builder, layer: Any, ins: list[_Ref], out: tuple[int, ...], path: str) -> _Ref:
    cls = type(layer).__name__
    one_d = cls.endswith("1D")
    h, w, _ = ins[0].shape
    pool = _pair(layer.pool_size, one_d)
    strides = _pair(layer.strides if layer.strides is not None else layer.pool_size, one_d)
    padding = _geometry(layer, (h, w), pool, strides)
    kind = ops.MaxPool if cls.startswith("Max") else ops.AvgPool
    return b.emit(layer, path, [("pool", kind(pool=pool, strides=strides, padding=padding))], ins, out)


def _h_global_pool(b: _Builder, layer: Any, ins: list[_Ref], out: tuple[int, ...], path: str) -> _Ref:
    h, w, c = ins[0].shape
    kind = ops.MaxPool if "Max" in type(layer).__name__ else ops.AvgPool
    chain: list[tuple[str, ops.Op]] = [("pool", kind(pool=(h, w), strides=(h, w)))]
    if not getattr(layer, "keepdims", False):
        chain.append(("reshape", ops.Reshape((c,))))
    return b.emit(layer, path, chain, ins, out)


def _h_batchnorm(b: _Builder, layer: Any, ins: list[_Ref], out: tuple[int, ...], path: str) -> _Ref:
    rank = len(ins[0].kshape)
    axis = layer.axis if isinstance(layer.axis, int) else None
    if axis is None or axis not in (-1, rank):
        raise UnsupportedLayerError(
            f"layer {_q(layer.name)} (BatchNormalization) normalizes axis {layer.axis}; only the "
            "last (channel) axis is supported")
    c = ins[0].shape[-1]
    # float64 for the fold: var + eps can be small, and the result must match Keras to 1e-5.
    var = b.take(layer, layer.moving_variance).astype(np.float64)
    mean = b.take(layer, layer.moving_mean).astype(np.float64)
    gamma = b.take(layer, layer.gamma).astype(np.float64) if layer.scale else np.ones(c)
    beta = b.take(layer, layer.beta).astype(np.float64) if layer.center else np.zeros(c)
    if (var + layer.epsilon < 0).any():
        raise SnnexportError(f"layer {_q(layer.name)} has a negative moving variance")
    scale = gamma / np.sqrt(var + layer.epsilon)
    offset = beta - mean * scale
    if not (np.isfinite(scale).all() and np.isfinite(offset).all()):
        raise SnnexportError(f"layer {_q(layer.name)} has weights that give a non-finite "
                             "BatchNormalization scale (zero variance with epsilon 0?)")
    op = ops.Affine(scale=scale.astype(np.float32), offset=offset.astype(np.float32))
    return b.emit(layer, path, [("affine", op)], ins, out)


def _h_activation(b: _Builder, layer: Any, ins: list[_Ref], out: tuple[int, ...], path: str) -> _Ref:
    act = _activation_op(layer, layer.activation)
    if act is None:  # Activation('linear') is the identity
        return _Ref(ins[0].name, out)
    return b.emit(layer, path, [("activation", act)], ins, out)


def _h_relu(b: _Builder, layer: Any, ins: list[_Ref], out: tuple[int, ...], path: str) -> _Ref:
    slope = float(layer.negative_slope or 0.0)
    threshold = float(layer.threshold or 0.0)
    if slope != 0.0 or threshold != 0.0:
        raise UnsupportedLayerError(
            f"layer {_q(layer.name)} (ReLU) has negative_slope={slope:g}, threshold={threshold:g}; "
            "only the plain ReLU (optionally with max_value) is supported")
    mv = layer.max_value
    if mv is None:
        act = ops.Activation("relu")
    else:
        mv = float(mv)
        if not math.isfinite(mv) or mv <= 0:
            raise UnsupportedLayerError(f"layer {_q(layer.name)} (ReLU) has max_value={mv:g}; "
                                        "it must be a positive number")
        act = ops.Activation("clip", max_value=mv)
    return b.emit(layer, path, [("activation", act)], ins, out)


def _h_softmax(b: _Builder, layer: Any, ins: list[_Ref], out: tuple[int, ...], path: str) -> _Ref:
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    rank = len(ins[0].kshape)
    if len(axes) != 1 or int(axes[0]) not in (-1, rank):
        raise UnsupportedLayerError(f"layer {_q(layer.name)} (Softmax) acts on axis {layer.axis}; "
                                    "only the last axis is supported")
    return b.emit(layer, path, [("activation", ops.Activation("softmax"))], ins, out)


def _h_reshape(b: _Builder, layer: Any, ins: list[_Ref], out: tuple[int, ...], path: str) -> _Ref:
    if len(out) > 3:
        raise UnsupportedLayerError(f"layer {_q(layer.name)} ({type(layer).__name__}) makes a "
                                    f"rank-{len(out)} tensor {out}; at most 3 axes are supported")
    # Flatten and Reshape are C-order on the Keras shape, and canonical shapes only add a leading 1.
    return b.emit(layer, path, [("reshape", ops.Reshape(canonical_shape(out)))], ins, out)


def _h_zeropad(b: _Builder, layer: Any, ins: list[_Ref], out: tuple[int, ...], path: str) -> _Ref:
    if type(layer).__name__ == "ZeroPadding1D":
        left, right = (int(p) for p in layer.padding)
        pad: ops.Pad2 = ((0, 0), (left, right))
    else:
        (t, bt), (l, r) = ((int(a), int(c)) for a, c in layer.padding)
        pad = ((t, bt), (l, r))
    return b.emit(layer, path, [("pad", ops.Pad(pad))], ins, out)


def _h_concat(b: _Builder, layer: Any, ins: list[_Ref], out: tuple[int, ...], path: str) -> _Ref:
    rank = len(out)
    axis = int(layer.axis)
    axis = axis - 1 if axis > 0 else rank + axis  # Keras counts the batch axis; we do not
    if not 0 <= axis < rank:
        raise UnsupportedLayerError(f"layer {_q(layer.name)} (Concatenate) joins along axis "
                                    f"{layer.axis}, which is not a feature axis")
    if rank == 2:
        axis += 1  # (L, C) is stored as (1, L, C)
    return b.emit(layer, path, [("concat", ops.Concat(axis=axis))], ins, out)


def _h_add(b: _Builder, layer: Any, ins: list[_Ref], out: tuple[int, ...], path: str) -> _Ref:
    if any(r.kshape != out for r in ins):
        raise UnsupportedLayerError(f"layer {_q(layer.name)} (Add) adds shapes "
                                    f"{[r.kshape for r in ins]}; broadcasting is not supported")
    return b.emit(layer, path, [("add", ops.Add())], ins, out)


def _per_channel(layer: Any, value: Any, c: int, what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 1:
        return np.full(c, arr.reshape(()), np.float32)
    if arr.shape[-1] == c and arr.size == c:
        return arr.reshape(c).astype(np.float32)
    raise UnsupportedLayerError(f"layer {_q(layer.name)} (Rescaling) has a {what} of shape "
                                f"{arr.shape}; only a number or one value per channel is supported")


def _h_rescaling(b: _Builder, layer: Any, ins: list[_Ref], out: tuple[int, ...], path: str) -> _Ref:
    c = ins[0].shape[-1]
    scale = _per_channel(layer, layer.scale, c, "scale")
    offset = _per_channel(layer, layer.offset, c, "offset")
    if not (np.isfinite(scale).all() and np.isfinite(offset).all()):
        raise SnnexportError(f"layer {_q(layer.name)} has NaN or Inf scale or offset")
    return b.emit(layer, path, [("affine", ops.Affine(scale=scale, offset=offset))], ins, out)


def _h_binary(b: _Builder, layer: Any, ins: list[_Ref], out: tuple[int, ...], path: str) -> _Ref:
    return b.emit(layer, path, [("activation", ops.Activation(layer.mode))], ins, out)


def _h_noop(b: _Builder, layer: Any, ins: list[_Ref], out: tuple[int, ...], path: str) -> _Ref:
    return _Ref(ins[0].name, out)  # inference identity: no node


_HANDLERS: dict[str, Handler] = {
    "Dense": _h_dense,
    "Conv1D": _h_conv, "Conv2D": _h_conv, "DepthwiseConv1D": _h_conv, "DepthwiseConv2D": _h_conv,
    "MaxPooling1D": _h_pool, "MaxPooling2D": _h_pool,
    "AveragePooling1D": _h_pool, "AveragePooling2D": _h_pool,
    "GlobalAveragePooling1D": _h_global_pool, "GlobalAveragePooling2D": _h_global_pool,
    "GlobalMaxPooling1D": _h_global_pool, "GlobalMaxPooling2D": _h_global_pool,
    "BatchNormalization": _h_batchnorm,
    "Activation": _h_activation, "ReLU": _h_relu, "Softmax": _h_softmax,
    "Flatten": _h_reshape, "Reshape": _h_reshape,
    "ZeroPadding1D": _h_zeropad, "ZeroPadding2D": _h_zeropad,
    "Concatenate": _h_concat, "Add": _h_add, "Rescaling": _h_rescaling, "BinaryActivation": _h_binary,
    **{name: _h_noop for name in _NO_OPS},
}
assert set(_HANDLERS) | {"InputLayer"} == set(SUPPORTED_LAYERS)


# --------------------------------------------------------------------------------------------


def read_model(path: str | os.PathLike[str]) -> Graph:
    """Read a Keras .h5/.keras model into a Graph, refusing (one line) anything we cannot convert."""
    p = Path(path)
    try:
        check_config(_read_config(p))  # before Keras sees the file: no model code may ever run
        loaded = _load_keras(p)
        try:
            graph = _convert(loaded)
        except SnnexportError:
            raise
        except Exception as e:  # a model shape we did not foresee: still one line, never a traceback
            raise SnnexportError(f"{p}: cannot convert the model: {type(e).__name__}: {_first_line(e)} "
                                 "(please report this)") from None
        finally:
            del loaded
            gc.collect()  # the Keras model and its scope hold the only other copy of the weights
    except SnnexportError as e:
        if str(e).startswith(f"{p}:"):
            raise
        raise type(e)(f"{p}: {e}") from None  # every refusal names the file, e.g. "model.h5: layer 'x': ..."
    return graph


def _convert(loaded: _Loaded) -> Graph:
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
    b = _Builder(loaded, reserved)
    b.used.add(input_name)
    out = b.walk(model, _Ref(input_name, in_kshape), "")
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
