"""ANN graph → spiking network description, with the paper's weight normalization (§2.2.2).

Every Activation of the ANN graph becomes a spiking population and every MaxPool a gate. The
linear ops between them (conv, dense, pooling, padding, flatten, concatenation, addition,
unfolded batch-norm) become projections: one per path from a source to a target, each a chain of
ops without constant terms. The constant terms of all those ops together are the target's bias,
found exactly by evaluating the linear part with all sources at zero.

Normalization: population l gets λ_l, the p-th percentile of its nonzero ANN activations over
the calibration data; a projection from s to t is multiplied by λ_s / λ_t and t's bias divided by
λ_t, so that firing rates (spikes per step, at most 1) approximate activation / λ. Each projection
carries its own factor, so branches that are concatenated or added need no shared λ.

λ comes from :mod:`snnexport.normalization` (percentile or weight bound; binary activations), except for
snnexport's QuantizedReLU layers, whose trained threshold is their λ (and whose network starts V at θ/2).
"""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np

from .errors import SnnexportError
from .graph import Graph, Node
from .network import (Gate, InputSpec, Network, Neuron, Normalization, Population, Projection,
                      Provenance, Settings)
from .normalization import (BINARY, LINEAR, OUTPUT_ONLY, Forward, bound_scales, constant_term, percentile_inputs,
                            percentile_scales)
from .ops import Activation, Add, Affine, Concat, Conv2D, Dense, Embed, MaxPool, Op, Pad, Reshape, Scale
from .simplify import simplify

DEFAULT_PERCENTILE = 99.9
# V₀ = v_init·θ of a network with QuantizedReLU layers: the method's θ/2, with which an IF neuron driven by a
# constant z spikes floor(L·z/λ + 1/2) times in L steps, the ANN's quantized activation (the user may override it).
QUANTIZED_V_INIT = 0.5
# Largest weight bound used as λ: activation / λ must stay a normal float32 (≥ 1.2e-38) in every
# simulator, with room for activations far below their bound.
MAX_BOUND = 1e30


def convert(graph: Graph, calibration: np.ndarray | None = None, percentile: float = DEFAULT_PERCENTILE,
            reset: str = "subtract", encoding: str = "analog", provenance: Provenance | None = None,
            data_sha256: str = "", normalize: bool = True, consume: bool = False) -> Network:
    """The normalized spiking network for ``graph``; ``calibration`` is (N, *input_shape) float32 or None.

    ``consume=True`` lets the network take over the graph's weight arrays and scale them in place
    (the graph is unusable afterwards): a model's weights are then held once, not twice.
    ``normalize=False`` keeps the ANN's weights (λ = 1 everywhere), for the paper's Figure 2 baseline.
    """
    if reset not in ("subtract", "zero"):
        raise SnnexportError(f"reset must be 'subtract' or 'zero', not {reset!r}")
    if not 0 < percentile <= 100:
        raise SnnexportError(f"percentile must be in (0, 100], not {percentile}")
    graph = _with_output_activation(simplify(graph))
    structure = _Structure(graph)
    if not normalize:
        lambdas = {n.name: 1.0 for n in structure.spiking}
        norm = Normalization("none")
    elif calibration is not None:
        lambdas = percentile_scales(structure.spiking, graph.shapes, graph.output, structure.calibration_pass(),
                                    calibration, percentile)
        norm = Normalization("percentile", percentile, len(calibration), data_sha256)
    else:
        lambdas, norm = _uncalibrated(graph, structure)
    trained = trained_thresholds(structure.spiking) if normalize else {}
    lambdas.update(trained)
    net = structure.build(lambdas, reset, encoding, norm, provenance or Provenance(), consume)
    if trained:  # the quantized ANN's levels are rounded rates: V must start at θ/2 (Bu et al. 2022)
        net.neuron.v_init = QUANTIZED_V_INIT
    return net


def trained_thresholds(spiking: list[Node]) -> dict[str, float]:
    """λ of every QuantizedReLU population: its trained threshold, the largest activation it can have
    (no percentile: the ANN's output never exceeds it, and its levels are fractions of it)."""
    return {n.name: float(n.op.max_value) for n in spiking
            if isinstance(n.op, Activation) and n.op.levels is not None and n.op.max_value is not None}


def _uncalibrated(graph: Graph, structure: "_Structure") -> tuple[dict[str, float], Normalization]:
    """λ without data: the weight bound, unless it is so large that float32 cannot carry activation / λ
    (deep ReLU networks: the bound multiplies at every layer); then the ANN's own weights (λ = 1)."""
    lambdas = bound_scales(graph.input_name, structure.spiking, structure.paths, structure.bias)
    worst = next((n for n, v in lambdas.items() if v > MAX_BOUND), max(lambdas, key=lambdas.__getitem__))
    advice = "Pass --calibration for the paper's percentile normalization."
    if lambdas[worst] <= MAX_BOUND:
        print("snnexport: warning: no calibration data: normalizing by a bound computed from the weights "
              f"(inputs assumed in [-1, 1]); firing rates will be low and accuracy may need many steps. {advice}",
              file=sys.stderr)
        return lambdas, Normalization("model-bound")
    print(f"snnexport: warning: no calibration data, and the weight bound on the activations of layer "
          f"{graph.node(worst).keras_layer or worst!r} is {lambdas[worst]:.1e}, beyond what float32 rates can "
          f"carry: the weights are kept unnormalized (λ = 1), so populations may saturate. {advice}", file=sys.stderr)
    return {n.name: 1.0 for n in structure.spiking}, Normalization("none")


def _with_output_activation(graph: Graph) -> Graph:
    """A model that ends in logits (no activation) gets an explicit linear output population."""
    if isinstance(graph.node(graph.output).op, Activation):
        return graph
    if isinstance(graph.node(graph.output).op, MaxPool):
        raise SnnexportError("the model ends in max-pooling; the output must be a layer with neurons")
    name = graph.output + ":output"
    nodes = graph.nodes + [Node(name, Activation("linear"), (graph.output,), graph.node(graph.output).keras_layer)]
    return Graph(graph.input_name, graph.input_shape, nodes, name)


class _Structure:
    """Populations, gates and the un-normalized projections and biases of a simplified graph."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.by_name = {n.name: n for n in graph.nodes}
        self.spiking = [n for n in graph.nodes if not n.op.linear]
        names = {n.name for n in self.spiking}
        self.paths: dict[str, list[tuple[str, list[Op]]]] = {}
        self.bias: dict[str, np.ndarray] = {}
        self._check(names)
        for n in self.spiking:
            if isinstance(n.op, Activation):
                self.paths[n.name] = self._expand(n.inputs[0], names)
                self.bias[n.name] = self._constant(n.inputs[0], names)
        self.depth = self._depths()

    def _check(self, spiking: set[str]) -> None:
        """Refuse what has no spiking counterpart: one line naming every such layer."""
        signed: list[Node] = []
        for n in self.spiking:
            label = f"layer {n.keras_layer or n.name!r}"
            if isinstance(n.op, MaxPool) and n.inputs[0] == self.graph.input_name:
                raise SnnexportError(f"{label}: max-pooling of the input image is not supported "
                                     "(the spiking max-pool gates spikes, and the analog input has none)")
            if isinstance(n.op, MaxPool) and n.inputs[0] not in spiking:
                signed.append(n)
            elif isinstance(n.op, Activation) and n.op.function in OUTPUT_ONLY and n.name != self.graph.output:
                raise SnnexportError(f"{label}: a {n.op.function} activation is supported only as the output layer")
        if signed:
            pools = ", ".join(_layer_names(signed))
            made = ", ".join(_layer_names([self.by_name[n.inputs[0]] for n in signed]))
            raise SnnexportError(
                f"max-pooling layer{'s' if len(signed) > 1 else ''} {pools} pool{'' if len(signed) > 1 else 's'} "
                f"a signed tensor (the output of {made}, not rectified), which has no exact spiking construction "
                "(a gate passes the spikes of its window's most active neuron, and spikes carry no sign; "
                "`snnexport --layers` says where max-pooling converts)")

    def _expand(self, name: str, spiking: set[str]) -> list[tuple[str, list[Op]]]:
        """(source, chain of linear ops) for every path from a spiking node or the input to ``name``."""
        if name == self.graph.input_name or name in spiking:
            return [(name, [])]
        node = self.by_name[name]
        if isinstance(node.op, Concat):
            shapes = [self.graph.shapes[i] for i in node.inputs]
            axis, total = node.op.axis, self.graph.shapes[name][node.op.axis]
            out, offset = [], 0
            for i, s in zip(node.inputs, shapes):
                out += [(src, chain + [Embed(axis, offset, total)]) for src, chain in self._expand(i, spiking)]
                offset += s[axis]
            return out
        if isinstance(node.op, Add):
            return [p for i in node.inputs for p in self._expand(i, spiking)]
        return [(src, chain + [node.op.linear_part()]) for src, chain in self._expand(node.inputs[0], spiking)]

    def _constant(self, name: str, spiking: set[str]) -> np.ndarray:
        """The linear expression's value when every source is zero: the sum of all constant terms.

        Zero tensors are tracked as None, so a convolution of zeros costs nothing (its value is
        its bias): big models convert without running their convolutions.
        """
        memo: dict[str, np.ndarray | None] = {}

        def value(n: str) -> np.ndarray | None:
            if n not in memo:
                if n == self.graph.input_name or n in spiking:
                    memo[n] = None
                else:
                    node = self.by_name[n]
                    ins = [value(i) for i in node.inputs]
                    if all(v is None for v in ins):
                        memo[n] = constant_term(node.op, self.graph.shapes[n])
                    else:
                        ins = [np.zeros((1,) + self.graph.shapes[i], np.float32) if v is None else v
                               for i, v in zip(node.inputs, ins)]
                        memo[n] = node.op.forward(*ins).astype(np.float32)
            return memo[n]

        v = value(name)
        return np.zeros(self.graph.shapes[name], np.float32) if v is None else v[0]

    def _depths(self) -> dict[str, int]:
        depth = {self.graph.input_name: 0}
        for n in self.spiking:
            if isinstance(n.op, MaxPool):
                depth[n.name] = depth[n.inputs[0]]
            else:
                depth[n.name] = 1 + max(depth[src] for src, _ in self.paths[n.name])
        return depth

    def calibration_pass(self) -> Forward:
        """The ANN's forward pass for calibration, compiled: the reference simulator's JAX ANN of this
        network with λ = 1 everywhere (each population's activation is then the ANN's own; the output's and
        binary populations' pre-activations are returned instead, as percentile_scales asks). Numpy's
        forward pass cost seconds per image on an ImageNet model; the weights are shared, not copied."""
        import jax

        from .simulator.ann import ann_program  # JAX: imported where a calibration runs
        unit = self.build({n.name: 1.0 for n in self.spiking}, "subtract", "analog", Normalization("none"),
                          Provenance(), consume=False)
        fn = ann_program(unit, keep=[n.name for n in self.spiking if isinstance(n.op, Activation)],
                         pre=percentile_inputs(self.spiking))
        return lambda x: {k: np.asarray(v) for k, v in jax.device_get(fn(x)).items()}

    def build(self, lambdas: dict[str, float], reset: str, encoding: str, norm: Normalization,
              provenance: Provenance, consume: bool) -> Network:
        g = self.graph
        lam = dict(lambdas)  # λ of each population's input side (its weights and bias are divided by it)
        out = {g.input_name: 1.0}  # λ of each node's output side: its rates times λ are its activations
        nodes: list[Population | Gate] = []
        projections: list[Projection] = []
        # weight arrays that only one projection uses may be scaled in place when the graph is consumed
        uses: dict[int, int] = {}
        for chains in self.paths.values():
            for _, chain in chains:
                for op in chain:
                    for v in op.params().values():
                        if isinstance(v, np.ndarray):
                            uses[id(v)] = uses.get(id(v), 0) + 1
        own = {k for k, v in uses.items() if v == 1} if consume else set()
        for n in self.spiking:
            shape = g.shapes[n.name]
            if isinstance(n.op, MaxPool):
                out[n.name] = out[n.inputs[0]]
                nodes.append(Gate(n.name, n.inputs[0], shape, n.op.pool, n.op.strides, n.op.padding,
                                  float(out[n.name]), self.depth[n.name]))
                continue
            lt = float(lam[n.name])
            out[n.name] = 1.0 if n.op.function in BINARY else lt
            nodes.append(Population(n.name, shape, (self.bias[n.name] / np.float32(lt)).astype(np.float32),
                                    n.op.function, out[n.name], self.depth[n.name], n.op.max_value,
                                    n.op.levels))
            for src, chain in self.paths[n.name]:
                projections.append(Projection(src, n.name, _fold_chain(chain, float(out[src]) / lt, own)))
        return Network(InputSpec(g.input_name, tuple(g.input_shape), encoding), nodes, projections, g.output,
                       Neuron(1.0, reset), Settings(), norm, provenance)


def _layer_names(nodes: list[Node], shown: int = 4) -> list[str]:
    """Distinct layer names, quoted, at most ``shown`` of them and a count of the rest."""
    names = list(dict.fromkeys(repr(n.keras_layer or n.name) for n in nodes))
    return names[:shown] + ([f"{len(names) - shown} more"] if len(names) > shown else [])


def _pointwise(op: Conv2D) -> bool:
    """A 1×1, stride-1, unpadded, ungrouped convolution: the same channel matrix at every position."""
    return (op.kernel.shape[:2] == (1, 1) and tuple(op.strides) == (1, 1) and op.groups == 1
            and tuple(map(tuple, op.padding)) == ((0, 0), (0, 0)))


def _compose_convs(first: Conv2D, second: Conv2D) -> Conv2D:
    """Two convolutions, one of them pointwise and neither grouped, as one convolution (exact: a pointwise
    one commutes with positions). Expanded as two, a projection would hold every path through the middle
    channels (MobileNetV2's linear bottleneck: 49 x 960 x 320 x 1280 of them, for 60 M synapses)."""
    if _pointwise(second):
        kernel = np.tensordot(first.kernel.astype(np.float64), second.kernel[0, 0].astype(np.float64),
                              axes=([3], [0]))
        return replace(first, kernel=kernel.astype(np.float32), bias=None)
    kernel = np.einsum("im,hwmo->hwio", first.kernel[0, 0].astype(np.float64), second.kernel.astype(np.float64))
    return replace(second, kernel=kernel.astype(np.float32), bias=None)


def _fold_chain(chain: list[Op], factor: float, own: set[int]) -> list[Op]:
    """Simplify a projection's op chain exactly and multiply it by ``factor``.

    Arrays whose id is in ``own`` belong to this projection alone and are scaled in place.
    """
    out: list[Op] = []
    for op in chain:
        prev = out[-1] if out else None
        if isinstance(op, Reshape) and isinstance(prev, Reshape):
            out[-1] = op
        elif isinstance(op, Conv2D) and isinstance(prev, Pad):
            (t, b), (l, r) = prev.padding
            (t2, b2), (l2, r2) = op.padding
            out[-1] = replace(op, padding=((t + t2, b + b2), (l + l2, r + r2)))
        elif (isinstance(op, Conv2D) and isinstance(prev, Conv2D) and op.groups == prev.groups == 1
              and (_pointwise(op) or _pointwise(prev))):
            out[-1] = _compose_convs(prev, op)
        elif isinstance(op, Conv2D) and isinstance(prev, Affine) and op.groups == 1:
            out[-1] = replace(op, kernel=(op.kernel * prev.scale[None, None, :, None]).astype(np.float32))
        elif isinstance(op, Dense) and isinstance(prev, Affine):
            out[-1] = replace(op, weight=(op.weight * prev.scale[:, None]).astype(np.float32))
        else:
            out.append(op)
    if factor == 1.0:
        return out
    for i, op in enumerate(out):  # fold the factor into the first op that has weights
        field = LINEAR.of(op).weight
        if field is None:
            continue
        w = getattr(op, field)
        if id(w) in own and w.flags.writeable and w.dtype == np.float32:
            w *= np.float32(factor)  # in place: nobody else reads this array, and memory matters
        else:
            w = (w * np.float32(factor)).astype(np.float32)
        out[i] = replace(op, **{field: w})
        return out
    return out + [Scale(float(factor))]
