"""The schema of a network description, checked before anything uses it.

A ``.snn`` file is shared like a model file, so it is untrusted input: every value in it reaches a
simulation or a generated script. :func:`snnexport.network.load_document` reads one
with bounded reads: the zip directory's sizes and every ``.npy`` header are compared
with what the network's shapes require before anything is decompressed, so a damaged or hostile
file costs milliseconds and little memory. :func:`check_document` checks the decoded
``network.json`` before any object is built from it: the type of every field, enumerations, finite
numbers and ranges, names unique and every referenced name present, node order feed-forward,
depths as ``docs/semantics.md`` defines them, and every shape against the ops' own geometry
(:meth:`snnexport.ops.Op.output_shape`, the one place that geometry lives). :func:`check_network`
runs the same checks on a network built in code, by encoding it exactly as a file would hold it.
Every problem is one :class:`~snnexport.errors.SnnexportError` line that names the field, e.g.
``net.snn: network.json: nodes[3].bias: expected 864 float32 values for shape (12, 12, 6), the array holds 7``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from .errors import SnnexportError
from .network_file import MEMBER, ArrayInfo, show as _show
from .ops import ACTIVATIONS, OP_TYPES


FORMAT = "snnexport-network"
FORMAT_VERSION = 4  # 4: a population's levels (QuantizedReLU); 3: neuron.v_init and threshold_rule; 2: provenance.
# model_format and model_producer (ONNX). Older files read with the defaults of what came later (Keras, 0, "ge", None).

MAX_NAME = 4096  # characters in a name or the model file name
MAX_VERSION = 256  # characters in a version string
MAX_ELEMENTS = 2 ** 31  # elements of any tensor: the input, a population, an op's output, an array
MAX_RANK = 8
MAX_OPS = 1024  # ops in one projection
MAX_LEVELS = 1024  # quantization levels of a population (snnexport.keras_layers.MAX_LEVELS)
MAX_STEPS = 2 ** 24  # spike counts are exact float32 integers below this
FLOAT32_MAX = float(np.finfo(np.float32).max)  # state is float32: a larger number would become inf there

ENCODINGS = ("analog", "poisson")
RESETS = ("subtract", "zero")
THRESHOLD_RULES = ("ge", "gt")
READOUTS = ("count", "membrane", "softmax")
DELAYS = ("step", "zero")
METHODS = ("percentile", "model-bound", "none")
OUTPUT_ONLY = ("softmax", "linear")  # activations allowed only on the output population
# ops a projection may carry: linear, one input each (max-pooling is a gate, activations are populations)
PROJECTION_OPS = ("dense", "conv2d", "conv_transpose", "avgpool", "pad", "reshape", "transpose", "affine", "embed",
                  "scale")
_SHA256 = re.compile(r"[0-9a-f]{64}")


# --- the document ---------------------------------------------------------------------------------

def check_document(doc: Any, arrays: Mapping[str, ArrayInfo], classes: Mapping[str, type],
                   where: str = "network.json") -> dict[str, str]:
    """Check a decoded ``network.json`` whose array members are described by ``arrays``.

    ``classes`` maps the names of the description's dataclasses (``snnexport.network``) to them: their
    fields are the schema of the objects (passed in, so that this module does not import the
    description that imports it).
    Returns, for every array member, the field that holds it (for messages about its data).
    Raises :class:`SnnexportError` with ``where``, the field path and the problem, in one line.
    """
    _upgrade(doc)
    c = _Checker(where, arrays, classes)
    c.network(doc)
    extra = sorted(set(arrays) - set(c.used))
    if extra:
        c.fail(extra[0], "is not referenced by network.json (a network file holds only the arrays it uses)")
    return c.used


def _upgrade(doc: Any) -> None:
    """Bring an older file up to this version, in place, one version at a time: a version-1 file (before ONNX
    input) came from a Keras model; a version-2 file (before the neuron's v_init and threshold_rule) simulates
    as V starting at 0 with "ge"; in a version-3 file (before quantized layers) no population has levels. A
    file that already holds a later version's fields is no such file: it is left as it is, for the checker to
    judge (as is anything else)."""
    version = doc.get("version") if isinstance(doc, dict) else None
    if type(version) is not int or doc.get("format") != FORMAT:  # JSON true is not version 1
        return
    if version == 1:
        provenance = doc.get("provenance")
        if isinstance(provenance, dict) and not {"model_format", "model_producer"} & set(provenance):
            provenance.update(model_format="keras", model_producer="")
            doc["version"] = version = 2
    if version == 2:
        neuron = doc.get("neuron")
        if isinstance(neuron, dict) and not {"v_init", "threshold_rule"} & set(neuron):
            neuron.update(v_init=0.0, threshold_rule="ge")
            doc["version"] = version = 3
    if version == 3:
        nodes = doc.get("nodes")
        pops = [n for n in nodes if isinstance(n, dict) and n.get("type") == "Population"] \
            if isinstance(nodes, list) else []
        if not any("levels" in n for n in pops):
            for n in pops:
                n["levels"] = None
            doc["version"] = 4


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


@dataclass
class _Names:
    """What the document has named so far: the input, and for every name its owner (for messages),
    its position (the input 0, node k at k + 1) and its shape."""
    input: str
    names: dict[str, str]
    order: dict[str, int]
    shapes: dict[str, tuple[int, ...]]


class _Checker:
    """One pass over a document; ``used`` maps each array member to the field that holds it."""

    def __init__(self, where: str, arrays: Mapping[str, ArrayInfo], classes: Mapping[str, type]):
        self.where = where
        self.arrays = arrays
        self.classes = classes
        self.used: dict[str, str] = {}

    def fail(self, path: str, message: str) -> NoReturn:
        raise SnnexportError(f"{self.where}: {path}: {message}" if path else f"{self.where}: {message}")

    # --- values ---
    def obj(self, v: Any, path: str, cls: type, extra: tuple[str, ...] = ()) -> dict:
        """A dataclass as a JSON object: its ``type`` tag and exactly its fields, none missing, none unknown."""
        if not isinstance(v, dict):
            self.fail(path, f"expected a {cls.__name__} object, got {_show(v)}")
        if v.get("type") != cls.__name__:
            self.fail(_join(path, "type"), f"expected {_show(cls.__name__)}, got {_show(v.get('type'))}")
        self.keys(v, path, {"type", *extra, *(f.name for f in dataclasses.fields(cls))})
        return v

    def keys(self, v: dict, path: str, want: set[str]) -> None:
        missing = sorted(want - set(v))
        if missing:
            self.fail(_join(path, missing[0]), "missing")
        unknown = sorted(set(v) - want, key=str)
        if unknown:
            self.fail(path, f"unknown field {_show(unknown[0])}")

    def integer(self, v: Any, path: str, lo: int, hi: int, hi_text: str | None = None) -> int:
        """An integer in [lo, hi); JSON true is not 1."""
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v < hi:
            self.fail(path, f"expected an integer in [{lo}, {hi_text or hi}), got {_show(v)}")
        return v

    def number(self, v: Any, path: str, positive: bool = False, upper: float | None = None) -> float:
        """A finite number (float32-finite: state is float32), optionally > 0 and ≤ upper."""
        # abs(v) <= FLOAT32_MAX is False for NaN and ±inf, and compares huge JSON integers exactly
        ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= FLOAT32_MAX and (not positive or v > 0) and (upper is None or v <= upper))
        if not ok:
            want = "a finite number"
            if positive and upper is not None:
                want = f"a number in (0, {upper:g}]"
            elif positive:
                want = "a finite number > 0"
            self.fail(path, f"expected {want}, got {_show(v)}")
        return v

    def optional_number(self, v: Any, path: str, positive: bool = False, upper: float | None = None) -> float | None:
        return None if v is None else self.number(v, path, positive, upper)

    def choice(self, v: Any, path: str, choices: tuple[str, ...]) -> str:
        if not isinstance(v, str) or v not in choices:
            self.fail(path, f"expected one of {', '.join(_show(c) for c in choices)}; got {_show(v)}")
        return v

    def text(self, v: Any, path: str, cap: int, empty: bool = True) -> str:
        """Free text. Any character is legal (writers escape them all), but it must be valid Unicode
        (a lone surrogate cannot be written to a UTF-8 file) and at most ``cap`` characters long."""
        if not isinstance(v, str) or len(v) > cap or (not empty and not v):
            self.fail(path, f"expected a {'' if empty else 'non-empty '}string of at most {cap} characters, "
                            f"got {_show(v)}")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            self.fail(path, f"expected text, got {_show(v)}, which is not valid Unicode")
        return v

    def name(self, v: Any, path: str) -> str:
        return self.text(v, path, MAX_NAME, empty=False)

    def sha256(self, v: Any, path: str) -> str:
        if not isinstance(v, str) or (v and not _SHA256.fullmatch(v)):
            self.fail(path, f'expected "" or 64 lowercase hexadecimal digits, got {_show(v)}')
        return v

    def seq(self, v: Any, path: str, lo: int, hi: int) -> list:
        if not isinstance(v, list) or not lo <= len(v) <= hi:
            self.fail(path, f"expected a list of {lo} to {hi} items, got {_show(v)}")
        return v

    def shape(self, v: Any, path: str) -> tuple[int, ...]:
        if not isinstance(v, list) or not 1 <= len(v) <= MAX_RANK or not all(
                isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_ELEMENTS for d in v):
            self.fail(path, f"expected a shape (1 to {MAX_RANK} positive integers), got {_show(v)}")
        return self.elements(tuple(v), path)

    def elements(self, shape: tuple[int, ...], path: str) -> tuple[int, ...]:
        if math.prod(shape) > MAX_ELEMENTS:
            self.fail(path, f"shape {shape} has {math.prod(shape)} elements; at most 2**31 are supported")
        return shape

    def pair(self, v: Any, path: str, lo: int = 1) -> tuple[int, int]:
        if not isinstance(v, list) or len(v) != 2:
            self.fail(path, f"expected a list of 2 integers, got {_show(v)}")
        return (self.integer(v[0], _join(path, 0), lo, MAX_ELEMENTS, "2**31"),
                self.integer(v[1], _join(path, 1), lo, MAX_ELEMENTS, "2**31"))

    def padding(self, v: Any, path: str) -> tuple[tuple[int, int], tuple[int, int]]:
        if not isinstance(v, list) or len(v) != 2:
            self.fail(path, f"expected [[top, bottom], [left, right]], got {_show(v)}")
        return self.pair(v[0], _join(path, 0), 0), self.pair(v[1], _join(path, 1), 0)

    def crop(self, v: Any, path: str) -> tuple[tuple[int, int], tuple[int, int]]:
        """[[top, bottom], [left, right]] cells cropped from each side; negative: cells added."""
        if not isinstance(v, list) or len(v) != 2:
            self.fail(path, f"expected [[top, bottom], [left, right]], got {_show(v)}")
        return self.pair(v[0], _join(path, 0), -MAX_ELEMENTS), self.pair(v[1], _join(path, 1), -MAX_ELEMENTS)

    def axes(self, v: Any, path: str) -> tuple[int, ...]:
        if not isinstance(v, list) or not 1 <= len(v) <= MAX_RANK:
            self.fail(path, f"expected a list of 1 to {MAX_RANK} axes, got {_show(v)}")
        return tuple(self.integer(a, _join(path, i), 0, MAX_RANK) for i, a in enumerate(v))

    def array(self, v: Any, path: str, rank: int | None) -> ArrayInfo:
        """A reference to an array member: it exists, is used once, float32 with positive dimensions
        (``rank`` of them, unless None)."""
        if not isinstance(v, dict) or set(v) != {"array"}:
            self.fail(path, f"expected a float32 array, got {_show(v)}")
        member = v["array"]
        if not isinstance(member, str) or not MEMBER.fullmatch(member):
            self.fail(_join(path, "array"), f"expected a member name arrays/<n>.npy, got {_show(member)}")
        if member not in self.arrays:
            self.fail(_join(path, "array"), f"the file has no member {member}")
        if member in self.used:
            self.fail(_join(path, "array"), f"{member} is already the array of {self.used[member]}")
        self.used[member] = path
        info = self.arrays[member]
        if (info.dtype != np.float32 or (rank is not None and len(info.shape) != rank)
                or not 1 <= len(info.shape) <= MAX_RANK or not all(1 <= d <= MAX_ELEMENTS for d in info.shape)):
            dims = "positive dimensions" if rank is None else f"{rank} positive dimension(s)"
            self.fail(path, f"expected a float32 array of {dims}, got {info.dtype} of shape {info.shape}")
        self.elements(info.shape, path)
        return info

    def no_constant(self, v: Any, path: str) -> None:
        if v is not None:
            self.fail(path, "expected null: the ops of a projection carry no constant term "
                            "(it is part of the target population's bias)")

    # --- the network, section by section, in the order of the file (the first problem found is named) ---
    def network(self, d: Any) -> None:
        self.header(d)
        self.parameters(d)
        g = self.input(d["input"])
        nodes = self.nodes(d["nodes"], g)
        pops = self.output(d["output"], nodes)
        sources = self.projections(d["projections"], g, pops)
        self.depths(nodes, sources, g, d["settings"]["clamp"])

    def header(self, d: Any) -> None:
        """What the file is (format and version, before anything else), then the top-level fields."""
        Network = self.classes["Network"]
        if not isinstance(d, dict):
            self.fail("", f"expected a JSON object, got {_show(d)}")
        if d.get("format") != FORMAT:
            self.fail("format", f"not a snnexport network file (format {_show(d.get('format'))}, "
                                f"expected {_show(FORMAT)})")
        version = d.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version != FORMAT_VERSION:
            self.fail("version", f"network file version {_show(version)} is not supported "
                                 f"(this snnexport reads version {FORMAT_VERSION})")
        self.obj(d, "", Network, ("format",))

    def parameters(self, d: dict) -> None:
        """The neuron, the settings, the normalization and the provenance."""
        Neuron, Normalization, Provenance, Settings = (self.classes[k] for k in ("Neuron", "Normalization",
                                                                                "Provenance", "Settings"))
        self.obj(d["neuron"], "neuron", Neuron)
        self.number(d["neuron"]["threshold"], "neuron.threshold", positive=True)
        self.choice(d["neuron"]["reset"], "neuron.reset", RESETS)
        v_init = d["neuron"]["v_init"]
        if isinstance(v_init, bool) or not isinstance(v_init, (int, float)) or not 0 <= v_init < 1:
            self.fail("neuron.v_init",
                      f"expected a number in [0, 1) (a fraction of the threshold), got {_show(v_init)}")
        self.choice(d["neuron"]["threshold_rule"], "neuron.threshold_rule", THRESHOLD_RULES)
        s = self.obj(d["settings"], "settings", Settings)
        self.integer(s["steps"], "settings.steps", 1, MAX_STEPS, "2**24")
        self.choice(s["readout"], "settings.readout", READOUTS)
        self.choice(s["delay"], "settings.delay", DELAYS)
        self.integer(s["clamp"], "settings.clamp", 0, MAX_STEPS, "2**24")
        self.integer(s["seed"], "settings.seed", 0, 2 ** 63, "2**63")
        m = self.obj(d["normalization"], "normalization", Normalization)
        method = self.choice(m["method"], "normalization.method", METHODS)
        if method == "percentile" and m["percentile"] is None:
            self.fail("normalization.percentile", 'expected a number in (0, 100] for method "percentile", got null')
        self.optional_number(m["percentile"], "normalization.percentile", positive=True, upper=100.0)
        self.integer(m["samples"], "normalization.samples", 0, 2 ** 63, "2**63")
        self.sha256(m["data_sha256"], "normalization.data_sha256")
        p = self.obj(d["provenance"], "provenance", Provenance)
        self.text(p["model_file"], "provenance.model_file", MAX_NAME)
        self.sha256(p["model_sha256"], "provenance.model_sha256")
        self.text(p["keras_version"], "provenance.keras_version", MAX_VERSION)
        self.text(p["snnexport_version"], "provenance.snnexport_version", MAX_VERSION)
        self.text(p["model_format"], "provenance.model_format", MAX_VERSION)
        self.text(p["model_producer"], "provenance.model_producer", MAX_VERSION)

    def input(self, v: Any) -> _Names:
        InputSpec = self.classes["InputSpec"]
        i = self.obj(v, "input", InputSpec)
        inp = self.name(i["name"], "input.name")
        g = _Names(inp, {inp: "the input"}, {inp: 0}, {inp: self.shape(i["shape"], "input.shape")})
        self.choice(i["encoding"], "input.encoding", ENCODINGS)
        return g

    def nodes(self, v: Any, g: _Names) -> list:
        """Every population and gate: its fields, its name new; each is added to ``g``."""
        Gate, Population = self.classes["Gate"], self.classes["Population"]
        nodes = self.seq(v, "nodes", 1, MAX_ELEMENTS)
        kinds = {"Population": Population, "Gate": Gate}
        for k, n in enumerate(nodes):
            path = f"nodes[{k}]"
            tag = n.get("type") if isinstance(n, dict) else None
            cls = kinds.get(tag) if isinstance(tag, str) else None
            if cls is None:
                self.fail(path, f'expected a Population or a Gate object, got {_show(n)}')
            self.obj(n, path, cls)
            name = self.name(n["name"], f"{path}.name")
            if name in g.names:
                self.fail(f"{path}.name", f"{_show(name)} is already the name of {g.names[name]}")
            g.names[name], g.order[name] = f"{'population' if cls is Population else 'gate'} {path}", k + 1
            g.shapes[name] = shape = self.shape(n["shape"], f"{path}.shape")
            self.number(n["scale"], f"{path}.scale", positive=True)
            self.integer(n["depth"], f"{path}.depth", 1, MAX_ELEMENTS, "2**31")
            if cls is Population:
                self.population(n, path, shape)
            else:
                self.name(n["source"], f"{path}.source")
                self.pair(n["pool"], f"{path}.pool")
                self.pair(n["strides"], f"{path}.strides")
                self.padding(n["padding"], f"{path}.padding")
        return nodes

    def population(self, n: dict, path: str, shape: tuple[int, ...]) -> None:
        self.choice(n["activation"], f"{path}.activation", ACTIVATIONS)
        self.optional_number(n["max_value"], f"{path}.max_value", positive=True)
        if n["levels"] is not None:  # a QuantizedReLU's: a clip whose cap is its trained threshold λ
            self.integer(n["levels"], f"{path}.levels", 1, MAX_LEVELS + 1)
        bias = self.array(n["bias"], f"{path}.bias", None)
        if bias.size != math.prod(shape):
            self.fail(f"{path}.bias", f"expected {math.prod(shape)} float32 values for shape {shape}, "
                                      f"the array holds {bias.size}")
        if bias.shape != shape:
            self.fail(f"{path}.bias", f"expected shape {shape}, the array has shape {bias.shape}")

    def output(self, v: Any, nodes: list) -> dict[str, int]:
        """The output names a population, the only one with an output-only activation; returns the populations."""
        output = self.name(v, "output")
        pops = {n["name"]: k for k, n in enumerate(nodes) if n["type"] == "Population"}
        if output not in pops:
            self.fail("output", f"{_show(output)} is not a population of the network")
        for k, n in ((k, n) for k, n in enumerate(nodes) if n["type"] == "Population"):
            if n["activation"] in OUTPUT_ONLY and n["name"] != output:
                self.fail(f"nodes[{k}].activation", f"{_show(n['activation'])} is allowed only for the "
                                                    f"output population ({_show(output)})")
            if n["levels"] is not None and (n["activation"] != "clip" or n["max_value"] is None):  # QuantizedReLU
                self.fail(f"nodes[{k}].levels", "quantization levels need a 'clip' population with a max_value, not "
                                                f"{_show(n['activation'])} with max_value {_show(n['max_value'])}")
        return pops

    def projections(self, v: Any, g: _Names, pops: Mapping[str, int]) -> dict[str, list[str]]:
        """Each projection feed-forward into a population, its ops mapping the source's shape onto the
        target's; returns, for each population, the sources of its incoming projections."""
        Projection = self.classes["Projection"]
        sources: dict[str, list[str]] = {}
        for k, pr in enumerate(self.seq(v, "projections", 1, MAX_ELEMENTS)):
            path = f"projections[{k}]"
            self.obj(pr, path, Projection)
            src = self.name(pr["source"], f"{path}.source")
            tgt = self.name(pr["target"], f"{path}.target")
            if tgt not in pops:
                what = g.names.get(tgt, "not a node of the network")
                self.fail(f"{path}.target", f"{_show(tgt)} is {what}; a projection's target is a population")
            if src not in g.names:
                self.fail(f"{path}.source", f"{_show(src)} is neither the input nor a node of the network")
            if g.order[src] >= g.order[tgt]:
                self.fail(f"{path}.source", f"{_show(src)} does not come before its target {_show(tgt)} in node "
                                            "order (the network must be feed-forward)")
            shape = g.shapes[src]
            for j, o in enumerate(self.seq(pr["ops"], f"{path}.ops", 0, MAX_OPS)):
                shape = self.op(o, f"{path}.ops[{j}]", shape)
            if shape != g.shapes[tgt]:
                self.fail(path, f"its ops map {_show(src)} {g.shapes[src]} to shape {shape}, but its target "
                                f"{_show(tgt)} has shape {g.shapes[tgt]}")
            sources.setdefault(tgt, []).append(src)
        return sources

    def depths(self, nodes: list, sources: Mapping[str, list[str]], g: _Names, clamp: int) -> None:
        """Gates' geometry and every node's depth as docs/semantics.md defines it; clamp × depth in 32 bits."""
        from .ops import MaxPool
        depth = {g.input: 0}
        for k, n in enumerate(nodes):
            path, name = f"nodes[{k}]", n["name"]
            if n["type"] == "Gate":
                src = n["source"]
                if src not in g.names or src == g.input or g.order[src] >= g.order[name]:
                    self.fail(f"{path}.source", f"expected a population or gate before {_show(name)}, "
                                                f"got {_show(src)}")
                want_shape = self.geometry(MaxPool(tuple(n["pool"]), tuple(n["strides"]),
                                                   tuple(map(tuple, n["padding"]))), g.shapes[src], path)
                if want_shape != g.shapes[name]:
                    self.fail(f"{path}.shape", f"max-pooling {_show(src)} {g.shapes[src]} gives shape "
                                               f"{want_shape}, not {g.shapes[name]}")
                want = depth[src]
                why = f"the depth of its source {_show(src)}: a gate adds no delay"
            else:
                if name not in sources:
                    self.fail(path, f"population {_show(name)} has no incoming projection")
                want = 1 + max(depth[s] for s in sources[name])
                why = "one more than the deepest population projecting into it (docs/semantics.md)"
            if n["depth"] != want:
                self.fail(f"{path}.depth", f"expected {want}, {why}; got {n['depth']}")
            depth[name] = want
        deepest = max(depth.values())
        if clamp * deepest >= 2 ** 31:  # clamped steps (clamp × depth) are counted in 32-bit integers
            self.fail("settings.clamp", f"expected clamp * the deepest population's depth ({deepest}) below 2**31, "
                                        f"got {clamp}")

    def op(self, d: Any, path: str, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """One op of a projection: its parameters, then its output shape for ``in_shape``."""
        kind = d.get("op") if isinstance(d, dict) else None
        if not isinstance(kind, str) or kind not in OP_TYPES:
            self.fail(path, f"expected an op object with \"op\" one of {', '.join(map(_show, OP_TYPES))}, "
                            f"got {_show(kind if isinstance(d, dict) else d)}")
        cls = OP_TYPES[kind]
        spec = _OP_PARAMS[kind]
        self.keys(d, path, {"op", *spec})
        params = {k: check(self, d[k], _join(path, k)) for k, check in spec.items()}
        if kind not in PROJECTION_OPS:
            self.fail(path, f"a {kind} op cannot be part of a projection "
                            f"(allowed: {', '.join(PROJECTION_OPS)})")
        return self.geometry(cls(**params), in_shape, f"{path} ({kind})")

    def geometry(self, op: Any, in_shape: tuple[int, ...], path: str) -> tuple[int, ...]:
        try:
            out = tuple(op.output_shape(in_shape))
        except ValueError as e:
            self.fail(path, str(e))
        return self.elements(out, path)


def _rank(n: int) -> Callable[[_Checker, Any, str], ArrayInfo]:
    return lambda c, v, p: c.array(v, p, n)


def _ints(lo: int, hi: int, hi_text: str | None = None) -> Callable[[_Checker, Any, str], int]:
    return lambda c, v, p: c.integer(v, p, lo, hi, hi_text)


_POOL = {"pool": _Checker.pair, "strides": _Checker.pair, "padding": _Checker.padding}
# every op's parameters, by kind: each checks one field and returns it as the op holds it
# (arrays as ArrayInfo, enough for output_shape; pairs as tuples)
_OP_PARAMS: dict[str, dict[str, Callable[[_Checker, Any, str], Any]]] = {
    "dense": {"weight": _rank(2), "bias": _Checker.no_constant},
    "conv2d": {"kernel": _rank(4), "bias": _Checker.no_constant, "strides": _Checker.pair,
               "padding": _Checker.padding, "dilation": _Checker.pair, "groups": _ints(1, MAX_ELEMENTS, "2**31")},
    "conv_transpose": {"kernel": _rank(4), "bias": _Checker.no_constant, "strides": _Checker.pair,
                       "crop": _Checker.crop, "dilation": _Checker.pair, "groups": _ints(1, MAX_ELEMENTS, "2**31")},
    "transpose": {"axes": _Checker.axes},
    "avgpool": _POOL,
    "maxpool": _POOL,
    "pad": {"padding": _Checker.padding},
    "reshape": {"shape": _Checker.shape},
    "affine": {"scale": _rank(1), "offset": _Checker.no_constant},
    "concat": {"axis": _ints(0, MAX_RANK)},
    "embed": {"axis": _ints(0, MAX_RANK), "offset": _ints(0, MAX_ELEMENTS, "2**31"),
              "total": _ints(1, MAX_ELEMENTS + 1, "2**31 + 1")},
    "add": {},
    "scale": {"factor": _Checker.number},
    "activation": {"function": lambda c, v, p: c.choice(v, p, ACTIVATIONS),
                   "max_value": lambda c, v, p: c.optional_number(v, p, positive=True),
                   "levels": lambda c, v, p: None if v is None else c.integer(v, p, 1, MAX_LEVELS + 1)},
}
