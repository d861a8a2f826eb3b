"""What the PyNEST (``nest``) and PyNN (``pynn``) writers share: how the contract maps onto NEST.

Everything here was measured on NEST 3.10 (see the tests and ``benchmarks/nest_build.py``):

* **Neuron.** ``eprop_iaf`` resets by subtraction (``V -= V_th`` in the step of the spike); its update
  is ``V = P_i * I + z + P_v * V`` with ``P_v = exp(-dt / tau_m)``, ``P_i = tau_m / C_m * (1 - P_v)`` and
  ``z`` the weights of the spikes arriving in the step. With ``C_m = 1``, ``E_L = 0``, ``t_ref = 0`` and
  ``tau_m = 2**60`` ms at a resolution of 1 ms, ``P_v`` is exactly 1 (``exp(-x)`` rounds to 1 for
  ``x < 2**-54``): ``V += z`` exactly, no leak. (At ``tau_m = 2**53``, the largest value at which ``P_i``
  is still 1, ``P_v`` is ``1 - 2**-53`` and V loses about one unit in the last place a step: a V that
  reaches θ exactly stays below it and the spike comes a step late.) ``P_i`` is then 0, so ``I_e`` and
  current inputs are dropped: a population's constant current (bias, and W·x of an analog input) comes
  as spikes instead, from one ``spike_generator`` per population (its *pacemaker*) that fires once a
  step through a synapse of weight ``I`` to each neuron; the weights of the neurons an analog input
  feeds are set for every batch (``nestkernel_api.llapi_set_connection_status``, 6 ms for 10,000
  synapses). It fires where ``V >= V_th``. Its learning state (surrogate gradient, learning signal,
  firing-rate regularization) is written to a history that nothing reads back into the membrane, and
  without e-prop synapses the history does not grow.
  Reset to zero uses ``iaf_psc_delta`` with ``V_reset = 0`` and the same constants (the same
  propagators: exact with the pacemaker, too).
* **Timing.** Both models take a spike with delay 1 step into V in the step it arrives (``>=`` then
  sees it). Every sample starts with all neurons *held* at a potential far below threshold (``HOLD``),
  and each population is released (``V_m = 0``) right before its own first step; its pacemaker's
  spikes arrive in its steps 1..T.
* **Speed.** ``NodeCollection.set()`` first asks every node whether it is local (about 30 µs a node
  in NEST 3.10, 0.3 s for 10,000 neurons); the kernel call behind it sets a list of per-node values
  in a few ms. The scripts use that call (with the public API as fallback) for the per-sample
  state reset. ``nest.Connect`` with arrays builds about a million synapses a second. A neuron
  connected to a recording device gets a block of 1,024 connections (32 kB with ``static_synapse``,
  8 kB with ``static_synapse_hom_w_hpc``, which the scripts use). B copies of a network in one
  NEST network (``--batch``) run more slowly per sample than one copy (the default).
* **Max-pooling gates.** NEST has no gate. A gate is computed in numpy from its source's recorded
  spikes once the source has run all its T steps of the sample, and its output spikes are replayed
  by one ``spike_generator`` per gate cell into the real synapses. Everything downstream of a gate
  therefore runs T steps later inside the sample's NEST time; a synapse from a source that runs
  ``lag`` steps earlier than its target gets ``lag`` more steps of delay, so every population still
  sees each input exactly one step after it was emitted. With ``--delay zero`` each population also
  starts one step after its sources and sees each input in the step it was emitted (time-shifted).

The script side of this (``schedule``, ``timeline``, the gates computed in numpy) is
:mod:`snnexport.scriptlib.nest_schedule`, embedded in the scripts.
"""

from __future__ import annotations

import numpy as np

from .base import NATIVE

# --- neuron models and their parameters ---------------------------------------------------------------

TAU_M = 2.0 ** 60  # ms: exp(-dt / tau_m) rounds to exactly 1 at dt = 1 ms (from 2**54 on): no leak at all
HOLD = -1e12  # a membrane potential that no input of one sample can lift to threshold
NEVER = 1e300  # a threshold that is never reached (non-spiking readouts)

# --- size: what the memory estimate (snnexport.scriptlib.nest_memory) counts --------------------------

def network_counts(net, degrees=None) -> dict[str, int]:
    """Neurons, synapses and the largest projection's synapses of one copy of ``net`` in NEST: a sign
    population is two populations, each projection is built between every pair of halves, an analog
    input is no synapse but a pacemaker's (one synapse per neuron, counted with the neurons').
    ``degrees``: opcount.all_degrees(net), when the caller has them."""
    from .. import opcount
    from ..network import Gate
    halves = {p.name: 2 if p.activation == "sign" else 1 for p in net.populations}
    roots = {n.name: n.source for n in net.nodes if isinstance(n, Gate)}
    while any(r in roots for r in roots.values()):  # a gate on a gate: its root population
        roots = {g: roots.get(r, r) for g, r in roots.items()}
    neurons = sum(int(p.bias.size) * halves[p.name] for p in net.populations)
    sizes = []
    for proj, (fan_in, _) in zip(net.projections, degrees or opcount.all_degrees(net)):
        if proj.source == net.input.name and net.input.encoding == "analog":
            continue
        sizes.append(int(fan_in.sum()) * halves.get(roots.get(proj.source, proj.source), 1) * halves[proj.target])
    return {"neurons": neurons, "synapses": sum(sizes) + neurons, "largest_projection": max(sizes, default=0)}


def neuron_model(reset: str) -> str:
    return "eprop_iaf" if reset == "subtract" else "iaf_psc_delta"


def firing_threshold(threshold: float, rule: str) -> float:
    """NEST's V_th for the contract's θ and threshold rule. Both models fire where V_m >= V_th, and V_m is a
    float64: for "gt" V_th is the next float64 above θ, and since no float64 lies between the two,
    V_m >= V_th exactly where V_m > θ."""
    return float(threshold) if rule == "ge" else float(np.nextafter(float(threshold), np.inf))


def neuron_params(reset: str, threshold: float, rule: str = "ge") -> dict[str, float]:
    """NEST parameters of a non-leaky integrate-and-fire neuron with the contract's threshold, rule and reset."""
    p = {"C_m": 1.0, "E_L": 0.0, "V_m": 0.0, "V_th": firing_threshold(threshold, rule), "tau_m": TAU_M, "t_ref": 0.0,
         "I_e": 0.0}
    if reset == "zero":
        p["V_reset"] = 0.0
    return p


# --- capability table ---------------------------------------------------------------------------------

def capabilities(connect: str) -> dict[str, tuple[str, str]]:
    """The capability table of a NEST-based writer; ``connect`` says how synapses are built."""
    return {
        "reset_subtract": (NATIVE, "eprop_iaf (V -= V_th after a spike) with C_m=1, tau_m=2**60 ms (exactly "
                                   "non-leaky at dt = 1 ms), t_ref=0"),
        "reset_zero": (NATIVE, "iaf_psc_delta with V_reset=0, t_ref=0, tau_m=2**60 ms"),
        "analog_input": (NATIVE, "constant current bias + W*x per neuron of the populations the input feeds, "
                                 "as the weights of a pacemaker spike_generator firing once a step"),
        "poisson_input": (NATIVE, "one spike_generator per input value, seeded draws (runtime.poisson_input)"),
        "bias": (NATIVE, "constant current, as the weights of a pacemaker spike_generator firing once a step"),
        "delay_step": (NATIVE, "synaptic delay of one resolution step (NEST's minimum delay)"),
        "conv2d": (NATIVE, f"kernels expanded to static synapses, {connect}"),
        "depthwise_conv": (NATIVE, f"grouped kernels expanded to static synapses, {connect}"),
        "conv_transpose": (NATIVE, f"transposed kernels (also nearest upsampling, cropping) expanded to static "
                                   f"synapses, {connect}"),
        "dense": (NATIVE, f"static synapses, {connect}"),
        "avgpool": (NATIVE, "folded into the next projection's synapses (weight 1/cells)"),
        "padding": (NATIVE, "folded into the next projection's synapses"),
        "permute": (NATIVE, "one-to-one static synapses to the permuted indices"),
        "concatenate": (NATIVE, "one projection per concatenated branch"),
        "add": (NATIVE, "several projections into one population"),
        "maxpool_gate": (NATIVE, "exact: the gate is computed from the source's recorded spikes and its output "
                                 "replayed by spike_generators into the real synapses; downstream populations run "
                                 "T steps later in NEST time with longer delays"),
        "readout_count": (NATIVE, "spike_recorder on the output; ties by V_m from a multimeter"),
        "readout_membrane": (NATIVE, "output threshold 1e300 (never fires), V_m from a multimeter"),
        "readout_softmax": (NATIVE, "non-firing output, V_m of every step from a multimeter, seeded draws "
                                    "(runtime.softmax_readout)"),
        "clamp": (NATIVE, "each population is held far below threshold until its clamp ends, then set to V = v_init*θ "
                          "(the -V half of a sign population to -v_init*θ)"),
        "negative_spikes": (NATIVE, "a sign population is two populations holding V and -V that reset each "
                                    "other through one-step synapses of weight V_th (reset by subtraction only)"),
        "v_init": (NATIVE, "each population's V_m is set to v_init*θ right before its first step"),
        "threshold_gt": (NATIVE, "V_th = the next float64 above θ: NEST's V_m >= V_th exactly where V_m > θ; with "
                                 "reset by subtraction eprop_iaf then also subtracts that V_th, 2**-52*θ more than θ "
                                 "per spike (an approximation, see the writer's check)"),
    }


def check_network(net, writer: str = "nest") -> list[str]:
    """Combinations the NEST mapping cannot express exactly (single features are in the capability table):
    raises FeatureRefused (naming ``writer``) for one it cannot express, returns the approximations."""
    from ..errors import FeatureRefused
    if net.neuron.reset == "zero" and any(p.activation == "sign" for p in net.populations):
        raise FeatureRefused(writer, "negative_spikes + reset_zero",
                             "negative spikes with reset to zero cannot be expressed on NEST: the two "
                             "half-populations of a sign neuron can only reset each other by subtraction")
    if net.neuron.threshold_rule == "gt" and net.neuron.reset == "subtract":
        # eprop_iaf subtracts its V_th, which "gt" moves one float64 step above θ: after k spikes V_m is
        # k*2**-52*θ below the contract's, which decides a spike where V lands within that much above θ
        return ["threshold gt + reset subtract: eprop_iaf fires where V_m >= V_th and subtracts V_th; with V_th "
                "the next float64 above θ, each spike takes 2**-52*θ too much from V_m"]
    return []
