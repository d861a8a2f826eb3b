"""The ``nest`` writer: a plain PyNEST script (``import nest``) of the spiking network.

How the contract (docs/semantics.md) maps onto NEST is explained, with what was measured, in
:mod:`snnexport.writers.nest_common`, which the ``pynn`` writer shares. So is the script's code:
``templates/nest.py.j2`` extends ``templates/_nest.py.j2`` (as ``pynn.py.j2`` does) with a
``Backend`` class that makes the NEST calls.
"""

from __future__ import annotations

from ..network import Network
from . import nest_common
from .base import WriteOptions
from .script import Code, ScriptWriter, comment, py


def nest_context(net: Network) -> dict[str, object]:
    """Template variables both NEST-based templates use."""
    reset = net.neuron.reset
    params = nest_common.neuron_params(reset, net.neuron.threshold, net.neuron.threshold_rule)
    # tau_m = 2**60 is written as the expression, which says what it is; every other value through py()
    text = ", ".join(f"{k}={'2.0 ** 60' if k == 'tau_m' and v == nest_common.TAU_M else py(v)}"
                     for k, v in params.items())
    note = (["eprop_iaf resets by subtraction (V -= V_th); with C_m = 1, t_ref = 0 and tau_m = 2**60 ms",
             "at dt = 1 ms its update is V += (weights of the spikes arriving) exactly, and I_e is ignored:",
             "constant currents come from a pacemaker (snnexport.writers.nest_common says why)"]
            if reset == "subtract" else
            ["iaf_psc_delta resets to V_reset = 0; with C_m = 1, t_ref = 0 and tau_m = 2**60 ms it does not",
             "leak, and I_e is ignored: constant currents come from a pacemaker"])
    return {"neuron_model": nest_common.neuron_model(reset), "neuron_params": Code(f"dict({text})"),
            "model_note": [comment(line) for line in note], "hold": nest_common.HOLD, "never": nest_common.NEVER,
            "v_th": params["V_th"], **nest_common.network_counts(net)}


class NestWriter(ScriptWriter):
    name = "nest"
    summary = "PyNEST script (NEST 3: eprop_iaf for reset by subtraction, array nest.Connect, exact max-pool gates)"
    template = "nest.py.j2"
    simulator = "NEST (PyNEST)"
    runnable = True
    module = "nest"
    requires = ("nest",)
    extra = "nest"
    distribution = "nest-simulator"
    mpi = True
    scriptlib = ScriptWriter.scriptlib + ("nest_schedule", "nest_memory")
    capabilities = nest_common.capabilities("built with one array nest.Connect per projection")

    def check(self, net: Network) -> list[str]:
        combinations = nest_common.check_network(net, self.name)
        return super().check(net) + combinations

    def context(self, net: Network, options: WriteOptions) -> dict[str, object]:
        return nest_context(net)
