"""Convert keras.applications models without calibration and check the description against Keras.

For each of ResNet50, ResNet101, DenseNet121, InceptionV3, VGG16, MobileNetV2 and Xception
(``weights=None``, default input size, ``include_top=True``; seeded weights, random BatchNorm
statistics and biases so that folding is exercised), in a child process of its own:

1. build and save it as .keras in a temporary directory;
2. ``snnexport MODEL.keras --to network`` through the CLI (no calibration): wall time, peak RSS;
   Xception is expected to be refused (its max-pools take signed BatchNormalization outputs): the
   refusal line is printed and must name those layers and the reason;
3. the description evaluated as an ANN (``snnexport.simulator.ann_activations``; the output's
   normalized pre-activation times its λ, then softmax) against ``model.predict`` on two seeded
   inputs in [0, 1]: max |ours − Keras| / (|Keras| + max |Keras| of that sample), target ≤ 1e-5 (the
   reader tests' rtol = 1e-5 with atol = 1e-5 × the largest output), and the elementwise maximum;
4. the description exported to every writer (``snnexport NET.snn --to W``): time and size;
5. with ``--run WRITER``: that writer's script for the first model run on one sample, ``--steps 5``
   (needs a big machine: these networks have millions of neurons and billions of synapses, ResNet50
   9.1 M and 3.8 G; benchmarks/applications_scripts.py runs them under a memory limit and says what fits).

Usage: ``KERAS_BACKEND=jax python benchmarks/applications_convert.py [--models ResNet50 ...]
[--run brian2] [--keep DIR]``. Exit status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MODELS = ("ResNet50", "ResNet101", "DenseNet121", "InceptionV3", "VGG16", "MobileNetV2", "Xception")
REFUSED = {"Xception": ("block2_pool", "no exact spiking construction")}  # model → what its refusal names
RTOL = 1e-5


def build(name: str, path: Path, input_shape: tuple[int, ...] | None = None) -> object:
    """Save a seeded ``keras.applications.<name>(weights=None)`` with random BN statistics and biases."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    keras.utils.set_random_seed(0)
    extra = {"input_shape": input_shape} if input_shape else {}
    model = getattr(keras.applications, name)(weights=None, **extra)
    rng = np.random.default_rng(0)
    ranges = {"gamma": (0.5, 1.5), "beta": (-0.2, 0.2), "moving_mean": (-0.3, 0.3),
              "moving_variance": (0.3, 2.0), "bias": (-0.1, 0.1)}
    for layer in model.layers:
        for v in layer.weights:
            if v.name in ranges:
                v.assign(rng.uniform(*ranges[v.name], tuple(v.shape)).astype("float32"))
    model.save(path)
    return model


def child(cmd: list[str], log: Path) -> tuple[int, float, int]:
    """Run cmd; (exit code, wall seconds, peak RSS in bytes of that child alone)."""
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
    return os.waitstatus_to_exitcode(status), time.perf_counter() - t0, usage.ru_maxrss * 1024


def last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def one(name: str, work: Path, run: str | None) -> bool:
    """Everything for one model, in this (child) process; prints one line per step."""
    cli = [sys.executable, "-m", "snnexport"]
    model_path, net_path = work / f"{name}.keras", work / f"{name}.snn"
    t0 = time.perf_counter()
    model = build(name, model_path)
    x = np.random.default_rng(1).uniform(0, 1, (2,) + tuple(model.input_shape[1:])).astype(np.float32)
    np.save(work / f"{name}_x.npy", x[:1])
    expected = np.asarray(model.predict(x, verbose=0), np.float64)
    print(f"{name}: {model.count_params():,} parameters, input {tuple(model.input_shape[1:])}; built, saved and "
          f"predicted in {time.perf_counter() - t0:.1f} s", flush=True)
    del model
    rc, wall, rss = child(cli + [str(model_path), "--to", "network", "-o", str(net_path)], work / f"{name}.log")
    if name in REFUSED:
        line = last_line(work / f"{name}.log")
        ok = rc == 1 and all(s in line for s in REFUSED[name])
        print(f"  refused (exit {rc}, {wall:.1f} s, {len(line)} characters) [{'ok' if ok else 'MISSED'}]: {line}")
        return ok
    print(f"  convert without calibration: exit {rc}, wall {wall:.1f} s, peak RSS {rss / 2**20:.0f} MiB", flush=True)
    if rc != 0:
        print(f"  FAILED: {last_line(work / f'{name}.log')}")
        return False
    ok = compare(net_path, x, expected)
    ok &= export_all(name, net_path, work)
    if run:
        ok &= run_script(name, net_path, work, run)
    return ok


def compare(net_path: Path, x: np.ndarray, expected: np.ndarray) -> bool:
    from snnexport.network import Network
    from snnexport.simulator import ann_activations

    net = Network.load(net_path)
    t0 = time.perf_counter()
    z = ann_activations(net, x)[net.output].astype(np.float64) * net.node(net.output).scale
    mine = softmax(z) if net.node(net.output).activation == "softmax" else z
    diff = np.abs(mine - expected)
    rel = float((diff / (np.abs(expected) + np.abs(expected).max(axis=1, keepdims=True))).max())
    elementwise = float((diff / np.abs(expected)).max())
    same = bool((mine.argmax(1) == expected.argmax(1)).all())
    ok = rel <= RTOL and same
    print(f"  ANN of the description vs model.predict: relative difference {rel:.2e} (target <= {RTOL:g}; "
          f"max elementwise {elementwise:.2e}), same classes: {same}; evaluated in {time.perf_counter() - t0:.1f} s "
          f"[{'ok' if ok else 'MISSED'}]", flush=True)
    return ok


def export_all(name: str, net_path: Path, work: Path) -> bool:
    from snnexport import writers

    ok = True
    for writer in writers.available():
        if writer == "network":
            continue
        out = work / f"{name}_{writer}.py"
        rc, wall, rss = child([sys.executable, "-m", "snnexport", str(net_path), "--to", writer, "-o", str(out)],
                              work / f"{name}_{writer}.log")
        size = sum(p.stat().st_size for p in work.glob(f"{name}_{writer}.*") if p.suffix != ".log")
        print(f"  --to {writer}: exit {rc}, {wall:.1f} s, peak RSS {rss / 2**20:.0f} MiB, "
              f"{size / 2**20:.1f} MiB written" + ("" if rc == 0 else f": {last_line(work / f'{name}_{writer}.log')}"),
              flush=True)
        ok &= rc == 0
    return ok


def run_script(name: str, net_path: Path, work: Path, writer: str) -> bool:
    script = work / f"{name}_{writer}.py"
    rc, wall, rss = child([sys.executable, str(script), "--input", str(work / f"{name}_x.npy"), "--steps", "5", "--out",
                           str(work / f"{name}_{writer}_run.npz")], work / f"{name}_{writer}_run.log")
    print(f"  {writer} script, 1 sample, --steps 5: exit {rc}, {wall:.1f} s, peak RSS {rss / 2**20:.0f} MiB"
          + ("" if rc == 0 else f": {last_line(work / f'{name}_{writer}_run.log')}"), flush=True)
    return rc == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--run", metavar="WRITER", help="run this writer's script for the first model (--steps 5)")
    ap.add_argument("--keep", type=Path, help="keep models, networks and scripts in this directory")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: the child process for one model
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return 0 if one(args.one, args.work, args.run) else 1
    tmp = tempfile.TemporaryDirectory(prefix="snnexport-apps-")
    work = args.keep or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    failed = []
    for i, name in enumerate(args.models):
        cmd = [sys.executable, __file__, "--one", name, "--work", str(work)]
        if args.run and i == 0:
            cmd += ["--run", args.run]
        env = dict(os.environ, KERAS_BACKEND="jax")
        if subprocess.run(cmd, env=env).returncode != 0:
            failed.append(name)
    print("all checks passed" if not failed else f"checks failed for: {', '.join(failed)}")
    tmp.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
