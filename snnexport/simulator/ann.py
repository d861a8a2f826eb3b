"""The ANN of a network description, evaluated with the same JAX ops as the simulation."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..scriptlib import runtime
from ..errors import SnnexportError
from ..network import Gate, Network, Population
from .cache import cached, params, signature, skeleton
from .gates import maxpool_fn
from .lowering import chain


def _build_ann(net: Network, keep: tuple[str, ...] | None, pre: frozenset[str]) -> Callable:
    """keep: the nodes returned (None: only the output, as an array); pre: populations returned as
    their input z rather than their activation."""
    pops = {p.name: i for i, p in enumerate(net.populations)}
    chains = [chain(p.ops, net.shape_of(p.source)) for p in net.projections]
    incoming = {name: [j for j, pr in enumerate(net.projections) if pr.target == name] for name in pops}

    def forward(params: dict, x: jax.Array) -> dict[str, jax.Array] | jax.Array:
        acts = {net.input.name: x}
        raw: dict[str, jax.Array] = {}
        rows = x.shape[0]
        for node in net.nodes:
            if isinstance(node, Gate):
                acts[node.name] = maxpool_fn(node)(acts[node.source])
                continue
            z = params["bias"][pops[node.name]].reshape((1,) + tuple(node.shape))
            for j in incoming[node.name]:
                src = net.projections[j].source
                z = z + chains[j][0](params["proj"][j], acts[src]).reshape((rows,) + tuple(node.shape))
            z = jnp.broadcast_to(z, (rows,) + tuple(node.shape))
            acts[node.name] = _activation(node, z)
            if node.name in pre:
                raw[node.name] = z
        if keep is None:
            return acts[net.output]
        return {k: raw[k] if k in raw else acts[k] for k in keep}

    return jax.jit(forward)


def _activation(p: Population, z: jax.Array) -> jax.Array:
    """A population's ANN activation in normalized units (activation / λ) of its normalized input z."""
    f = p.activation
    if f == "relu":
        return jnp.maximum(z, 0)
    if f == "clip" and p.levels is not None and p.max_value is not None:  # QuantizedReLU: λ·q(x/λ), normalized
        top, levels = np.float32(p.max_value / p.scale), np.float32(p.levels)
        return top * jnp.clip(jnp.floor(z * levels / top + np.float32(0.5)) / levels, 0, 1)
    if f == "clip":
        top = np.inf if p.max_value is None else np.float32(p.max_value / p.scale)
        return jnp.clip(z, 0, top)
    if f in ("linear", "softmax"):
        return z  # the output's normalized pre-activation: the argmax of the softmax, what its rates follow
    if f == "sign":
        return jnp.where(z >= 0, np.float32(1), np.float32(-1)) / np.float32(p.scale)
    if f == "heaviside":
        return (z >= 0).astype(jnp.float32) / np.float32(p.scale)
    raise SnnexportError(f"unknown activation {f!r}")


def ann_program(net: Network, keep_all: bool = False, keep: Iterable[str] | None = None,
                pre: Iterable[str] = ()) -> Callable[[np.ndarray], Any]:
    """A jitted ANN forward pass of the description: x (N, *in) → its output, or a dict of every node
    (``keep_all``) or of the ``keep`` nodes; populations named in ``pre`` give their input z instead
    of their activation (the calibration's pre-activations of binary and output populations)."""
    names = tuple(n.name for n in net.nodes) + (net.input.name,) if keep_all else keep
    names = None if names is None else tuple(sorted(set(names)))
    pre = frozenset(pre)
    key = ("ann", signature(net), names, tuple(sorted(pre)), jax.default_backend())
    fn = cached(key, lambda: _build_ann(skeleton(net), names, pre))
    weights = jax.tree_util.tree_map(jnp.asarray, params(net))
    return lambda x: fn(weights, jnp.asarray(x, jnp.float32))


def ann_activations(net: Network, x: np.ndarray, batch: int = 100) -> dict[str, np.ndarray]:
    """The normalized ANN of the description itself, per node: activation / λ, flat (N, n).

    Each population is its activation function of Σ projection ops(source) + bias; a gate is the
    max-pooling of its source; the input is the analog sample. Firing rates (spikes per step)
    approximate these values, and the output's argmax is the ANN's prediction. For a softmax or
    linear output it is the normalized pre-activation (same argmax as the softmax). Includes the input.
    """
    x = runtime.coerce_samples(x, net.input.shape, "samples")
    fn = ann_program(net, keep_all=True)
    parts: dict[str, list[np.ndarray]] = {}
    for s in range(0, len(x), batch):
        for k, v in jax.device_get(fn(x[s:s + batch])).items():
            parts.setdefault(k, []).append(np.asarray(v).reshape(len(v), -1))
    return {k: np.concatenate(v) for k, v in parts.items()}


def ann_predict(net: Network, x: np.ndarray, batch: int = 100) -> np.ndarray:
    """The ANN's class per sample (argmax of its output, ties to the lower index), (N,) int64."""
    x = runtime.coerce_samples(x, net.input.shape, "samples")
    fn = ann_program(net)
    out = [np.asarray(jax.device_get(fn(x[s:s + batch]))).reshape(min(batch, len(x) - s), -1)
           for s in range(0, len(x), batch)]
    return np.argmax(np.concatenate(out), axis=1).astype(np.int64)
