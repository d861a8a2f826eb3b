"""Convert a VGG16 (138 M parameters, random seeded weights) and report wall time and peak memory.

Builds ``keras.applications.VGG16(weights=None)``, saves it as .h5 in a temporary directory, then
runs, each in its own child process so that its peak RSS is its own:

1. the CLI: ``python -m snnexport MODEL --to network -o OUT``;
2. ``snnexport.readers.keras.read_model`` alone (the reading step's share of the CLI's figures).

Targets: under 60 s, and peak RSS under 3x the weights' size (138 M x 4 bytes = 553 MB).
Usage: ``KERAS_BACKEND=jax python benchmarks/vgg16_convert.py [--keep DIR]``.
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
TARGET_S = 60.0
TARGET_RATIO = 3.0


def build_vgg16(path: Path) -> int:
    """Save a seeded VGG16 to ``path``; returns its parameter count."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(weights=None)
    model.save(path)
    return int(model.count_params())


def run_child(cmd: list[str], log: Path) -> tuple[int, float, int]:
    """Run cmd; returns (exit code, wall seconds, peak RSS in bytes) of that child alone."""
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the max over all children).
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)  # Linux reports KiB
    return proc.returncode, wall, rss


def report(label: str, rc: int, wall: float, rss: int, weight_bytes: int, log: Path) -> bool:
    ratio = rss / weight_bytes
    ok = rc == 0 and wall < TARGET_S and ratio < TARGET_RATIO
    print(f"{label}: exit {rc}, wall {wall:.1f} s (target < {TARGET_S:.0f}), peak RSS "
          f"{rss / 2**20:.0f} MiB = {ratio:.2f}x weights (target < {TARGET_RATIO:.0f}x)"
          f"  [{'ok' if ok else 'MISSED'}]")
    if rc != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        print("  last lines of its output:\n    " + "\n    ".join(tail))
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="keep the model and outputs in this directory")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="snnexport-vgg16-")
    work = args.keep or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    model = work / "vgg16.h5"

    # Built in a child too: a child's peak RSS starts from its parent's size on Linux, so the
    # parent must stay small for the figures below to be the children's own.
    t0 = time.perf_counter()
    build = [sys.executable, "-c",
             "import sys; sys.path.insert(0, sys.argv[2]); import vgg16_convert as b; "
             "print(b.build_vgg16(__import__('pathlib').Path(sys.argv[1])))",
             str(model), str(Path(__file__).resolve().parent)]
    out = subprocess.run(build, capture_output=True, text=True, env=dict(os.environ, KERAS_BACKEND="jax"))
    if out.returncode != 0:
        print("building VGG16 failed:\n" + out.stderr[-2000:])
        return 1
    params = int(out.stdout.strip().splitlines()[-1])
    weight_bytes = params * 4
    print(f"VGG16: {params:,} parameters, {weight_bytes / 2**20:.0f} MiB of float32 weights; "
          f"file {model.stat().st_size / 2**20:.0f} MiB, built and saved in {time.perf_counter() - t0:.1f} s")

    ok = True
    cli = [sys.executable, "-m", "snnexport", str(model), "--to", "network", "-o", str(work / "vgg16.net")]
    ok &= report("CLI --to network", *run_child(cli, work / "cli.log"), weight_bytes, work / "cli.log")

    reader = [sys.executable, "-c",
              "import sys; from snnexport.readers.keras import read_model; "
              "g = read_model(sys.argv[1]); print(len(g.nodes), 'nodes')", str(model)]
    ok &= report("read_model alone", *run_child(reader, work / "reader.log"), weight_bytes,
                 work / "reader.log")

    baseline = [sys.executable, "-c", "import keras, snnexport.readers.keras"]
    rc, wall, rss = run_child(baseline, work / "baseline.log")
    print(f"(for scale: importing keras + jax alone takes {wall:.1f} s and {rss / 2**20:.0f} MiB)")
    tmp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
