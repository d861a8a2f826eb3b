"""The local devices a run spreads its groups of samples over (one process; :mod:`snnexport.shards` for several).

A compiled call holds ``per_call`` groups of ``group`` samples. On D devices the call's group axis
is cut into D contiguous blocks with ``shard_map`` (a batch-axis ``NamedSharding``): each device
runs the very program one device runs, ``lax.map`` over its own groups, each group with the rows
that :func:`.plan.plan` fixed. So a sample's numbers do not depend on which device ran it, nor on
how many there were (tested in a subprocess with forced host devices). The weights are replicated.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..errors import SnnexportError

AXIS = "samples"


def available() -> int:
    """How many devices of the default backend this process sees."""
    return len(jax.local_devices())


def chosen(count: int | None) -> int:
    """The device count a run asks for: None means every local device of the default backend."""
    have = available()
    if count is None:
        return have
    count = int(count)
    if not 1 <= count <= have:
        kind = jax.default_backend()
        raise SnnexportError(f"devices must be from 1 to {have} (the {kind} devices this process sees), not {count}")
    return count


def spread(fn: Callable, count: int) -> Callable:
    """``fn(params, x, u)`` (group axis first on x, u and every output) jitted over the first ``count``
    local devices, its group axis sharded; ``count`` 1 is the plain jit."""
    if count == 1:
        return jax.jit(fn)
    # no collectives: each device's block is independent (check_vma would ask every zero-initialised
    # carry of the scans to be marked as varying over the devices)
    return jax.jit(jax.shard_map(fn, mesh=_mesh(count), in_specs=(PartitionSpec(), PartitionSpec(AXIS),
                                                                  PartitionSpec(AXIS)),
                                 out_specs=PartitionSpec(AXIS), check_vma=False))


def placer(count: int) -> Callable:
    """``put(tree, sharded)``: arrays onto the run's devices, split along the group axis or replicated."""
    if count == 1:
        return lambda tree, sharded: tree
    mesh = _mesh(count)
    split, whole = NamedSharding(mesh, PartitionSpec(AXIS)), NamedSharding(mesh, PartitionSpec())
    return lambda tree, sharded: jax.device_put(tree, split if sharded else whole)


def _mesh(count: int) -> Mesh:
    return Mesh(np.array(jax.local_devices()[:count]), (AXIS,))
