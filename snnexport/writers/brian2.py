"""The ``brian2`` writer: a runnable Brian2 script of the spiking network.

The script (template ``brian2.py.j2``) builds one ``NeuronGroup`` per population with
``threshold="v >= theta"`` and reset by subtraction (or to zero), biases and the analog input as
constant currents, and one ``Synapses`` object per projection, connected in bulk with
``connect(i=pre, j=post)`` from the expanded kernels. One contract step is one Brian2 time step;
how Brian2's schedule gives exactly one step of delay per population is explained in the script.
``--delay zero`` runs the same network time-shifted (docs/semantics.md): each population live in its own
window of T steps, offset by its depth, and synaptic delays of the offsets' difference.

``--batch B`` samples run at once as B independent copies of the network in one Brian2 network (the
synapse indices of copy b shifted by b*n); a last, smaller batch fills its remaining copies with
silent input (cpp_standalone runs the samples one after another instead, as rounds of one run).
Max-pool gates are exact and in Brian2's own generated code, no Python between steps: a cell's rank
folds its spike count and the step of its last change into one number; in compiled code each spike
offers its cell, ranked from its count, to its windows through a synapse (the window keeps the best
key offered), on numpy and after sign layers "slot" neurons compare the ranks of a window's cells
through summed variables; a relay ``NeuronGroup`` fires the spike of the window's winner. Nothing is
recorded per spike but the output's: every group counts its spikes per sample, and each population's
spikes per step are counted by a PopulationRateMonitor (one copy) or summed per copy by a tally
group. Synapses are stored source by source. So the same network also runs on the ``cpp_standalone`` device
(``--device cpp_standalone``, ``--threads N`` for OpenMP): compiled once, then run once per batch with
that batch's input (``device.run(run_args=...)``, Brian2 >= 2.6), writing back little more than the
network itself.

State variables are float32, like the reference simulator's, and the analog input current is summed
in float32 in kernel order, as the reference's (XLA) convolution sums it: on the bundled LeNet the
scripts then reproduce the reference's spike counts (tests/test_writer_brian2.py).
"""

from __future__ import annotations

from ..network import Network
from .base import NATIVE, WriteOptions
from .script import ScriptWriter

# The scripts' default device and why. Measured on the bundled LeNet, T = 100 (benchmarks/script_speed.py,
# a 2-core machine): the runtime device with numpy about as fast as the scripts of 83b90cc, cpp_standalone
# about 5x faster after a compilation of about 30 s; so "auto" compiles for AUTO_STANDALONE_SAMPLES samples
# or more (the bundled 10 samples run at once). --device/--target choose.
DEFAULT_DEVICE = "auto"
DEFAULT_TARGET = "numpy"
AUTO_STANDALONE_SAMPLES = 100
DEFAULT_REASON = (f"cpp_standalone (compiled once, about 30 s) for {AUTO_STANDALONE_SAMPLES} samples or more where a "
                  "C++ compiler and make are found, else runtime")
MAX_ROUNDS = 1024  # measured on the LeNet: a run of the program costs about 0.3 s besides its loop
ROUND_MEMORY = 2 ** 28
# --batch by default: copies of the network whose synapses fit this memory, at most MAX_BATCH
MEMORY_BUDGET = 2 ** 30
BYTES_PER_SYNAPSE = 50  # Brian2's memory per synapse, runtime and cpp_standalone, measured on the LeNet
MAX_BATCH = 32

_SYNAPSES = "expanded from the kernels with numpy; Synapses.connect(i=pre, j=post) and syn.w = weights"


class Brian2Writer(ScriptWriter):
    name = "brian2"
    summary = "a Brian2 script (NeuronGroup/Synapses; runtime code generation, or C++ standalone)"
    template = "brian2.py.j2"
    simulator = "Brian2"
    runnable = True
    module = "brian2"
    requires = ("brian2",)
    extra = "brian2"
    distribution = "brian2"

    def context(self, net: Network, options: WriteOptions) -> dict[str, object]:
        return {"default_device": DEFAULT_DEVICE, "default_target": DEFAULT_TARGET,
                "default_device_reason": DEFAULT_REASON, "memory_budget": MEMORY_BUDGET,
                "bytes_per_synapse": BYTES_PER_SYNAPSE, "max_batch": MAX_BATCH,
                "auto_standalone_samples": AUTO_STANDALONE_SAMPLES, "max_rounds": MAX_ROUNDS,
                "round_memory": ROUND_MEMORY}

    capabilities = {
        "reset_subtract": (NATIVE, 'reset="v -= theta"'),
        "reset_zero": (NATIVE, 'reset="v = 0"; input that arrived in the step waits in I_syn, so a reset '
                               "cannot wipe it out"),
        "analog_input": (NATIVE, "constant current I_input = W*x per sample, summed from the expanded input "
                                 "kernels in float32 in kernel order (as the reference's convolution)"),
        "poisson_input": (NATIVE, "a NeuronGroup firing where a TimedArray of the shared seeded draws is 1, "
                                  "scheduled before the groups so that step t's input drives step t"),
        "bias": (NATIVE, "constant current I_bias"),
        "delay_step": (NATIVE, "spikes propagated in step t add to I_syn, integrated at the start of step t+1"),
        "conv2d": (NATIVE, _SYNAPSES),
        "depthwise_conv": (NATIVE, _SYNAPSES),
        "conv_transpose": (NATIVE, _SYNAPSES + " (also nearest upsampling and cropping)"),
        "dense": (NATIVE, _SYNAPSES),
        "avgpool": (NATIVE, "part of the projection's synapses (weight 1/cells under the window)"),
        "padding": (NATIVE, "part of the projection's synapse indices"),
        "permute": (NATIVE, "one-to-one synapses to the permuted indices"),
        "concatenate": (NATIVE, "part of the projection's synapse indices"),
        "add": (NATIVE, "several Synapses objects add into the same I_syn"),
        "maxpool_gate": (NATIVE, "exact, in Brian2 code: ranks (count, step of last change); each spike offers "
                                 "its cell to its windows through a synapse, which keeps the best (after a sign "
                                 "layer: all pairs compared by synapses with summed variables); a relay "
                                 "NeuronGroup fires the winner's spike"),
        "readout_count": (NATIVE, "SpikeMonitor of the output group; ties by membrane potential"),
        "readout_membrane": (NATIVE, "output group without threshold; argmax of v"),
        "readout_softmax": (NATIVE, "output group without threshold; a StateMonitor records v after each step's "
                                    "integration and runtime.softmax_readout draws the spikes (shared seeded draws)"),
        "clamp": (NATIVE, "integration gated by t_in_timesteps >= clamp_steps"),
        "negative_spikes": (NATIVE, "custom event 'negative_spike' (v <= -theta) with its own reset, "
                                    "EventMonitor and a Synapses pathway that subtracts w"),
        "v_init": (NATIVE, "v = v_start at the start of every sample's round (and held there while clamped)"),
        "threshold_gt": (NATIVE, 'threshold="v > theta" (negative spikes: v < -theta)'),
    }
