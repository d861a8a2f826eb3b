"""What is specific to the Brian2 scripts: the analog input's current is summed one kernel tap at a
time in float32, the order in which the reference simulator's convolution sums, so that the currents,
and with them the membrane potentials, agree bit for bit. The contract every writer keeps is tested in
tests/test_writer_contract.py, the semantics in tests/test_semantics.py.
"""

from __future__ import annotations

import numpy as np

from backends import Reference, Script
from conftest import needs
from snnexport.network import InputSpec, Network, Neuron, Population, Projection
from snnexport.ops import Conv2D

pytestmark = needs("brian2")


def test_input_taps_give_the_reference_currents_bit_for_bit(tmp_path):
    """A 5x5 convolution of 3 channels, random float32 weights, inputs and biases: after one step the
    membrane potential is the input current, W*x + b, and equals the reference simulator's in every bit."""
    rng = np.random.default_rng(11)
    kernel = rng.normal(0, 0.3, (5, 5, 3, 4)).astype(np.float32)
    bias = rng.normal(0, 0.1, (6, 6, 4)).astype(np.float32)
    out = Population("conv", (6, 6, 4), bias, "relu", 1.0, 1)
    net = Network(InputSpec("x", (10, 10, 3)), [out], [Projection("x", "conv", [Conv2D(kernel)])], "conv",
                  Neuron(1.0, "subtract"))
    x = rng.uniform(0, 1, (2, 10, 10, 3)).astype(np.float32)
    ours = Script("brian2", tmp_path).run(net, x, steps=1, readout="membrane")
    ref = Reference().run(net, x, steps=1, readout="membrane")
    assert np.abs(ref["output_v"]).max() > 0.5  # currents of a size where float32 sums round differently
    np.testing.assert_array_equal(ours["output_v"], ref["output_v"])
