"""Redo Figures 2, 3 and 5 of Rueckauer et al. (2017) on MNIST with the reference simulator.

    python validation/paper_figures.py [--model snnexport/data/lenet_mnist.h5] [-n 1000] [--steps 200]

Figure 2: error versus steps without normalization, with max-norm and with the 99.9th percentile.
Figure 3: error versus steps for reset by subtraction or to zero, with analog or Poisson input.
Figure 5: error versus synaptic operations, against the ANN's fixed cost per frame.
Writes validation/figures/*.png and validation/figures/figures.json (every number plotted).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from snnexport import opcount  # noqa: E402
from snnexport.convert import convert  # noqa: E402
from snnexport.readers.keras import read_model  # noqa: E402
from snnexport.simulator import ann_predict, simulate  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def error_per_step(results: dict[str, np.ndarray]) -> np.ndarray:
    """Error (%) after each step, from cumulative output spike counts (ties to the lower index)."""
    cum = np.cumsum(results["output_steps"].astype(np.int64), axis=1)
    pred = cum.argmax(axis=2)
    return 100.0 * (pred != results["labels"][:, None]).mean(axis=0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "snnexport" / "data" / "lenet_mnist.h5"))
    p.add_argument("--mnist", default=str(ROOT.parent / "shared" / "data" / "mnist.npz"))
    p.add_argument("-n", type=int, default=1000, help="test images (default 1000)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--calibration-samples", type=int, default=1000)
    p.add_argument("--out", default=str(ROOT / "validation" / "figures"))
    args = p.parse_args()
    with np.load(args.mnist) as z:
        calib = (z["x_train"][: args.calibration_samples, :, :, None] / 255).astype(np.float32)
        x = (z["x_test"][: args.n, :, :, None] / 255).astype(np.float32)
        y = z["y_test"][: args.n].astype(np.int64)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def run(label: str, **kw) -> dict:
        conv_kw = {k: kw.pop(k) for k in ("percentile", "reset", "encoding", "normalize") if k in kw}
        net = convert(read_model(args.model), calib, **conv_kw)
        start = time.perf_counter()
        res = simulate(net, x, y, steps=args.steps, **kw)
        ops = opcount.snn_ops(net, res, x, seed=0)
        err = error_per_step(res)
        curve = np.cumsum(ops["per_step"], axis=1).mean(axis=0)  # mean synaptic ops up to each step
        print(f"{label}: error {err[-1]:.2f} % after {args.steps} steps ({time.perf_counter() - start:.0f} s)",
              file=sys.stderr)
        return {"label": label, "error": err.tolist(), "ops": curve.tolist(), "ann_ops": opcount.ann_ops(net),
                "ann_error": float(100 * (ann_predict(net, x) != y).mean())}

    fig2 = [run("no normalization", normalize=False), run("max-norm (p = 100)", percentile=100.0),
            run("99.9th percentile", percentile=99.9)]
    fig3 = [fig2[2], run("reset to zero", reset="zero"), run("Poisson input", encoding="poisson"),
            run("reset to zero, Poisson input", reset="zero", encoding="poisson")]
    ann_error = fig2[2]["ann_error"]
    steps = np.arange(1, args.steps + 1)

    for name, runs, title in (("fig2_normalization", fig2, "Weight normalization (paper Fig. 2)"),
                              ("fig3_reset_and_input", fig3, "Reset mode and input encoding (paper Fig. 3)")):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for r in runs:
            ax.plot(steps, r["error"], label=r["label"])
        ax.axhline(ann_error, color="k", ls="--", lw=1, label=f"ANN ({ann_error:.2f} %)")
        ax.set(xlabel="simulation steps", ylabel="test error (%)", yscale="log", title=title)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=120)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    best = fig2[2]
    for r in (best, fig3[2]):
        ax.plot(np.asarray(r["ops"]) / 1e6, r["error"], label=f"SNN, {r['label'].lower()}")
    ax.axvline(best["ann_ops"] / 1e6, color="k", ls=":", lw=1, label=f"ANN cost ({best['ann_ops'] / 1e6:.2f} MOps)")
    ax.axhline(ann_error, color="k", ls="--", lw=1, label=f"ANN error ({ann_error:.2f} %)")
    ax.set(xlabel="synaptic operations per image (millions)", ylabel="test error (%)", yscale="log",
           title="Error versus operations (paper Fig. 5)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "fig5_error_vs_operations.png", dpi=120)
    plt.close(fig)

    summary = {"model": Path(args.model).name, "images": args.n, "steps": args.steps,
               "command": " ".join(["python", "validation/paper_figures.py"] + sys.argv[1:]),
               "runs": {r["label"]: r for r in fig2 + fig3[1:]}}
    (out / "figures.json").write_text(json.dumps(summary, indent=1))
    for r in fig2 + fig3[1:]:
        print(f"{r['label']:32s} error at {args.steps} steps: {r['error'][-1]:6.2f} %   "
              f"ops/image: {r['ops'][-1] / 1e6:6.2f} M   (ANN {r['ann_error']:.2f} %, {r['ann_ops'] / 1e6:.2f} MOps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
