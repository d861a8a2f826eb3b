"""The ``pynn`` writer: a PyNN script of the spiking network, exact on pyNN.nest.

The network is built with PyNN's own objects (sim.setup, Population, Projection,
SpikeSourceArray). On pyNN.nest the neurons are NEST's ``eprop_iaf`` through
``sim.native_cell_type`` and the script reaches the NEST nodes behind the populations where PyNN
is slow or shifts time (see the script's ``Backend`` class); on any other PyNN back end it falls
back to ``IF_curr_delta`` with reset to zero, says so on stderr, and is an approximation. How the
contract maps onto NEST is in :mod:`snnexport.writers.nest_common`.
"""

from __future__ import annotations

from ..network import Network
from . import nest_common
from .base import WriteOptions
from .nest import nest_context
from .script import ScriptWriter


class PyNNWriter(ScriptWriter):
    name = "pynn"
    summary = "PyNN script, exact on pyNN.nest (native eprop_iaf); IF_curr_delta fallback on other back ends"
    template = "pynn.py.j2"
    simulator = "PyNN"
    runnable = True
    module = "pyNN"
    requires = ("pyNN", "nest")  # its scripts run on pyNN.nest
    extra = "nest"
    distribution = "pyNN"
    mpi = True  # on pyNN.nest (its default back end)
    scriptlib = ScriptWriter.scriptlib + ("nest_schedule", "nest_memory")
    capabilities = nest_common.capabilities(
        "built with one array nest.Connect per projection through the PyNN populations' node collections "
        "(PyNN Projections with FromListConnector under --pynn-projections or other back ends)")

    def check(self, net: Network) -> list[str]:
        combinations = nest_common.check_network(net, self.name)
        return super().check(net) + combinations

    def context(self, net: Network, options: WriteOptions) -> dict[str, object]:
        return nest_context(net)
