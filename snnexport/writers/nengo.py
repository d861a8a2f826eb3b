"""The ``nengo`` writer: a runnable Nengo 4 script of the spiking network.

What the script does in Nengo's own terms (template ``templates/nengo.py.j2``):

* ``--batch B`` samples run at once as B independent copies of the network inside one Nengo model
  (one ``nengo.Simulator``, built once and reset between batches; a last, smaller batch leaves its
  extra copies idle): every population is one ``nengo.Ensemble`` of B x n neurons, copy b holding
  neurons b x n ... (b + 1) x n - 1; the results are those of B = 1 bit for bit. The default B keeps
  about 2**17 neurons in a step (the CPU's caches) within a memory bound, and the script says so;
* each population's neurons are a small custom ``NeuronType`` (``IntegrateAndFire``) built by its own
  registered builder op: V starts at 0, at most one spike per step, reset by subtraction or to zero,
  clamp; gain 1 and the population's bias as the ensemble's bias; it also keeps each neuron's spike
  count and each copy's spikes per step, so that no probe records every neuron;
* the simulator runs with ``dt = 1`` so that a spike (amplitude / dt) is one event of weight 1;
* a projection that is one convolution (any padding, stride, dilation, groups), dense layer or
  unpadded average pooling is a ``KernelProduct`` process: the patches of every copy as one strided
  view of the source, times the kernel, one ``np.matmul`` slice per copy (the same sums in every
  copy); a scale is Nengo's scalar transform; any other chain of ops is ``nengo.transforms.Sparse``
  of the expanded synapses repeated per copy (``--transforms sparse``: Sparse everywhere);
  a concatenation or addition is several connections into one target;
* the analog input's current into its first populations is computed once per batch in numpy, tap by
  tap as the reference simulator sums it, and emitted by a ``nengo.Node``; Poisson input is a Node
  of the seeded ``runtime.poisson_input`` spikes of every copy;
* the one-step delay per population is the discrete pass-through filter ``LinearFilter([1], [1],
  analog=False)``, which Nengo applies as an update at the end of the step; with ``--delay zero`` the
  connection has no synapse and Nengo's dependency order runs the populations in depth order in one step;
* max-pooling gates are ``MaxPoolGate`` processes over every copy at once (vectorized: per step,
  only windows where a spike can unseat the leader are compared again); their state is process
  state that ``sim.reset()`` clears. The spiking softmax is drawn after each batch from the probed
  output potentials (the output population feeds nothing, so nothing in the run depends on it).
"""

from __future__ import annotations

from .base import NATIVE
from .script import ScriptWriter


class NengoWriter(ScriptWriter):
    name = "nengo"
    summary = "Nengo 4 script: batches of copies, exact custom IF neurons, batched kernel products, one-step synapses"
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
        "analog_input": (NATIVE, "a nengo.Node emitting each copy's input current (computed once per batch), "
                                  "connected without synapse"),
        "poisson_input": (NATIVE, "a nengo.Node emitting the seeded runtime.poisson_input spikes of every copy"),
        "bias": (NATIVE, "the ensemble's bias with gain 1"),
        "delay_step": (NATIVE, "synapse LinearFilter([1], [1], analog=False): Nengo's end-of-step update "
                               "delivers spikes of step t in step t + 1"),
        "conv2d": (NATIVE, "KernelProduct process: strided patches times the kernel, one matmul per copy "
                           "(any padding, stride, dilation); in a longer op chain nengo.transforms.Sparse"),
        "depthwise_conv": (NATIVE, "KernelProduct with one matmul per group and copy"),
        "conv_transpose": (NATIVE, "nengo.transforms.Sparse of the expanded synapses (also nearest upsampling "
                                   "and cropping)"),
        "dense": (NATIVE, "KernelProduct (each position of a larger tensor's last axis a row)"),
        "avgpool": (NATIVE, "KernelProduct with weights 1/k when unpadded, else nengo.transforms.Sparse"),
        "padding": (NATIVE, "the KernelProduct's zero border, or nengo.transforms.Sparse (exact)"),
        "permute": (NATIVE, "nengo.transforms.Sparse, one synapse per neuron"),
        "concatenate": (NATIVE, "one connection per source into the target (kernel slice or Sparse)"),
        "add": (NATIVE, "one connection per source into the target; Nengo sums their input"),
        "maxpool_gate": (NATIVE, "a nengo.Node running a MaxPoolGate nengo.Process over every copy "
                                 "(state reset with sim.reset())"),
        "readout_count": (NATIVE, "probed output spikes"),
        "readout_membrane": (NATIVE, "output neurons only integrate (fire=False); probed voltage"),
        "readout_softmax": (NATIVE, "output neurons only integrate; spikes drawn from softmax of the probed "
                                    "voltage with runtime.softmax_readout after each batch"),
        "clamp": (NATIVE, "IntegrateAndFire.hold_steps = clamp x depth, read from Nengo's step counter"),
        "negative_spikes": (NATIVE, "IntegrateAndFire(sign=True) emits -1 where V <= -threshold"),
        "v_init": (NATIVE, "IntegrateAndFire(v_start=v_init*θ) sets V in its first live step (and holds it while "
                           "clamped)"),
        "threshold_gt": (NATIVE, "IntegrateAndFire(strict=True) fires where V > threshold (-1 where V < -threshold)"),
    }
