"""What early decision costs the reference simulator: the batched run with and without it.

The decision is read from the recorded output spikes after the run (``runtime.early_decision``), so
the compiled simulation is the same program either way; this prints both wall times (best of
``--repeat`` runs, compiled beforehand) and the decision alone on the output spikes of that run
tiled to ``--tile`` times as many samples.

    KERAS_BACKEND=jax SNNEXPORT_MNIST=/work/shared/data/mnist.npz nice python benchmarks/early_decision.py [-n 1000]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

from snnexport.convert import convert  # noqa: E402
from snnexport.readers.keras import read_model  # noqa: E402
from snnexport.scriptlib import runtime  # noqa: E402
from snnexport.simulator import simulate  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mnist", default=os.environ.get("SNNEXPORT_MNIST", "/work/shared/data/mnist.npz"))
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--tile", type=int, default=10)
    args = p.parse_args()
    with np.load(args.mnist) as z:
        calib = (z["x_train"][:1000, :, :, None] / 255).astype(np.float32)
        x = (z["x_test"][: args.n, :, :, None] / 255).astype(np.float32)
    net = convert(read_model(str(ROOT / "snnexport" / "data" / "lenet_mnist.h5")), calib)
    simulate(net, x[:10], steps=args.steps)  # compiles
    for label, kw in (("without early decision", {}), ("with early decision", {"early_decision": True})):
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            res = simulate(net, x, steps=args.steps, **kw)
            best = min(best, time.perf_counter() - start)
        print(f"{label:24s} {args.n} samples x {args.steps} steps: {best:.2f} s (best of {args.repeat})")
    tiled = np.tile(res["output_steps"], (args.tile, 1, 1))
    start = time.perf_counter()
    d, _ = runtime.early_decision(tiled)
    print(f"runtime.early_decision alone on {len(tiled)} samples x {args.steps} steps: "
          f"{time.perf_counter() - start:.3f} s (mean decision step {d.mean():.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
