"""The ``nir`` writer: the network as a NIR graph (Neuromorphic Intermediate Representation, ``nir`` 1.0.8).

NIR is how spiking networks reach snnTorch, Norse, sinabs/Speck, Lava/Loihi, SpiNNaker2 and others.
A graph has an Input node, an IF node per population (r = 1, v_threshold = θ, v_reset = 0) and the
projections' ops as NIR's linear nodes between them, in NIR's channels-first layout
(:mod:`snnexport.layout`); several edges into one IF node sum. Importers run such a graph with zero
delay between layers (``snnexport simulate --delay zero`` is the same timing). Where NIR cannot say
what the network means, the capability table names the approximation; those a network needs are
printed on stderr and stored in the graph's metadata (``approximations``). Max-pooling and the
spiking softmax are refused unless ``--nir-approximate`` names the stand-in, which is recorded too.
"""

from __future__ import annotations

import importlib.util
import io
import sys

import numpy as np

from .. import __version__
from ..errors import FeatureRefused, SnnexportError
from ..layout import channels_first_shape, kernel_to_channels_first, key, order, to_channels_first
from ..network import Gate, Network, Population, Projection, check_network
from ..ops import Affine, AvgPool, Conv2D, Dense, Embed, Op, Pad, Reshape, Scale
from .base import APPROXIMATED, NATIVE, REFUSED, Rendered, WriteOptions, Writer, features_used

# --nir-approximate VALUE → the refused feature it lets through, and how
APPROXIMATIONS = {
    "maxpool=avgpool": ("maxpool_gate", "max-pooling written as average pooling (NIR has no max-pooling node)"),
    "softmax=count": ("readout_softmax", "the spiking softmax output written as IF neurons (read by spike count)"),
}
# What NIR's IF cannot say about any network (stored and printed with the feature approximations).
ALWAYS = ("NIR does not limit spikes to one per step; snnexport fires at most once per step",)
RULE_GE = ("threshold rule ge: NIR's IF fires where v > v_threshold, this network where V >= θ "
           "(--threshold-rule gt is NIR's)")
SEMANTICS = ("zero delay: every node of a step sees the spikes of the same step (NIRTorch's timing; "
             "snnexport simulate --delay zero); dt = 1; IF r = 1, v_threshold = snnexport's threshold, "
             "v_reset = 0; channels-first (C, H, W) tensors, NCHW flattening")


class NirWriter(Writer):
    name = "nir"
    summary = "a NIR graph (HDF5, -o FILE.nir) for neuromorphic frameworks and chips; zero delay"
    suffix = ".nir"
    binary = True
    requires = ("nir",)
    extra = "nir"
    distribution = "nir"
    capabilities = {
        "reset_subtract": (APPROXIMATED, "NIR's IF resets to v_reset (written 0); sinabs, snnTorch and Spyx "
                                         "importers subtract in practice"),
        "reset_zero": (NATIVE, "IF v_reset = 0"),
        "analog_input": (NATIVE, "the Input node carries the sample in every step"),
        "poisson_input": (APPROXIMATED, "the graph takes its input as given in each step: draw Poisson spikes "
                                        "outside it"),
        "bias": (NATIVE, "the bias of the Conv2d or Affine node into the IF node"),
        "delay_step": (APPROXIMATED, "NIR graphs run with zero delay between layers (snnexport simulate "
                                     "--delay zero), not one step per population"),
        "conv2d": (NATIVE, "Conv2d, (C_out, C_in, kH, kW)"),
        "depthwise_conv": (NATIVE, "Conv2d with a block-diagonal kernel (nir 1.0.8 reads the input channels "
                                     "from the weight)"),
        "conv_transpose": (REFUSED, "NIR 1.0.8 has no transposed-convolution node (nor nearest upsampling, "
                                    "cropping)"),
        "dense": (NATIVE, "Affine/Linear with NCHW-ordered columns (a 1x1 Conv2d on a spatial tensor)"),
        "avgpool": (NATIVE, "AvgPool2d; padded windows as SumPool2d and a Scale by each window's cell count"),
        "padding": (NATIVE, "Conv2d padding; asymmetric padding and non-square kernels as zero taps added "
                              "to the kernel"),
        "permute": (REFUSED, "NIR 1.0.8 has no axis-permutation node (Permute, and the interpolating "
                             "upsamplings, which permute axes)"),
        "concatenate": (NATIVE, "a 1x1 Conv2d (Linear when flat) placing the channels; edges sum"),
        "add": (NATIVE, "several edges into one IF node"),
        "maxpool_gate": (REFUSED, "NIR has no max-pooling node; --nir-approximate maxpool=avgpool writes "
                                  "AvgPool2d instead"),
        "readout_count": (NATIVE, "the Output node carries the output spikes: count them"),
        "readout_membrane": (REFUSED, "NIR's Output carries spikes of IF nodes, not their membrane"),
        "readout_softmax": (REFUSED, "NIR has no softmax node; --nir-approximate softmax=count writes IF "
                                     "neurons read by spike count"),
        "clamp": (REFUSED, "NIR has no warm-up clamp"),
        "negative_spikes": (REFUSED, "NIR's IF spikes upward only"),
        "v_init": (REFUSED, "NIR's IF has no initial membrane potential (importers start at v = 0)"),
        "threshold_gt": (NATIVE, "NIR's IF rule: a spike where v > v_threshold"),
    }

    def render(self, net: Network, options: WriteOptions) -> Rendered:
        if options.output is None:
            raise SnnexportError("the nir writer writes an HDF5 file, which needs a real file: give -o FILE.nir")
        if importlib.util.find_spec("nir") is None:
            raise SnnexportError("the nir writer needs the nir package: pip install 'snnexport[nir]'")
        allowed = tuple(options.extra.get("nir_approximate", ()))
        notes = self.approximations(net, allowed)
        for note in notes:
            print(f"snnexport: {self.name}: approximation: {note}", file=sys.stderr)
        graph = build_graph(net, notes, allowed)
        return Rendered(graph_bytes(graph))

    def check(self, net: Network) -> list[str]:
        return self.approximations(net, ())

    def approximations(self, net: Network, allowed: tuple[str, ...]) -> list[str]:
        """The approximations this network needs, ``allowed`` naming refused features to let through."""
        check_network(net)
        unknown = [a for a in allowed if a not in APPROXIMATIONS]
        if unknown:
            raise SnnexportError(f"--nir-approximate {unknown[0]!r} is unknown; known: {', '.join(APPROXIMATIONS)}")
        let_through = {APPROXIMATIONS[a][0]: APPROXIMATIONS[a][1] for a in allowed}
        notes = []
        for feature in features_used(net):
            status, how = self.capabilities[feature]
            if status == REFUSED and feature in let_through:
                notes.append(f"{feature.replace('_', ' ')}: {let_through[feature]} (--nir-approximate)")
            elif status == REFUSED:
                raise FeatureRefused(self.name, feature,
                                     f"the nir writer cannot express {feature.replace('_', ' ')}: {how}")
            elif status == APPROXIMATED:
                notes.append(f"{feature.replace('_', ' ')}: {how}")
        rule = [RULE_GE] if net.neuron.threshold_rule == "ge" else []
        return notes + rule + list(ALWAYS)


def graph_bytes(graph) -> bytes:
    """The HDF5 file ``nir.write`` makes of ``graph``."""
    import nir
    buf = io.BytesIO()
    nir.write(buf, graph)
    return buf.getvalue()


def node_name(name: str) -> str:
    """A node name HDF5 can hold as a group name ('/' separates groups there)."""
    return name.replace("/", "\u2215") if name not in (".", "") else f"_{name}"


def build_graph(net: Network, notes: list[str], allowed: tuple[str, ...] = ()):
    """The ``nir.NIRGraph`` of a network (checked by :meth:`NirWriter.approximations` first)."""
    import nir
    names = {n.name: node_name(n.name) for n in net.nodes} | {net.input.name: node_name(net.input.name)}
    if len(set(names.values())) != len(names):
        raise SnnexportError("two populations' names differ only by '/', which NIR node names cannot hold")
    nodes: dict[str, object] = {names[net.input.name]: nir.Input(np.array(channels_first_shape(net.input.shape)))}
    edges: list[tuple[str, str]] = []
    flat_order: dict[str, tuple[int, ...] | None] = {net.input.name: None}  # see _Chain.src
    for pop in net.populations:
        chains = [_Chain.of(net, proj, flat_order) for proj in net.incoming(pop.name)]
        srcs = {c.src for c in chains}
        if len(srcs) > 1:
            raise SnnexportError(f"population {pop.name!r}: its inputs arrive in different element orders "
                                 "(a flattened tensor and another); NIR cannot sum them")
        src = srcs.pop() if srcs else None
        flat_order[pop.name] = src
        cshape = channels_first_shape(pop.shape) if src is None else (int(np.prod(pop.shape)),)
        bias = _bias(pop, src)
        for k, chain in enumerate(chains):
            prev = names[chain.source]
            for j, node in enumerate(chain.nodes):
                name = f"{names[pop.name]}:in{k}:{j}"
                nodes[name] = node
                edges.append((prev, name))
                prev = name
            if k == 0 and bias is not None:
                prev = _attach_bias(nodes, edges, prev, names[pop.name], bias, chain)
            edges.append((prev, names[pop.name]))
        ones = np.ones(cshape, np.float32)
        nodes[names[pop.name]] = nir.IF(r=ones, v_threshold=ones * np.float32(net.neuron.threshold),
                                        v_reset=np.zeros(cshape, np.float32),
                                        metadata={"snnexport_scale": float(pop.scale),
                                                  "snnexport_activation": pop.activation})
    out = net.node(net.output)
    if flat_order[net.output] is not None:
        raise SnnexportError(f"the output population {net.output!r} is a flattened spatial tensor; NIR would "
                             "order its neurons channels-first")
    nodes["output"] = nir.Output(np.array(channels_first_shape(out.shape)))
    edges.append((names[net.output], "output"))
    metadata = {"producer": f"snnexport {__version__}", "source": net.provenance.origin(),
                "semantics": SEMANTICS, "approximations": "; ".join(notes),
                "nir_approximate": ", ".join(allowed), "steps": int(net.settings.steps)}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=True)


def _bias(pop: Population, src: tuple[int, ...] | None) -> np.ndarray | None:
    """The population's bias as NIR nodes carry it: per channel (spatial) or per neuron (flat)."""
    if not np.any(pop.bias != 0):
        return None
    b = np.asarray(pop.bias, np.float32)
    if src is not None:  # a flattened spatial tensor kept in NIR's order
        flat = np.empty(b.size, np.float32)
        flat[order(src)] = b.ravel()
        return flat
    if b.ndim == 1:
        return b
    per_channel = b.reshape(-1, b.shape[-1])
    if not np.all(per_channel == per_channel[:1]):
        raise SnnexportError(f"population {pop.name!r}: its bias varies across positions; a NIR Conv2d bias is "
                             "one value per channel")
    return per_channel[0]


def _attach_bias(nodes: dict, edges: list, prev: str, target: str, bias: np.ndarray, chain: "_Chain") -> str:
    """Put the bias on the chain's last Conv2d/Linear/Affine node, or on a node of its own; returns the
    node that now feeds the target."""
    import nir
    last = nodes.get(prev) if chain.nodes else None
    if isinstance(last, nir.Conv2d):
        last.bias = bias
        return prev
    if isinstance(last, (nir.Linear, nir.Affine)):
        nodes[prev] = nir.Affine(weight=last.weight, bias=bias)
        return prev
    name = f"{target}:bias"
    if bias.shape[0] == chain.cshape[0] and len(chain.cshape) == 3:  # per channel: a 1x1 depthwise identity
        identity = np.eye(bias.shape[0], dtype=np.float32)[:, :, None, None]
        nodes[name] = nir.Conv2d(input_shape=tuple(chain.cshape[1:]), weight=identity, stride=1, padding=0,
                                 dilation=1, groups=1, bias=bias)
    else:
        nodes[name] = nir.Affine(weight=np.eye(bias.shape[0], dtype=np.float32), bias=bias)
    edges.append((prev, name))
    return name


class _Chain:
    """One projection as NIR nodes: ``source`` (input or population), ``nodes`` in order, the final
    channels-first shape ``cshape`` and ``src``: None where a flat tensor's elements are in NIR's (and
    our) order, else the channels-first shape whose NCHW flattening holds them (:func:`layout.key`)."""

    def __init__(self, source: str, shape: tuple[int, ...], src: tuple[int, ...] | None) -> None:
        self.source, self.nodes, self.src = source, [], src
        self.shape = tuple(shape)  # ours, channels-last
        self.cshape = channels_first_shape(self.shape) if src is None else (int(np.prod(self.shape)),)

    @classmethod
    def of(cls, net: Network, proj: Projection, flat_order: dict) -> "_Chain":
        source, ops = proj.source, list(proj.ops)
        while isinstance(net.node(source) if source != net.input.name else None, Gate):
            gate = net.node(source)  # allowed only with --nir-approximate maxpool=avgpool (checked first)
            ops.insert(0, AvgPool(tuple(gate.pool), tuple(gate.strides), tuple(map(tuple, gate.padding))))
            source = gate.source
        chain = cls(source, net.shape_of(source), flat_order[source])
        pad = ((0, 0), (0, 0))
        for op in ops:
            if isinstance(op, Pad):
                pad = tuple((a + c, b + d) for (a, b), (c, d) in zip(pad, op.padding))
                continue
            if pad != ((0, 0), (0, 0)) and not isinstance(op, (Conv2D, AvgPool)):
                raise SnnexportError(f"projection {proj.source!r} → {proj.target!r}: zero padding before "
                                     f"{op.kind}; NIR pads only inside a convolution")
            chain.add(op, pad, proj)
            pad = ((0, 0), (0, 0))
        if pad != ((0, 0), (0, 0)):
            raise SnnexportError(f"projection {proj.source!r} → {proj.target!r} ends in zero padding; NIR pads "
                                 "only inside a convolution")
        return chain

    def add(self, op: Op, pad, proj: Projection) -> None:
        import nir
        padded = self.shape if pad == ((0, 0), (0, 0)) else Pad(pad).output_shape(self.shape)
        out_shape = tuple(op.output_shape(padded))
        where = f"projection {proj.source!r} → {proj.target!r}"
        if isinstance(op, Conv2D):
            padded = tuple((a + c, b + d) for (a, b), (c, d) in zip(pad, op.padding))
            node, out_shape = _conv(op, self.shape, padded, where)
        elif isinstance(op, Dense) and len(self.shape) == 3:  # Keras Dense on each position: a 1x1 conv
            w = op.weight.T[:, :, None, None].astype(np.float32)
            node = nir.Conv2d(input_shape=tuple(self.cshape[1:]), weight=w, stride=1, padding=0, dilation=1,
                              groups=1, bias=np.zeros(w.shape[0], np.float32))
        elif isinstance(op, Dense):
            w = np.empty((op.weight.shape[1], op.weight.shape[0]), np.float32)
            w[:, self._positions()] = op.weight.T
            node = nir.Linear(weight=w)
            self.src = None
        elif isinstance(op, AvgPool):
            node = _avgpool(op, self.shape, pad, where)
        elif isinstance(op, Reshape):
            if len(op.shape) == 1 and len(self.shape) == 3:
                node = nir.Flatten(input_type={"input": np.array(self.cshape)}, start_dim=0, end_dim=-1)
                self.src = key(self.cshape)
            elif tuple(op.shape) == self.shape or (len(op.shape) == 1 and len(self.shape) == 1):
                node = None
            else:
                raise SnnexportError(f"{where}: a reshape {self.shape} → {tuple(op.shape)}; NIR's Flatten "
                                     "flattens only")
        elif isinstance(op, (Affine, Scale)):
            s = np.asarray(op.scale if isinstance(op, Affine) else np.float32(op.factor), np.float32)
            full = np.broadcast_to(s, self.shape).astype(np.float32)
            node = nir.Scale(scale=self._nir_array(full))
        elif isinstance(op, Embed):
            node = self._embed(op, where)
        else:
            raise SnnexportError(f"{where}: the nir writer has no node for op {op.kind!r}")
        self.shape = out_shape
        if self.src is None or len(out_shape) != 1:
            self.cshape = channels_first_shape(out_shape)
        self.nodes += node if isinstance(node, list) else [node] if node is not None else []

    def _positions(self) -> np.ndarray:
        """NIR's flat index of each of our elements of the current flat tensor."""
        return order(self.src) if self.src is not None else np.arange(int(np.prod(self.shape)))

    def _nir_array(self, full: np.ndarray) -> np.ndarray:
        """An array of the current tensor's shape (ours) in NIR's layout."""
        if self.src is None:
            return np.ascontiguousarray(to_channels_first(full))
        flat = np.empty(full.size, np.float32)
        flat[self._positions()] = full.ravel()
        return flat

    def _embed(self, op: Embed, where: str):
        import nir
        if op.axis != len(self.shape) - 1:
            raise SnnexportError(f"{where}: a concatenation along axis {op.axis}; NIR can place channels only")
        n = self.shape[-1]
        if len(self.shape) == 3:
            w = np.zeros((op.total, n, 1, 1), np.float32)
            w[op.offset + np.arange(n), np.arange(n), 0, 0] = 1
            return nir.Conv2d(input_shape=tuple(self.cshape[1:]), weight=w, stride=1, padding=0, dilation=1,
                              groups=1, bias=np.zeros(op.total, np.float32))
        w = np.zeros((op.total, n), np.float32)
        w[op.offset + np.arange(n), self._positions()] = 1
        self.src = None
        return nir.Linear(weight=w)


def _conv(op: Conv2D, shape: tuple[int, ...], padding, where: str):
    """A Conv2d node of a kernel made square, symmetrically padded and ungrouped with zero taps and zero
    blocks: nir 1.0.8's type check reads the kernel size from weight.shape[2] alone and the input
    channels from weight.shape[1]."""
    import nir
    k = kernel_to_channels_first(np.asarray(op.kernel, np.float32))
    if op.groups > 1:  # block-diagonal: group g maps its inputs only
        cout, cig = k.shape[:2]
        per = cout // op.groups
        full = np.zeros((cout, cig * op.groups) + k.shape[2:], np.float32)
        for g in range(op.groups):
            full[g * per:(g + 1) * per, g * cig:(g + 1) * cig] = k[g * per:(g + 1) * per]
        k = full
    sizes, shifts = k.shape[2:], []
    for (before, after), d in zip(padding, op.dilation):
        if (after - before) % d:
            raise SnnexportError(f"{where}: asymmetric padding {tuple(map(tuple, padding))} with dilation "
                                 f"{tuple(op.dilation)}; NIR's Conv2d pads symmetrically")
        shifts.append((after - before) // d)
    # zero taps a before and c after on each axis: a - c = shift, a + c = side - size
    side = max(n + abs(t) for n, t in zip(sizes, shifts))
    while any((side - n - t) % 2 for n, t in zip(sizes, shifts)) and side <= max(sizes) + 2 * max(map(abs, shifts)) + 2:
        side += 1
    if any((side - n - t) % 2 for n, t in zip(sizes, shifts)):
        raise SnnexportError(f"{where}: a {sizes[0]}x{sizes[1]} kernel with padding {tuple(map(tuple, padding))} "
                             "cannot be made square and symmetrically padded for NIR")
    taps, pads = [(0, 0), (0, 0)], []
    for n, t, (before, _), d in zip(sizes, shifts, padding, op.dilation):
        a, c = (side - n + t) // 2, (side - n - t) // 2
        taps.append((a, c))
        pads.append(before + a * d)
    k = np.ascontiguousarray(np.pad(k, taps))
    node = nir.Conv2d(input_shape=(shape[0], shape[1]), weight=k, stride=tuple(op.strides),
                      padding=tuple(pads), dilation=tuple(op.dilation), groups=1,
                      bias=np.zeros(k.shape[0], np.float32))
    out = Conv2D(op.kernel, None, op.strides, padding, op.dilation, op.groups).output_shape(shape)
    if tuple(int(v) for v in node.output_type["output"]) != channels_first_shape(out):
        raise SnnexportError(f"{where}: NIR's Conv2d gives shape {tuple(node.output_type['output'])}, not "
                             f"{channels_first_shape(out)} (please report this)")
    return node, tuple(out)


def _avgpool(op: AvgPool, shape: tuple[int, ...], pad, where: str):
    """AvgPool2d; a padded window (whose divisor counts only its real cells) or one after zero padding as
    a summing Conv2d and a Scale by each window's divisor."""
    import nir
    if op.padding == ((0, 0), (0, 0)) and pad == ((0, 0), (0, 0)):
        return nir.AvgPool2d(kernel_size=np.array(op.pool), stride=np.array(op.strides), padding=np.array([0, 0]))
    padded_shape = Pad(pad).output_shape(shape)
    c = shape[2]
    ones = Conv2D(np.ones(tuple(op.pool) + (1, c), np.float32), None, tuple(op.strides),
                  tuple((a + e, b + f) for (a, b), (e, f) in zip(pad, op.padding)), (1, 1), c)
    node, out = _conv(ones, shape, ones.padding, where)
    div = np.broadcast_to(1 / op.divisor(padded_shape)[None].astype(np.float32), (c,) + out[:2])
    return [node, nir.Scale(scale=np.ascontiguousarray(div, np.float32))]
