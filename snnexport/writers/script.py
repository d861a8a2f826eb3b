"""What every script writer shares: the network as Python literals, weights, header, Jinja2 rendering.

A script writer supplies a template (``snnexport/templates/<name>.py.j2``) that includes
``_prelude.py.j2`` (header, imports, weights, the network description, the embedded
:mod:`snnexport.connectivity` and :mod:`snnexport.runtime`) and ``_main.py.j2`` (options, the
loop over samples, the results file), and defines two functions in the simulator's own idioms:

* ``build_network(args)`` → a model object (built once);
* ``run_sample(model, x, index, args)`` → a dict with ``counts`` (one flat array per population,
  network order), ``gate_counts`` (per gate), ``output_steps`` (T, classes), ``output_v``
  (classes,) and ``spikes_per_step`` (T, populations), after resetting the state for this sample.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import sys
from pathlib import Path

import jinja2
import numpy as np

from .. import __version__, connectivity, runtime
from ..errors import SnnexportError
from ..network import Gate, Network, Population
from .base import Rendered, WriteOptions, Writer

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def py(value: object) -> str:
    """A Python literal for value: repr() escapes every string, so model names cannot inject code."""
    if isinstance(value, (str, int, bool)) or value is None:
        return repr(value)
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, np.integer):
        return repr(int(value))
    if isinstance(value, tuple):
        return "(" + ", ".join(py(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(py(v) for v in value) + "]"
    raise TypeError(f"no literal for {type(value).__name__}")


class _Ref:
    """An array in the weights file, written as W['key']."""

    def __init__(self, key: str):
        self.key = key


def _literal(value: object) -> str:
    if isinstance(value, _Ref):
        return f"W[{value.key!r}]"
    if isinstance(value, dict):
        return "dict(" + ", ".join(f"{k}={_literal(v)}" for k, v in value.items()) + ")"
    if isinstance(value, list) and any(isinstance(v, (dict, _Ref, tuple)) for v in value):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, tuple) and any(isinstance(v, (dict, _Ref)) for v in value):
        return "(" + ", ".join(_literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return py(value)


def description(net: Network) -> tuple[dict[str, np.ndarray], dict[str, str]]:
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

    def block(items: list[dict]) -> str:
        return "[\n" + "".join(f"    {_literal(it)},\n" for it in items) + "]"

    return arrays, {"populations": block(pops), "gates": block(gates), "projections": block(projs)}


def _plain(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def module_source(module: object) -> str:
    """A module's source without its docstring, to embed in a script."""
    src = inspect.getsource(module)
    doc = module.__doc__
    if doc:
        end = src.index('"""', src.index('"""') + 3) + 3
        src = src[end:].lstrip("\n")
    return src.rstrip() + "\n"


def simulator_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed where exported"


def header_lines(net: Network, simulator: str, version: str, approximations: list[str]) -> list[str]:
    pops = net.populations
    norm = net.normalization
    if norm.method == "percentile":
        norm_text = (f"{norm.percentile:g}th percentile of the activations over {norm.samples} samples"
                     f" (data sha256 {norm.data_sha256[:16]})")
    elif norm.method == "model-bound":
        norm_text = "bound from the weights alone (no calibration data; rates are low)"
    else:
        norm_text = "none"
    prov = net.provenance
    readout = {"count": "output spike count, ties by membrane potential", "membrane": "membrane potential (non-spiking)",
               "softmax": "spiking softmax (seeded)"}[net.settings.readout]
    lines = [
        f"Spiking network exported by snnexport {__version__} for {simulator} {version}.",
        f"Source model: {prov.model_file!r} (sha256 {prov.model_sha256[:16]}), Keras {prov.keras_version}",
        f"Normalization: {norm_text}",
        f"Neurons: {sum(p.shape and int(np.prod(p.shape)) for p in pops)} non-leaky integrate-and-fire in "
        f"{len(pops)} populations, threshold {net.neuron.threshold:g}, "
        f"reset {'by subtraction' if net.neuron.reset == 'subtract' else 'to zero'}",
        f"Input: {net.input.encoding} ({'constant current W*x + b every step' if net.input.encoding == 'analog' else 'seeded Poisson spikes'})"
        f"; one step of delay per population; max-pooling as spike gates",
        f"Readout: {readout}; {net.settings.steps} steps by default",
        "Approximations: " + ("; ".join(approximations) if approximations else "none"),
        "Semantics: docs/semantics.md in snnexport. Layers (populations, gates):",
    ]
    for n in net.nodes:
        kind = f"{n.activation} population" if isinstance(n, Population) else f"max-pool gate on {n.source!r}"
        lines.append(f"  {n.name!r}: {kind}, shape {tuple(n.shape)}")
    return lines


class ScriptWriter(Writer):
    template: str = ""
    simulator: str = ""  # display name
    package: str = ""  # the distribution whose version goes into the header

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
        version = simulator_version(self.package)
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                                 keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
        env.filters["py"] = py
        text = env.get_template(self.template).render(
            net=net, writer=self, header=header_lines(net, self.simulator, version, approximations),
            description=desc, data_blob=blob, data_sha256=sha, data_file=data_file,
            network_sha256=hashlib.sha256(net.to_bytes()).hexdigest(),
            connectivity_source=module_source(connectivity), runtime_source=module_source(runtime),
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
