"""The bare Nengo network of an exported script (issue 13): what Nengo itself costs for the script's network.

    python benchmarks/bare_nengo.py NET.snn INPUTS.npy [--steps 100] [-n 200] [--batch B]

The exported Nengo script of NET.snn runs the samples once (in batches of B, its default unless --batch
says otherwise) and the output of each max-pool gate is recorded in every step of every batch. The
bare network then has the script's own neurons (``IntegrateAndFire``, B copies per population) and
projections (``connect``: kernel products, scalar and Sparse transforms, the one-step delay), but no
gates and one probe (the output's spikes): each projection from a gate starts at a nengo.Node that
replays the gate's recorded output, so every projection carries the spikes it carries in the script.
It is built once and run batch after batch (sim.reset() between them) like the script; the time is
that of the runs and of the input currents (W * x, once per batch), per sample; ``--cpu`` gives CPU
time, which varies less than the wall clock on a shared machine. ``bare_seconds(snn, inputs, steps=, samples=)`` is what
benchmarks/script_speed.py calls.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# As in the exported script (set there before numpy is imported): one BLAS thread, so that both time the
# same products, and CPU time is not inflated by BLAS threads waiting for work.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from bare_common import export_script, load_script  # noqa: E402

def record(module, argv: list[str]) -> tuple[object, dict[str, list]]:
    """Runs the script (its main(), with ``argv``) and returns its parsed options and, per gate name, the
    gate's output in every step of every batch: a list (one per batch) of (steps, copies * cells) arrays."""
    trains: dict[str, list] = {}
    batch: dict[str, list] = {}
    make_step, run_batch, parse_args = module.MaxPoolGate.make_step, module.run_batch, module.parse_args
    options = {}

    def recording_make_step(self, shape_in, shape_out, dt, rng, state):
        step = make_step(self, shape_in, shape_out, dt, rng, state)

        def recording_step(t, spikes):
            out = step(t, spikes)
            batch.setdefault(self.name, []).append(np.array(out))
            return out

        return recording_step

    def recording_run_batch(model, xs, indices, args):
        batch.clear()
        results = run_batch(model, xs, indices, args)
        for name, frames in batch.items():
            trains.setdefault(name, []).append(np.stack(frames))
        return results

    def keep_args(*a, **k):
        options["args"] = parse_args(*a, **k)
        return options["args"]

    module.MaxPoolGate.make_step = recording_make_step
    module.run_batch, module.parse_args = recording_run_batch, keep_args
    sys.argv = [module.__file__, *argv, "--quiet"]
    module.main()
    return options["args"], trains


class Replay:
    """A Node's output: the recorded frame of this step of the current batch."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames, self.batch = frames, 0

    def __call__(self, t: float) -> np.ndarray:
        return self.frames[self.batch][min(max(int(round(t)), 1), len(self.frames[self.batch])) - 1]


def bare_network(module, args, trains: dict[str, list]):
    """(simulator, ensembles, input currents, replay nodes' functions): the script's network without gates,
    one probe."""
    import nengo
    if module.INPUT_ENCODING != "analog":
        raise SystemExit("bare_nengo: only analog input is replayed")
    copies = args.batch
    nengo.rc.set("precision", "bits", str(args.precision))
    fed_by_input = {p["target"] for p in module.PROJECTIONS if p["source"] == module.INPUT_NAME}
    ensembles, currents, replays, sent_from = {}, {}, [], {}
    with nengo.Network(seed=args.seed) as network:
        for pop in module.POPULATIONS:
            n = int(np.prod(pop["shape"]))
            driven = pop["name"] in fed_by_input  # as in the script: the input's current (and the bias) as drive
            neuron_type = module.IntegrateAndFire(
                module.THRESHOLD, module.RESET, sign=pop["activation"] == "sign",
                fire=not (pop["name"] == module.OUTPUT and args.readout in ("membrane", "softmax")),
                hold_steps=module.CLAMP * pop["depth"], copies=copies, driven=driven)
            if driven:
                currents[pop["name"]] = module.InputCurrent(pop["bias"], copies)
            bias = np.zeros(copies * n) if driven else np.tile(pop["bias"], copies)
            ensembles[pop["name"]] = nengo.Ensemble(
                copies * n, 1, neuron_type=neuron_type, gain=np.ones(copies * n), bias=bias,
                encoders=np.ones((copies * n, 1)), eval_points=np.zeros((1, 1)))
        for gate in module.GATES:
            replays.append(Replay(trains[gate["name"]]))
            sent_from[gate["name"]] = nengo.Node(replays[-1], size_out=trains[gate["name"]][0].shape[1])
        for name in dict.fromkeys(p["source"] for p in module.PROJECTIONS if p["source"] != module.INPUT_NAME):
            delayed = nengo.Node(size_in=copies * int(np.prod(module.shape_of(name))))
            source = sent_from[name] if name in sent_from else ensembles[name].neurons
            nengo.Connection(source, delayed, synapse=module.ONE_STEP_DELAY)
            sent_from[name] = delayed
        for projection in module.PROJECTIONS:
            target = ensembles[projection["target"]]
            if projection["source"] == module.INPUT_NAME:
                pre, post, weight = module.synapses_of(projection)
                if len(pre):
                    currents[projection["target"]].taps.append(module.kernel_taps(pre, post, weight,
                                                                                  target.n_neurons // copies))
                continue
            module.connect(sent_from[projection["source"]], target, projection, copies, True)
        nengo.Probe(ensembles[module.OUTPUT].neurons, "output")
    sim = nengo.Simulator(network, dt=module.DT, optimize=False, progress_bar=False)
    return sim, ensembles, currents, replays


def bare(script: Path, inputs: Path, steps: int, samples: int, batch: int | None) -> dict:
    """Records the script's gates, builds the bare network and runs it; returns its seconds."""
    module = load_script(script)
    argv = ["--input", str(inputs), "-n", str(samples), "--steps", str(steps)]
    args, trains = record(module, argv + (["--batch", str(batch)] if batch else []))
    x = np.load(inputs, mmap_mode="r")[:samples].reshape(samples, -1).astype(np.float32)
    start = time.perf_counter()
    sim, ensembles, currents, replays = bare_network(module, args, trains)
    build = time.perf_counter() - start
    run = cpu = 0.0
    for k, first in enumerate(range(0, samples, args.batch)):
        start, start_cpu = time.perf_counter(), time.process_time()  # W * x of the input counts, as in the script
        for current in currents.values():
            current.present(x[first:first + args.batch], args.batch)
        for replay in replays:
            replay.batch = k
        sim.reset(seed=args.seed)
        for name, current in currents.items():
            sim.signals[sim.model.sig[ensembles[name].neurons]["drive"]][...] = current.value
        sim.run_steps(steps, progress_bar=False)
        run, cpu = run + time.perf_counter() - start, cpu + time.process_time() - start_cpu
    # CPU seconds as well: on a shared machine they vary less than the wall clock
    return {"seconds_per_sample": run / samples, "cpu_seconds_per_sample": cpu / samples, "build_seconds": build,
            "batch": args.batch}


def bare_seconds(snn: Path, inputs: Path, *, steps: int = 100, samples: int | None = None,
                 batch: int | None = None, cpu: bool = False) -> float:
    """Seconds per sample (wall clock, or with ``cpu`` CPU time) of the bare Nengo network of ``snn`` on the
    first ``samples`` of ``inputs``, in batches of ``batch`` (default: the script's own choice)."""
    inputs = Path(inputs).resolve()
    samples = int(samples if samples is not None else len(np.load(inputs, mmap_mode="r")))
    env = dict(os.environ, KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "jax"))
    with tempfile.TemporaryDirectory() as tmp:
        script = export_script(snn, "nengo", Path(tmp))
        cmd = [sys.executable, __file__, "--replay", str(script), str(inputs), "--steps", str(steps),
               "-n", str(samples)]
        proc = subprocess.run(cmd + (["--batch", str(batch)] if batch else []), capture_output=True, text=True,
                              env=env, cwd=tmp)
        if proc.returncode != 0:
            raise SystemExit(f"bare_nengo: the bare network failed:\n{proc.stderr[-3000:]}")
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(measured["cpu_seconds_per_sample" if cpu else "seconds_per_sample"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("net", help="a .snn network file")
    p.add_argument("inputs", help="samples (.npy)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("-n", type=int, default=None, help="samples (default: all)")
    p.add_argument("--batch", type=int, default=None, help="copies per batch (default: the script's own choice)")
    p.add_argument("--cpu", action="store_true", help="CPU time instead of wall-clock time")
    p.add_argument("--replay", action="store_true", help=argparse.SUPPRESS)  # internal: net is the exported script
    args = p.parse_args()
    n = args.n if args.n is not None else len(np.load(args.inputs, mmap_mode="r"))
    if args.replay:
        print(json.dumps(bare(Path(args.net), Path(args.inputs), args.steps, n, args.batch)))
    else:
        seconds = bare_seconds(Path(args.net), Path(args.inputs), steps=args.steps, samples=n, batch=args.batch,
                               cpu=args.cpu)
        print(f"bare Nengo network: {1000 * seconds:.1f} ms {'of CPU ' if args.cpu else ''}per sample "
              f"({n} samples, T = {args.steps})")


if __name__ == "__main__":
    main()
