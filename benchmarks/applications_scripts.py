"""Export keras.applications models and run each exported script on one sample with ``--steps 5``.

Issue 14's "the exported scripts build and run one sample with --steps 5 on Brian2, NEST and Nengo"
for the big applications. For each model (``weights=None``, default input size, ``include_top=True``,
seeded weights with random BatchNorm statistics and biases, built by applications_convert.build):

1. ``snnexport MODEL.keras --to network`` (no calibration): wall time, peak RSS;
2. the network's size: neurons and synapses, counted as paths through each projection's op chain with
   snnexport.opcount's indicators (exact for a chain with one kernel; an upper bound where a chain
   composes two, as MobileNetV2's linear bottleneck does: the scripts expand those compositions too),
   and the largest projection's count (the scripts expand one projection's synapse list at a time);
3. per writer, ``snnexport NET.snn --to WRITER`` and then the script itself on one seeded input in [0, 1]
   (``--input x.npy --steps 5 --out run.npz``), each a child process of its own: wall time, peak RSS, and
   the script's own build and run seconds (from its results file, docs/semantics.md).

A script whose resident memory passes ``--max-rss`` GiB is stopped (the machine is shared; the default
8 GiB leaves room for others on a 24 GB machine) and reported with the RSS it had reached. Brian2 and
NEST scripts hold every synapse: at least 16 bytes each (Brian2 stores two 32-bit indices and a 64-bit
weight per synapse, a NEST static synapse is no smaller), or, once a model's script has run, the bytes
per synapse measured there; a script whose estimate exceeds the limit is not run, and the estimate is
printed. Nengo's convolutions and dense layers are kernel products, not synapse lists: always tried.

Usage: ``KERAS_BACKEND=jax python benchmarks/applications_scripts.py [--models MobileNetV2 ResNet50]
[--writers brian2 nest nengo] [--max-rss 8] [--size S] [--keep DIR]`` (``--size 48``: the same architecture at
48 x 48 x 3, small enough for Brian2 and NEST on a small machine). Exit status 1 if a step failed (a stop
at the memory limit or a skip is reported, not a failure).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from applications_convert import build  # noqa: E402

GIB = 2 ** 30


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and its descendants (from /proc; 0 once it is gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:")), 0)
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return total


def child(cmd: list[str], log: Path, limit: int | None = None) -> tuple[int, float, int, bool]:
    """(exit code, wall s, peak RSS bytes, stopped at the limit) of one child and its descendants."""
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    t0, peak, stopped = time.perf_counter(), 0, False
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True)
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            if limit is not None and peak > limit and not stopped:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: only this script and what it started
                stopped = True
            time.sleep(0.1)
    return proc.returncode, time.perf_counter() - t0, peak, stopped


def last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


def paths(net, proj) -> int:
    """Paths from source to target neurons through a projection's ops (module doc), without expanding them."""
    from snnexport.opcount import COUNTING

    shape = tuple(net.shape_of(proj.source))
    y = np.ones((1,) + shape, np.float32)
    for op in proj.ops:
        y = COUNTING.of(op).indicator(op, shape).forward(y)
        shape = tuple(op.output_shape(shape))
    return int(np.asarray(y, np.float64).sum())


def network_size(net_path: Path) -> tuple[int, int, int]:
    """(neurons, synapses, synapses of the largest projection) of a network file (synapses as paths)."""
    from snnexport.network import Network, Population

    net = Network.load(net_path)
    neurons = sum(int(np.prod(n.shape)) for n in net.nodes if isinstance(n, Population))
    per_projection = [paths(net, p) for p in net.projections]
    return neurons, sum(per_projection), max(per_projection)


SYNAPSE_FLOOR = {"brian2": 16.0, "nest": 16.0}  # bytes every synapse takes at least (module doc)


def one(name: str, work: Path, writers: list[str], limit: int, bytes_per_synapse: dict[str, float],
        size: int | None = None) -> bool:
    model_name, name = name, name if size is None else f"{name}_{size}"  # name: of its files and lines
    model_path, net_path, x_path = work / f"{name}.keras", work / f"{name}.snn", work / f"{name}_x.npy"
    t0 = time.perf_counter()
    if not (model_path.exists() and x_path.exists()):  # kept from an earlier run with --keep: the same seeds
        model = build(model_name, model_path, None if size is None else (size, size, 3))
        x = np.random.default_rng(1).uniform(0, 1, (1,) + tuple(model.input_shape[1:])).astype(np.float32)
        np.save(x_path, x)
        del model
    print(f"{name}: built and saved in {time.perf_counter() - t0:.1f} s", flush=True)
    cli = [sys.executable, "-m", "snnexport"]
    rc, wall, rss, _ = child(cli + [str(model_path), "--to", "network", "-o", str(net_path)], work / f"{name}.log")
    print(f"  convert: exit {rc}, {wall:.1f} s, peak RSS {rss / GIB:.2f} GiB", flush=True)
    if rc != 0:
        print(f"  FAILED: {last_line(work / f'{name}.log')}")
        return False
    neurons, synapses, largest = network_size(net_path)
    print(f"  network: {neurons:,} neurons, {synapses:,} synapses (largest projection {largest:,})", flush=True)
    ok = True
    for writer in writers:
        script = work / f"{name}_{writer}.py"
        rc, wall, rss, _ = child(cli + [str(net_path), "--to", writer, "-o", str(script)], work / f"{script.name}.log")
        print(f"  --to {writer}: exit {rc}, {wall:.1f} s, peak RSS {rss / GIB:.2f} GiB", flush=True)
        if rc != 0:
            print(f"    FAILED: {last_line(work / f'{script.name}.log')}")
            ok = False
            continue
        per = bytes_per_synapse.get(writer, SYNAPSE_FLOOR.get(writer))
        if per is not None and per * synapses > limit:
            how = "as measured above" if writer in bytes_per_synapse else "at least"
            print(f"    {writer} script not run: {per * synapses / GIB:.0f} GiB or more needed ({per:.0f} B per "
                  f"synapse {how}, times {synapses:,} synapses), over the {limit / GIB:.0f} GiB limit", flush=True)
            continue
        out = work / f"{name}_{writer}_run.npz"
        log = work / f"{name}_{writer}_run.log"
        rc, wall, rss, stopped = child([sys.executable, str(script), "--input", str(x_path), "--steps", "5",
                                        "--out", str(out)], log, limit)
        if stopped:
            print(f"    {writer} script stopped at the {limit / GIB:.0f} GiB limit after {wall:.1f} s "
                  f"(RSS {rss / GIB:.2f} GiB; {synapses:,} synapses)", flush=True)
            continue
        if rc != 0:
            print(f"    {writer} script FAILED (exit {rc}, {wall:.1f} s, peak RSS {rss / GIB:.2f} GiB): "
                  f"{last_line(log)}", flush=True)
            ok = False
            continue
        from snnexport.scriptlib.runtime import load_results

        meta = load_results(out)["meta"]
        if writer in SYNAPSE_FLOOR:  # memory that grows with the synapses: an estimate for the next model
            bytes_per_synapse.setdefault(writer, rss / max(synapses, 1))
        print(f"    {writer} script, 1 sample, --steps 5: {wall:.1f} s wall, peak RSS {rss / GIB:.2f} GiB; "
              f"build {meta.get('build_seconds', float('nan')):.1f} s, run {meta.get('run_seconds', float('nan')):.1f} s",
              flush=True)
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["MobileNetV2", "ResNet50"])
    ap.add_argument("--writers", nargs="+", default=["brian2", "nest", "nengo"])
    ap.add_argument("--max-rss", type=float, default=8.0, help="GiB a script may hold before it is stopped")
    ap.add_argument("--size", type=int, help="input size S (S x S x 3) instead of the model's default")
    ap.add_argument("--keep", type=Path, help="keep models, networks, scripts and logs in this directory")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="snnexport-app-scripts-")
    work = args.keep or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    measured: dict[str, float] = {}  # writer → bytes per synapse of the first model whose script ran
    ok = all([one(name, work, args.writers, int(args.max_rss * GIB), measured, args.size) for name in args.models])
    print(json.dumps({"bytes_per_synapse": {w: round(b, 1) for w, b in measured.items()}}))
    tmp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
