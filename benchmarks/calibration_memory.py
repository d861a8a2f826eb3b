"""Peak memory and time of calibrated conversion against the number of calibration samples.

Builds ``keras.applications.<model>(weights=None, input_shape=(S, S, 3))`` (seeded) and converts it
through the CLI, ``snnexport MODEL --calibration X.npy --to network``, once per sample count, each
in a child process of its own (its peak RSS is its own). Inputs are seeded uniform [0, 1] images.
Prints wall time, CPU time and peak RSS per count, and the ratio of the largest count's RSS to the
smallest's (issue 14's target, for ResNet50 at 224² with 100 and 1,000 samples: under 3 GB and
under 2×).

Usage: ``KERAS_BACKEND=jax python benchmarks/calibration_memory.py [--model MobileNet] [--size 96]
[--samples 50 100 200] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_child(cmd: list[str], log: Path) -> tuple[int, float, float, int]:
    """(exit code, wall s, CPU s, peak RSS bytes) of one child."""
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    return (os.waitstatus_to_exitcode(status), time.perf_counter() - t0, usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss * 1024)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="MobileNet")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--samples", type=int, nargs="+", default=[50, 100, 200])
    ap.add_argument("--keep", type=Path, help="keep the model, data and networks in this directory")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="snnexport-calib-")
    work = args.keep or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    model = work / f"{args.model}_{args.size}.keras"
    build = ("import sys, keras; keras.utils.set_random_seed(0); "
             f"keras.applications.{args.model}(weights=None, input_shape=({args.size}, {args.size}, 3))"
             ".save(sys.argv[1])")
    rc, wall, _, _ = run_child([sys.executable, "-c", build, str(model)], work / "build.log")
    if rc != 0:
        print(f"building {args.model} failed; see {work / 'build.log'}")
        return 1
    print(f"{args.model} at {args.size}x{args.size}: built and saved in {wall:.1f} s")
    import numpy as np

    rss = {}
    for n in args.samples:
        data = work / f"x{n}.npy"
        np.save(data, np.random.default_rng(0).uniform(0, 1, (n, args.size, args.size, 3)).astype(np.float32))
        cmd = [sys.executable, "-m", "snnexport", str(model), "--calibration", str(data), "--to", "network",
               "-o", str(work / f"net{n}.snn")]
        rc, wall, cpu, rss[n] = run_child(cmd, work / f"convert{n}.log")
        print(f"  {n} calibration samples: exit {rc}, wall {wall:.1f} s, CPU {cpu:.1f} s, "
              f"peak RSS {rss[n] / 2**20:.0f} MiB", flush=True)
        data.unlink()
    lo, hi = min(rss), max(rss)
    print(f"peak RSS with {hi} samples / with {lo}: {rss[hi] / rss[lo]:.2f}x")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
