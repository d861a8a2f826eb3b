"""The reference simulator on one device, on D host devices, and as N shards merged: identical files?

    python benchmarks/reference_sharded.py MODEL_OR_NET DATA [--calibration FILE] [-n 1000]
                                           [--steps T] [--devices 2] [--shards 2] [--out summary.json]

Every run is ``snnexport`` as a user types it, in its own process (``nice``):
1. ``simulate --devices 1``: the reference file;
2. ``simulate --devices D`` in a process that sees D CPU devices (``JAX_NUM_CPU_DEVICES``);
3. ``simulate --shard I/N`` for I = 1…N, all N processes at once (as N cluster jobs would), then
   ``merge``.
Each file is compared with the reference array by array (``meta`` included); the script prints
which arrays differ (none, if all is well), the wall time of each run and the sample-steps per
second that each run printed, and exits 1 if any array differs. A model is converted once first
(with ``--calibration``), so that every run simulates the same network file.

On a CPU the D host devices share the machine's cores, so --devices is a correctness check here
(on several GPUs it is the speed-up); the shards run concurrently on the same cores as well.

Measured on 2026-12-04 (2 shared cores, load 6–12, first 1,000 MNIST test images, calibration on
MNIST): the bundled LeNet (T = 100) and validation/models/fashion_cifarnet.keras (T = 200): 2 devices
and 2 merged shards identical in all 15 / 17 arrays to one process on one device. Wall times under
that load (CIFAR-10 architecture): 1 device 612 s, 2 devices 441 s, 2 shards at once + merge 382 s.
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


def command(*args: object) -> list[str]:
    return ["nice", "-n", "10", sys.executable, "-m", "snnexport", *map(str, args)]


def finish(proc: subprocess.Popen, what: str, started: float) -> dict:
    """Wait for a run; its wall seconds and the last sample-steps/s it printed."""
    _, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{what}: exit {proc.returncode}: {err.strip().splitlines()[-1:]}")
    rates = re.findall(r"\((\d+) sample-steps/s\)", err)
    return {"run": what, "wall_s": round(time.perf_counter() - started, 1),
            "sample_steps_per_s": int(rates[-1]) if rates else None}


def run(what: str, *args: object, env: dict | None = None) -> dict:
    t = time.perf_counter()
    proc = subprocess.Popen(command(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env or os.environ.copy())
    return finish(proc, what, t)


def differing(a: Path, b: Path) -> list[str]:
    """The arrays of results file ``a`` that are not those of ``b`` (shape, dtype or any value)."""
    with np.load(a, allow_pickle=False) as x, np.load(b, allow_pickle=False) as y:
        keys = sorted(set(x.files) | set(y.files))
        return [k for k in keys if k not in x.files or k not in y.files or x[k].dtype != y[k].dtype
                or not np.array_equal(x[k], y[k])]


def _count(path: Path) -> int:
    with np.load(path, allow_pickle=False) as z:
        return len(z.files)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="model (.h5, .keras, .onnx) or network file (.snn)")
    ap.add_argument("data", type=Path)
    ap.add_argument("--calibration", type=Path, help="calibration data, for a model")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--steps", type=int, help="T (default: the network's)")
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--out", type=Path, help="write the summary as JSON")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        net = args.model
        if net.suffix != ".snn":
            net = tmp / "net.snn"
            cal = ["--calibration", args.calibration] if args.calibration else []
            subprocess.run(command(args.model, *cal, "--to", "network", "-o", net), check=True)
        common = ("simulate", net, "--data", args.data, "-n", args.n) + (("--steps", args.steps) if args.steps else ())
        one, dev, merged = tmp / "one.npz", tmp / "devices.npz", tmp / "merged.npz"
        runs = [run("1 device", *common, "--devices", 1, "--out", one)]
        env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(args.devices), JAX_PLATFORMS="cpu")
        runs.append(run(f"{args.devices} devices", *common, "--devices", args.devices, "--out", dev, env=env))
        t = time.perf_counter()
        shards = [tmp / f"shard{i}.npz" for i in range(1, args.shards + 1)]
        procs = [subprocess.Popen(command(*common, "--devices", 1, "--shard", f"{i}/{args.shards}", "--out", f),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for i, f in enumerate(shards, 1)]
        shard_runs = [finish(p, f"shard {i}/{args.shards}", t) for i, p in enumerate(procs, 1)]
        runs += shard_runs
        runs.append(run("merge", "merge", *shards, "--out", merged))
        runs.append({"run": f"{args.shards} shards at once, merged", "wall_s": round(time.perf_counter() - t, 1),
                     "sample_steps_per_s": None})
        summary = {"network": args.model.name, "samples": args.n, "runs": runs,
                   "differing_arrays": {f"{args.devices} devices": differing(dev, one),
                                        f"{args.shards} shards merged": differing(merged, one)},
                   "arrays": _count(one)}
    for r in runs:
        rate = f", {r['sample_steps_per_s']} sample-steps/s" if r["sample_steps_per_s"] else ""
        print(f"{r['run']:>26}: {r['wall_s']} s{rate}")
    ok = True
    for what, keys in summary["differing_arrays"].items():
        ok &= not keys
        print(f"{what} vs 1 device, 1 process: "
              + (f"identical in all {summary['arrays']} arrays" if not keys else f"DIFFERENT: {', '.join(keys)}"))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
