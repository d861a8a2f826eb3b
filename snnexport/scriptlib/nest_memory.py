"""Memory of a network in NEST, per MPI process, from its neuron and synapse counts: what the exported
NEST and PyNN scripts print when they build, and ``snnexport info`` prints, so that a job can be sized.

NEST places each neuron on one process (round robin over processes x threads) and keeps a synapse
on its target's process, so neurons and synapses divide by the number of processes; the scripts
expand one projection at a time, each process only the synapses onto its own targets, and connect those.
Measured on NEST 3.10.0 (MPI build, x86-64) with ``benchmarks/mpi_memory.py --constants``: RSS before
and after creating 100,000 ``eprop_iaf`` neurons each connected to a spike_recorder, then 10 M
``static_synapse``s and one step of simulation (NEST prepares its connection tables then), on 1 and
on 2 processes (the figures per process match these constants divided by 2).
"""

NEURON_BYTES = 11_700  # a neuron: its node and its block of 1,024 recorder connections (11,681-11,686 B measured)
SYNAPSE_BYTES = 45  # a static synapse in NEST once prepared (42.6-44.9 B measured)
EXPAND_BYTES = 60  # while one projection is expanded and connected: its (pre, post, weight) lists (a process's
# share), numpy's temporaries and the arrays nest.Connect takes, a synapse (peak over the 10 M connected: 88.8 B,
# of which the 42.6 B NEST keeps)
PROCESS_BYTES = 300_000_000  # Python, numpy, NEST's kernel and the script's own code and weights


def nest_memory(neurons, synapses, largest_projection, processes=1):
    """Estimated peak bytes of one of ``processes`` MPI processes holding a network of ``neurons`` neurons
    and ``synapses`` synapses whose largest projection has ``largest_projection`` synapses."""
    processes = max(int(processes), 1)
    return int(PROCESS_BYTES + (neurons * NEURON_BYTES + synapses * SYNAPSE_BYTES
                                + largest_projection * EXPAND_BYTES) / processes)


def memory_line(neurons, synapses, largest_projection, processes=1):
    """One line: the estimate per process for this number of processes (and for 1, when it differs)."""
    per = nest_memory(neurons, synapses, largest_projection, processes)
    text = (f"memory estimate: {neurons:,} neurons and {synapses:,} synapses in NEST need about "
            f"{per / 1e9:,.2f} GB per process on {processes} process{'es' if processes > 1 else ''}")
    if processes > 1:
        text += f" ({nest_memory(neurons, synapses, largest_projection) / 1e9:,.2f} GB on one)"
    return text
