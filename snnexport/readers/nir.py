"""NIR reader: a NIR graph (``.nir``, HDF5, ``nir`` 1.0.8's layout) of IF neurons → a spiking Network.

Read with h5py alone, as untrusted data: only hard-linked numeric and string datasets inside the file
(no external links or storage, no pickles), each size checked before it is read. The graph must be
an Input, IF nodes, and Affine/Linear/Scale/Conv2d/SumPool2d/AvgPool2d/Flatten nodes between them;
several edges into a node sum. Each path of linear nodes from the input or an IF node to an IF node
becomes a projection (linear maps distribute over the sum), the nodes' biases the target's bias.
NIR's IF (v += r·I; spike where v > v_threshold; v ← v_reset) becomes threshold rule "gt" and reset
"zero" (v_reset must be 0), with r and, where nodes differ, v_threshold folded into the incoming weights. Other neuron
types are refused with one line naming the node. NIR graphs run with zero delay between layers
(``snnexport simulate --delay zero``); exported scripts delay one step per population.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import SnnexportError, UnsupportedLayerError
from ..layout import key, kernel_to_ours, order, ours_shape, to_ours
from ..network import InputSpec, Network, Neuron, Normalization, Population, Projection, Provenance, Settings
from ..network_check import MAX_ELEMENTS
from ..ops import AvgPool, Conv2D, Dense, Op, Reshape
from ..ops import Affine as ChannelAffine
from ..ops import Scale as Factor
from . import file_size

MAX_FILE = 2 ** 34  # bytes
MAX_NODES = 4096
MAX_EDGES = 65536
MAX_PATHS = 4096  # projections one IF node may receive (paths through linear nodes)
MAX_TOTAL = 2 ** 31  # array elements in the whole file
LINEAR = ("Affine", "Linear", "Scale", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten")
KNOWN = LINEAR + ("Input", "Output", "IF")
REFUSED = {"LI": "a leaky integrator", "LIF": "a leaky neuron", "CubaLI": "a leaky neuron",
           "CubaLIF": "a leaky neuron", "I": "an integrator without threshold", "Delay": "a delay",
           "Threshold": "a threshold without membrane", "Conv1d": "a 1-D convolution", "NIRGraph": "a subgraph"}


def read_network(path: str | Path) -> Network:
    """The spiking Network of a NIR file; one-line SnnexportError for anything it cannot read."""
    p = Path(path)
    size = file_size(p)
    if size > MAX_FILE:
        raise SnnexportError(f"{p}: {size} bytes is larger than a NIR file may be here ({MAX_FILE})")
    import h5py
    try:
        f = h5py.File(p, "r")
    except (OSError, ValueError) as e:
        raise SnnexportError(f"{p}: not a readable NIR (HDF5) file ({_first_line(e)})") from None
    try:
        with f:
            graph = _File(f, p).graph()
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:  # h5py's errors on a damaged file
        raise SnnexportError(f"{p}: damaged NIR file ({_first_line(e)})") from None
    try:
        net = _Builder(p, graph).network()
    except (ValueError, IndexError, TypeError, ArithmeticError) as e:  # numbers no check above foresaw
        raise SnnexportError(f"{p}: cannot read the graph ({_first_line(e)})") from None
    from ..network import check_network
    check_network(net, str(p))
    return net


def _first_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


# --- the file: bounded, hard-linked datasets only ---------------------------------------------------------

class _File:
    def __init__(self, f: Any, path: Path) -> None:
        self.f, self.path, self.total = f, path, 0

    def fail(self, where: str, what: str) -> SnnexportError:
        return SnnexportError(f"{self.path}: {where}: {what}")

    def item(self, group: Any, name: str, where: str) -> Any:
        import h5py
        link = group.get(name, getlink=True)
        if link is None:
            raise self.fail(where, f"has no {name!r}")
        if not isinstance(link, h5py.HardLink):
            raise self.fail(where, f"{name!r} is a link to elsewhere; only data inside the file is read")
        obj = group[name]
        if isinstance(obj, h5py.Dataset) and (obj.is_virtual or obj.external):
            raise self.fail(where, f"{name!r} keeps its data outside the file")
        return obj

    def group(self, group: Any, name: str, where: str) -> Any:
        import h5py
        obj = self.item(group, name, where)
        if not isinstance(obj, h5py.Group):
            raise self.fail(where, f"{name!r} is not a group")
        return obj

    def text(self, group: Any, name: str, where: str) -> str:
        import h5py
        ds = self.item(group, name, where)
        if not isinstance(ds, h5py.Dataset) or h5py.check_string_dtype(ds.dtype) is None or ds.shape != ():
            raise self.fail(where, f"{name!r} is not a string")
        v = ds[()]
        return (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))[:4096]

    def array(self, group: Any, name: str, where: str) -> np.ndarray:
        """A numeric dataset (or a string, for Conv2d's padding "same"/"valid"), checked before reading."""
        import h5py
        ds = self.item(group, name, where)
        if not isinstance(ds, h5py.Dataset):
            raise self.fail(where, f"{name!r} is not an array")
        if h5py.check_string_dtype(ds.dtype) is not None:
            return np.array(self.text(group, name, where))
        if ds.dtype.kind not in "fiub" or ds.dtype.itemsize > 8:
            raise self.fail(where, f"{name!r} has data type {ds.dtype}; numbers are expected")
        n = math.prod(ds.shape)
        self.total += n
        if n > MAX_ELEMENTS or self.total > MAX_TOTAL or len(ds.shape) > 8:
            raise self.fail(where, f"{name!r} of shape {ds.shape} is too large")
        a = np.asarray(ds[()])
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise self.fail(where, f"{name!r} holds NaN or Inf")
        return a

    def graph(self) -> "_Graph":
        root = self.group(self.f, "node", "the file")
        if self.text(root, "type", "the graph") != "NIRGraph":
            raise self.fail("the graph", "its type is not NIRGraph")
        nodes_group = self.group(root, "nodes", "the graph")
        names = list(nodes_group.keys())
        if not 1 <= len(names) <= MAX_NODES:
            raise self.fail("the graph", f"has {len(names)} nodes (1 … {MAX_NODES} are read)")
        nodes = {}
        for name in names:
            where = f"node {name!r}"
            g = self.group(nodes_group, name, "the graph")
            kind = self.text(g, "type", where)
            if kind in REFUSED:
                raise UnsupportedLayerError(f"{self.path}: {where} is a NIR {kind} node ({REFUSED[kind]}); "
                                            "snnexport reads graphs of IF neurons only")
            if kind not in KNOWN:
                raise UnsupportedLayerError(f"{self.path}: {where} has type {kind[:80]!r}, which this reader does "
                                            f"not know (it reads {', '.join(KNOWN)})")
            nodes[name] = (kind, {k: self.array(g, k, where) for k in FIELDS[kind](g)},
                           self.metadata(g, where) if kind == "IF" else {})
        ds = self.item(root, "edges", "the graph")
        import h5py
        if not isinstance(ds, h5py.Dataset) or h5py.check_string_dtype(ds.dtype) is None or \
                len(ds.shape) != 2 or ds.shape[1] != 2 or ds.shape[0] > MAX_EDGES:
            raise self.fail("the graph", f"its edges are not a list of at most {MAX_EDGES} (name, name) pairs")
        edges = [tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in pair)
                 for pair in ds[()]] if ds.shape[0] else []
        return _Graph(nodes, edges)

    def metadata(self, g: Any, where: str) -> dict[str, Any]:
        """snnexport's own per-node facts (λ), where present; everything else in metadata is ignored."""
        import h5py
        if "metadata" not in g or not isinstance(g.get("metadata", getlink=True), h5py.HardLink):
            return {}
        meta = g["metadata"]
        if not isinstance(meta, h5py.Group) or "snnexport_scale" not in meta:
            return {}
        a = self.array(meta, "snnexport_scale", where)
        return {"scale": float(a)} if a.shape == () and a.dtype.kind == "f" and 0 < float(a) < 1e30 else {}


def _fields(*names: str):
    return lambda g: [n for n in names if n in g or n != "v_reset"]  # NIR's IF defaults v_reset to 0


FIELDS = {
    "Input": _fields("shape"), "Output": _fields("shape"), "IF": _fields("r", "v_threshold", "v_reset"),
    "Affine": _fields("weight", "bias"), "Linear": _fields("weight"), "Scale": _fields("scale"),
    "Conv2d": _fields("weight", "bias", "stride", "padding", "dilation", "groups"),
    "SumPool2d": _fields("kernel_size", "stride", "padding"), "AvgPool2d": _fields("kernel_size", "stride", "padding"),
    "Flatten": _fields("start_dim", "end_dim"),
}


class _Graph:
    def __init__(self, nodes: dict[str, tuple[str, dict, dict]], edges: list[tuple[str, str]]) -> None:
        self.nodes, self.edges = nodes, edges


# --- the network --------------------------------------------------------------------------------------

class _Tensor:
    """A node's output as sums of op chains: ``terms`` (source, ops) plus the constant ``const`` (ours,
    or None); ``cshape`` NIR's shape, ``shape`` ours, ``src`` NIR's order of a flat tensor (layout.key)."""

    def __init__(self, terms: list[tuple[str, list[Op]]], const: np.ndarray | None, cshape: tuple[int, ...],
                 src: tuple[int, ...] | None = None) -> None:
        self.terms, self.const, self.cshape, self.src = terms, const, tuple(int(v) for v in cshape), src
        self.shape = ours_shape(self.cshape) if len(self.cshape) in (1, 3) else None

    def positions(self) -> np.ndarray:
        return order(self.src) if self.src is not None else np.arange(math.prod(self.cshape))


class _Builder:
    def __init__(self, path: Path, graph: _Graph) -> None:
        self.path, self.g = path, graph
        self.notes: list[str] = []

    def fail(self, name: str, what: str) -> SnnexportError:
        return SnnexportError(f"{self.path}: node {name!r}: {what}")

    def network(self) -> Network:
        order_ = self._topological()
        inputs = [n for n in order_ if self.g.nodes[n][0] == "Input"]
        outputs = [n for n in order_ if self.g.nodes[n][0] == "Output"]
        if len(inputs) != 1 or len(outputs) != 1:
            raise SnnexportError(f"{self.path}: the graph has {len(inputs)} Input and {len(outputs)} Output nodes; "
                                 "one of each is read")
        preds = {n: [a for a, b in self.g.edges if b == n] for n in self.g.nodes}
        values: dict[str, _Tensor] = {}
        pops: list[Population] = []
        projections: list[Projection] = []
        thresholds: dict[str, float] = {}
        depth: dict[str, int] = {inputs[0]: 0}
        input_spec = None
        for name in order_:
            kind, a, meta = self.g.nodes[name]
            if kind == "Input":
                cshape = self._shape(name, a["shape"])
                input_spec = InputSpec(name, ours_shape(cshape))
                values[name] = _Tensor([(name, [])], None, cshape)
                continue
            if not preds[name]:
                raise self.fail(name, "has no input edge")
            x = self._sum(name, [values[p] for p in preds[name]])
            if kind == "Output":
                if len(preds[name]) != 1 or self.g.nodes[preds[name][0]][0] != "IF":
                    raise self.fail(name, "the Output must have one edge, from an IF node")
                if x.src is not None:
                    raise self.fail(name, "the output neurons are a flattened spatial tensor; their order differs")
                continue
            if kind == "IF":
                pop, factor, theta = self._population(name, a, meta, x, depth)
                thresholds[name] = theta
                pops.append(pop)
                for source, ops_ in x.terms:
                    projections.append(Projection(source, name, list(ops_)))
                values[name] = _Tensor([(name, [])], None, x.cshape, x.src)
                if factor != 1:
                    for proj in projections[-len(x.terms):]:
                        proj.ops.append(Factor(factor))
                    pop.bias = (pop.bias * np.float32(factor)).astype(np.float32)
                continue
            values[name] = self._linear(name, kind, a, x)
        theta = self._threshold(pops, projections, thresholds)
        out = next(p for p in preds[outputs[0]])
        prov = Provenance(self.path.name, "", "", __version__, "nir", "NIR (HDF5)")  # loading.py adds the sha256
        net = Network(input_spec, pops, projections, out, Neuron(theta, "zero", threshold_rule="gt"), Settings(),
                      Normalization("none"), prov)
        self.notes.append("NIR graphs run with zero delay between layers (snnexport simulate --delay zero); "
                          "exported scripts delay one step per population")
        for note in self.notes:
            print(f"snnexport: {self.path.name}: {note}", file=sys.stderr)
        return net

    def _topological(self) -> list[str]:
        nodes = self.g.nodes
        for a, b in self.g.edges:
            for n in (a, b):
                if n not in nodes:
                    raise SnnexportError(f"{self.path}: an edge names {n[:80]!r}, which is not a node")
        if len(set(self.g.edges)) != len(self.g.edges):
            raise SnnexportError(f"{self.path}: the graph repeats an edge")
        indegree = {n: 0 for n in nodes}
        for _, b in self.g.edges:
            indegree[b] += 1
        ready = sorted(n for n, d in indegree.items() if d == 0)
        out: list[str] = []
        while ready:
            n = ready.pop(0)
            out.append(n)
            for a, b in self.g.edges:
                if a == n:
                    indegree[b] -= 1
                    if indegree[b] == 0:
                        ready.append(b)
        if len(out) != len(nodes):
            stuck = sorted(n for n in nodes if n not in out)[0]
            raise SnnexportError(f"{self.path}: the graph has a cycle through node {stuck!r}; recurrent graphs are "
                                 "not read")
        return out

    def _shape(self, name: str, a: np.ndarray) -> tuple[int, ...]:
        s = tuple(int(v) for v in np.asarray(a).reshape(-1))
        if len(s) not in (1, 3) or any(v < 1 for v in s) or math.prod(s) > MAX_ELEMENTS:
            raise self.fail(name, f"shape {s}: (features,) or (channels, height, width) is read")
        return s

    def _sum(self, name: str, xs: list[_Tensor]) -> _Tensor:
        first = xs[0]
        for x in xs[1:]:
            if x.cshape != first.cshape or x.src != first.src:
                raise self.fail(name, f"its inputs have different shapes {first.cshape} and {x.cshape}")
        terms = [t for x in xs for t in x.terms]
        if len(terms) > MAX_PATHS:
            raise self.fail(name, f"more than {MAX_PATHS} paths lead into it")
        consts = [x.const for x in xs if x.const is not None]
        const = np.sum(consts, axis=0, dtype=np.float32) if consts else None
        return _Tensor(terms, const, first.cshape, first.src)

    def _population(self, name: str, a: dict, meta: dict, x: _Tensor, depth: dict):
        if x.shape is None:
            raise self.fail(name, f"an IF node of shape {x.cshape}: (features,) or (channels, height, width) is read")
        params = {}
        for k in ("r", "v_threshold", "v_reset"):
            v = np.asarray(a.get(k, np.zeros(1)), np.float64)
            if v.size not in (1, math.prod(x.cshape)):
                raise self.fail(name, f"its {k} has shape {v.shape}, its input {x.cshape}")
            if np.any(v != v.reshape(-1)[0]):
                raise self.fail(name, f"its {k} differs between neurons; one value per node is read")
            params[k] = float(v.reshape(-1)[0])
        if params["v_reset"] != 0:
            raise self.fail(name, f"v_reset = {params['v_reset']:g}; snnexport resets to 0 (reset \"zero\") only")
        if not params["v_threshold"] > 0 or not params["r"] > 0:
            raise self.fail(name, "v_threshold and r must be positive")
        bias = x.const if x.const is not None else np.zeros(x.shape, np.float32)
        d = 1 + max(depth[s] for s, _ in x.terms)
        depth[name] = d
        pop = Population(name, x.shape, np.ascontiguousarray(bias, np.float32), "relu", meta.get("scale", 1.0), d)
        return pop, params["r"], params["v_threshold"]

    def _threshold(self, pops: list[Population], projections: list[Projection], thresholds: dict) -> float:
        """One threshold for the network: the nodes' own where they agree, else 1 with each node's folded in."""
        if len(set(thresholds.values())) <= 1:
            return next(iter(thresholds.values()), 1.0)
        for pop in pops:
            f = 1 / thresholds[pop.name]
            pop.bias = (pop.bias * np.float32(f)).astype(np.float32)
            for proj in projections:
                if proj.target == pop.name:
                    proj.ops.append(Factor(f))
        self.notes.append("IF nodes' thresholds differ: each is 1 with its inputs divided by its v_threshold")
        return 1.0

    def _linear(self, name: str, kind: str, a: dict, x: _Tensor) -> _Tensor:
        if kind == "Flatten":
            if len(x.cshape) == 1:
                return x
            start = int(np.asarray(a["start_dim"]).reshape(-1)[0])
            end = int(np.asarray(a["end_dim"]).reshape(-1)[0])
            if start not in (0, 1) or end not in (-1, len(x.cshape) - 1):
                raise self.fail(name, f"Flatten from dim {start} to {end}; only a flattening of the whole "
                                      "(channels, height, width) tensor is read")
            if start == 1:
                self.notes.append(f"node {name!r}: Flatten start_dim 1 read as PyTorch's (batch included): "
                                  "the whole tensor")
            return self._apply(x, Reshape((math.prod(x.cshape),)), None, (math.prod(x.cshape),), key(x.cshape))
        if kind in ("Affine", "Linear"):
            w = np.asarray(a["weight"], np.float32)
            if w.ndim != 2 or len(x.cshape) != 1 or w.shape[1] != x.cshape[0]:
                raise self.fail(name, f"a weight of shape {w.shape} for an input of shape {x.cshape}; a flat input "
                                      "and an (out, in) weight are read")
            bias = np.asarray(a["bias"], np.float32).reshape(-1) if kind == "Affine" else None
            if bias is not None and bias.shape != (w.shape[0],):
                raise self.fail(name, f"a bias of shape {bias.shape} for {w.shape[0]} outputs")
            dense = Dense(np.ascontiguousarray(w[:, x.positions()].T))
            return self._apply(x, dense, bias, (w.shape[0],), None)
        if kind == "Scale":
            s = np.asarray(a["scale"], np.float32)
            if s.size == 1:
                return self._apply(x, Factor(float(s.reshape(-1)[0])), None, x.cshape, x.src)
            if s.shape != x.cshape:
                raise self.fail(name, f"a scale of shape {s.shape} for an input of shape {x.cshape}")
            if len(x.cshape) == 1:
                flat = np.empty(s.size, np.float32)
                flat[:] = s[x.positions()]
                return self._apply(x, ChannelAffine(flat), None, x.cshape, x.src)
            per_channel = s.reshape(s.shape[0], -1)
            if np.all(per_channel == per_channel[:, :1]):
                return self._apply(x, ChannelAffine(np.ascontiguousarray(per_channel[:, 0])), None, x.cshape, None)
            # element-wise (e.g. a padded average pool's divisors): scale the flattened tensor, shape it back
            n = math.prod(x.cshape)
            flat = self._apply(x, Reshape((n,)), None, (n,), None)
            flat = self._apply(flat, ChannelAffine(np.ascontiguousarray(to_ours(s).reshape(-1))), None, (n,), None)
            return self._apply(flat, Reshape(x.shape), None, x.cshape, None)
        if len(x.cshape) != 3:
            raise self.fail(name, f"a {kind} node on an input of shape {x.cshape}; (channels, height, width) "
                                  "is read")
        c = x.cshape[0]
        if kind == "Conv2d":
            return self._conv(name, a, x)
        k = self._pair(name, "kernel_size", a["kernel_size"], 1)
        s = self._pair(name, "stride", a["stride"], 1)
        p = self._pair(name, "padding", a["padding"], 0)
        if kind == "AvgPool2d" and p == (0, 0):
            op: Op = AvgPool(k, s)
        else:  # a sum (or, padded, PyTorch's average over the whole window) as a depthwise convolution
            weight = np.float32(1 if kind == "SumPool2d" else 1 / (k[0] * k[1]))
            op = Conv2D(np.full(k + (1, c), weight, np.float32), None, s, ((p[0], p[0]), (p[1], p[1])), (1, 1), c)
        try:
            out = op.output_shape(x.shape)
        except ValueError as e:
            raise self.fail(name, str(e)) from None
        return self._apply(x, op, None, (c, out[0], out[1]), None)

    def _conv(self, name: str, a: dict, x: _Tensor) -> _Tensor:
        w = np.asarray(a["weight"], np.float32)
        if w.ndim != 4:
            raise self.fail(name, f"a Conv2d weight of shape {w.shape}; (C_out, C_in, kH, kW) is read")
        groups = int(np.asarray(a["groups"]).reshape(-1)[0])
        cout, cig = w.shape[:2]
        if groups < 1 or cig * groups != x.cshape[0] or cout % groups:
            raise self.fail(name, f"a weight of shape {w.shape} in {groups} group(s) for {x.cshape[0]} input channels")
        s = self._pair(name, "stride", a["stride"], 1)
        d = self._pair(name, "dilation", a["dilation"], 1)
        pad = a["padding"]
        if pad.dtype.kind in "US":
            text = str(pad)
            if text == "valid":
                pads = ((0, 0), (0, 0))
            elif text == "same" and s == (1, 1):
                pads = tuple(((kk - 1) * dd // 2, (kk - 1) * dd - (kk - 1) * dd // 2)
                             for kk, dd in zip(w.shape[2:], d))
            else:
                raise self.fail(name, f"padding {text[:20]!r} with stride {s}")
        else:
            p = self._pair(name, "padding", pad, 0)
            pads = ((p[0], p[0]), (p[1], p[1]))
        bias = np.asarray(a["bias"], np.float32).reshape(-1)
        if bias.shape != (cout,):
            raise self.fail(name, f"a bias of shape {bias.shape} for {cout} output channels")
        op = Conv2D(np.ascontiguousarray(kernel_to_ours(w)), None, s, pads, d, groups)
        try:
            out = op.output_shape(x.shape)
        except ValueError as e:
            raise self.fail(name, str(e)) from None
        return self._apply(x, op, bias, (cout, out[0], out[1]), None)

    def _pair(self, name: str, what: str, v: np.ndarray, low: int) -> tuple[int, int]:
        flat = np.asarray(v).reshape(-1)
        if flat.size not in (1, 2) or flat.dtype.kind not in "iuf" or np.any(flat != np.round(flat)) or \
                np.any(flat < low) or np.any(flat > 2 ** 16):
            raise self.fail(name, f"its {what} {flat.tolist()[:4]} is not one or two integers ≥ {low}")
        return (int(flat[0]), int(flat[-1]))

    def _apply(self, x: _Tensor, op: Op, bias: np.ndarray | None, cshape: tuple[int, ...],
               src: tuple[int, ...] | None) -> _Tensor:
        """The tensor ``op`` (then ``bias``, per channel or per feature) makes of ``x``."""
        terms = [(s, ops_ + [op]) for s, ops_ in x.terms]
        const = None
        if x.const is not None:
            const = op.forward(x.const[None].astype(np.float32))[0].astype(np.float32)
        if bias is not None and np.any(bias != 0):
            b = to_ours(bias) if bias.ndim > 1 else bias
            const = (b if const is None else const + b).astype(np.float32)
            const = np.broadcast_to(const, ours_shape(cshape)).astype(np.float32)
        return _Tensor(terms, const, cshape, src)
