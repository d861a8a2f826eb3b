"""How a run is cut up: samples per group, steps per chunk, groups per compiled call, calls per thread."""

from __future__ import annotations

import os
from dataclasses import dataclass

import jax

CPU_BYTES = 2 ** 20  # on a CPU, a population's state over one chunk (group × Tc rows) stays under this
CPU_MAX_ROWS = 256  # and a projection call has at most this many rows
CPU_STEPS = 10  # steps per chunk that a group aims at
GPU_ROWS = 4096  # rows per call on an accelerator
GPU_STEPS = 16  # steps per chunk on an accelerator (so 256 samples per group)


def accelerated() -> bool:
    return jax.default_backend() != "cpu"


def cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def plan(steps: int, largest: int) -> tuple[int, int, int]:
    """(group, Tc, chunks) for T steps and ``largest`` neurons in a population.

    A group of samples is simulated together with Tc steps folded into each projection call
    (group × Tc rows); the groups of a batch run one after another inside one compiled program.
    On a CPU both stay small so that every population's state stays in cache (package docstring).
    The plan depends on the network and T alone, never on how many samples there are: a matrix
    product may round its last bit differently for a different number of rows (seen with dense
    layers on some x86-64 CPUs), so a fixed row count is what makes results independent of the
    batch size, bit for bit. A short last group is padded with zero samples.
    """
    if accelerated():
        rows = GPU_ROWS
        group = max(1, rows // GPU_STEPS)
    else:
        rows = max(1, min(CPU_MAX_ROWS, CPU_BYTES // (4 * max(largest, 1))))
        group = max(1, rows // CPU_STEPS)
    tc = max(1, min(steps, rows // group))
    chunks = -(-steps // tc)
    tc = -(-steps // chunks)  # spread evenly: the least padding for this number of chunks
    return group, tc, chunks


@dataclass(frozen=True)
class Batching:
    """The shape of one run: ``group`` samples simulated together, ``chunks`` chunks of ``tc`` steps,
    ``per_call`` groups in one compiled call (``size`` samples, the last call padded with zeros),
    split evenly over ``devices`` devices, calls spread over ``workers`` threads."""
    group: int
    tc: int
    chunks: int
    per_call: int
    size: int
    workers: int
    devices: int = 1

    @classmethod
    def of(cls, steps: int, batch: int, largest: int, group: int | None = None,
           chunk_steps: int | None = None, devices: int = 1) -> "Batching":
        """:func:`plan`'s batching for ``batch`` samples at a time on up to ``devices`` devices;
        ``group`` and ``chunk_steps`` override the plan. Neither the batch nor the devices change
        the rows of a group, so neither changes a result."""
        group_, tc, chunks = plan(steps, largest)
        if group is not None:
            group_ = max(1, int(group))
        groups = -(-batch // group_)
        if chunk_steps is not None:
            tc = max(1, min(int(chunk_steps), steps))
            chunks = -(-steps // tc)
        devices = max(1, min(devices, groups))  # a device with only padding groups would idle anyway
        # a call is one compiled run over some groups on every device; on a CPU, calls run on one
        # thread per core (the host devices share the cores)
        workers = 1 if accelerated() else max(1, cores() // devices)
        per_device = -(-groups // (devices * min(workers, -(-groups // devices))))
        per_call = per_device * devices
        return cls(group_, tc, chunks, per_call, per_call * group_, workers, devices)
