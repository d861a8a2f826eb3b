"""The bare Brian2 network of an exported script (issue 13): what Brian2's own event delivery costs.

    python benchmarks/bare_brian2.py NET.snn INPUTS.npy [--steps 100] [-n 200] [--device cpp_standalone]

The exported Brian2 script of NET.snn runs the samples once and its spike monitors give the spike
trains of every population and max-pool gate. The bare network then has the script's own neurons
(``population_group``) and synapses (``projection_synapses``), but no gates and one monitor (the
output's spikes): each projection is driven by a SpikeGeneratorGroup replaying the recorded trains
of its source, so every synapse carries the events it carries in the script. The samples run one
after the other in ONE run of one network (sample s in steps s*T ... s*T + T - 1, the neurons reset
in between as in the script), built and compiled once; the time is that run's wall-clock time per
sample, as the scripts are timed (cpp_standalone: the compiled program from its start to its exit,
loading and writing its arrays included; Brian2's own figure for its loop is CPU time, which a
loaded machine does not inflate as it does the scripts' wall time). The populations fed by the
analog input keep the first sample's current: they feed only gates, whose output is replayed, so
their spikes go nowhere.

``bare_seconds(snn, inputs, steps=, samples=)`` is what benchmarks/script_speed.py calls.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bare_common import export_script, load_script


def record(script: Path, inputs: Path, out: Path, steps: int, samples: int) -> None:
    """Runs the exported script on the samples (runtime device) and saves every group's spike trains:
    per population or gate name, (sample * steps + step, neuron) of each spike. The script itself keeps
    only counts, so a SpikeMonitor is added to each of its groups as its network is stored."""
    module = load_script(script)
    from brian2 import SpikeMonitor
    trains: dict[str, list] = {}
    monitors: dict[str, SpikeMonitor] = {}

    class RecordingNetwork(module.Network):
        def store(self, *args, **kwargs):  # build_network stores the network once it is complete
            for name, group in zip(module.POPULATION_NAMES + module.GATE_NAMES, model_groups(self)):
                if "negative_spike" in group.events:
                    raise SystemExit("bare_brian2: sign populations (-1 spikes) are not replayed")
                if "spike" in group.events:
                    monitors[name] = SpikeMonitor(group, name=f"replay_record_{group.name}")
                    self.add(monitors[name])
            return super().store(*args, **kwargs)

    def model_groups(net):
        by_name = {obj.name: obj for obj in net.objects}
        return ([by_name[f"population_{k}"] for k in range(len(module.POPULATION_NAMES))]
                + [by_name[f"gate_{k}"] for k in range(len(module.GATE_NAMES))])

    module.Network = RecordingNetwork
    original = module.results_of

    def results_of(model, indices, args):  # the monitors of each batch, before the next batch's run
        for name, spikes in monitors.items():
            n = module.size_of(name)
            i = np.asarray(spikes.i[:], np.int64)
            step = np.rint(np.asarray(spikes.t_[:]) / float(module.DT)).astype(np.int64)
            copy = i // n
            keep = copy < len(indices)  # the silent copies that fill a last, smaller batch
            sample = np.asarray(indices, np.int64)[copy[keep]]
            trains.setdefault(name, []).append(np.stack([sample * steps + step[keep], i[keep] % n], axis=1))
        return original(model, indices, args)

    module.results_of = results_of
    sys.argv = [str(script), "--input", str(inputs), "-n", str(samples), "--steps", str(steps), "--quiet",
                "--device", "runtime"]
    module.main()
    np.savez(out, **{name: np.concatenate(parts) for name, parts in trains.items()})


def bare(script: Path, inputs: Path, trains_file: Path, steps: int, samples: int, device: str) -> dict:
    """Builds and runs the bare network; returns its seconds (run per sample, build)."""
    module = load_script(script)
    from brian2 import Network, SpikeGeneratorGroup, SpikeMonitor, defaultclock, prefs, set_device
    import brian2
    folder = None
    if device == "cpp_standalone":
        folder = tempfile.mkdtemp(prefix="bare_brian2_")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        set_device("cpp_standalone", directory=folder, build_on_run=False)
    else:
        prefs.codegen.target = "numpy"
    prefs.core.default_float_dtype = np.float32
    defaultclock.dt = module.DT
    with np.load(trains_file) as z:
        trains = {name: z[name] for name in z.files}
    x = np.load(inputs)[:1].reshape(1, -1).astype(np.float32)
    start = time.perf_counter()
    net = Network()
    populations = [module.population_group(k, pop, module.READOUT, 1, False, steps)
                   for k, pop in enumerate(module.POPULATIONS)]
    net.add(populations)
    groups = dict(zip(module.POPULATION_NAMES, populations))
    generators, currents = {}, {}
    for k, proj in enumerate(module.PROJECTIONS):
        pre, post, weights = module.expanded(k)
        target = groups[proj["target"]]
        if proj["source"] == module.INPUT_NAME:
            taps = module.kernel_taps(pre, post, weights)
            currents[target] = currents.get(target, 0) + module.input_current(taps, x, target.N)[0]
            continue
        if proj["source"] not in generators:
            n = module.size_of(proj["source"])
            step, neuron = trains[proj["source"]].T if proj["source"] in trains else (np.zeros(0, int),) * 2
            generators[proj["source"]] = SpikeGeneratorGroup(n, neuron, step * module.DT, name=f"replay_{k}")
            net.add(generators[proj["source"]])
        net.add(module.projection_synapses(k, generators[proj["source"]], target, pre, post, weights, False, 1))
    for target, current in currents.items():
        target.I_input = current
    if "spike" in groups[module.OUTPUT].events:
        net.add(SpikeMonitor(groups[module.OUTPUT]))
    if folder is not None:  # the program is generated and compiled first; its run is timed by the wall clock,
        # from its start to its exit (loading and writing its arrays included), as the scripts are timed
        net.run(samples * steps * module.DT, namespace={})
        brian2.device.build(directory=folder, compile=True, run=False, with_output=False)
        start_run = time.perf_counter()
        brian2.device.run(with_output=False)
        return {"seconds_per_sample": (time.perf_counter() - start_run) / samples,
                "build_seconds": start_run - start, "device": device}
    start_run = time.perf_counter()
    net.run(samples * steps * module.DT, namespace={})
    wall = time.perf_counter() - start_run
    return {"seconds_per_sample": wall / samples, "build_seconds": start_run - start, "device": device}


def bare_seconds(snn: Path, inputs: Path, *, steps: int = 100, samples: int | None = None,
                 device: str = "cpp_standalone") -> float:
    """Seconds per sample of the bare Brian2 network of ``snn`` on the first ``samples`` of ``inputs``."""
    inputs = Path(inputs).resolve()
    samples = int(samples if samples is not None else len(np.load(inputs, mmap_mode="r")))
    env = dict(os.environ, KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "jax"))
    with tempfile.TemporaryDirectory() as tmp:
        script = export_script(snn, "brian2", Path(tmp))
        trains = Path(tmp) / "trains.npz"
        common = [str(script), str(inputs), "--steps", str(steps), "-n", str(samples)]
        subprocess.run([sys.executable, __file__, "--record", str(trains), *common], check=True, capture_output=True,
                       env=env, cwd=tmp)
        proc = subprocess.run([sys.executable, __file__, "--replay", str(trains), "--device", device, *common],
                              check=True, capture_output=True, text=True, env=env, cwd=tmp)
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds_per_sample"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("net", help="a .snn network file (or, with --record/--replay, the exported script)")
    p.add_argument("inputs", help="samples (.npy)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("-n", type=int, default=None, help="samples (default: all)")
    p.add_argument("--device", choices=("runtime", "cpp_standalone"), default="cpp_standalone")
    p.add_argument("--record", help=argparse.SUPPRESS)  # internal: one process each, as Brian2 has one device
    p.add_argument("--replay", help=argparse.SUPPRESS)
    args = p.parse_args()
    n = args.n if args.n is not None else len(np.load(args.inputs, mmap_mode="r"))
    if args.record:
        record(Path(args.net), Path(args.inputs), Path(args.record), args.steps, n)
    elif args.replay:
        print(json.dumps(bare(Path(args.net), Path(args.inputs), Path(args.replay), args.steps, n, args.device)))
    else:
        seconds = bare_seconds(Path(args.net), Path(args.inputs), steps=args.steps, samples=n, device=args.device)
        print(f"bare Brian2 network ({args.device}): {1000 * seconds:.1f} ms per sample "
              f"({n} samples, T = {args.steps})")


if __name__ == "__main__":
    main()
