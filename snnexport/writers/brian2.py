"""The ``brian2`` writer: a runnable Brian2 script of the spiking network.

The script (template ``brian2.py.j2``) builds one ``NeuronGroup`` per population with
``threshold="v >= theta"`` and reset by subtraction (or to zero), biases and the analog input as
constant currents, and one ``Synapses`` object per projection, connected in bulk with
``connect(i=pre, j=post)`` from the expanded kernels. One contract step is one Brian2 time step;
how Brian2's schedule gives exactly one step of delay per population is explained in the script.
Max-pool gates are exact: a ``network_operation`` picks each window's most active neuron after the
thresholds of every step and sets the threshold flag of a relay ``NeuronGroup`` whose spikes go
through ordinary ``Synapses``. Several samples run one after the other with ``store()`` /
``restore()`` in between, so the network is built once.

State variables are float32, like the reference simulator's, and the analog input current is summed
in float32 in kernel order, as the reference's (XLA) convolution sums it: on the bundled LeNet the
scripts then reproduce the reference's spike counts for all of 20 MNIST samples at 100 steps
(``benchmarks/brian2_build.py`` measures it). Not offered: Brian2's ``cpp_standalone`` device,
which cannot run the ``network_operation``s that make the gates exact.
"""

from __future__ import annotations

from .base import NATIVE
from .script import ScriptWriter

_SYNAPSES = "expanded from the kernels with numpy; Synapses.connect(i=pre, j=post) and syn.w = weights"


class Brian2Writer(ScriptWriter):
    name = "brian2"
    summary = "a Brian2 script (NeuronGroup/Synapses, runtime code generation with numpy)"
    template = "brian2.py.j2"
    simulator = "Brian2"
    runnable = True
    module = "brian2"
    requires = ("brian2",)
    extra = "brian2"
    distribution = "brian2"
    capabilities = {
        "reset_subtract": (NATIVE, 'reset="v -= theta"'),
        "reset_zero": (NATIVE, 'reset="v = 0"; input that arrived in the step waits in I_syn, so a reset '
                               "cannot wipe it out"),
        "analog_input": (NATIVE, "constant current I_input = W*x per sample, summed from the expanded input "
                                 "kernels in float32 in kernel order (as the reference's convolution)"),
        "poisson_input": (NATIVE, "SpikeGeneratorGroup fed the shared seeded draws, scheduled before the "
                                  "groups so that step t's input drives step t"),
        "bias": (NATIVE, "constant current I_bias"),
        "delay_step": (NATIVE, "spikes propagated in step t add to I_syn, integrated at the start of step t+1"),
        "conv2d": (NATIVE, _SYNAPSES),
        "depthwise_conv": (NATIVE, _SYNAPSES),
        "dense": (NATIVE, _SYNAPSES),
        "avgpool": (NATIVE, "part of the projection's synapses (weight 1/cells under the window)"),
        "padding": (NATIVE, "part of the projection's synapse indices"),
        "concatenate": (NATIVE, "part of the projection's synapse indices"),
        "add": (NATIVE, "several Synapses objects add into the same I_syn"),
        "maxpool_gate": (NATIVE, "exact: a network_operation picks each window's most active neuron every step "
                                 "and sets the threshold flag of a relay NeuronGroup"),
        "readout_count": (NATIVE, "SpikeMonitor of the output group; ties by membrane potential"),
        "readout_membrane": (NATIVE, "output group without threshold; argmax of v"),
        "readout_softmax": (NATIVE, "output group without threshold; a StateMonitor records v after each step's "
                                    "integration and runtime.softmax_readout draws the spikes (shared seeded draws)"),
        "clamp": (NATIVE, "integration gated by t_in_timesteps >= clamp_steps"),
        "negative_spikes": (NATIVE, "custom event 'negative_spike' (v <= -theta) with its own reset, "
                                    "EventMonitor and a Synapses pathway that subtracts w"),
    }
