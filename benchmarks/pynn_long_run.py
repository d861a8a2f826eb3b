"""Does a NEST-based script slow down over a long run? CPU seconds of NEST's simulation per block of samples.

    KERAS_BACKEND=jax python benchmarks/pynn_long_run.py [-n 200] [--block 5] [--steps 100]
                                                         [--sims pynn,nest] [--scripts DIR]

Exports the bundled LeNet's PyNN and PyNEST scripts (or takes DIR/snn_pynn.py and DIR/snn_nest.py), runs each on
the first N MNIST test images at batch 1 in a process of its own, and prints side by side, per block of
samples, the CPU seconds spent in the scripts' Backend.run (nest.Simulate) and in the rest of the script's
sample loop (Python: gates, parameters, recorders). A flat column is a script whose cost per sample
does not depend on how many samples ran before it (issue 13: PyNN's grew from 1.8 to 3.5 s per 5).
CPU time (time.process_time), so that other processes on a shared machine count less than in wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MNIST = Path(os.environ.get("SNNEXPORT_MNIST", REPO.parent / "shared" / "data" / "mnist.npz"))


def child(script: Path, inputs: Path, block: int, steps: int) -> None:
    """Runs one script in this process with nest.Simulate and run_batch timed; prints one JSON line."""
    import nest
    g = runpy.run_path(str(script), run_name="timed_script")["simulate"].__globals__
    simulate_cpu = [0.0]
    real_run = g["Backend"].run  # nest.Simulate behind PyNN's thin sim.run, or the PyNEST script's own call

    def timed_run(self, steps):
        start = time.process_time()
        real_run(self, steps)
        simulate_cpu[0] += time.process_time() - start

    g["Backend"].run = timed_run
    real_run_batch = g["run_batch"]
    blocks = []  # (CPU seconds in nest.Simulate, CPU seconds in the whole run_batch) per block
    state = {"samples": 0, "sim": 0.0, "all": 0.0}

    def timed_run_batch(model, xs, indices, args):
        sim0, start = simulate_cpu[0], time.process_time()
        out = real_run_batch(model, xs, indices, args)
        state["sim"] += simulate_cpu[0] - sim0
        state["all"] += time.process_time() - start
        state["samples"] += len(xs)
        if state["samples"] % block == 0:
            blocks.append((state["sim"], state["all"]))
            state.update(sim=0.0, all=0.0)
        return out

    g["run_batch"] = timed_run_batch
    sys.argv = [str(script), "--input", str(inputs), "--steps", str(steps), "--batch", "1", "--quiet"]
    sys.stdout = open(os.devnull, "w")  # the script's own summary
    g["main"]()
    sys.stdout = sys.__stdout__
    log = nest.GetKernelStatus().get("spike_buffer_resize_log", {}).get("times", [])
    print(json.dumps({"blocks": blocks, "biological_time": nest.biological_time, "resizes": len(log)}))


def export(sim: str, folder: Path) -> Path:
    script = folder / f"snn_{sim}.py"
    env = dict(os.environ, KERAS_BACKEND="jax")
    subprocess.run([sys.executable, "-m", "snnexport", REPO / "snnexport" / "data" / "lenet_mnist.h5",
                    "--calibration", REPO / "snnexport" / "data" / "mnist_samples.npz", "--to", sim, "-o", script],
                   check=True, env=env, capture_output=True)
    return script


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=200, help="MNIST test images (default 200)")
    p.add_argument("--block", type=int, default=5, help="samples per printed row (default 5)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--sims", default="pynn,nest")
    p.add_argument("--scripts", help="folder holding snn_pynn.py and snn_nest.py (default: export them now)")
    p.add_argument("--child", nargs=2, metavar=("SCRIPT", "INPUTS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), args.block, args.steps)
        return
    sims = args.sims.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.scripts) if args.scripts else Path(tmp)
        inputs = Path(tmp) / "inputs.npy"
        with np.load(MNIST) as z:
            np.save(inputs, z["x_test"][:args.n])
        runs = {}
        for sim in sims:
            script = folder / f"snn_{sim}.py" if args.scripts else export(sim, folder)
            proc = subprocess.run([sys.executable, __file__, "--child", script, inputs, "--block", str(args.block),
                                   "--steps", str(args.steps)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"{sim}: failed\n{proc.stderr[-3000:]}")
            runs[sim] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"CPU seconds per {args.block} samples (LeNet, T = {args.steps}, batch 1): simulation / whole sample loop")
    print("samples     " + "".join(f"{sim:>20s}" for sim in sims))
    for i in range(max(len(r["blocks"]) for r in runs.values())):
        row = f"{i * args.block:4d}-{(i + 1) * args.block:<4d}   "
        for sim in sims:
            b = runs[sim]["blocks"]
            row += f"{b[i][0]:11.2f} / {b[i][1]:5.2f}" if i < len(b) else " " * 20
        print(row)
    for sim in sims:
        sim_s = [b[0] for b in runs[sim]["blocks"]]
        q = max(1, len(sim_s) // 4)
        print(f"{sim}: simulation {np.mean(sim_s[:q]):.2f} s per block in the first quarter, "
              f"{np.mean(sim_s[-q:]):.2f} s in the last; NEST time at the end {runs[sim]['biological_time']:.0f} ms, "
              f"{runs[sim]['resizes']} spike buffer resizes logged")


if __name__ == "__main__":
    main()
