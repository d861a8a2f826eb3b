"""The bare NEST network of an exported PyNEST script: what NEST's own updates and event delivery cost.

    KERAS_BACKEND=jax python benchmarks/bare_nest.py NET.snn INPUTS.npy [--steps 100] [-n 100] [--batch 1]

It exports the network's PyNEST script (``snnexport NET.snn --to nest``) and imports it for its
neuron model, parameters and synapse lists, then:

1. runs the script's own simulation on the samples once, untimed, and keeps what the max-pool gates
   passed in every step (and the Poisson input's spikes): the recorded spike trains;
2. builds a bare NEST network: the same neurons (``nest.Create`` of the script's model and
   parameters), the same static synapses (one array ``nest.Connect`` per projection) and constant
   currents (the script's pacemaker: a spike_generator firing once a step through synapses of weight
   I), one ``spike_generator`` per gate cell (and input value) loaded with the recorded trains, no
   gates, no schedule, one monitor (a spike_recorder on the output);
3. times it on the same samples and steps: per sample, the input currents and held potentials are
   set, the generators loaded, one held step and T steps simulated (``nest.Simulate``).

``bare_seconds`` returns seconds per image (benchmarks/script_speed.py imports it). The bare
network's output spike counts are compared with the script's, so a bare network that does something
else shows. Sign populations (two halves in the script) are not supported here.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("PYNEST_QUIET", "1")


def _exported_script(snn: Path, folder: Path, writer: str = "nest"):
    """The network's exported script, imported as a module (its main() does not run)."""
    path = folder / f"bare_src_{writer}.py"
    subprocess.run([sys.executable, "-m", "snnexport", str(snn), "--to", writer, "-o", str(path)],
                   check=True, capture_output=True)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _script_args(m, steps: int, batch: int):
    saved, sys.argv = sys.argv, [m.__file__]
    try:
        args = m.parse_args("bare", m.STEPS, m.SEED, [(("--threads",), dict(type=int, default=1))])
    finally:
        sys.argv = saved
    args.steps, args.batch, args.readout, args.quiet = steps, batch, m.READOUT, True
    return args


def recorded_trains(m, x: np.ndarray, steps: int, batch: int = 1) -> tuple[list[dict], list[np.ndarray]]:
    """(per sample: gate name → (T, cells) spikes it passed, per sample: the output's spike counts),
    from the exported script's own simulation."""
    args = _script_args(m, steps, min(batch, len(x)))
    passed: list[dict] = []
    gate_outputs = m.gate_outputs

    def keep(gates, rasters, shape_of):
        out = gate_outputs(gates, rasters, shape_of)
        passed.append(out)
        return out

    m.gate_outputs = keep
    model = m.build_network(args)
    trains, counts = [], []
    for first in range(0, len(x), args.batch):
        passed.clear()
        idx = list(range(first, min(first + args.batch, len(x))))
        results = m.run_batch(model, x[idx[0]:idx[-1] + 1], idx, args)
        merged = {name: spikes for out in passed for name, spikes in out.items()}
        for b, r in enumerate(results):
            trains.append({name: spikes[:, b] for name, spikes in merged.items()})
            counts.append(r["counts"][m.POPULATION_NAMES.index(m.OUTPUT)])
    m.gate_outputs = gate_outputs
    return trains, counts


def _generator_times(spikes: np.ndarray, origin: int) -> list[dict]:
    """spike_generator parameters replaying (T, cells) spikes: step t's spikes arrive in step t + 1."""
    t, cell = np.nonzero(spikes)
    order = np.argsort(cell, kind="stable")
    times = (origin + t[order] + 2).astype(np.float64)
    bounds = np.searchsorted(cell[order], np.arange(spikes.shape[1] + 1))
    return [{"spike_times": times[bounds[c]:bounds[c + 1]].tolist()} for c in range(spikes.shape[1])]


def bare_seconds(snn, inputs, steps: int = 100, samples: int | None = None, threads: int = 1,
                 check: bool = False) -> float | tuple[float, float]:
    """Seconds per image of the bare NEST network of ``snn`` on the first ``samples`` of ``inputs``
    (an .npy file of network inputs); with ``check`` also the fraction of output spike counts
    identical to the exported script's."""
    import nest
    x = np.load(inputs, mmap_mode="r")[:samples]
    with tempfile.TemporaryDirectory() as tmp:
        m = _exported_script(Path(snn), Path(tmp))
    x = m.coerce_samples(np.asarray(x), m.INPUT_SHAPE)
    if any(p["activation"] == "sign" for p in m.POPULATIONS):
        raise SystemExit("bare_nest: sign populations are not supported")
    trains, script_counts = recorded_trains(m, x, steps)

    # the bare network
    nest.ResetKernel()
    nest.set(resolution=1.0, local_num_threads=threads)
    nest.CopyModel(m.NEURON_MODEL, "bare_neuron", m.NEURON)
    pops = {p["name"]: nest.Create("bare_neuron", int(np.prod(p["shape"]))) for p in m.POPULATIONS}
    pacemakers = {p["name"]: m.nest_pacemaker([pops[p["name"]]], (1,), p["bias"].astype(np.float64))
                  for p in m.POPULATIONS}
    sources = dict(pops)
    if m.INPUT_ENCODING == "poisson":
        sources[m.INPUT_NAME] = nest.Create("spike_generator", int(np.prod(m.INPUT_SHAPE)))
    for g in m.GATES:
        sources[g["name"]] = nest.Create("spike_generator", int(np.prod(g["shape"])))
    fed = {}
    for proj, (pre, post, w) in zip(m.PROJECTIONS, m.synapse_lists()):
        if proj["source"] == m.INPUT_NAME and m.INPUT_ENCODING == "analog":
            fed.setdefault(proj["target"], []).append((pre, post, w))
        elif len(w):
            src, tgt = sources[proj["source"]], pops[proj["target"]]
            nest.Connect(src[0].global_id + pre, tgt[0].global_id + post, "one_to_one",
                         {"synapse_model": "static_synapse", "weight": np.asarray(w, np.float64),
                          "delay": np.ones(len(w))})
    output = pops[m.OUTPUT]
    recorder = nest.Create("spike_recorder")
    nest.Connect(output, recorder)
    nest.Simulate(1.0)

    same = 0
    start = time.perf_counter()
    for i, sample in enumerate(x):
        origin = round(nest.biological_time)
        for name, nodes in pops.items():
            m.set_nodes(nodes, {"V_m": m.HOLD})
            if name in fed:
                p = m.POPULATIONS[m.POPULATION_NAMES.index(name)]
                current = p["bias"].astype(np.float64)
                for syn in fed[name]:
                    current += m.apply_synapses(syn, sample.reshape(-1), len(nodes))
                m.set_pacemaker_current(pacemakers[name], current)
            m.set_nodes(pacemakers[name]["generator"], m.pacemaker_times(origin, 0, steps))
        if m.INPUT_ENCODING == "poisson":
            u = m.poisson_input(sample, m.SEED, i, steps).reshape(steps, -1)
            m.set_nodes(sources[m.INPUT_NAME], _generator_times(u, origin - 1))
        for name, spikes in trains[i].items():
            if name in sources:
                m.set_nodes(sources[name], _generator_times(spikes, origin))
        nest.Simulate(1.0)  # one held step
        for nodes in pops.values():
            m.set_nodes(nodes, {"V_m": 0.0})
        nest.Simulate(float(steps))
        if check:
            events = recorder.get("events")
            recorder.n_events = 0
            senders = np.asarray(events["senders"]) - output[0].global_id
            same += int(np.array_equal(np.bincount(senders, minlength=len(output)), script_counts[i]))
    seconds = (time.perf_counter() - start) / max(len(x), 1)
    return (seconds, same / max(len(x), 1)) if check else seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("snn")
    p.add_argument("inputs", help=".npy file of network inputs (N, *input shape)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("-n", type=int, default=100, help="samples (default 100)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    seconds, same = bare_seconds(args.snn, args.inputs, steps=args.steps, samples=args.n, threads=args.threads,
                                 check=True)
    print(f"bare NEST network: {1000 * seconds:.1f} ms per image; output spike counts identical to the "
          f"exported script's on {100 * same:.1f} % of the samples")


if __name__ == "__main__":
    main()
