"""Peak memory per MPI process of an exported PyNEST script: ``mpirun -np 1`` against ``-np 2`` (issue 15).

Needs an MPI-enabled NEST and mpirun (tests/test_mpi.py says how to get them). Two parts:

1. ``--constants``: what NEST itself takes, behind ``snnexport.scriptlib.nest_memory``'s constants: RSS
   of a bare PyNEST process before and after 100,000 ``eprop_iaf`` neurons (each connected to a
   spike_recorder, as the scripts do) and 10 M random ``static_synapse``s and one step, on 1 and 2 processes.
2. (default) a VGG-style network of seeded random weights (32x32x3 input; 3x3 convolutions of 32, 32, 64,
   64, 64, 128, 128, 128 channels in three blocks, each block max-pooled; dense 10), about 57 M
   synapses, converted (calibrated on seeded uniform noise) and exported to PyNEST, runs 1 sample
   under ``mpirun -np 1`` and ``-np 2``; each rank reports its peak RSS (``ru_maxrss``) at exit. Target:
   every rank's peak under -np 2 at most 0.6 x the single process's. The script's own estimate
   (its line "memory estimate: ...") is printed beside it.

Usage: ``KERAS_BACKEND=jax python benchmarks/mpi_memory.py [--constants] [--steps T] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from snnexport.validate.mpi import mpi_missing, mpirun_command  # noqa: E402

TARGET = 0.6

# Runs a script under runpy and prints, at exit, this rank's peak RSS (what ru_maxrss says, KiB on Linux).
_PEAK = ("import atexit, os, resource, runpy, sys; "
         "rank = os.environ.get('OMPI_COMM_WORLD_RANK', os.environ.get('PMI_RANK', '0')); "
         "atexit.register(lambda: print(f'peak-rss rank {rank}: '"
         "f'{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}', file=sys.stderr, flush=True)); "
         "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")

_CONSTANTS = r'''
import gc, os, resource, sys
os.environ["PYNEST_QUIET"] = "1"
import numpy as np
import nest

def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))

N, M = 100_000, 10_000_000
nest.set(resolution=1.0)
P = nest.NumProcesses()
recorder = nest.Create("spike_recorder")
r0 = rss()
pop = nest.Create("eprop_iaf", N)
nest.Connect(pop, recorder, syn_spec={"synapse_model": "static_synapse_hom_w_hpc"})
nest.Simulate(1.0)
r1 = rss()
rng = np.random.default_rng(0)
pre, post = rng.integers(0, N, M) + pop[0].global_id, rng.integers(0, N, M) + pop[0].global_id
nest.Connect(pre, post, "one_to_one", {"synapse_model": "static_synapse", "weight": rng.random(M),
                                       "delay": np.full(M, 1.0)})
del pre, post
gc.collect()
nest.Simulate(1.0)
r2 = rss()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(f"rank {nest.Rank()} of {P}: process before the neurons {r0 / 1e6:.0f} MB; "
      f"{(r1 - r0) * P / N:,.0f} B per neuron, {(r2 - r1) * P / M:.1f} B per synapse once prepared, "
      f"peak {(peak - r1) * P / M:.1f} B per synapse while connecting (with the caller's arrays)", flush=True)
'''


def constants() -> int:
    for processes in (1, 2):
        proc = subprocess.run(mpirun_command(processes, [sys.executable, "-c", _CONSTANTS]), capture_output=True,
                              text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("rank ")]
        print(f"-np {processes}:" + "".join(f"\n  {line}" for line in sorted(lines)))
        if proc.returncode != 0:
            print(proc.stderr[-2000:])
            return 1
    return 0


def build_model(path: Path, calibration: Path) -> None:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras
    keras.utils.set_random_seed(0)
    layers = [keras.Input((32, 32, 3))]
    for block in ((32, 32), (64, 64, 64), (128, 128, 128)):
        for channels in block:
            layers.append(keras.layers.Conv2D(channels, 3, padding="same", activation="relu"))
        layers.append(keras.layers.MaxPooling2D())
    layers += [keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
    keras.Sequential(layers).save(path)
    rng = np.random.default_rng(0)
    np.savez(calibration, x=rng.random((20, 32, 32, 3), dtype=np.float32), y=np.zeros(20, np.int64))


def run_script(script: Path, processes: int, steps: int) -> tuple[list[int], str]:
    """Per-rank peak RSS (bytes, by rank) and the script's memory estimate line."""
    cmd = mpirun_command(processes, [sys.executable, "-c", _PEAK, script.name, "-n", "1", "--steps", str(steps)])
    proc = subprocess.run(cmd, cwd=script.parent, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"-np {processes} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    peaks = dict((int(r), int(b)) for r, b in re.findall(r"peak-rss rank (\d+): (\d+)", proc.stderr))
    estimate = next((line for line in proc.stdout.splitlines() if line.startswith("memory estimate")), "")
    build = next((line for line in proc.stdout.splitlines() if line.startswith("build ")), "")
    return [peaks[r] for r in sorted(peaks)], f"{estimate}\n    {build}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--constants", action="store_true", help="measure NEST's bytes per neuron and synapse instead")
    ap.add_argument("--steps", type=int, default=20, help="time steps of the one sample (default 20)")
    ap.add_argument("--keep", type=Path, help="keep the model, network and script in this directory")
    args = ap.parse_args()
    why = mpi_missing()
    if why:
        print(f"cannot run: {why}")
        return 1
    if args.constants:
        return constants()
    tmp = tempfile.TemporaryDirectory(prefix="snnexport-mpi-memory-")
    work = args.keep or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    model, calibration, net = work / "vgg_small.keras", work / "noise.npz", work / "vgg_small.snn"
    env = dict(os.environ, KERAS_BACKEND="jax")
    subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[3]); import mpi_memory as b; "
                    "from pathlib import Path; b.build_model(Path(sys.argv[1]), Path(sys.argv[2]))",
                    str(model), str(calibration), str(Path(__file__).resolve().parent)], check=True, env=env)
    snnexport = [sys.executable, "-m", "snnexport"]
    subprocess.run([*snnexport, str(model), "--calibration", str(calibration), "--to", "network", "-o", str(net)],
                   check=True, env=env, cwd=REPO)
    info = subprocess.run([*snnexport, "info", str(net)], check=True, env=env, cwd=REPO, capture_output=True,
                          text=True).stdout
    print("\n".join(line for line in info.splitlines() if line.startswith(("neurons", "synapses", "NEST/PyNN"))))
    script = work / "snn_vgg_small.py"
    subprocess.run([*snnexport, str(net), "--to", "nest", "-o", str(script)], check=True, env=env, cwd=REPO)
    single, text = run_script(script, 1, args.steps)
    print(f"-np 1: peak RSS {single[0] / 1e9:.2f} GB\n    {text}")
    double, text = run_script(script, 2, args.steps)
    ratios = [p / single[0] for p in double]
    print(f"-np 2: peak RSS per rank {', '.join(f'{p / 1e9:.2f} GB' for p in double)} = "
          f"{', '.join(f'{r:.2f}' for r in ratios)} x the single process "
          f"(target <= {TARGET}) [{'ok' if max(ratios) <= TARGET else 'MISSED'}]\n    {text}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
