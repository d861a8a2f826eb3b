"""The jitted simulation program: static facts of the network, the per-population step, the chunk scan.

:func:`program` reads everything the compiled code depends on out of a network once (the
population and gate facts below, frozen); :func:`build_kernel` compiles one ``lax.scan`` over
chunks of Tc steps in which every population, in topological order, gets its input current for
the chunk (:func:`drive`: one call per projection, time folded into the rows) and then runs
:func:`neuron_step` over the chunk's steps, its gates evaluated in the same step
(:func:`gate_step`). The order of operations inside a step is docs/semantics.md's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..errors import SnnexportError
from ..network import Gate, Network
from .gates import GateFn, Layout, blocked, gate_fn, gate_key
from .lowering import Chain, chain

Shape = tuple[int, ...]


@dataclass(frozen=True)
class GateFacts:
    """A gate as the step of its root population sees it."""
    name: str
    source: str
    index: int  # among the network's gates, in node order (the results' order)
    shape: Shape
    source_shape: Shape
    nested: bool  # a gate reads this one: its running count and last change are carried through the steps
    blocked: bool  # its source is stored window-major for it (Layout.gate instead of ``fn``)
    fn: GateFn


@dataclass(frozen=True)
class PopFacts:
    """A population's static facts: what its step and its chunk need besides arrays."""
    name: str
    index: int  # among the network's populations
    shape: Shape
    depth: int
    sign: bool  # emits −1 spikes at −θ
    only_v: bool  # the membrane or softmax readout's output: it integrates and never spikes
    layout: Layout | None  # stored window-major for its one gate
    gates: tuple[GateFacts, ...]  # evaluated in its step: the gates whose chain of sources starts here
    inputs: tuple[tuple[int, str, bool], ...]  # spiking projections in: (index, source, one step late)
    analog: tuple[int, ...]  # projections from the analog input: part of the constant current
    read: bool  # a projection reads its spikes
    output: bool


@dataclass(frozen=True)
class Dynamics:
    """What every population's step shares."""
    theta: np.float32
    reset_zero: bool
    strict: bool  # threshold rule "gt": fire where V > θ (V < −θ for −1 spikes), else V >= θ
    v0: np.float32  # V before the first step and while clamped: v_init·θ
    pad_steps: bool  # the last chunk runs past T: those steps must change nothing
    key: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array | None]]  # gates.gate_key
    batch: int  # samples simulated together (B)


@dataclass(frozen=True)
class Program:
    """Everything the compiled code depends on, for one network structure and one plan."""
    pops: tuple[PopFacts, ...]
    gates: tuple[GateFacts, ...]  # in node order
    chains: tuple[Chain, ...]  # per projection
    dyn: Dynamics
    input: str
    poisson: bool
    late: tuple[tuple[str, Shape], ...]  # nodes whose last spikes of a chunk the next chunk reads
    tc: int
    chunks: int
    steps: int
    clamp: int


def _roots(net: Network, readout: str) -> dict[str, str]:
    """Check what the kernel relies on; returns each gate's root population (whose step evaluates it)."""
    if net.input.encoding not in ("analog", "poisson"):
        raise SnnexportError(f"unknown input encoding {net.input.encoding!r}")
    if net.neuron.reset not in ("subtract", "zero"):
        raise SnnexportError(f"unknown reset {net.neuron.reset!r}")
    out = net.output
    if out not in {p.name for p in net.populations}:
        raise SnnexportError(f"the output {out!r} is not a population")
    leaf_only = readout in ("membrane", "softmax")
    if leaf_only and any(p.source == out for p in net.projections):
        raise SnnexportError(f"the {readout} readout needs an output population that feeds nothing")
    # A gate is evaluated inside the step of the population at the root of its chain of gates:
    # it needs that step's spikes and running counts, and nothing else.
    root: dict[str, str] = {}
    seen = {net.input.name}
    for n in net.nodes:  # feed-forward check: every source is simulated before its targets
        for pr in net.projections:
            if pr.target == n.name and pr.source not in seen:
                raise SnnexportError(f"projection {pr.source!r} → {n.name!r} goes backwards; the network "
                                     "must be feed-forward in node order")
        if isinstance(n, Gate):
            if n.source not in seen or n.source == net.input.name:
                raise SnnexportError(f"gate {n.name!r} needs a population before it as its source, "
                                     f"not {n.source!r}")
            root[n.name] = root.get(n.source, n.source)
        seen.add(n.name)
    if leaf_only and out in root.values():
        raise SnnexportError(f"the {readout} readout needs an output population that feeds nothing")
    return root


def program(net: Network, group: int, tc: int, chunks: int, steps: int, delay: str, readout: str,
            clamp: int) -> Program:
    """The static facts of ``net``'s simulation with this plan (see :class:`Program`)."""
    root = _roots(net, readout)
    gates = [n for n in net.nodes if isinstance(n, Gate)]
    nested = {g.source for g in gates}  # gates (and populations) that a gate reads
    layouts: dict[str, Layout] = {}  # populations stored window-major for their single gate
    for p in net.populations:
        direct = [g for g in gates if g.source == p.name]
        if len(direct) == 1 and blocked(direct[0], tuple(p.shape)):
            layouts[p.name] = Layout(direct[0], tuple(p.shape))
    gate_facts = tuple(GateFacts(name=g.name, source=g.source, index=k, shape=tuple(g.shape),
                                 source_shape=tuple(net.shape_of(g.source)), nested=g.name in nested,
                                 blocked=g.source in layouts, fn=gate_fn(g)) for k, g in enumerate(gates))
    poisson, delayed, inp = net.input.encoding == "poisson", delay == "step", net.input.name
    sources = {pr.source for pr in net.projections}
    pops = []
    for i, p in enumerate(net.populations):
        incoming = [(j, pr.source) for j, pr in enumerate(net.projections) if pr.target == p.name]
        pops.append(PopFacts(
            name=p.name, index=i, shape=tuple(p.shape), depth=int(p.depth), sign=p.activation == "sign",
            only_v=readout in ("membrane", "softmax") and p.name == net.output, layout=layouts.get(p.name),
            gates=tuple(g for g in gate_facts if root[g.name] == p.name),
            inputs=tuple((j, s, delayed and s != inp) for j, s in incoming if s != inp or poisson),
            analog=tuple(j for j, s in incoming if s == inp and not poisson),
            read=p.name in sources, output=p.name == net.output))
    chains = tuple(chain(p.ops, net.shape_of(p.source), layouts.get(p.target))[0] for p in net.projections)
    late = tuple((name, tuple(net.shape_of(name))) for name in sorted(sources - {inp})) if delayed else ()
    dyn = Dynamics(np.float32(net.neuron.threshold), net.neuron.reset == "zero", net.neuron.threshold_rule == "gt",
                   np.float32(net.neuron.v_start()), chunks * tc > steps, gate_key(steps), group)
    return Program(tuple(pops), gate_facts, chains, dyn, inp, poisson, late, tc, chunks, steps, clamp)


# --- one step of one population ---------------------------------------------------------------------

def _fire(pop: PopFacts, dyn: Dynamics, v: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(V after reset, spikes) of a membrane potential that has integrated this step's current."""
    if pop.only_v:
        return v, jnp.zeros_like(v)
    if dyn.strict:
        s = (v > dyn.theta).astype(jnp.float32)
        if pop.sign:
            s = s - (v < -dyn.theta).astype(jnp.float32)
    else:
        s = (v >= dyn.theta).astype(jnp.float32)
        if pop.sign:
            s = s - (v <= -dyn.theta).astype(jnp.float32)
    v = jnp.where(s != 0, np.float32(0), v) if dyn.reset_zero else v - dyn.theta * s
    return v, s


def gate_step(pop: PopFacts, dyn: Dynamics, cnt: jax.Array, since: jax.Array, s: jax.Array, gcnt: list,
              gsince: list, tt: jax.Array) -> tuple[list, list, list[jax.Array]]:
    """The population's gates in this step, after it (counts include the step): (gcnt, gsince, passed)."""
    srcs = {pop.name: dyn.key(cnt, since) + (s,)}
    passed = []
    for k, g in enumerate(pop.gates):
        c_src, l_src, s_src = srcs[g.source]
        if g.blocked:
            pg = pop.layout.gate(c_src, l_src, s_src).reshape(dyn.batch, -1)
        else:
            shape = (dyn.batch,) + g.source_shape
            pg = g.fn(c_src.reshape(shape), None if l_src is None else l_src.reshape(shape), s_src.reshape(shape))
            pg = pg.reshape(dyn.batch, -1)
        if g.nested:  # a gate on this gate needs its running count
            gcnt[k] = gcnt[k] + pg
            gsince[k] = jnp.where(pg != 0, tt, gsince[k])
            srcs[g.name] = dyn.key(gcnt[k], gsince[k]) + (pg,)
        passed.append(pg)
    return gcnt, gsince, passed


def neuron_step(pop: PopFacts, dyn: Dynamics, const: jax.Array, state: tuple, inputs: tuple) -> tuple[tuple, tuple]:
    """One step of one population (the ``lax.scan`` body over a chunk's steps).

    ``state`` is (V, count, since, gate counts, gate sinces), the counts only where a gate compares
    them; ``inputs`` is (spiking drive or None, not clamped, within T, step number).
    """
    v, cnt, since, gcnt, gsince = state
    d, lv, kp, tt = inputs
    v1, s = _fire(pop, dyn, v + (const if d is None else const + d))
    v1 = jnp.where(lv, v1, dyn.v0)  # clamped: V stays at its initial value
    s = jnp.where(lv & kp, s, np.float32(0))
    if dyn.pad_steps:
        v1 = jnp.where(kp, v1, v)
    gcnt, gsince, passed = list(gcnt), list(gsince), []
    if pop.gates:
        cnt = cnt + s
        since = jnp.where(s != 0, tt, since)
        gcnt, gsince, passed = gate_step(pop, dyn, cnt, since, s, gcnt, gsince, tt)
    return (v1, cnt, since, gcnt, gsince), (s.astype(jnp.int8), passed, v1 if pop.only_v else None)


# --- one chunk of all populations ------------------------------------------------------------------

def drive(prog: Program, pop: PopFacts, proj: list, spikes: dict, last: dict) -> jax.Array | None:
    """Σ of the population's spiking projections over a chunk, (Tc, B, n); None when it has none."""
    tc, b = prog.tc, prog.dyn.batch
    total = None
    for j, src, late in pop.inputs:
        s = spikes[src]
        if late:
            s = jnp.concatenate([last[src][None], s[:-1]], axis=0)
        rows = s.reshape((tc * b,) + s.shape[2:])
        cur = prog.chains[j](proj[j], rows).reshape(tc, b, -1)
        total = cur if total is None else total + cur
    return total


def _chunk_of(prog: Program, pop: PopFacts, const: jax.Array, d: jax.Array | None, t: jax.Array,
              carry: dict) -> tuple:
    """The population over one chunk: (state at its end, int8 spikes (Tc, B, n), gates' spikes, V per step)."""
    live = t > prog.clamp * pop.depth  # clamp: V held at its initial value, no spikes
    keep = t <= prog.steps  # steps past T (chunk padding) change nothing
    i = pop.index
    # running counts are carried through the steps only where a gate needs them
    state0 = (carry["v"][i], carry["count"][i] if pop.gates else None, carry["since"][i],
              [carry["gcount"][g.index] if g.nested else None for g in pop.gates],
              [carry["gsince"][g.index] for g in pop.gates])
    return lax.scan(partial(neuron_step, pop, prog.dyn, const), state0, (d, live, keep, t.astype(jnp.float32)),
                    unroll=prog.tc == 1)


def chunk(prog: Program, proj: list, const: list, carry: dict, xs: tuple) -> tuple[dict, dict]:
    """Every population over one chunk of Tc steps, in topological order (the outer ``lax.scan`` body)."""
    c_idx, u_c = xs
    tc, b = prog.tc, prog.dyn.batch
    t = c_idx * tc + jnp.arange(1, tc + 1)  # the steps of this chunk, (Tc,)
    spikes: dict[str, jax.Array] = {}  # (Tc, B, *shape) float32 spikes of this chunk
    new = {"v": list(carry["v"]), "count": list(carry["count"]), "gcount": list(carry["gcount"]),
           "since": list(carry["since"]), "gsince": list(carry["gsince"]), "last": {}}
    ys: dict[str, Any] = {"sps": []}
    if prog.poisson:
        spikes[prog.input] = u_c.astype(jnp.float32)
    for pop in prog.pops:
        i = pop.index
        d = drive(prog, pop, proj, spikes, carry["last"])
        (v_end, cnt_end, since_end, g_end, gs_end), (s8, passed, v_traj) = _chunk_of(prog, pop, const[i], d, t,
                                                                                       carry)
        new["since"][i] = since_end
        if not pop.gates:
            cnt_end = carry["count"][i] + s8.astype(jnp.float32).sum(axis=0)
        sps = jnp.abs(s8.astype(jnp.int32)).sum(axis=2)  # (Tc, B)
        if pop.layout is not None:
            s8 = pop.layout.from_blocks(s8.reshape(tc * b, -1))
        s8 = s8.reshape((tc, b) + pop.shape)
        if pop.read:
            spikes[pop.name] = s8.astype(jnp.float32)
        new["v"][i], new["count"][i] = v_end, cnt_end
        for g, pg, gc, gs in zip(pop.gates, passed, g_end, gs_end):
            spikes[g.name] = pg.reshape((tc, b) + g.shape)
            new["gcount"][g.index] = gc if g.nested else carry["gcount"][g.index] + pg.sum(axis=0)
            new["gsince"][g.index] = gs
        ys["sps"].append(sps)
        if pop.output:
            ys["out"] = s8.reshape(tc, b, -1)
            if v_traj is not None:
                ys["v"] = v_traj
    for name, _ in prog.late:
        new["last"][name] = spikes[name][-1]
    ys["sps"] = jnp.stack(ys["sps"], axis=-1)  # (Tc, B, P)
    return new, ys


# --- the program --------------------------------------------------------------------------------

def _constants(prog: Program, params: dict, x: jax.Array) -> list[jax.Array]:
    """Per population, the current it gets every step: bias, plus the analog input's (once per sample)."""
    b = prog.dyn.batch
    const = []
    for pop, bias in zip(prog.pops, params["bias"]):
        c = jnp.broadcast_to(bias, (b, bias.shape[0]))
        if pop.layout is not None:
            c = pop.layout.to_blocks(c)
        for j in pop.analog:
            c = c + prog.chains[j](params["proj"][j], x).reshape(b, -1)
        const.append(c)
    return const


def _initial(prog: Program) -> dict:
    """The carry before the first chunk: V at its initial value, everything else at zero."""
    b = prog.dyn.batch

    def zeros(n: int) -> jax.Array:
        return jnp.zeros((b, n), jnp.float32)

    sizes = [int(np.prod(p.shape)) for p in prog.pops]
    gsizes = [int(np.prod(g.shape)) for g in prog.gates]
    return {"v": [jnp.full((b, n), prog.dyn.v0, jnp.float32) for n in sizes],
            "count": [zeros(n) for n in sizes],  # exact below 2**24
            "gcount": [zeros(n) for n in gsizes],
            # step at which each count last changed, where a gate compares counts (its tie-break)
            "since": [zeros(n) if p.gates else None for p, n in zip(prog.pops, sizes)],
            "gsince": [zeros(n) if g.nested else None for g, n in zip(prog.gates, gsizes)],
            "last": {name: jnp.zeros((b,) + shape, jnp.float32) for name, shape in prog.late}}


def run_group(prog: Program, params: dict, x: jax.Array, u: jax.Array | None) -> dict:
    """One group of samples: x (B, *in), u (chunks, Tc, B, *in) or None → the kernel's results."""
    const = _constants(prog, params, x)
    final, ys = lax.scan(partial(chunk, prog, params["proj"], const), _initial(prog), (jnp.arange(prog.chunks), u))
    unblock = [p.layout.from_blocks if p.layout is not None else (lambda a: a) for p in prog.pops]
    out = next(p.index for p in prog.pops if p.output)
    res = {"count": [f(c).astype(jnp.int32) for f, c in zip(unblock, final["count"])],
           "gcount": [c.astype(jnp.int32) for c in final["gcount"]],
           "v_out": unblock[out](final["v"][out]),
           "sps": ys["sps"], "out": ys["out"]}
    if "v" in ys:
        res["v_traj"] = ys["v"]
    return res


def build_kernel(net: Network, group: int, tc: int, chunks: int, steps: int, delay: str, readout: str,
                 clamp: int) -> Callable:
    """The jitted simulation: params, x (G, B, *in), u (G, chunks, Tc, B, *in) or None; the groups
    one after another in one program."""
    prog = program(net, group, tc, chunks, steps, delay, readout, clamp)

    def batched(params: dict, x: jax.Array, u: jax.Array | None) -> dict:
        return lax.map(lambda a: run_group(prog, params, *a), (x, u))

    return jax.jit(batched)
