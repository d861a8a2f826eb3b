"""When each part of a network runs inside one sample's NEST time, and the max-pool gates NEST lacks.

The NEST-based scripts (``nest`` and ``pynn`` writers) embed this module; why NEST needs a schedule
and what was measured is in :mod:`snnexport.writers.nest_common`. numpy and the standard library
only (see :mod:`snnexport.scriptlib`).
"""

import numpy as np

from .runtime import gate_windows


def schedule(populations, gates, projections, input_name, steps, clamp, replay=0, delay="step"):
    """When each node of the network runs inside one sample's NEST time, in whole steps.

    Population P runs its steps t = 1..T at NEST steps t + 1 + lag[P] of the sample; until then
    it is held far below threshold (or frozen, see timeline), and after them it is held again.
    A source S (the input, a population or a gate) emits the spikes meant for its targets' step
    t + 1 at NEST step t + 1 + lag[S] (Poisson input spikes of step t count as meant for step t),
    so the synapses of a projection get a delay of 1 + lag[target] - lag[source] steps. A gate is
    computed once its source has run all T steps, so it runs T steps later than the population it
    pools. ``replay`` is the number of steps a spike source needs to pass a spike on (1 for PyNN's
    SpikeSourceArray on NEST: a parrot neuron relays it), and delays the input and the gates by as
    much.

    ``delay`` "zero" (docs/semantics.md, "Delay mode zero"): the spikes of a population's or gate's
    step t are meant for its targets' step t, so a population starts at least one step after each of
    its sources (lag[P] >= lag[S] + 1) and a projection's delay is lag[target] - lag[source] >= 1 steps.
    The input's spikes of step t are meant for step t in both modes.
    """
    shift = 1 if delay == "zero" else 0
    gate = {g["name"]: g for g in gates}
    incoming = {}
    for j, p in enumerate(projections):
        incoming.setdefault(p["target"], []).append(j)
    lag = {input_name: replay}

    def lag_of(name):
        if name not in lag:
            if name in gate:
                src = gate[name]["source"]
                lag[name] = lag_of(src) + (0 if src in gate else steps + replay)
            else:
                lag[name] = max([lag_of(projections[j]["source"]) + shift * (projections[j]["source"] != input_name)
                                 for j in incoming.get(name, [])] or [0])
        return lag[name]

    for node in populations + gates:
        lag_of(node["name"])
    release = {p["name"]: 1 + lag[p["name"]] + clamp * p["depth"] for p in populations}
    delay = [1 + lag[p["target"]] - lag[p["source"]] - shift * (p["source"] != input_name) for p in projections]
    length = steps + 2 + max(lag[p["name"]] for p in populations)  # + 1: the multimeter logs one step late
    return {"lag": lag, "release": release, "delay": delay, "length": length}


def timeline(plan, populations, roots, output, steps, held=None):
    """What a script does between chunks of one sample's NEST time: sorted [(step, [(action, name)])].

    After NEST step k of the sample, for a population P: "wake" unfreezes P one step before its
    input can first arrive (NEST skips frozen neurons, and most of a sample P has nothing to do;
    the one held step refreshes its input current); "release" sets V = V_START right before P's first
    step (or after its clamp); "gates" computes the gates on P once P has run all its steps;
    "retire" holds P after its last step, so that it sends nothing more; "sleep" freezes P once the
    last spikes sent to it have arrived. The output stays awake: its membrane potential is logged.
    ``held``: the populations to retire (default all); one whose spikes reach no synapse (only
    recorders and gates, which read steps 1..T) may run one step more, unheld, before it sleeps.
    """
    lag, length = plan["lag"], plan["length"]
    acts = {length: []}

    def at(k, what, name):
        if 0 < k < length:
            acts.setdefault(k, []).append((what, name))

    for p in populations:
        name = p["name"]
        at(lag[name], "wake", name)
        if plan["release"][name] <= steps + lag[name]:  # a population clamped for all T steps never runs
            at(plan["release"][name], "release", name)
        if held is None or name in held:
            at(steps + 1 + lag[name], "retire", name)
        if name != output:
            at(steps + 2 + lag[name], "sleep", name)
    for root in sorted(set(roots.values())):
        at(steps + 1 + lag[root], "gates", root)
    order = {"gates": 0, "retire": 1, "sleep": 2, "wake": 3, "release": 4}
    return [(k, sorted(acts[k], key=lambda a: order[a[0]])) for k in sorted(acts)]


def gate_roots(gates):
    """gate name → the population whose spikes it finally pools (through gates on gates)."""
    by_name = {g["name"]: g for g in gates}
    roots = {}
    for g in gates:
        src = g["source"]
        while src in by_name:
            src = by_name[src]["source"]
        roots[g["name"]] = src
    return roots


def spike_steps(senders, times, first_id, origin, lag, steps):
    """(neuron index, step t) of recorded spikes that fall into steps 1..T of this sample."""
    t = np.rint(np.asarray(times, np.float64) - origin).astype(np.int64) - 1 - lag
    keep = (t >= 1) & (t <= steps)
    return np.asarray(senders, np.int64)[keep] - first_id, t[keep]


def spike_raster(index, t, size, steps, sign=1):
    """(T, size) int8 spikes from (neuron index, step) pairs; sign = -1 for the negative half of a sign population."""
    r = np.zeros((steps, size), np.int8)
    r[t - 1, index] = sign
    return r


def gate_outputs(gates, rasters, shape_of):
    """Spikes passed by each gate in every step: (T, ..., cells) arrays from (T, ..., n) source rasters.

    ``rasters`` maps population names to their spikes (a batch of samples in the middle axes); gates
    on gates use the inner gate's output. The winner of a window is the cell with the largest count
    so far (this step included), on ties the one that reached it first, then the first cell: the
    rule of runtime.gate_pass, computed here as the first maximum of one integer key per cell,
    count * (T + 1) - (step of its last change), which orders the same way (that step is 0..T).
    """
    out = {}
    for g in gates:
        spikes = out[g["source"]] if g["source"] in out else rasters[g["source"]]
        windows = gate_windows(shape_of(g["source"]), g["pool"], g["strides"], g["padding"])
        key = gate_keys(spikes)
        # padding: one more cell, silent, of the smallest key (it wins only a window of padding alone)
        key = np.concatenate([key, np.full(key.shape[:-1] + (1,), np.iinfo(key.dtype).min)], axis=-1)
        silent = np.concatenate([spikes, np.zeros(spikes.shape[:-1] + (1,), spikes.dtype)], axis=-1)
        safe = np.where(windows >= 0, windows, key.shape[-1] - 1)
        winner = np.broadcast_to(safe[:, 0], key.shape[:-1] + (len(safe),)).copy()
        best = key[..., safe[:, 0]]
        for j in range(1, safe.shape[1]):  # a window has a few positions: one vectorized pass each
            other = key[..., safe[:, j]]
            better = other > best  # strictly: the first maximum in window order wins
            best = np.where(better, other, best)
            winner = np.where(better, safe[:, j], winner)
        out[g["name"]] = np.take_along_axis(silent, winner, axis=-1).astype(np.int8)
    return out


def gate_keys(spikes):
    """count * (T + 1) - (step of the count's last change, 0 if never), per step and cell: (T, ..., n)
    integers (int32 where they fit, which halves the memory the selection reads).

    A loop over the steps with one vectorized update each: numpy's cumulative functions along the
    first axis of a (T, n) array are some ten times slower."""
    steps = len(spikes)
    dtype = np.int32 if steps * (steps + 1) < 2 ** 31 else np.int64
    count = np.zeros(spikes.shape[1:], dtype)
    since = np.zeros(spikes.shape[1:], dtype)
    key = np.empty(spikes.shape, dtype)
    for t in range(steps):
        count += spikes[t]
        since[spikes[t] != 0] = t + 1
        np.subtract(count * (steps + 1), since, out=key[t])
    return key
