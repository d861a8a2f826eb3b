"""Step 1 of reading a Keras model: its config read as plain JSON and checked before Keras sees the file.

A file holding a Lambda layer, a custom class, a custom activation or an archive member that would
land outside its folder is refused here, without any of its code running. Also the names every step
of the reader shares: the layers we convert and the one-line message helpers.
"""

from __future__ import annotations

import json
import textwrap
import zipfile
from pathlib import Path
from typing import Any

from .. import keras_layers, resize
from ..errors import SnnexportError, UnsupportedLayerError

ACCEPTED_EXTENSIONS = (".h5", ".hdf5", ".keras")

# Layers that become ops (or vanish at inference). Checked by class name in the raw config.
_CONVERTED = (
    "InputLayer", "Dense", "Conv1D", "Conv2D", "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D",
    "DepthwiseConv2D", "Conv1DTranspose", "Conv2DTranspose", "UpSampling1D", "UpSampling2D", "Cropping1D",
    "Cropping2D", "Permute",
    "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "BatchNormalization", "Activation", "ReLU", "Softmax", "Flatten", "Reshape",
    "ZeroPadding1D", "ZeroPadding2D", "Concatenate", "Add", "Average", "Subtract", "Rescaling", "Normalization", "BinaryActivation",
    "QuantizedReLU",
)
# Identity at inference: no node is made for them.
NO_OPS = (
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity",
)
SUPPORTED_LAYERS: tuple[str, ...] = _CONVERTED + NO_OPS
_MODEL_CLASSES = ("Sequential", "Functional", "Model")
# Keras names of activation functions that map onto ops.Activation (None means no activation).
KERAS_ACTIVATIONS = {"relu": ("relu", None), "relu6": ("clip", 6.0), "softmax": ("softmax", None),
                     "linear": (None, None)}
SEE_LAYERS = "`snnexport --layers` lists what converts"  # instead of the list in every message


def quote(name: object) -> str:
    """A layer name quoted for a one-line message (newlines and control characters escaped)."""
    return repr(str(name))


def first_line(e: BaseException) -> str:
    """The first line of an exception's text (at most 300 characters), for a one-line message."""
    text = str(e).strip() or type(e).__name__
    line = text.splitlines()[0].strip()
    return line[:300] + ("…" if len(line) > 300 else "")


def read_config(path: Path) -> dict[str, Any]:
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
        raise SnnexportError(f"{path}: the model config is not valid JSON ({first_line(e)})") from None
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
        raise SnnexportError(f"{path}: HDF5 file is truncated or corrupt ({first_line(e)})") from None
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
        raise SnnexportError(f"{path}: HDF5 file is truncated or corrupt ({first_line(e)})") from None


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
        raise SnnexportError(f"{path}: not a valid .keras file (corrupt zip archive: {first_line(e)})") from None


def _layer_entries(model_cfg: dict[str, Any]) -> list[Any]:
    cfg = model_cfg.get("config")
    if isinstance(cfg, list):  # very old Keras 2 Sequential configs
        return cfg
    if isinstance(cfg, dict) and isinstance(cfg.get("layers"), list):
        return cfg["layers"]
    raise SnnexportError(f"model {quote(_cfg_name(model_cfg))} has a config without a layer list")


def _cfg_name(entry: dict[str, Any]) -> str:
    cfg = entry.get("config")
    name = entry.get("name")
    if name is None and isinstance(cfg, dict):
        name = cfg.get("name")
    return str(name) if name is not None else "?"


def _is_builtin(entry: dict[str, Any]) -> bool:
    """False for classes registered by user code (Keras 3 writes them as 'package>Class').

    snnexport's own BinaryActivation and QuantizedReLU count as built in: they are read with this package's code.
    """
    reg = entry.get("registered_name")
    module = entry.get("module")
    own = keras_layers.CLASS_NAMES.get(str(entry.get("class_name")))
    if own is not None:
        return reg == own and module in (None, "snnexport.keras_layers")
    if reg is not None and reg != entry.get("class_name"):
        return False
    return module is None or module == "keras" or str(module).startswith("keras.")


class _Blockers:
    """Every layer the raw config shows we cannot convert, grouped by why, for one refusal line."""

    def __init__(self) -> None:
        self.groups: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (kind, what) → [(layer, class)]

    def add(self, kind: str, what: str, name: str, cls: str) -> None:
        self.groups.setdefault((kind, what), []).append((name, cls))

    def message(self) -> str:
        """One line: each group with its count and first names, then each reason once."""
        parts, reasons = [], []
        first_activation = True
        for (kind, what), layers in self.groups.items():
            n, (name, cls) = len(layers), layers[0]
            shown = ", ".join(quote(x) for x, _ in layers[:2]) + (", …" if n > 2 else "")
            if kind == "activation":
                if n == 1:
                    parts.append(f"layer {quote(name)} ({cls}) uses activation {what!r}")
                elif first_activation:
                    parts.append(f"{n} layers use activation {what!r} ({shown})")
                else:
                    parts.append(f"{n} use {what!r} ({shown})")
                first_activation = False
            elif kind == "channels_first":
                parts.append(f"layer {quote(name)} ({cls}) uses data_format='channels_first'" if n == 1 else
                             f"{n} layers use data_format='channels_first' ({shown})")
            elif kind == "custom":
                parts.append(f"layer {quote(name)} (custom class {what!r})" if n == 1 else
                             f"{n} layers of the custom class {what!r} ({shown})")
            else:  # an unsupported class, Lambda included
                parts.append(f"layer {quote(name)} ({what})" if n == 1 else f"{n} {what} layers ({shown})")
        kinds = {kind for kind, _ in self.groups}
        unsupported = [what for kind, what in self.groups if kind == "class"]
        if "activation" in kinds:
            reasons.append("IF neurons express ReLU-family activations only (supported: "
                           f"{', '.join(KERAS_ACTIVATIONS)}; softmax and linear at the output)")
        if unsupported:
            verb = "is" if len(unsupported) == 1 else "are"
            reasons.append(f"{', '.join(unsupported)} {verb} not supported ({SEE_LAYERS})")
        if kinds & {"lambda", "custom"}:
            reasons.append("Lambda layers and custom classes hold Python code, which snnexport never runs")
        if "channels_first" in kinds:
            reasons.append("only channels_last models are supported")
        return f"{', '.join(parts)}: {'; '.join(reasons)}"


def check_config(model_cfg: dict[str, Any]) -> None:
    """Refuse, from the raw JSON alone, every layer, activation or layout we do not convert: one line
    that names all of them, grouped (``snnexport --layers`` lists what converts)."""
    blockers = _Blockers()
    _check_model_cfg(model_cfg, blockers)
    if blockers.groups:
        raise UnsupportedLayerError(blockers.message())


def _check_model_cfg(model_cfg: dict[str, Any], blockers: _Blockers) -> None:
    cls = model_cfg.get("class_name")
    if cls not in _MODEL_CLASSES or not _is_builtin(model_cfg):
        raise UnsupportedLayerError(
            f"model class {cls!r} is not supported: only Sequential and Functional models can be "
            "read (subclassed models hold Python code, which snnexport never runs)")
    for entry in _layer_entries(model_cfg):
        if not isinstance(entry, dict):
            raise SnnexportError(f"model {quote(_cfg_name(model_cfg))} has a malformed layer entry")
        _check_layer_cfg(entry, blockers)


def _check_layer_cfg(entry: dict[str, Any], blockers: _Blockers) -> None:
    cls = entry.get("class_name")
    name = _cfg_name(entry)
    if cls in _MODEL_CLASSES and _is_builtin(entry):
        _check_model_cfg(entry, blockers)  # a nested model: check its layers too
        return
    shown = str(cls)
    if cls == "Lambda":
        blockers.add("lambda", "Lambda", name, shown)
        return
    if not _is_builtin(entry):
        blockers.add("custom", str(entry.get("registered_name") or cls), name, shown)
        return
    if cls not in SUPPORTED_LAYERS:
        blockers.add("class", shown, name, shown)
        return
    cfg = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    if cls == "QuantizedReLU":  # its values, from the JSON, before Keras builds the layer
        problem = keras_layers.quantized_relu_problem(cfg.get("levels"), cfg.get("threshold"))
        if problem is not None:
            raise SnnexportError(f"layer {quote(name)} (QuantizedReLU): {problem}")
    if cfg.get("data_format") == "channels_first":
        blockers.add("channels_first", "", name, shown)
    if "activation" in cfg:
        act = cfg["activation"]
        if act is not None and (not isinstance(act, str) or act not in KERAS_ACTIVATIONS):
            blockers.add("activation", act if isinstance(act, str) else "a custom function", name, shown)


def supported_text() -> str:
    """What ``snnexport --layers`` prints: the Keras layers and activations that convert, and how."""
    converted = [c for c in _CONVERTED if c != "InputLayer"]
    return "\n".join([
        "Keras layers snnexport converts (channels_last; Sequential and Functional models, nested ones included):",
        *_wrapped(converted),
        "Identity at inference (no node):",
        *_wrapped(list(NO_OPS)),
        f"Activations (a layer's activation=, Activation, ReLU): {', '.join(KERAS_ACTIVATIONS)}; ReLU(max_value) and",
        "  relu6 become a capped rectifier; softmax and linear only at the output; snnexport's BinaryActivation",
        "  (sign, heaviside) for binary networks; snnexport's QuantizedReLU (L levels, trained threshold λ) becomes",
        "  a capped rectifier normalized by λ, with V starting at θ/2 (conversion-aware training, Bu et al. 2022).",
        "Max-pooling becomes a spiking gate wherever the pooled tensor is a max over spikes: after a rectifier",
        "  (or before one), after ZeroPadding of a rectified tensor, a channel Concatenate of such tensors, a",
        "  per-channel scale ≥ 0 of one (BatchNormalization with positive gamma), or any other sum of rectified",
        "  tensors (an Add; through one more population). Max-pooling a signed linear tensor is refused.",
        f"UpSampling2D interpolation: 'nearest', {', '.join(map(repr, resize.KERAS_KERNELS))} (Keras' own",
        "  interpolation matrices, those of its JAX backend: a fixed linear map per axis; other methods are refused).",
    ])


def _wrapped(words: list[str], width: int = 100) -> list[str]:
    return textwrap.wrap(", ".join(words), width, initial_indent="  ", subsequent_indent="  ")
