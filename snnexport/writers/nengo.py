"""The ``nengo`` writer: a runnable Nengo 4 script of the spiking network.

What the script does in Nengo's own terms (template ``templates/nengo.py.j2``):

* each population is a ``nengo.Ensemble`` of a small custom ``NeuronType`` (``IntegrateAndFire``)
  built by its own registered builder op: V starts at 0, at most one spike per step, reset by
  subtraction or to zero, clamp; gain 1 and the population's bias as the ensemble's bias;
* the simulator runs with ``dt = 1`` so that a spike (amplitude / dt) is one event of weight 1;
* projections are connections into ``ensemble.neurons``: ``nengo.Convolution`` for a single
  convolution Nengo can pad, ``nengo.Dense`` for dense layers, a depthwise ``nengo.Convolution``
  for unpadded average pooling (the script's ``NATIVE_TRANSFORMS``, keyed by op kind and checked to
  cover every op kind), ``nengo.transforms.Sparse`` from the expanded synapses otherwise;
  a concatenation or addition is several connections into one target;
* the one-step delay per population is the discrete pass-through filter ``LinearFilter([1], [1],
  analog=False)``, which Nengo applies as an update at the end of the step;
* the analog (or Poisson) input is a ``nengo.Node``, max-pooling gates are ``nengo.Process`` nodes
  whose counts ``sim.reset()`` clears; one simulator runs every sample, reset between them.
"""

from __future__ import annotations

from .base import NATIVE
from .script import ScriptWriter


class NengoWriter(ScriptWriter):
    name = "nengo"
    summary = "Nengo 4 script: exact custom IF neurons, nengo.Convolution/Dense/Sparse transforms, one-step synapses"
    template = "nengo.py.j2"
    simulator = "Nengo"
    runnable = True
    module = "nengo"
    requires = ("nengo",)
    extra = "nengo"
    distribution = "nengo"
    capabilities = {
        "reset_subtract": (NATIVE, "custom NeuronType IntegrateAndFire: V -= threshold after a spike"),
        "reset_zero": (NATIVE, "custom NeuronType IntegrateAndFire: V = 0 after a spike"),
        "analog_input": (NATIVE, "a nengo.Node emitting the sample every step, connected without synapse"),
        "poisson_input": (NATIVE, "a nengo.Node emitting the seeded runtime.poisson_input spikes of each step"),
        "bias": (NATIVE, "the ensemble's bias with gain 1"),
        "delay_step": (NATIVE, "synapse LinearFilter([1], [1], analog=False): Nengo's end-of-step update "
                               "delivers spikes of step t in step t + 1"),
        "conv2d": (NATIVE, "nengo.Convolution where Nengo's 'valid'/'same' padding fits and no dilation, "
                           "else nengo.transforms.Sparse of the expanded synapses (exact)"),
        "depthwise_conv": (NATIVE, "grouped nengo.Convolution (groups = channels), or Sparse as for conv2d"),
        "dense": (NATIVE, "nengo.Dense (a 1x1 nengo.Convolution on a larger tensor's last axis)"),
        "avgpool": (NATIVE, "depthwise nengo.Convolution with weights 1/k when unpadded, else Sparse (exact)"),
        "padding": (NATIVE, "Convolution 'same' where it matches, else nengo.transforms.Sparse (exact)"),
        "concatenate": (NATIVE, "one connection per source into the target (kernel slice or Sparse)"),
        "add": (NATIVE, "one connection per source into the target; Nengo sums their input"),
        "maxpool_gate": (NATIVE, "a nengo.Node running a MaxPoolGate nengo.Process (counts reset with sim.reset())"),
        "readout_count": (NATIVE, "probed output spikes"),
        "readout_membrane": (NATIVE, "output neurons only integrate (fire=False); probed voltage"),
        "readout_softmax": (NATIVE, "output neurons only integrate; spikes drawn from softmax of the probed "
                                    "voltage with runtime.softmax_readout"),
        "clamp": (NATIVE, "IntegrateAndFire.hold_steps = clamp x depth, read from Nengo's step counter"),
        "negative_spikes": (NATIVE, "IntegrateAndFire(sign=True) emits -1 where V <= -threshold"),
    }
