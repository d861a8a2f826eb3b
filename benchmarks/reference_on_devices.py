"""The reference simulator on two JAX platforms of one machine (e.g. a GPU and its host's CPU).

    python benchmarks/reference_on_devices.py NET.snn DATA.npz [--steps 100] [-n 10000]
                                              [--cpu-n 2000] [--platforms cuda,cpu] [--out summary.json]

Each platform runs ``snnexport simulate`` as a user runs it (a subprocess with ``JAX_PLATFORMS``
set, batch 1000) and prints its sample-steps per second. The results files are then compared
array by array over the samples both platforms ran: how often predictions, output counts and every
population's spike counts are equal. They need not be equal bit for bit: a GPU sums the same
float32 products in another order (docs/semantics.md allows that to move a spike where V lands
within rounding of θ), and the planner gives a GPU larger calls than a CPU.

Measured on 2026-12-04 (an H200 and its host's 16 cores, the suite's networks, all 10,000 test
images on the GPU): predictions identical on every compared sample; spike counts ≥ 99.98 % equal.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NOT_COMPARED = ("meta", "population_names", "gate_names", "labels")


def simulate_on(platform: str, snn: Path, data: Path, n: int, steps: int, out: Path) -> dict:
    """Run ``snnexport simulate`` on one JAX platform; wall seconds and the printed throughput."""
    cmd = [sys.executable, "-m", "snnexport", "simulate", str(snn), "--data", str(data), "-n", str(n),
           "--steps", str(steps), "--batch", "1000", "--out", str(out)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS=platform))
    if proc.returncode:
        raise SystemExit(f"{platform}: exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    rates = re.findall(r"\((\d+) sample-steps/s\)", proc.stderr)
    return {"platform": platform, "samples": n, "wall_s": round(time.perf_counter() - t, 1),
            "sample_steps_per_s": int(rates[-1]) if rates else None}


def equal_fractions(a: Path, b: Path) -> dict[str, float]:
    """Per results array: the fraction of equal entries over the samples both files hold."""
    with np.load(a, allow_pickle=False) as x, np.load(b, allow_pickle=False) as y:
        m = min(len(x["predictions"]), len(y["predictions"]))
        return {k: float(np.mean(x[k][:m] == y[k][:m])) for k in x.files if k not in NOT_COMPARED}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("snn", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("-n", type=int, default=10000, help="samples on the first platform")
    ap.add_argument("--cpu-n", type=int, default=2000, help="samples on the second platform")
    ap.add_argument("--platforms", default="cuda,cpu")
    ap.add_argument("--out", type=Path, help="write the summary as JSON")
    args = ap.parse_args(argv)
    first, second = args.platforms.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(tmp) / f"{p}.npz" for p in (first, second)]
        runs = [simulate_on(first, args.snn, args.data, args.n, args.steps, files[0]),
                simulate_on(second, args.snn, args.data, args.cpu_n, args.steps, files[1])]
        summary = {"network": args.snn.name, "steps": args.steps, "runs": runs,
                   "equal_fraction": equal_fractions(*files)}
    for r in runs:
        print(f"{r['platform']:>5}: {r['samples']} samples in {r['wall_s']} s, "
              f"{r['sample_steps_per_s']} sample-steps/s")
    for k, v in summary["equal_fraction"].items():
        print(f"  {k:<16} equal in {100 * v:.4f} %")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
