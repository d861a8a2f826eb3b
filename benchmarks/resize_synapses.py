"""Synapses of an interpolating resize projection (snnexport/resize.py), and what expanding them costs.

For each (map size, channels, factor, method): a Keras model ReLU conv → UpSampling2D(method) → ReLU is
saved, read and converted (calibration: 16 seeded samples); the projection carrying the resize is expanded
as every script expands it (``Network.synapses``, i.e. scriptlib.connectivity) and counted by
``opcount.projection_degrees``. Printed per case: target neurons, synapses, synapses per target neuron
(mean and max), the dense per-axis block a naive expansion would make (H·W per target: every input cell
of the channel), the expansion's wall time and the largest |ANN(description) − Keras| of the resize layer.

Usage: ``KERAS_BACKEND=jax python benchmarks/resize_synapses.py [--cases 16x16x8x2 64x64x32x2 ...]``
(case: HxWxCxFACTOR; --method bilinear|bicubic|lanczos3|lanczos5).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=["16x16x8x2", "32x32x16x2", "64x64x32x2", "31x17x4x3"])
    ap.add_argument("--method", default="bilinear")
    args = ap.parse_args()

    import keras
    from keras import layers as L

    from snnexport import opcount
    from snnexport.convert import convert
    from snnexport.ops import Dense
    from snnexport.readers.keras import read_model

    print(f"{'case':>12} {'targets':>9} {'synapses':>10} {'per target':>10} {'max':>4} {'dense block':>12} "
          f"{'expand s':>8} {'|ours-Keras|':>12}")
    for case in args.cases:
        h, w, c, f = (int(v) for v in case.split("x"))
        x = keras.Input((h, w, c))
        hidden = L.Conv2D(c, 1, activation="relu", name="conv")(x)
        up = L.UpSampling2D(f, interpolation=args.method, name="resize")(hidden)
        model = keras.Model(x, L.Dense(2, name="out")(L.Flatten()(L.ReLU(name="after")(up))))
        rng = np.random.default_rng(0)
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "m.keras"
            model.save(path)
            graph = read_model(path)
        samples = rng.uniform(size=(16, h, w, c)).astype(np.float32)
        net = convert(graph, samples)
        want = keras.Model(x, model.get_layer("resize").output).predict(samples[:4], verbose=0)
        err = float(np.abs(graph.run(samples[:4], keep=["resize"])["resize"] - want).max())
        proj = next(p for p in net.projections if any(isinstance(op, Dense) for op in p.ops))
        start = time.perf_counter()
        pre, _, _ = net.synapses(proj)
        elapsed = time.perf_counter() - start
        fan_in, _ = opcount.projection_degrees(net, proj)
        targets = fan_in.size
        print(f"{case:>12} {targets:>9,} {len(pre):>10,} {len(pre) / targets:>10.2f} {int(fan_in.max()):>4} "
              f"{targets * h * w:>12,} {elapsed:>8.3f} {err:>12.1e}")


if __name__ == "__main__":
    main()
