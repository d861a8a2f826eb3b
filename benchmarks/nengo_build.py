"""Build and run costs of exported Nengo scripts, and their agreement with the reference simulator.

For the bundled LeNet (snnexport/data/lenet_mnist.h5; the zoo's small LeNet if it is missing) it
exports a Nengo script with the CLI and runs it, each run in its own child process, reporting:

1. build time (``nengo.Simulator`` construction, from the results file), simulation time per sample
   and the child's peak RSS (``resource.getrusage(RUSAGE_CHILDREN)`` after it exits), for native
   transforms (nengo.Convolution/Dense) and for ``--transforms sparse`` (everything as
   nengo.transforms.Sparse): the comparison of Nengo's convolution transform with explicit synapses;
2. spike-count agreement with ``snnexport.simulator.simulate`` (delay "step") on the same samples
   (``compare.identical_fraction``), the reference simulator's time per sample, and the published
   figures of the paper's toolbox on this machine kind (docs: design.md, "Peer figures");
3. how build time grows when the synapse count doubles and quadruples: a random network
   (28x28x1 → conv 5x5 → conv 5x5 → dense → 10, built directly as a snnexport Network) whose first
   convolution is widened 1x, 2x, 4x, built with native and with Sparse transforms.

Usage: ``KERAS_BACKEND=jax python benchmarks/nengo_build.py [--samples N] [--steps T] [--data mnist.npz]``
(``--data`` takes N test images from a full MNIST file instead of the bundled samples, e.g. 500).
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

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "snnexport" / "data" / "lenet_mnist.h5"
SAMPLES = REPO / "snnexport" / "data" / "mnist_samples.npz"
PEERS = {"snntoolbox built-in (batch 100)": 0.025, "snntoolbox Brian2 back end": 0.340,
         "snntoolbox pyNN/NEST back end": 1.75}  # seconds per image, design.md


def child(cmd: list[str], cwd: Path) -> tuple[float, int, str]:
    """Run cmd in a fresh process that measures itself; returns (wall s, peak RSS bytes, stdout)."""
    wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "w = time.perf_counter() - t; "
               "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr); "
               "print('@@', w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")
    p = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, cwd=cwd)
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    last = [line for line in p.stdout.splitlines() if line.startswith("@@ ")][-1].split()
    return float(last[1]), int(last[2]) * 1024, p.stdout


def run_script(script: Path, x_file: Path, out: Path, steps: int, *extra: str) -> dict:
    wall, rss, _ = child([sys.executable, str(script), "--input", str(x_file), "--steps", str(steps),
                          "--out", str(out), "--quiet", *extra], script.parent)
    from snnexport.scriptlib import runtime
    r = runtime.load_results(out)
    meta = r["meta"]
    return {"results": r, "wall": wall, "rss": rss, "build": meta["build_seconds"],
            "per_sample": meta["run_seconds"] / meta["samples"]}


def load_samples(args) -> tuple[np.ndarray, np.ndarray]:
    if args.data:
        with np.load(args.data) as z:
            x = z["x_test"][: args.samples].astype(np.float32) / 255.0
            y = z["y_test"][: args.samples].astype(np.int64)
        return x.reshape(len(x), 28, 28, 1), y
    with np.load(args.bundled_samples) as z:
        return z["x"][: args.samples].astype(np.float32), z["y"][: args.samples].astype(np.int64)


def bundled(args, tmp: Path) -> None:
    from snnexport.compare import identical_fraction
    from snnexport.network import Network
    from snnexport.simulator import simulate

    if args.model.is_file() and args.bundled_samples.is_file():
        model, calib = args.model, args.bundled_samples
        x, y = load_samples(args)
        label = args.model.name
    else:  # the bundled model is not there yet: the zoo's LeNet on random inputs
        sys.path.insert(0, str(REPO / "tests"))
        import model_zoo
        m = model_zoo.build_lenet()
        model = tmp / "lenet.keras"
        m.save(model)
        x = model_zoo.sample_input(m, args.samples, seed=3)
        y = np.full(len(x), -1)
        calib = tmp / "calib.npy"
        np.save(calib, model_zoo.sample_input(m, 100))
        label = "zoo LeNet (bundled model missing)"
    np.save(tmp / "x.npy", x)
    script, snn = tmp / "net.py", tmp / "net.snn"
    for to, out in (("nengo", script), ("network", snn)):
        p = subprocess.run([sys.executable, "-m", "snnexport", str(model), "--calibration", str(calib), "--to", to,
                            "-o", str(out)], capture_output=True, text=True, cwd=REPO)
        if p.returncode != 0:
            raise SystemExit(f"snnexport --to {to} failed:\n{p.stderr[-3000:]}")
    net = Network.load(snn)
    synapses = sum(len(net.synapses(p)[0]) for p in net.projections)
    neurons = sum(int(np.prod(p.shape)) for p in net.populations)
    print(f"{label}: {neurons} neurons, {synapses} synapses, {len(x)} samples, {args.steps} steps")

    runs = {kind: run_script(script, tmp / "x.npy", tmp / f"r_{kind}.npz", args.steps, "--transforms", kind)
            for kind in ("native", "sparse")}
    start = time.perf_counter()
    ref = simulate(net, x, y, steps=args.steps, delay="step")
    ref_seconds = time.perf_counter() - start
    print(f"{'transforms':<10} {'build s':>8} {'per sample ms':>14} {'peak RSS MB':>12} {'identical':>10} {'accuracy':>9}")
    for kind, r in runs.items():
        frac = identical_fraction(r["results"], ref)
        pred = r["results"]["predictions"]
        acc = f"{(pred == y).mean() * 100:.2f} %" if (y >= 0).all() else "-"
        print(f"{kind:<10} {r['build']:>8.3f} {r['per_sample'] * 1e3:>14.1f} {r['rss'] / 2 ** 20:>12.0f} "
              f"{frac['all']:>10.6f} {acc:>9}")
        if frac["all"] < 1:
            print("   per population:", json.dumps({k: round(v, 6) for k, v in frac.items()}))
    same_pred = (runs["native"]["results"]["predictions"] == ref["predictions"]).mean()
    print(f"predictions identical to the reference: {same_pred * 100:.1f} %; reference simulator "
          f"{ref_seconds / len(x) * 1e3:.1f} ms per sample (JAX, batch {len(x)}, compile included)")
    per = runs["native"]["per_sample"]
    for name, seconds in PEERS.items():
        print(f"  vs {name}: {seconds * 1e3:.0f} ms per image -> Nengo script {seconds / per:.1f}x "
              f"{'faster' if seconds > per else 'slower'}")


def random_network(width: int, seed: int = 0):
    """28x28x1 → conv 5x5 (8·width) → conv 5x5 (4) → dense 64 → dense 10, random weights.

    The two convolutions hold 97 % of the synapses and both grow linearly with ``width``.
    """
    from snnexport import ops
    from snnexport.network import InputSpec, Network, Population, Projection
    rng = np.random.default_rng(seed)
    c1 = 8 * width

    def w(*shape):
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))).astype(np.float32)

    def pop(name, shape, depth):
        return Population(name, shape, rng.uniform(0, 0.05, shape).astype(np.float32), "relu", 1.0, depth)

    nodes = [pop("c1", (24, 24, c1), 1), pop("c2", (20, 20, 4), 2), pop("fc", (64,), 3), pop("out", (10,), 4)]
    projs = [Projection("x", "c1", [ops.Conv2D(w(5, 5, 1, c1))]),
             Projection("c1", "c2", [ops.Conv2D(w(5, 5, c1, 4))]),
             Projection("c2", "fc", [ops.Reshape((1600,)), ops.Dense(w(1600, 64))]),
             Projection("fc", "out", [ops.Dense(w(64, 10))])]
    return Network(InputSpec("x", (28, 28, 1)), nodes, projs, "out")


def scaling(args, tmp: Path) -> None:
    from snnexport.writers import get
    from snnexport.writers.base import WriteOptions

    x = np.random.default_rng(1).random((1, 28, 28, 1)).astype(np.float32)
    np.save(tmp / "xr.npy", x)
    print("\nbuild time against synapse count (first convolution widened; 1 sample, 10 steps; best of 3)")
    print(f"{'width':>5} {'synapses':>17} {'native build s':>15} {'sparse build s':>15} {'native RSS MB':>14} "
          f"{'sparse RSS MB':>14}")
    base = {}
    for width in (1, 2, 4):
        net = random_network(width)
        synapses = sum(len(net.synapses(p)[0]) for p in net.projections)
        script = tmp / f"wide{width}.py"
        r = get("nengo").render(net, WriteOptions(output=script, samples=x))
        script.write_bytes(r.main)
        for name, content in r.beside.items():
            (tmp / name).write_bytes(content)
        res = {}
        for kind in ("native", "sparse"):  # best of 3: the machine is shared, the minimum is the cost
            runs = [run_script(script, tmp / "xr.npy", tmp / f"w{width}_{kind}.npz", 10, "--transforms", kind)
                    for _ in range(3)]
            res[kind] = min(runs, key=lambda r: r["build"])
        base.setdefault("n", res["native"]["build"])
        base.setdefault("s", res["sparse"]["build"])
        base.setdefault("syn", synapses)
        print(f"{width:>5} {synapses:>10} ({synapses / base['syn']:.1f}x) {res['native']['build']:>9.3f} ({res['native']['build'] / base['n']:.1f}x)"
              f" {res['sparse']['build']:>9.3f} ({res['sparse']['build'] / base['s']:.1f}x)"
              f" {res['native']['rss'] / 2 ** 20:>14.0f} {res['sparse']['rss'] / 2 ** 20:>14.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--data", help="full MNIST .npz (x_test, y_test): take --samples test images from it")
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--model", type=Path, default=MODEL, help="Keras model (default: the bundled LeNet)")
    ap.add_argument("--bundled-samples", type=Path, default=SAMPLES,
                    help="calibration and default samples, .npz with x, y (default: the bundled ones)")
    args = ap.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "jax")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bundled(args, tmp)
        if not args.skip_scaling:
            scaling(args, tmp)


if __name__ == "__main__":
    main()
