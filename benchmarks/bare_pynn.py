"""The bare network of an exported PyNN script on pyNN.nest: the bare NEST network of benchmarks/bare_nest.py.

    KERAS_BACKEND=jax python benchmarks/bare_pynn.py NET.snn INPUTS.npy [--steps 100] [-n 100]

On pyNN.nest the PyNN script's neurons, synapses and pacemakers are NEST nodes and connections, and
its simulation is NEST's: the floor it is measured against is the same bare NEST network (same
neurons, synapses and constant currents, driven by the recorded gate outputs, one monitor), built
here with NEST's own calls rather than PyNN's (whose Population objects add seconds to a build and
nothing to a step, and whose SpikeSourceArrays add a parrot relay). benchmarks/script_speed.py
imports ``bare_seconds``.
"""

from __future__ import annotations

from bare_nest import bare_seconds, main

__all__ = ["bare_seconds"]

if __name__ == "__main__":
    main()
