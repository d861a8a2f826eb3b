"""Throughput of the reference simulator against the ANN it approximates, measured in the same run.

For the bundled LeNet (``snnexport/data/lenet_mnist.h5``, calibrated on the bundled MNIST samples;
if the files are missing, a LeNet of the same shape with seeded random weights) and T steps, it
prints for batch 1, 100 and 1000:

* the simulator's throughput in sample-steps per second (``simulate``, compile excluded), and
* its ratio to T × the time of one ANN forward pass of the same batch (the description's own
  ANN, jitted with the same JAX ops: ``simulator.ann_program``). Target: ≤ 1.0, i.e. simulating
  T steps costs no more than T forward passes.

Wall time and process CPU time are both given: on a shared machine the wall clock also counts
other processes' load, and CPU time shows the work itself. ``--detail`` adds the measurements
behind the simulator's design: fold versus scan (steps folded into each projection call versus
one call per step) and JAX versus numpy for the dominant convolution.

Usage: ``KERAS_BACKEND=jax python benchmarks/simulator_throughput.py [--steps 100] [--detail]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from snnexport import simulator  # noqa: E402
from snnexport.convert import convert  # noqa: E402
from snnexport.network import Network  # noqa: E402

MODEL = ROOT / "snnexport" / "data" / "lenet_mnist.h5"
SAMPLES = ROOT / "snnexport" / "data" / "mnist_samples.npz"


def bundled() -> tuple[Network, np.ndarray, str]:
    """The converted bundled LeNet and its samples, or a random-weight LeNet of the same shape."""
    if MODEL.exists() and SAMPLES.exists():
        from snnexport.readers.keras import read_model
        with np.load(SAMPLES) as z:
            x = z["x"].astype(np.float32)
        return convert(read_model(MODEL), x), x, f"{MODEL.name} (calibrated on {len(x)} bundled samples)"
    from snnexport.graph import Graph, Node
    from snnexport.ops import Activation, Conv2D, Dense, MaxPool, Reshape
    rng = np.random.default_rng(0)

    def w(*shape: int) -> np.ndarray:
        lim = np.sqrt(6 / (np.prod(shape[:-1]) + shape[-1]))
        return rng.uniform(-lim, lim, shape).astype(np.float32)

    def b(n: int) -> np.ndarray:
        return rng.uniform(-0.05, 0.1, n).astype(np.float32)

    nodes = [Node("conv1", Conv2D(w(5, 5, 1, 16), b(16)), ("input",)), Node("relu1", Activation("relu"), ("conv1",)),
             Node("pool1", MaxPool((2, 2), (2, 2)), ("relu1",)),
             Node("conv2", Conv2D(w(5, 5, 16, 32), b(32)), ("pool1",)), Node("relu2", Activation("relu"), ("conv2",)),
             Node("pool2", MaxPool((2, 2), (2, 2)), ("relu2",)), Node("flatten", Reshape((512,)), ("pool2",)),
             Node("fc1", Dense(w(512, 100), b(100)), ("flatten",)), Node("relu3", Activation("relu"), ("fc1",)),
             Node("fc2", Dense(w(100, 10), b(10)), ("relu3",)), Node("softmax", Activation("softmax"), ("fc2",))]
    x = rng.uniform(0, 1, (300, 28, 28, 1)).astype(np.float32)
    return convert(Graph("input", (28, 28, 1), nodes, "softmax"), x), x, "random-weight LeNet (bundled files missing)"


def clock(fn, repeat: int) -> tuple[float, float]:
    """(wall, cpu) seconds of fn(), the best of ``repeat`` runs after one warm-up run."""
    fn()
    wall = cpu = float("inf")
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    return wall, cpu


def samples(x: np.ndarray, n: int) -> np.ndarray:
    return np.resize(x, (n,) + x.shape[1:])  # the bundled samples repeated as often as needed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--detail", action="store_true", help="also measure fold vs scan and JAX vs numpy")
    args = p.parse_args()
    net, x, what = bundled()
    T = args.steps
    print(f"model: {what}; T = {T}; JAX {jax.__version__} on {jax.default_backend()} ({jax.devices()[0]})")
    ann = simulator.ann_program(net)
    print(f"{'batch':>6} {'samples':>8} {'sample-steps/s':>15} {'ANN fwd/sample':>15} "
          f"{'ratio wall':>11} {'ratio cpu':>10}")
    for batch, n in ((1, 20), (100, 300), (1000, 1000)):
        xs = samples(x, n)
        xb = xs[:batch]
        aw, ac = clock(lambda: jax.block_until_ready(ann(xb)), max(args.repeat, 10))
        sw, sc = clock(lambda: simulator.simulate(net, xs, steps=T, batch=batch), args.repeat)
        ratio_w = (sw / n) / (T * aw / batch)
        ratio_c = (sc / n) / (T * ac / batch)
        print(f"{batch:>6} {n:>8} {n * T / sw:>15,.0f} {aw / batch * 1e6:>12.1f} µs {ratio_w:>11.2f} {ratio_c:>10.2f}"
              f"   (cpu: {n * T / sc:,.0f} sample-steps/s)", flush=True)
    if args.detail:
        detail(net, x, T, args.repeat)


def detail(net: Network, x: np.ndarray, T: int, repeat: int) -> None:
    print("\nfold vs scan (group samples together, Tc steps folded into each projection call):")
    for batch, n, configs in ((1, 20, ((1, 1), (1, 10), (1, 25), (1, T))),
                              (100, 100, ((100, 1), (10, 10), (2, 10), (1, 25), (1, T)))):
        xs = samples(x, n)
        for group, tc in configs:
            sw, sc = clock(lambda: simulator.simulate(net, xs, steps=T, batch=batch, group=group, chunk_steps=tc),
                           repeat)
            print(f"  batch {batch:>4}, group {group:>4}, Tc {tc:>4}: {sw / n / T * 1e6:7.1f} µs per sample-step "
                  f"wall, {sc / n / T * 1e6:7.1f} cpu", flush=True)
        g, tc, chunks = simulator.plan(T, max(p.bias.size for p in net.populations))
        print(f"  (default plan: group {g}, Tc {tc})")
    print("\nJAX vs numpy for the second convolution (16→32, 5×5 on 12×12 binary spikes), per row:")
    from jax import lax
    from numpy.lib.stride_tricks import sliding_window_view
    conv = next(op for p in net.projections for op in p.ops if op.kind == "conv2d" and op.kernel.shape[2] > 1)
    k = np.asarray(conv.kernel, np.float32)
    kj = jax.numpy.asarray(k)
    f = jax.jit(lambda s: lax.conv_general_dilated(s, kj, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                                   precision=lax.Precision.HIGHEST))
    kh, kw, cin, cout = k.shape
    flat = k.reshape(-1, cout)
    for rows in (10, 100, 1000):
        s = (np.random.default_rng(0).random((rows, 12, 12, cin)) < 0.1).astype(np.float32)
        sj = jax.numpy.asarray(s)
        jw, _ = clock(lambda: jax.block_until_ready(f(sj)), 10)

        def im2col() -> np.ndarray:
            win = sliding_window_view(s, (kh, kw), axis=(1, 2))  # (rows, 8, 8, cin, kh, kw)
            return win.transpose(0, 1, 2, 4, 5, 3).reshape(-1, kh * kw * cin) @ flat

        nw, _ = clock(im2col, 3)
        print(f"  {rows:>5} rows: JAX {jw / rows * 1e6:7.1f} µs, numpy im2col+matmul {nw / rows * 1e6:7.1f} µs")


if __name__ == "__main__":
    main()
