"""Exported scripts at test-set scale (issue 13): milliseconds per image on every simulator.

    python benchmarks/script_speed.py [--models lenet,cifarnet] [-n 200] [--steps 100]
                                      [--sims brian2,nest,pynn,nengo] [--baseline 83b90cc] [--keep DIR]

For each model the network is converted once (a .snn) and every writer exports its script. Each
script runs the first N test images as a user runs it (a subprocess; build and simulation seconds
come from its results file) at --batch 1 and at the batch it picks itself (Brian2: on the runtime
device, then on its default device, cpp_standalone from 100 images on, its compilation counted in the
build seconds); the reference simulator runs the same images in the same run. With --baseline REV the scripts that commit's snnexport
exports from the same model and calibration run too (its package is taken with `git archive`), and every time is
also given as a ratio to them. Where ``benchmarks/bare_<sim>.py`` exists, the simulator's bare
network (same neurons and synapses, driven by recorded spike trains, no gates, one monitor) is
timed as well: what the simulator's own event delivery costs. Every script's spike counts are
compared with the reference's, so a fast but wrong script shows.

Times are wall clock on a shared machine: compare the rows of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MNIST = Path(os.environ.get("SNNEXPORT_MNIST", REPO.parent / "shared" / "data" / "mnist.npz"))
SIMS = ("brian2", "nest", "pynn", "nengo")


def model_specs() -> dict[str, dict]:
    """The benchmarked models: the bundled LeNet, and the suite's CIFAR-10 architecture on Fashion-MNIST."""
    sys.path.insert(0, str(REPO / "validation"))
    import train  # noqa: E402 - builds validation/data/fashion_mnist.npz from Debian's IDX files once
    return {
        "lenet": {"model": REPO / "snnexport" / "data" / "lenet_mnist.h5", "data": MNIST},
        "cifarnet": {"model": REPO / "validation" / "models" / "fashion_cifarnet.keras",
                     "data": train.fashion_mnist_file()},
    }


def run(cmd: list, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=cwd)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stderr[-3000:]}")
    return proc


def snnexport_cmd(*args, pythonpath: Path | None = None) -> tuple[list, dict]:
    env = dict(os.environ, KERAS_BACKEND="jax")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return [sys.executable, "-m", "snnexport", *args], env


def baseline_package(rev: str, folder: Path) -> Path:
    """The snnexport package of commit ``rev``, unpacked into ``folder`` (for its writers)."""
    blob = subprocess.run(["git", "-C", str(REPO), "archive", rev, "snnexport"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def time_script(script: Path, inputs: Path, out: Path, *options: str) -> dict:
    run([sys.executable, script, "--input", inputs, "--out", out, "--quiet", *options], cwd=script.parent)
    with np.load(out, allow_pickle=False) as z:
        results = {k: z[k] for k in z.files}
    meta = json.loads(str(results["meta"]))
    n = int(meta.get("samples", len(results["predictions"])))
    return {"build": meta.get("build_seconds"), "ms": 1000 * meta["run_seconds"] / n, "batch": meta.get("batch", 1),
            "results": results}


def agreement(results: dict, reference: dict) -> tuple[float, float]:
    """(fraction of identical (sample, neuron) spike counts, fraction of identical predictions)."""
    same = total = 0
    for k in range(len(reference["population_names"])):
        a, b = results[f"counts_{k}"], reference[f"counts_{k}"]
        same += int((a == b).sum())
        total += a.size
    return same / total, float((results["predictions"] == reference["predictions"]).mean())


def reference_run(snn: Path, x: np.ndarray, steps: int) -> tuple[float, dict]:
    """ms per image of the reference simulator (compiled once before timing) and its results."""
    from snnexport.network import Network
    from snnexport.simulator import simulate
    net = Network.load(snn)
    simulate(net, x, steps=steps)  # compiles (the program's shape depends on how many samples a call holds)
    start = time.perf_counter()
    res = simulate(net, x, steps=steps)
    return 1000 * (time.perf_counter() - start) / len(x), res


def bare(sim: str, snn: Path, inputs: Path, steps: int, n: int) -> float | None:
    """ms per image of the simulator's bare network, where benchmarks/bare_<sim>.py exists."""
    try:
        module = importlib.import_module(f"bare_{sim}")
    except ImportError:
        return None
    return 1000 * module.bare_seconds(snn, inputs, steps=steps, samples=n)


def bench_model(name: str, spec: dict, args: argparse.Namespace, work: Path, old: Path | None) -> None:
    from snnexport import data
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    snn = folder / f"{name}.snn"
    cmd, env = snnexport_cmd(spec["model"], "--calibration", spec["data"], "--steps", args.steps, "-o", snn)
    start = time.perf_counter()
    run(cmd, env, cwd=work)
    print(f"\n{name}: converted in {time.perf_counter() - start:.1f} s ({snn})", flush=True)
    from snnexport.network import Network
    x, _ = data.load_samples(spec["data"], Network.load(snn).input.shape, "data", False, None)
    x = np.ascontiguousarray(x[:args.n])
    inputs = folder / "inputs.npy"
    np.save(inputs, x)
    ref_ms, ref = reference_run(snn, x, args.steps)
    print(f"{name}: T = {args.steps}, {len(x)} images; reference simulator {ref_ms:.2f} ms per image", flush=True)
    print(f"  {'simulator':9s} {'script':24s} {'batch':>5s} {'build s':>8s} {'ms/image':>9s} {'vs old':>7s} "
          f"{'vs bare':>7s} {'identical':>10s} {'same class':>10s}")
    for sim in args.sims:
        rows = []
        if old is not None:
            script = folder / f"old_{sim}.py"
            # converted by that commit itself (its network file version may differ from ours)
            cmd, env = snnexport_cmd(spec["model"], "--calibration", spec["data"], "--steps", args.steps,
                                     "--to", sim, "-o", script, pythonpath=old)
            run(cmd, env, cwd=work)  # not from the repository, whose snnexport would come first
            rows.append((f"{args.baseline} (old)", time_script(script, inputs, folder / f"old_{sim}.npz")))
        script = folder / f"new_{sim}.py"
        cmd, env = snnexport_cmd(snn, "--to", sim, "-o", script)
        run(cmd, env, cwd=work)
        # Brian2's default device (auto) compiles C++ from 100 images on: its batch 1 and batch rows are
        # the runtime device's, then the default's (cpp_standalone there, its compilation counted in build s)
        runtime = ("--device", "runtime") if sim == "brian2" else ()
        label = "runtime, " if runtime else ""
        rows.append((f"{label}--batch 1", time_script(script, inputs, folder / f"b1_{sim}.npz", "--batch", "1",
                                                       *runtime)))
        if runtime:
            rows.append((f"{label}default batch", time_script(script, inputs, folder / f"br_{sim}.npz", *runtime)))
        default = runtime if runtime and not args.standalone else ()
        rows.append(("default" + (" (auto)" if runtime and not default else ""),
                     time_script(script, inputs, folder / f"bd_{sim}.npz", *default)))
        old_ms = rows[0][1]["ms"] if old is not None else None
        bare_ms = bare(sim, snn, inputs, args.steps, len(x)) if args.bare else None
        for label, r in rows:
            ident, same = agreement(r["results"], ref)
            vs_old = f"{old_ms / r['ms']:6.1f}x" if old_ms else "      -"
            vs_bare = f"{r['ms'] / bare_ms:6.2f}x" if bare_ms else "      -"
            build = f"{r['build']:8.2f}" if r["build"] is not None else "       -"
            print(f"  {sim:9s} {label:24s} {r['batch']:5d} {build} {r['ms']:9.1f} {vs_old} {vs_bare} "
                  f"{100 * ident:9.4f}% {100 * same:9.2f}%", flush=True)
        if bare_ms:
            print(f"  {sim:9s} {'bare network':24s} {'':5s} {'':8s} {bare_ms:9.1f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="lenet,cifarnet")
    p.add_argument("-n", type=int, default=200, help="test images per script (default 200)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--sims", default=",".join(SIMS))
    p.add_argument("--baseline", default="83b90cc", help="commit whose scripts to compare with ('' for none)")
    p.add_argument("--no-bare", dest="bare", action="store_false", help="skip the bare networks")
    p.add_argument("--no-standalone", dest="standalone", action="store_false",
                   help="run Brian2's default row on the runtime device (cpp_standalone compiles for a minute or so)")
    p.add_argument("--keep", help="folder for the scripts and results (default: a temporary one)")
    args = p.parse_args()
    args.sims = [s for s in args.sims.split(",") if s]
    os.environ.setdefault("KERAS_BACKEND", "jax")
    sys.path.insert(0, str(HERE))
    specs = model_specs()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep).resolve() if args.keep else Path(tmp)
        old = baseline_package(args.baseline, work / "baseline") if args.baseline else None
        for name in args.models.split(","):
            bench_model(name, specs[name], args, work, old)


if __name__ == "__main__":
    main()
