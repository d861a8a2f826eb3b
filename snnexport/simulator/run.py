"""``simulate``: samples in, the results file's arrays out (docs/semantics.md, "The results file")."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import __version__
from ..scriptlib import runtime
from ..errors import SnnexportError
from ..network import Gate, Network
from ..network import check_network
from .cache import cached, params, signature, skeleton
from .devices import chosen, placer
from .kernel import build_kernel
from .plan import Batching, plan

_DELAYS = ("step", "zero")
_READOUTS = ("count", "membrane", "softmax")


def _settings(net: Network, steps: int | None, readout: str | None, seed: int | None, clamp: int | None,
              delay: str, batch: int) -> tuple[int, str, int, int]:
    """(steps, readout, seed, clamp), defaults from ``net.settings``; every value checked."""
    steps = int(net.settings.steps if steps is None else steps)
    readout = readout or net.settings.readout
    seed = int(net.settings.seed if seed is None else seed)
    clamp = int(net.settings.clamp if clamp is None else clamp)
    if delay not in _DELAYS:
        raise SnnexportError(f"delay must be one of {', '.join(_DELAYS)}, not {delay!r}")
    if readout not in _READOUTS:
        raise SnnexportError(f"readout must be one of {', '.join(_READOUTS)}, not {readout!r}")
    if not 1 <= steps < 2 ** 24:  # counts are exact float32 integers below 2**24
        raise SnnexportError(f"steps must be from 1 to {2 ** 24 - 1}, not {steps}")
    if batch < 1:
        raise SnnexportError(f"batch must be at least 1, not {batch}")
    if clamp < 0:
        raise SnnexportError(f"clamp must be at least 0, not {clamp}")
    return steps, readout, seed, clamp


def simulate(net: Network, x: np.ndarray, labels: np.ndarray | None = None, *, steps: int | None = None,
             batch: int = 100, delay: str = "step", readout: str | None = None, seed: int | None = None,
             clamp: int | None = None, progress: bool = False, group: int | None = None,
             chunk_steps: int | None = None, devices: int | None = None, first: int = 0,
             early_decision: bool = False, decision_margin: int | None = None) -> dict[str, np.ndarray]:
    """Simulate ``net`` on samples ``x`` (N, *input_shape); returns the results-file arrays.

    The arrays are exactly those of docs/semantics.md ("The results file"), so
    ``runtime.save_results(path, simulate(...), results_meta(...))`` writes the file an exported
    script writes. ``steps``, ``readout``, ``seed`` and ``clamp`` default to ``net.settings``.
    ``delay`` is "step" (one step per population, as every exported script) or "zero" (the
    paper's zero latency). ``batch`` samples are simulated at a time (on a CPU split over one
    thread per core); ``group`` (samples simulated together) and ``chunk_steps`` (Tc, steps folded
    into one projection call) override :func:`plan`, for tuning. The results do not depend on
    ``batch``; the two overrides may move the last bit of a sum (package docstring). ``devices``
    local devices share each call (None: all of the default backend's; :mod:`.devices`); the results
    do not depend on it. ``first`` is the index of ``x[0]`` among all samples of a run that is cut
    into shards (:mod:`snnexport.shards`): the seeded draws of Poisson input and of the spiking softmax are
    per sample index, so a shard draws what one process would. ``progress`` prints the rate to
    stderr after each compiled call. ``early_decision`` (or a ``decision_margin`` M ≥ 1) adds
    ``decision_steps`` to the results and makes each prediction the class decided then
    (docs/semantics.md, "Early decision"); it is read from the output's spikes after the run, so the
    simulation itself runs as without it.
    """
    check_network(net)  # the schema of docs/semantics.md' objects: everything below relies on it
    steps, readout, seed, clamp = _settings(net, steps, readout, seed, clamp, delay, batch)
    if first < 0:
        raise SnnexportError(f"first must be at least 0, not {first}")
    ndev = chosen(devices)
    decision = decision_rule(readout, early_decision, decision_margin)
    x = runtime.coerce_samples(x, net.input.shape, "samples")
    n = len(x)
    labels = np.full(n, -1, np.int64) if labels is None else np.asarray(labels, np.int64).reshape(-1)
    if labels.shape != (n,):
        raise SnnexportError(f"labels have shape {labels.shape}; expected ({n},)")
    b = Batching.of(steps, min(batch, n), _largest(net), group, chunk_steps, ndev)
    key = (signature(net), b.group, b.tc, b.chunks, steps, delay, readout, clamp, jax.default_backend(), b.devices)
    kernel = cached(("snn",) + key, lambda: build_kernel(skeleton(net), b.group, b.tc, b.chunks, steps, delay,
                                                         readout, clamp, b.devices))
    put = placer(b.devices)
    weights = put(jax.tree_util.tree_map(jnp.asarray, params(net)), False)
    poisson = net.input.encoding == "poisson"
    results = _Results(net, n, steps, readout, first)
    start, compiled, done0 = time.perf_counter(), None, 0  # the rate counts from the first call's end
    for idx, r in _calls(lambda xb, u: kernel(weights, put(xb, True), put(u, True)), x, b, steps,
                         seed if poisson else None, first):
        results.take(idx, r)
        if progress:
            done, now = idx[-1] + 1, time.perf_counter()
            if compiled is None:  # the first call compiles: its time says nothing of the rate
                compiled, done0 = now, done
                how = f"first call, compilation included: {now - start:.1f} s"
            else:
                how = f"{(done - done0) * steps / max(now - compiled, 1e-9):.0f} sample-steps/s"
            print(f"snnexport: simulated {done}/{n} samples ({how})", file=sys.stderr, flush=True)
    return results.arrays(labels, seed, clamp, decision)


def decision_rule(readout: str, early: bool, margin: int | None) -> dict | None:
    """The early-decision rule asked for, as the results' meta records it (None: none), checked."""
    if not early and margin is None:
        return None
    if readout == "membrane":
        raise SnnexportError("early decision needs a readout that counts spikes (count or softmax), not membrane")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, np.integer)) or margin < 1):
        raise SnnexportError(f"the decision margin must be an integer of at least 1, not {margin!r}")
    return {"margin": None if margin is None else int(margin)}


def run_plan(net: Network, steps: int) -> tuple[int, int, int]:
    """:func:`.plan.plan` for ``net`` at T = ``steps``: (group, Tc, chunks), as :func:`simulate` uses it
    without the tuning overrides (a shard's samples are whole groups of it)."""
    return plan(steps, _largest(net))


def _largest(net: Network) -> int:
    return max(int(p.bias.size) for p in net.populations)


def _calls(run: Callable, x: np.ndarray, b: Batching, steps: int, seed: int | None, first: int
           ) -> Iterator[tuple[np.ndarray, dict]]:
    """(sample indices, kernel results) per compiled call, in order; ``seed`` given: Poisson input,
    sample ``i`` drawing as sample ``first + i`` of the whole run."""
    n = len(x)

    def call(b0: int) -> tuple[np.ndarray, dict]:
        idx = np.arange(b0, min(b0 + b.size, n))
        xb = np.zeros((b.size,) + x.shape[1:], np.float32)
        xb[:len(idx)] = x[idx]
        u = None
        if seed is not None:  # the same draws as every exported script: runtime.poisson_input per sample
            u = np.zeros((b.chunks * b.tc, b.size) + x.shape[1:], np.uint8)
            for k, i in enumerate(idx):
                u[:steps, k] = runtime.poisson_input(x[i], seed, first + int(i), steps)
            u = np.moveaxis(u.reshape((b.chunks, b.tc, b.per_call, b.group) + x.shape[1:]), 2, 0)  # (G, chunks, Tc, B, …)
        return idx, jax.device_get(run(xb.reshape((b.per_call, b.group) + x.shape[1:]), u))

    starts = range(0, n, b.size)
    yield call(starts[0])  # the first call compiles, once, before the threads start
    with ThreadPoolExecutor(max_workers=b.workers) as pool:
        yield from pool.map(call, starts[1:])  # in order; JAX runs concurrent calls in parallel


class _Results:
    """The results-file arrays of a run, filled call by call."""

    def __init__(self, net: Network, n: int, steps: int, readout: str, first: int):
        self.first = first  # the index of sample 0 in the whole run: the softmax draws per index
        self.pops = net.populations
        self.gates = [g for g in net.nodes if isinstance(g, Gate)]
        self.out_i = [p.name for p in self.pops].index(net.output)
        self.steps, self.readout = steps, readout
        classes = int(self.pops[self.out_i].bias.size)
        self.counts = [np.zeros((n, p.bias.size), np.int32) for p in self.pops]
        self.gcounts = [np.zeros((n, net.size_of(g.name)), np.int32) for g in self.gates]
        self.sps = np.zeros((n, steps, len(self.pops)), np.int32)
        self.out_steps = np.zeros((n, steps, classes), np.int16)
        self.out_v = np.zeros((n, classes), np.float32)
        self.v_traj = np.zeros((n, steps, classes), np.float32) if readout == "softmax" else None

    def take(self, idx: np.ndarray, r: dict) -> None:
        """Store one call's results for samples ``idx`` (the call's padding dropped)."""
        m = len(idx)
        for k in range(len(self.pops)):
            self.counts[k][idx] = _flat(r["count"][k])[:m]
        for k in range(len(self.gates)):
            self.gcounts[k][idx] = _flat(r["gcount"][k])[:m]
        self.sps[idx] = _time_major(r["sps"], self.steps)[:m]
        self.out_steps[idx] = _time_major(r["out"], self.steps)[:m]
        self.out_v[idx] = _flat(r["v_out"])[:m]
        if self.v_traj is not None:
            self.v_traj[idx] = _time_major(r["v_traj"], self.steps)[:m]

    def arrays(self, labels: np.ndarray, seed: int, clamp: int, decision: dict | None = None) -> dict[str, np.ndarray]:
        """The readout applied; every array of the results file but ``meta``."""
        out_i, out_steps = self.out_i, self.out_steps
        if self.readout == "softmax":  # the paper's spiking softmax, drawn on the host exactly as the scripts do
            held = clamp * self.pops[out_i].depth
            for i in range(len(out_steps)):
                out_steps[i] = runtime.softmax_readout(self.v_traj[i], seed, self.first + i, held).astype(np.int16)
            self.counts[out_i] = out_steps.sum(axis=1, dtype=np.int32)
            self.sps[:, :, out_i] = out_steps.sum(axis=2, dtype=np.int32)
        output_counts = out_steps.sum(axis=1, dtype=np.int64)
        predictions = runtime.output_prediction(self.readout, out_steps, self.out_v).astype(np.int64)
        decided_at = None
        if decision is not None:
            decided_at, decided = runtime.early_decision(out_steps, decision["margin"])
            predictions = np.where(decided >= 0, decided, predictions)
        arrays: dict[str, np.ndarray] = {
            "predictions": predictions, "output_counts": output_counts, "output_steps": out_steps,
            "output_v": self.out_v, "population_names": np.array([p.name for p in self.pops], dtype=str),
            "gate_names": np.array([g.name for g in self.gates], dtype=str), "spikes_per_step": self.sps,
            "labels": labels,
        }
        if decided_at is not None:
            arrays["decision_steps"] = decided_at
        for k, c in enumerate(self.counts):
            arrays[f"counts_{k}"] = c
        for k, c in enumerate(self.gcounts):
            arrays[f"gate_counts_{k}"] = c
        return arrays


def _flat(a: np.ndarray) -> np.ndarray:
    """(G, B, ...) per group → (G·B, ...)."""
    a = np.asarray(a)
    return a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:])


def _time_major(a: np.ndarray, steps: int) -> np.ndarray:
    """(G, chunks, Tc, B, ...) from the kernel → (G·B, T, ...), dropping the padding steps."""
    a = np.asarray(a)
    g, c, tc, b = a.shape[:4]
    a = a.reshape((g, c * tc, b) + a.shape[4:])[:, :steps]
    a = np.moveaxis(a, 2, 1)  # (G, B, T, ...)
    return a.reshape((g * b,) + a.shape[2:])


def results_meta(net: Network, arrays: dict[str, np.ndarray], *, steps: int | None = None,
                 seed: int | None = None, readout: str | None = None, delay: str = "step",
                 seconds: float | None = None, decision: dict | None = None) -> dict[str, Any]:
    """The ``meta`` of a results file written from :func:`simulate`'s arrays."""
    return runtime.results_meta("reference", __version__, __version__,
                                int(net.settings.steps if steps is None else steps),
                                int(net.settings.seed if seed is None else seed),
                                readout or net.settings.readout, delay, net.neuron.reset, net.input.encoding,
                                net.sha256(), len(arrays["predictions"]), decision, run_seconds=seconds)
