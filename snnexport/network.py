"""The spiking network description: the contract between the converter, the writers and the simulators.

Plain dataclasses. A network is an input, spiking populations and max-pool gates in topological
order, and projections; each projection carries the chain of linear ops (from :mod:`snnexport.ops`)
that maps its source's spikes (or the analog input) to input current of its target. The spiking
semantics every consumer implements are written down in ``docs/semantics.md``.

The file format (``.snn``) is a zip holding ``network.json`` and one ``.npy`` per array, written
with fixed timestamps so that equal networks give byte-identical files. Loading never unpickles, and
checks the whole file against its schema first (:mod:`snnexport.network_check`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from . import network_file
from .errors import SnnexportError
from .network_check import FORMAT, FORMAT_VERSION, check_document
from .network_file import ArrayInfo, check_finite
from .ops import OP_TYPES, Op, Shape
from .scriptlib import connectivity

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(eq=False)
class InputSpec:
    name: str
    shape: Shape
    encoding: str = "analog"  # analog: constant current W·x + b every step; poisson: spikes with p = x per step


@dataclass(eq=False)
class Population:
    """Integrate-and-fire neurons, one per ANN activation of the layer ``name``."""
    name: str
    shape: Shape
    bias: np.ndarray  # float32, ``shape``: constant input current every step (normalized)
    activation: str  # the ANN nonlinearity it stands for: relu, clip, softmax, linear, sign, heaviside
    scale: float  # λ: ANN activation ≈ scale × firing rate (spikes per step)
    depth: int  # 1 for populations the input feeds; one more per population on the longest path
    max_value: float | None = None  # the ANN's cap for 'clip' (in activation units)
    levels: int | None = None  # a QuantizedReLU's L: its ANN quantizes to L levels; λ = max_value = trained threshold


@dataclass(eq=False)
class Gate:
    """Spiking max-pooling: passes on only the spikes of the window's most active source neuron."""
    name: str
    source: str
    shape: Shape
    pool: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]
    scale: float
    depth: int


@dataclass(eq=False)
class Projection:
    source: str  # the input, a population or a gate
    target: str  # a population
    ops: list[Op]  # linear, without constant terms; normalization factors are folded in


@dataclass(eq=False)
class Neuron:
    threshold: float = 1.0
    reset: str = "subtract"  # or "zero"
    v_init: float = 0.0  # V before a sample's first step (and while clamped), as a fraction of θ: [0, 1)
    threshold_rule: str = "ge"  # "ge": fire where V >= θ (the paper); "gt": where V > θ (NIR's IF)

    def v_start(self) -> float:
        """The initial membrane potential v_init·θ, rounded once to float32 (the state's type)."""
        return float(np.float32(self.v_init * self.threshold))


@dataclass(eq=False)
class Settings:
    """Defaults for simulating the network; every exported script exposes them as options."""
    steps: int = 100
    readout: str = "count"  # count (ties by membrane) | softmax (the paper's spiking softmax) | membrane
    delay: str = "step"  # step: one step per population (every simulator) | zero: the paper's zero latency
    clamp: int = 0  # d: population at depth l holds V = 0 for the first d·l steps
    seed: int = 0


@dataclass(eq=False)
class Normalization:
    method: str  # percentile | model-bound | none
    percentile: float | None = None
    samples: int = 0
    data_sha256: str = ""


@dataclass(eq=False)
class Provenance:
    model_file: str = ""
    model_sha256: str = ""
    keras_version: str = ""  # the Keras that read the model ("" for a model not read by Keras)
    snnexport_version: str = ""
    model_format: str = ""  # the reader: "keras", "onnx" or "nir"
    model_producer: str = ""  # what wrote the model file, as far as it says (ONNX: tool, version, opset)

    def origin(self) -> str:
        """How the model was made and read, for headers and summaries: "Keras 3.13.1" or
        "ONNX (pytorch 2.9.0, opset 18)"."""
        if self.model_format == "onnx":
            return f"ONNX ({self.model_producer or 'producer unknown'})"
        if self.model_format == "nir":
            return f"NIR graph {self.model_file}"
        return f"Keras {self.keras_version}"


Node = Population | Gate


@dataclass(eq=False)
class Network:
    input: InputSpec
    nodes: list[Node]  # topological order
    projections: list[Projection]
    output: str
    neuron: Neuron = field(default_factory=Neuron)
    settings: Settings = field(default_factory=Settings)
    normalization: Normalization = field(default_factory=lambda: Normalization("none"))
    provenance: Provenance = field(default_factory=Provenance)
    version: int = FORMAT_VERSION

    # --- lookups -------------------------------------------------------------------------------
    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def populations(self) -> list[Population]:
        return [n for n in self.nodes if isinstance(n, Population)]

    def shape_of(self, name: str) -> Shape:
        return tuple(self.input.shape) if name == self.input.name else tuple(self.node(name).shape)

    def size_of(self, name: str) -> int:
        return int(np.prod(self.shape_of(name)))

    def incoming(self, target: str) -> list[Projection]:
        return [p for p in self.projections if p.target == target]

    def synapses(self, projection: Projection) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pre, post, weight) of a projection, flat channels-last indices."""
        ops = [(op.kind, op.params()) for op in projection.ops]
        syn, _ = connectivity.expand(ops, self.shape_of(projection.source))
        return syn

    # --- files ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        with open(path, "wb") as f:
            self.write_to(f)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.write_to(buf)
        return buf.getvalue()

    def sha256(self) -> str:
        """The network's hash: sha256 (hex) of its file's bytes, as :meth:`save` writes them."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def write_to(self, f: BinaryIO) -> None:
        """Stream the file: arrays go in uncompressed (weights hardly compress), one at a time."""
        arrays: list[np.ndarray] = []
        doc = {"format": FORMAT, **_encode(self, arrays)}
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
            z.writestr(zipfile.ZipInfo("network.json", _ZIP_DATE),
                       json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=True).encode("utf-8"),
                       zipfile.ZIP_DEFLATED)
            for i, a in enumerate(arrays):
                info = zipfile.ZipInfo(f"arrays/{i}.npy", _ZIP_DATE)
                info.file_size = a.nbytes + 256  # a hint, so that zip64 is chosen for huge arrays
                with z.open(info, "w", force_zip64=a.nbytes > 2 ** 31 - 2 ** 20) as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(a), allow_pickle=False)

    @classmethod
    def load(cls, path: str | Path | BinaryIO) -> "Network":
        """Read a network file; everything in it is checked (:mod:`snnexport.network_check`) before use."""
        doc, arrays = load_document(path, _CLASSES)
        return _decode(doc, arrays)


def is_network_file(path: str | Path) -> bool:
    """Whether ``path`` is meant as a network file: named ``*.snn``, or a zip that holds network.json.

    A damaged ``.snn`` counts, so that its loader, not a model reader, says what is wrong with it.
    """
    if Path(path).suffix.lower() == ".snn":
        return True
    try:
        with zipfile.ZipFile(path) as z:
            return "network.json" in z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


# --- JSON encoding: dataclasses become {"type": ..., fields}; arrays go to numbered .npy members ---

_CLASSES = {c.__name__: c for c in (InputSpec, Population, Gate, Projection, Neuron, Settings,
                                     Normalization, Provenance, Network)}


def _encode(obj: Any, arrays: list[np.ndarray]) -> Any:
    if isinstance(obj, np.ndarray):
        arrays.append(obj)
        return {"array": f"arrays/{len(arrays) - 1}.npy"}
    if isinstance(obj, Op):
        return {"op": obj.kind, **{k: _encode(v, arrays) for k, v in obj.params().items()}}
    if dataclasses.is_dataclass(obj):
        return {"type": type(obj).__name__,
                **{f.name: _encode(getattr(obj, f.name), arrays) for f in dataclasses.fields(obj)}}
    if isinstance(obj, (list, tuple)):
        return [_encode(v, arrays) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    return obj


def _decode(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Objects from a document that :func:`~snnexport.network_check.check_document` has passed."""
    if isinstance(obj, list):
        return tuple(_decode(v, arrays) for v in obj)
    if not isinstance(obj, dict):
        return obj
    if "array" in obj:
        return arrays[obj["array"]]
    if "op" in obj:
        cls = OP_TYPES[obj["op"]]
        return cls(**{k: _decode(v, arrays) for k, v in obj.items() if k != "op"})
    cls = _CLASSES[obj["type"]]
    kwargs = {k: _decode(v, arrays) for k, v in obj.items() if k != "type"}
    if cls is Network:
        kwargs["nodes"] = list(kwargs["nodes"])
        kwargs["projections"] = list(kwargs["projections"])
        kwargs.pop("format", None)
    if cls is Projection:
        kwargs["ops"] = list(kwargs["ops"])
    return cls(**kwargs)


def check_network(net: Network, where: str = "network") -> None:
    """Check a network built in code (or loaded) against the file's schema, and every array finite.

    Writers and simulators call this first, so that they may rely on everything it checks.
    """
    if not isinstance(net, Network):
        raise SnnexportError(f"{where}: expected a Network, got {type(net).__name__}")
    found: list[np.ndarray] = []
    doc = {"format": FORMAT, **_encode(net, found)}
    infos = {f"arrays/{i}.npy": ArrayInfo(tuple(a.shape), a.dtype) for i, a in enumerate(found)}
    fields = check_document(doc, infos, _CLASSES, where)
    for i, a in enumerate(found):
        check_finite(a, f"{where}: {fields[f'arrays/{i}.npy']}")


def networks_equal(a: Network, b: Network) -> bool:
    """Exact equality, arrays bit for bit: what a round trip through a file must preserve."""
    arrays_a: list[np.ndarray] = []
    arrays_b: list[np.ndarray] = []
    if _encode(a, arrays_a) != _encode(b, arrays_b) or len(arrays_a) != len(arrays_b):
        return False
    return all(x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y, equal_nan=True)
               for x, y in zip(arrays_a, arrays_b))


def load_document(source: str | Path | BinaryIO, classes: Mapping[str, type]) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and check a ``.snn``: its ``network.json`` and its arrays, read only once found consistent."""
    label = str(source) if isinstance(source, (str, Path)) else "network file"
    try:
        with zipfile.ZipFile(source) as z:
            entries = network_file.members(z, label)
            doc = network_file.read_json(z, entries["network.json"], label)
            headers = {n: network_file.read_header(z, info, f"{label}: {n}") for n, info in entries.items()
                       if n != "network.json"}
            fields = check_document(doc, {n: h.info for n, h in headers.items()}, classes, f"{label}: network.json")
            for n, h in headers.items():  # the zip directory's sizes, before anything is decompressed
                need = h.length + h.info.size * h.info.dtype.itemsize
                if entries[n].file_size != need:
                    raise SnnexportError(f"{label}: network.json: {fields[n]} ({n}): the zip directory says it "
                                         f"holds {entries[n].file_size} bytes; its shape {h.info.shape} needs {need}")
            arrays = {n: network_file.read_data(z, entries[n], h, f"{label}: network.json: {fields[n]} ({n})")
                      for n, h in headers.items()}
    except SnnexportError:
        raise
    except network_file.READ_ERRORS as e:
        detail = " ".join(str(e).split()) or type(e).__name__
        raise SnnexportError(f"{label}: not a readable snnexport network file ({detail})") from None
    return doc, arrays
