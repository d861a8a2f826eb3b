"""What the PyNEST (``nest``) and PyNN (``pynn``) writers share: how the contract maps onto NEST.

Everything here was measured on NEST 3.10 (see the tests and ``benchmarks/nest_build.py``):

* **Neuron.** ``eprop_iaf`` resets by subtraction (``V -= V_th`` in the step of the spike) and, with
  ``C_m = 1``, ``E_L = 0``, ``t_ref = 0`` and ``tau_m = 2**53`` ms at a resolution of 1 ms, integrates
  ``V += I`` exactly: its current propagator ``tau_m / C_m * (1 - exp(-dt / tau_m))`` is then exactly 1
  (``exp(-2**-53)`` rounds to ``1 - 2**-53``), and the leak ``V * 2**-53`` is below one unit in the last
  place. A larger ``tau_m`` makes that propagator 0 and silently drops every current; ``1e9`` leaves a
  relative error of 1e-8. It fires where ``V >= V_th``. Its learning state (surrogate gradient,
  learning signal, firing-rate regularization) is written to a history that nothing reads back into
  the membrane, and without e-prop synapses the history does not grow.
  Reset to zero uses ``iaf_psc_delta`` with ``V_reset = 0`` and the same constants.
* **Timing.** Both models take a spike with delay 1 step into V in the step it arrives (``>=`` then
  sees it). ``eprop_iaf`` integrates ``I_e`` from the second step it is set in, ``iaf_psc_delta`` at
  once; neither difference matters here, because every sample starts with all neurons *held* at a
  potential far below threshold (``HOLD``) for at least one step, and each population is released
  (``V_m = 0``) right before its own first step.
* **Speed.** ``NodeCollection.set()`` first asks every node whether it is local (about 30 µs a node
  in NEST 3.10, 0.3 s for 10,000 neurons); the kernel call behind it sets a list of per-node values
  in a few ms. The scripts use that call (with the public API as fallback) for the per-sample
  state reset and input currents. ``nest.Connect`` with arrays builds about a million synapses a second.
* **Max-pooling gates.** NEST has no gate. A gate is computed in numpy from its source's recorded
  spikes once the source has run all its T steps of the sample, and its output spikes are replayed
  by one ``spike_generator`` per gate cell into the real synapses. Everything downstream of a gate
  therefore runs T steps later inside the sample's NEST time (``schedule`` below); a synapse from a
  source that runs ``lag`` steps earlier than its target gets ``lag`` more steps of delay, so every
  population still sees each input exactly one step after it was emitted.

The functions listed in ``SCRIPT_HELPERS`` are plain numpy and are embedded verbatim in the scripts.
"""

from __future__ import annotations

import inspect

import numpy as np

from .base import NATIVE

# --- neuron models and their parameters ---------------------------------------------------------------

TAU_M = 2.0 ** 53  # ms: the largest tau_m whose current propagator is still exactly 1 at dt = 1 ms
HOLD = -1e12  # a membrane potential that no input of one sample can lift to threshold
NEVER = 1e300  # a threshold that is never reached (non-spiking readouts)


def neuron_model(reset: str) -> str:
    return "eprop_iaf" if reset == "subtract" else "iaf_psc_delta"


def neuron_params(reset: str, threshold: float) -> dict[str, float]:
    """NEST parameters of a non-leaky integrate-and-fire neuron with the contract's threshold and reset."""
    p = {"C_m": 1.0, "E_L": 0.0, "V_m": 0.0, "V_th": float(threshold), "tau_m": TAU_M, "t_ref": 0.0, "I_e": 0.0}
    if reset == "zero":
        p["V_reset"] = 0.0
    return p


# --- capability table ---------------------------------------------------------------------------------

def capabilities(connect: str) -> dict[str, tuple[str, str]]:
    """The capability table of a NEST-based writer; ``connect`` says how synapses are built."""
    return {
        "reset_subtract": (NATIVE, "eprop_iaf (V -= V_th after a spike) with C_m=1, tau_m=2**53 ms (exactly "
                                   "non-leaky at dt = 1 ms), t_ref=0"),
        "reset_zero": (NATIVE, "iaf_psc_delta with V_reset=0, t_ref=0, tau_m=2**53 ms"),
        "analog_input": (NATIVE, "constant current I_e = bias + W*x per neuron of the populations the input feeds"),
        "poisson_input": (NATIVE, "one spike_generator per input value, seeded draws (runtime.poisson_input)"),
        "bias": (NATIVE, "constant current I_e"),
        "delay_step": (NATIVE, "synaptic delay of one resolution step (NEST's minimum delay)"),
        "conv2d": (NATIVE, f"kernels expanded to static synapses, {connect}"),
        "depthwise_conv": (NATIVE, f"grouped kernels expanded to static synapses, {connect}"),
        "dense": (NATIVE, f"static synapses, {connect}"),
        "avgpool": (NATIVE, "folded into the next projection's synapses (weight 1/cells)"),
        "padding": (NATIVE, "folded into the next projection's synapses"),
        "concatenate": (NATIVE, "one projection per concatenated branch"),
        "add": (NATIVE, "several projections into one population"),
        "maxpool_gate": (NATIVE, "exact: the gate is computed from the source's recorded spikes and its output "
                                 "replayed by spike_generators into the real synapses; downstream populations run "
                                 "T steps later in NEST time with longer delays"),
        "readout_count": (NATIVE, "spike_recorder on the output; ties by V_m from a multimeter"),
        "readout_membrane": (NATIVE, "output threshold 1e300 (never fires), V_m from a multimeter"),
        "readout_softmax": (NATIVE, "non-firing output, V_m of every step from a multimeter, seeded draws "
                                    "(runtime.softmax_draws)"),
        "clamp": (NATIVE, "each population is held far below threshold until its clamp ends, then set to V = 0"),
        "negative_spikes": (NATIVE, "a sign population is two populations holding V and -V that reset each "
                                    "other through one-step synapses of weight V_th (reset by subtraction only)"),
    }


def check_network(net, writer: str = "nest") -> None:
    """Combinations the NEST mapping cannot express exactly (single features are in the capability table);
    ``writer`` names the refusing writer in the FeatureRefused raised."""
    from ..errors import FeatureRefused
    if net.neuron.reset == "zero" and any(p.activation == "sign" for p in net.populations):
        raise FeatureRefused(writer, "negative_spikes + reset_zero",
                             "negative spikes with reset to zero cannot be expressed on NEST: the two "
                             "half-populations of a sign neuron can only reset each other by subtraction")


# --- helpers embedded in the scripts (numpy only) -------------------------------------------------------

def schedule(populations, gates, projections, input_name, steps, clamp, replay=0):
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
    """
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
                lag[name] = max([lag_of(projections[j]["source"]) for j in incoming.get(name, [])] or [0])
        return lag[name]

    for node in populations + gates:
        lag_of(node["name"])
    release = {p["name"]: 1 + lag[p["name"]] + clamp * p["depth"] for p in populations}
    delay = [1 + lag[p["target"]] - lag[p["source"]] for p in projections]
    length = steps + 2 + max(lag[p["name"]] for p in populations)  # + 1: the multimeter logs one step late
    return {"lag": lag, "release": release, "delay": delay, "length": length}


def timeline(plan, populations, roots, output, steps):
    """What a script does between chunks of one sample's NEST time: sorted [(step, [(action, name)])].

    After NEST step k of the sample, for a population P: "wake" unfreezes P one step before its
    input can first arrive (NEST skips frozen neurons, and most of a sample P has nothing to do;
    the one held step refreshes its input current); "release" sets V = 0 right before P's first
    step (or after its clamp); "gates" computes the gates on P once P has run all its steps;
    "retire" holds P after its last step, so that it sends nothing more; "sleep" freezes P once the
    last spikes sent to it have arrived. The output stays awake: its membrane potential is logged.
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
    """Spikes passed by each gate in every step: (T, cells) arrays from (T, n) source rasters.

    ``rasters`` maps population names to their spikes of this sample; gates on gates use the
    inner gate's output. The winner of a window is the cell with the largest count so far (this
    step included), on ties the one that reached it first, then the first cell (runtime.gate_pass).
    """
    out = {}
    for g in gates:
        spikes = out[g["source"]] if g["source"] in out else rasters[g["source"]]
        windows = gate_windows(shape_of(g["source"]), g["pool"], g["strides"], g["padding"])
        counts = np.cumsum(spikes, axis=0, dtype=np.int32)
        out[g["name"]] = gate_pass(windows, counts, last_change(spikes), spikes).astype(np.int8)
    return out


SCRIPT_HELPERS = (schedule, timeline, gate_roots, spike_steps, spike_raster, gate_outputs)


def helpers_source() -> str:
    """The source of the script-side helpers, to embed in an exported script."""
    return "\n\n".join(inspect.getsource(f).rstrip() + "\n" for f in SCRIPT_HELPERS)
