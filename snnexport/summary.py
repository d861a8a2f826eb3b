"""A human-readable summary of a network (``snnexport info``)."""

from __future__ import annotations

import numpy as np

from . import opcount
from .network import Gate, Network

_RULES = {"ge": ">=", "gt": ">"}  # the threshold rule, as the comparison it makes


def nest_memory_line(net: Network, degrees: opcount.Degrees) -> str:
    """The estimated peak memory per process of the exported NEST and PyNN scripts, for 1 to 16 MPI processes."""
    from .scriptlib.nest_memory import nest_memory
    from .writers.nest_common import network_counts
    c = network_counts(net, degrees)
    sizes = ", ".join(f"{nest_memory(c['neurons'], c['synapses'], c['largest_projection'], p) / 1e9:,.2f} GB on {p}"
                      for p in (1, 2, 4, 8, 16))
    return f"NEST/PyNN memory per MPI process (estimate, one sample at a time): {sizes}"


def describe(net: Network) -> str:
    degrees = opcount.all_degrees(net)  # exact fan-ins from the kernels, without listing synapses
    syn = {name: int(f.sum()) for name, f in opcount.fan_ins(net, degrees).items()}
    rows = [("layer", "kind", "shape", "neurons", "synapses in", "λ", "depth")]
    for n in net.nodes:
        size = int(np.prod(n.shape))
        if isinstance(n, Gate):
            rows.append((repr(n.name), f"max-pool gate on {n.source!r}", str(tuple(n.shape)), "-", "-",
                         f"{n.scale:.4g}", str(n.depth)))
        else:
            kind = f"{n.activation} IF" if n.levels is None else f"clip IF, {n.levels} levels (QuantizedReLU)"
            lam = f"{n.scale:.4g}" if n.levels is None else f"{n.scale:.4g} (trained)"
            rows.append((repr(n.name), kind, str(tuple(n.shape)), str(size), str(syn[n.name]), lam, str(n.depth)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    neurons = sum(int(np.prod(p.shape)) for p in net.populations)
    synapses = sum(syn.values())
    norm = net.normalization
    how = (f"{norm.percentile:g}th percentile over {norm.samples} samples" if norm.method == "percentile"
           else norm.method)
    trained = [repr(p.name) for p in net.populations if p.levels is not None]
    if trained:
        how += f"; λ = the trained threshold of {', '.join(trained)} (QuantizedReLU)"
    lines += [
        "",
        f"input: {net.input.name!r} {tuple(net.input.shape)}, {net.input.encoding}",
        f"output: {net.output!r}, readout {net.settings.readout}, {net.settings.steps} steps",
        f"neurons: {neurons}",
        f"synapses: {synapses}",
        f"ANN operations per frame (paper Eq. 9): {opcount.ann_ops(net, degrees)}",
        nest_memory_line(net, degrees),
        f"neuron: threshold {net.neuron.threshold:g} (fires where V {_RULES[net.neuron.threshold_rule]} threshold), "
        f"reset {net.neuron.reset}, initial V {net.neuron.v_init:g} x threshold",
        f"normalization: {how}",
        f"source: {net.provenance.model_file!r} (sha256 {net.provenance.model_sha256[:16]}), "
        f"{net.provenance.origin()}, snnexport {net.provenance.snnexport_version}",
    ]
    return "\n".join(lines)
