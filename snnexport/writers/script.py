"""What every script writer shares: the network as Python literals, weights, header, Jinja2 rendering.

A script writer supplies a template (``snnexport/templates/<name>.py.j2``) that extends
``_script.py.j2`` (header, parameters, the embedded :mod:`snnexport.scriptlib` modules, weights, the
network description, and ``main()``: options, the loop over samples, the readout, the results file)
and defines two functions in the simulator's own idioms:

* ``build_network(args)`` → a model object (built once);
* ``run_sample(model, x, index, args)`` → a dict with ``counts`` (one flat array per population,
  network order), ``gate_counts`` (per gate), ``output_steps`` (T, classes), ``output_v``
  (classes,) and ``spikes_per_step`` (T, populations), after resetting the state for this sample.

The NEST-based templates (``nest.py.j2``, ``pynn.py.j2``) extend ``_nest.py.j2``, which holds what
they share and calls the ``Backend`` class each of them defines. Which scriptlib modules a script
embeds is the writer's ``scriptlib`` attribute; :func:`embedded` adds what those import.

A network file is untrusted, so no value reaches a script except through :func:`py`, which writes a
Python literal on one line. The templates' environment enforces it: what a template prints must be a
:class:`Literal` (made by ``| py``) or :class:`Code` (snnexport's own text: embedded modules, the
description blocks and header lines built from py()); a raw string or number raises at render time."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import keyword
import math
import re
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

import jinja2
import numpy as np

from .. import __version__, scriptlib
from ..errors import SnnexportError
from ..network import Gate, Network, Population
from ..scriptlib import runtime
from .base import Rendered, WriteOptions, Writer

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


# Characters that end a line somewhere: Python's tokenizer breaks lines at \n and \r, str.splitlines()
# and editors at the others too. None of them may come from a value into a script.
_LINE_BREAK = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


class Literal(str):
    """Text made by :func:`py`: one Python literal on one line. The only values a template may print."""
    __slots__ = ()


class Code(str):
    """Script text from snnexport's own code (embedded modules, blocks and comment lines whose every
    value went through :func:`py`). Made only in the writers, never from a network's values."""
    __slots__ = ()


def py(value: object) -> Literal:
    """The one way a value enters a script: a Python literal on one line (repr() escapes every string).

    str, int, float, bool, None (numpy scalars too) and tuples or lists of them; anything else raises
    TypeError. The base classes' repr is used, so a str or float subclass cannot substitute its own text.
    """
    text = _literal_text(value)
    if _LINE_BREAK.search(text):  # repr() escapes them all; this keeps it so whatever Python does
        raise ValueError(f"literal of {type(value).__name__} spans lines")
    return Literal(text)


def _literal_text(value: object) -> str:
    if value is None or isinstance(value, (bool, np.bool_)):
        return repr(None if value is None else bool(value))
    if isinstance(value, str):
        return str.__repr__(value)
    if isinstance(value, (int, np.integer)):
        return int.__repr__(int(value))
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if math.isfinite(f):
            return float.__repr__(f)
        return ("-" if f < 0 else "") + f"float({'nan' if math.isnan(f) else 'inf'!r})"
    if isinstance(value, tuple):
        return "(" + ", ".join(_literal_text(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(_literal_text(v) for v in value) + "]"
    raise TypeError(f"no literal for {type(value).__name__}")


def comment(template: str, *values: object) -> Code:
    """One comment line's text: snnexport's own ``template`` with each ``{}`` replaced by py() of a value
    (a Code value, snnexport's own wording, goes in as it is)."""
    text = template.format(*(v if isinstance(v, Code) else py(v) for v in values))
    if _LINE_BREAK.search(text):
        raise ValueError(f"comment line spans lines: {text!r}")
    return Code(text)


def _only_literals(value: object) -> object:
    """Jinja2's finalize hook: what a template prints must be a Literal or Code, never a raw value."""
    if isinstance(value, (Literal, Code)):
        return value
    raise TypeError(f"a template printed a raw {type(value).__name__} ({str(value)[:60]!r}): "
                    "values go into a script only as {{ value | py }}")


class _Ref:
    """An array in the weights file, written as W['key']."""

    def __init__(self, key: str):
        self.key = key


def _literal(value: object) -> str:
    """py() extended by the description's own structure: W['key'] references and dict(field=...) of op fields."""
    if isinstance(value, _Ref):
        return f"W[{py(value.key)}]"
    if isinstance(value, dict):
        for k in value:  # field names of snnexport's own dataclasses, never a network's values
            if not (isinstance(k, str) and k.isidentifier() and not keyword.iskeyword(k)):
                raise ValueError(f"not a keyword argument name: {k!r}")
        return "dict(" + ", ".join(f"{k}={_literal(v)}" for k, v in value.items()) + ")"
    if isinstance(value, list) and any(isinstance(v, (dict, _Ref, tuple)) for v in value):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, tuple) and any(isinstance(v, (dict, _Ref)) for v in value):
        return "(" + ", ".join(_literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return py(value)


def description(net: Network) -> tuple[dict[str, np.ndarray], dict[str, Code]]:
    """The arrays of a network and the Python source of its description (POPULATIONS, GATES, PROJECTIONS)."""
    arrays: dict[str, np.ndarray] = {}
    pops, gates, projs = [], [], []
    for i, node in enumerate(net.nodes):
        if isinstance(node, Population):
            arrays[f"bias_{i}"] = node.bias.reshape(-1)
            pops.append(dict(name=node.name, shape=tuple(node.shape), depth=node.depth,
                             activation=node.activation, scale=float(node.scale), bias=_Ref(f"bias_{i}")))
        else:
            gates.append(dict(name=node.name, source=node.source, shape=tuple(node.shape), pool=tuple(node.pool),
                              strides=tuple(node.strides), padding=tuple(map(tuple, node.padding))))
    for j, proj in enumerate(net.projections):
        ops = []
        for k, op in enumerate(proj.ops):
            params = {}
            for name, value in op.params().items():
                if isinstance(value, np.ndarray):
                    arrays[f"p{j}_{k}_{name}"] = value
                    params[name] = _Ref(f"p{j}_{k}_{name}")
                elif value is not None:
                    params[name] = _plain(value)
            ops.append((op.kind, params))
        projs.append(dict(source=proj.source, target=proj.target, ops=ops))

    def block(items: list[dict]) -> Code:
        return Code("[\n" + "".join(f"    {_literal(it)},\n" for it in items) + "]")

    return arrays, {"populations": block(pops), "gates": block(gates), "projections": block(projs)}


def _plain(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def embedded(names: Iterable[str]) -> Code:
    """The scriptlib modules ``names`` and every scriptlib module they import, as script text.

    In the order of :data:`snnexport.scriptlib.MODULES` (each after those it imports), each under a
    banner line, without its docstring and without its relative imports: in a script the names they
    import are defined above them.
    """
    wanted: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo += _scriptlib_module(name)[1]
    parts = []
    for name, title in scriptlib.MODULES.items():
        if name in wanted:
            label = f" {title} (embedded from snnexport.scriptlib.{name})"
            parts.append("# " + "-" * max(3, 98 - len(label)) + label + "\n" + _scriptlib_module(name)[0])
    return Code("\n\n".join(parts))


# ast.parse in several threads at once raised "SystemError: AST constructor recursion depth mismatch" on
# CPython 3.11.7 here (validate renders scripts in threads; the first render of each module parses it)
_PARSING = threading.Lock()


@functools.cache
def _scriptlib_module(name: str) -> tuple[str, tuple[str, ...]]:
    """A scriptlib module's source as embedded (no docstring, no relative imports) and the modules it imports."""
    if name not in scriptlib.MODULES:
        raise ValueError(f"no scriptlib module {name!r}")
    source = (Path(scriptlib.__file__).parent / f"{name}.py").read_text(encoding="utf-8")
    with _PARSING:
        tree = ast.parse(source)
    drop: set[int] = set()  # line numbers, 1-based
    if ast.get_docstring(tree) is not None:
        drop.update(range(tree.body[0].lineno, tree.body[0].end_lineno + 1))
    imports = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            if node not in tree.body or node.level != 1 or node.module not in scriptlib.MODULES:
                raise ValueError(f"scriptlib.{name}, line {node.lineno}: a relative import must be a top-level "
                                 "'from .module import name' of another scriptlib module")
            imports.append(node.module)
            drop.update(range(node.lineno, node.end_lineno + 1))
    lines = [line for k, line in enumerate(source.splitlines(keepends=True), 1) if k not in drop]
    text = re.sub(r"\n{4,}", "\n\n\n", "".join(lines)).strip("\n") + "\n"  # no gap wider than before
    return text, tuple(imports)


def simulator_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed where exported"


def header_lines(net: Network, simulator: str, version: str, approximations: list[str]) -> list[Code]:
    """The script's header comment, one Code per line: snnexport's wording, every value through py()."""
    pops = net.populations
    norm = net.normalization
    if norm.method == "percentile":
        norm_line = comment("Normalization: {}th percentile of the activations over {} samples (data sha256 {})",
                            norm.percentile, norm.samples, _short(norm.data_sha256))
    elif norm.method == "model-bound":
        norm_line = comment("Normalization: bound from the weights alone (no calibration data; rates are low)")
    else:
        norm_line = comment("Normalization: {}", norm.method)
    prov, neuron, settings = net.provenance, net.neuron, net.settings
    lines = [
        comment("Spiking network exported by snnexport {} for {} {}.", Code(__version__), Code(simulator), version),
        comment("Source model: {} (sha256 {}), {}", prov.model_file, _short(prov.model_sha256), prov.origin()),
        norm_line,
        comment("Neurons: {} non-leaky integrate-and-fire in {} populations, threshold {}, reset {}",
                sum(int(np.prod(p.shape)) for p in pops), len(pops), neuron.threshold,
                _wording(neuron.reset, subtract="by subtraction", zero="to zero")),
        comment("Firing where V {} threshold; V starts each sample at {} x threshold",
                Code(">" if neuron.threshold_rule == "gt" else ">="), neuron.v_init),
        comment("Input: {}; one step of delay per population; max-pooling as spike gates",
                _wording(net.input.encoding, analog="analog (constant current W*x + b every step)",
                         poisson="poisson (seeded Poisson spikes)")),
        comment("With --delay zero: the zero-delay network's spikes (the run time-shifted by depth, exactly)"),
        comment("Readout: {}; {} steps by default", _wording(
            settings.readout, count="output spike count, ties by membrane potential",
            membrane="membrane potential (non-spiking)", softmax="spiking softmax (seeded)"), settings.steps),
        # the notes are the writers' own capability texts (features_used() yields only FEATURES names)
        comment("Approximations: {}", Code("; ".join(approximations) if approximations else "none")),
        comment("Semantics: docs/semantics.md in snnexport. Layers (populations, gates):"),
    ]
    for n in net.nodes:
        if isinstance(n, Population):
            lines.append(comment("  {}: {} population, shape {}", n.name,
                                 _wording(n.activation, **{a: a for a in _ACTIVATIONS}), tuple(n.shape)))
        else:
            lines.append(comment("  {}: max-pool gate on {}, shape {}", n.name, n.source, tuple(n.shape)))
    return lines


_ACTIVATIONS = ("relu", "clip", "softmax", "linear", "sign", "heaviside")  # as in network.Population


def _wording(value: object, **words: str) -> object:
    """snnexport's wording for a known setting (as Code); any other value stays a value, for py()."""
    return Code(words[value]) if isinstance(value, str) and value in words else value


def _short(digest: object) -> object:
    """The first 16 characters of a hash, for the header (a value that is no string is shown whole)."""
    return digest[:16] if isinstance(digest, str) else digest


@functools.cache
def _environment() -> jinja2.Environment:
    """The templates' environment: ``| py`` is the only way to print a value; anything else that is not
    snnexport's own Code raises at render time (the finalize hook)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                             finalize=_only_literals, autoescape=False)
    env.filters["py"] = py
    return env


class ScriptWriter(Writer):
    template: str = ""
    simulator: str = ""  # display name
    scriptlib: tuple[str, ...] = ("connectivity", "runtime", "recorder")  # embedded (and what they import)

    def context(self, net: Network, options: WriteOptions) -> dict[str, object]:
        """Writer-specific template variables."""
        return {}

    def render(self, net: Network, options: WriteOptions) -> Rendered:
        approximations = self.check(net)
        for note in approximations:
            print(f"snnexport: {self.name}: approximation: {note}", file=sys.stderr)
        arrays, desc = description(net)
        x, y = _samples(net, options)
        arrays["samples_x"], arrays["samples_y"] = x, y
        raw, sha = runtime.pack_arrays(arrays)
        blob = runtime.encode_blob(raw)
        beside: dict[str, bytes] = {}
        data_file = None
        if len(blob) > options.embed_limit:
            if options.output is None:
                raise SnnexportError(f"the weights ({len(blob) / 2 ** 20:.1f} MB encoded) are too large to embed in "
                                     f"a script on standard output; use -o net.py (weights go to net.npz beside it)")
            data_file = options.output.with_suffix(".npz").name
            beside[data_file] = raw
            blob = ""
        version = simulator_version(self.distribution)
        text = _environment().get_template(self.template).render(
            net=net, writer=self, header=header_lines(net, self.simulator, version, approximations),
            description=desc, data_blob=Code(blob), data_sha256=sha, data_file=data_file,
            network_sha256=net.sha256(), scriptlib=embedded(self.scriptlib),
            population_names=[p.name for p in net.populations],
            gate_names=[n.name for n in net.nodes if isinstance(n, Gate)],
            simulator_version=version, snnexport_version=__version__,
            **self.context(net, options))
        return Rendered(text.encode("utf-8"), beside)


def _samples(net: Network, options: WriteOptions) -> tuple[np.ndarray, np.ndarray]:
    if options.samples is not None:
        x = np.asarray(options.samples, np.float32)
        y = options.labels if options.labels is not None else np.full(len(x), -1)
        return x, np.asarray(y, np.int64)
    # no data was given: one seeded uniform sample, so that the script still runs as it is
    x = np.random.default_rng(0).random((1,) + tuple(net.input.shape)).astype(np.float32)
    return x, np.full(1, -1, np.int64)
