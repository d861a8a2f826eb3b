"""Build and run costs of exported PyNEST and PyNN scripts, against raw array ``nest.Connect``.

For the bundled LeNet (snnexport/data/lenet_mnist.h5) it exports a PyNEST (``--to nest``) and a
PyNN (``--to pynn``) script and runs each in its own child process, reporting:

1. build time (the script's ``build_network``, from its results file), simulation time per
   sample and the child's peak RSS (``os.wait4``'s resource usage of exactly that child), for the
   PyNEST script, the PyNN script (synapses through ``nest.Connect`` on the populations' node
   collections, its default on NEST) and the PyNN script with ``--pynn-projections`` (PyNN
   ``Projection`` + ``FromListConnector``);
2. the baseline: in another child, the same neurons created with ``nest.Create`` and the same
   synapses (expanded beforehand, not timed) connected with one array ``nest.Connect`` per
   projection: the fastest way NEST offers. Target: the PyNEST script within 1.5x of it;
3. spike-count agreement of both scripts with ``snnexport.simulator.simulate`` (delay "step") on
   the same samples (``compare.identical_fraction``), accuracy, and the published per-image times
   of the paper's toolbox on this machine kind (design.md);
4. how the PyNEST script's build time grows when the synapse count doubles and quadruples: a
   seeded random Keras model (28x28x1 → conv 5x5 → max-pool → conv 5x5 → dense 10) whose first
   convolution is widened 1x, 2x, 4x, with the raw baseline beside each.

Usage: ``KERAS_BACKEND=jax python benchmarks/nest_build.py [--samples N] [--steps T] [--data mnist.npz]
[--threads K]`` (``--data`` takes N test images of a full MNIST file instead of the bundled samples).
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

os.environ.setdefault("KERAS_BACKEND", "jax")

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "snnexport" / "data" / "lenet_mnist.h5"
SAMPLES = REPO / "snnexport" / "data" / "mnist_samples.npz"
PEERS = {"snntoolbox built-in simulator (batch 100)": 0.025, "snntoolbox Brian2 back end": 0.340,
         "snntoolbox pyNN/NEST back end": 1.75}  # seconds per image, design.md

# The baseline, run in its own process: create the neurons, expand the synapses (untimed), connect.
RAW = r"""
import json, os, sys, time
os.environ.setdefault("PYNEST_QUIET", "1")
import numpy as np
import nest
from snnexport.network import Gate, Network
net = Network.load(sys.argv[1])
synapses = [net.synapses(p) for p in net.projections]
start = time.perf_counter()
nest.ResetKernel()
nest.set(resolution=1.0, local_num_threads=int(sys.argv[2]))
first = {}
for node in net.nodes:
    n = net.size_of(node.name)
    model = "spike_generator" if isinstance(node, Gate) else "eprop_iaf"
    first[node.name] = nest.Create(model, n)[0].global_id
created = time.perf_counter()
count = 0
for proj, (pre, post, w) in zip(net.projections, synapses):
    if proj.source == net.input.name:
        continue  # the analog input is a current, not synapses (as in the scripts)
    nest.Connect(first[proj.source] + pre, first[proj.target] + post, "one_to_one",
                 {"synapse_model": "static_synapse", "weight": w.astype(np.float64), "delay": np.ones(len(w))})
    count += len(w)
done = time.perf_counter()
# The first connection out of a NEST node costs about 40 µs (its outgoing-connection tables): a
# network whose spikes are recorded pays it for every neuron, so the second baseline records.
for node in net.nodes:
    if not isinstance(node, Gate):
        n = net.size_of(node.name)
        nest.Connect(first[node.name] + np.arange(n), np.full(n, nest.Create("spike_recorder")[0].global_id),
                     "one_to_one", {"synapse_model": "static_synapse", "weight": np.ones(n), "delay": np.ones(n)})
recorded = time.perf_counter()
print(json.dumps({"create": created - start, "connect": done - created, "total": done - start, "synapses": count,
                  "recorded": recorded - start}))
"""


def run_child(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """Runs cmd; returns (wall seconds, peak RSS in MiB of that process, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    _, status, usage = os.wait4(proc.pid, 0) if proc.returncode is None else (0, proc.returncode, None)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{out[-2000:]}\n{err[-2000:]}")
    rss = usage.ru_maxrss / 1024 if usage else float("nan")
    return wall, rss, out


def run_measured(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """Like run_child, but the peak RSS comes from getrusage in a tiny parent that runs only cmd."""
    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr); "
             "print('@@rss', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")
    wall, _, out = run_child([sys.executable, "-c", probe, *cmd], cwd)
    rss = int(out.rsplit("@@rss", 1)[1].split()[0]) / 1024
    return wall, rss, out.rsplit("@@rss", 1)[0]


def export(writer: str, net, path: Path, samples: np.ndarray) -> Path:
    from snnexport.writers import get
    from snnexport.writers.base import WriteOptions
    rendered = get(writer).render(net, WriteOptions(output=path, samples=samples[:2]))
    path.write_bytes(rendered.main)
    for name, data in rendered.beside.items():
        (path.parent / name).write_bytes(data)
    return path


def run_script(script: Path, inputs: Path, steps: int, extra: list[str], out: Path) -> dict:
    from snnexport.scriptlib import runtime
    wall, rss, _ = run_measured([sys.executable, str(script), "--input", str(inputs), "--steps", str(steps),
                                 "--out", str(out), "--quiet", *extra], script.parent)
    results = runtime.load_results(out)
    meta = results["meta"]
    results["_cost"] = {"build": meta["build_seconds"], "per_sample": meta["run_seconds"] / meta["samples"],
                        "rss": rss, "wall": wall}
    return results


def raw_connect(snn: Path, threads: int, folder: Path) -> dict:
    _, rss, out = run_measured([sys.executable, "-c", RAW, str(snn), str(threads)], folder)
    return dict(json.loads(out.strip().splitlines()[-1]), rss=rss)


def random_model(width: int):
    import keras
    from keras import layers as L
    rng = np.random.default_rng(width)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(8 * width, 5, activation="relu", name="conv1"),
        L.MaxPooling2D(2, name="pool1"),
        L.Conv2D(16, 5, activation="relu", name="conv2"),
        L.Flatten(name="flat"),
        L.Dense(10, name="out"),
    ])
    model.set_weights([rng.normal(0, 0.2, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--data", help="a full MNIST .npz (x_test, y_test): take --samples test images from it")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-scaling", action="store_true")
    args = ap.parse_args()

    from snnexport.compare import identical_fraction
    from snnexport.convert import convert
    from snnexport.readers.keras import read_model
    from snnexport.simulator import simulate

    with np.load(SAMPLES) as d:
        calib = d["x"].astype(np.float32)
        x, y = d["x"][:args.samples].astype(np.float32), d["y"][:args.samples].astype(np.int64)
    if args.data:
        with np.load(args.data) as d:
            x = (d["x_test"][:args.samples].astype(np.float32) / 255)[..., None]
            y = d["y_test"][:args.samples].astype(np.int64)

    folder = Path(tempfile.mkdtemp(prefix="nest_build_"))
    net = convert(read_model(MODEL), calib)
    net.save(folder / "lenet.snn")
    np.save(folder / "inputs.npy", x)
    print(f"bundled LeNet: {sum(net.size_of(p.name) for p in net.populations)} neurons; {len(x)} samples, "
          f"T = {args.steps}, threads = {args.threads}; NEST and PyNN each in a child process")

    start = time.perf_counter()
    ref = simulate(net, x, y, steps=args.steps, delay="step")
    ref_time = (time.perf_counter() - start) / len(x)

    raw = raw_connect(folder / "lenet.snn", args.threads, folder)
    print(f"raw nest.Create + array nest.Connect: {raw['total']:.2f} s "
          f"(create {raw['create']:.2f} s, connect {raw['connect']:.2f} s) for {raw['synapses']:,} synapses; "
          f"{raw['recorded']:.2f} s with a spike_recorder on every population")
    threads = ["--threads", str(args.threads)]
    runs = {
        "PyNEST script": ("nest", threads),
        "PyNN script (nest.Connect via node collections)": ("pynn", threads),
        "PyNN script (--pynn-projections: FromListConnector)": ("pynn", threads + ["--pynn-projections"]),
    }
    print(f"{'':54s} {'build s':>8s} {'x raw':>6s} {'x rec':>6s} {'s/sample':>9s} {'peak MiB':>9s} "
          f"{'agree':>9s} {'acc':>6s}")
    for label, (writer, extra) in runs.items():
        script = export(writer, net, folder / f"lenet_{writer}.py", x)
        res = run_script(script, folder / "inputs.npy", args.steps, extra, folder / f"{writer}.npz")
        c = res["_cost"]
        agree = identical_fraction(res, ref)["all"]
        acc = float((res["predictions"] == y).mean())
        print(f"{label:54s} {c['build']:8.2f} {c['build'] / raw['total']:6.2f} {c['build'] / raw['recorded']:6.2f} "
              f"{c['per_sample']:9.3f} "
              f"{c['rss']:9.0f} {agree:9.6f} {acc:6.1%}")
    print(f"{'reference simulator (JAX, batched)':54s} {'':8s} {'':6s} {'':6s} {ref_time:9.3f} {'':9s} {'':9s} "
          f"{float((ref['predictions'] == y).mean()):6.1%}")
    for peer, seconds in PEERS.items():
        print(f"  peer: {peer}: {seconds:.3f} s per image")

    if args.skip_scaling:
        return
    print("\nbuild time as the synapse count grows (random model, conv1 widened; PyNEST script vs raw):")
    probe = np.random.default_rng(0).uniform(0, 1, (20, 28, 28, 1)).astype(np.float32)
    for width in (1, 2, 4):
        path = folder / f"wide{width}.keras"
        random_model(width).save(path)
        wide = convert(read_model(path), probe)
        wide.save(folder / f"wide{width}.snn")
        np.save(folder / "probe.npy", probe[:1])
        script = export("nest", wide, folder / f"wide{width}.py", probe)
        res = run_script(script, folder / "probe.npy", 5, threads, folder / f"wide{width}.npz")
        base = raw_connect(folder / f"wide{width}.snn", args.threads, folder)
        print(f"  width x{width}: {base['synapses']:>9,} synapses: script build {res['_cost']['build']:.2f} s, "
              f"raw {base['total']:.2f} s (x{res['_cost']['build'] / base['total']:.2f}), "
              f"raw recorded {base['recorded']:.2f} s (x{res['_cost']['build'] / base['recorded']:.2f}), "
              f"peak {res['_cost']['rss']:.0f} MiB")


if __name__ == "__main__":
    main()
