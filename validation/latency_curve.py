"""Error versus synaptic operations for low-latency conversion (issue 17), with the reference simulator.

    SNNEXPORT_MNIST=/work/shared/data/mnist.npz nice python validation/latency_curve.py [-n 10000] [--steps 200]

The bundled LeNet, converted with the 99.9th percentile (the paper's Figure 5 setting), simulated
once with V starting at 0 (today) and once at θ/2 (``--v-init 0.5``). From each run, with no second
simulation (the early decision is read from the recorded output spikes, docs/semantics.md):
  * **fixed T**: the error after t steps (cumulative output counts, ties to the lower index) against
    the mean operations of steps 1..t, for every t;
  * **early decision, horizon T'**: for a run of T' steps, each sample stops at the first step no
    other class can catch up (``runtime.early_decision`` on the first T' steps): the error is the
    fixed-T' error (the decided class is the T'-step class), the operations stop at each sample's
    decision step;
  * **decision margin M** (horizon ``--steps``): each sample stops at the first step one class leads
    by M spikes (or cannot be caught up).
Operations per sample are ``opcount.snn_ops``'s per-step operations (analog input's share at step 1),
summed to the step where the sample stops. Writes validation/figures/fig5b_latency.png and
validation/figures/latency.json (every number plotted, the best trade-offs, the command).
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
from snnexport.scriptlib import runtime  # noqa: E402
from snnexport.simulator import ann_predict, simulate  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MARGINS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)
GAPS = (1.0, 0.1)  # percentage points above the ANN's error


def curves(res: dict[str, np.ndarray], cum_ops: np.ndarray, labels: np.ndarray, horizons: list[int]) -> dict:
    """The three curves of one run: each a list of points {"ops", "error", "steps"} (means per image)."""
    counts = np.cumsum(res["output_steps"].astype(np.int32), axis=1)  # (N, T, classes)
    wrong = counts.argmax(axis=2) != labels[:, None]  # (N, T): class after t steps, ties to the lower index
    steps = counts.shape[1]
    fixed = [{"steps": t, "error": 100 * float(wrong[:, t - 1].mean()), "ops": float(cum_ops[:, t - 1].mean())}
             for t in range(1, steps + 1)]
    rows = np.arange(len(labels))

    def stopped(d: np.ndarray, cls: np.ndarray, horizon: int) -> dict:
        pred = np.where(cls >= 0, cls, counts[:, horizon - 1].argmax(axis=1))  # undecided: ties to the lower index
        return {"steps": float(d.mean()), "horizon": horizon, "error": 100 * float((pred != labels).mean()),
                "ops": float(cum_ops[rows, d - 1].mean())}

    early = []
    for h in horizons:
        d, cls = runtime.early_decision(res["output_steps"][:, :h])
        early.append(stopped(d, cls, h))
    margin = []
    for m in MARGINS:
        d, cls = runtime.early_decision(res["output_steps"], m)
        margin.append(dict(stopped(d, cls, steps), margin=m))
    return {"fixed T": fixed, "early decision": early, "decision margin": margin}


def best(points: list[dict], ann_error: float, ann_ops: int) -> dict:
    """The fewest operations at which the error is within each gap of the ANN's, and the ratio ANN/SNN."""
    out = {}
    for gap in GAPS:
        ok = [p for p in points if p["error"] <= ann_error + gap + 1e-9]
        if ok:
            p = min(ok, key=lambda q: q["ops"])
            out[f"within {gap:g} pp"] = dict(p, ann_over_snn_ops=ann_ops / p["ops"])
        else:
            out[f"within {gap:g} pp"] = None
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "snnexport" / "data" / "lenet_mnist.h5"))
    p.add_argument("--mnist", default=os.environ.get("SNNEXPORT_MNIST", str(ROOT.parent / "shared" / "data" /
                                                                          "mnist.npz")))
    p.add_argument("-n", type=int, default=10000, help="test images (default 10000, the whole test set)")
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
    net = convert(read_model(args.model), calib, percentile=99.9)
    ann_error = float(100 * (ann_predict(net, x) != y).mean())
    ann_ops = opcount.ann_ops(net)
    horizons = sorted(set(range(1, 41)) | set(range(40, args.steps + 1, 10)) | {args.steps})
    runs = {}
    for label, v_init in (("p99.9, V from 0", 0.0), ("p99.9, V from θ/2", 0.5)):
        net.neuron.v_init = v_init
        start = time.perf_counter()
        res = simulate(net, x, y, steps=args.steps)
        seconds = time.perf_counter() - start
        cum_ops = np.cumsum(opcount.snn_ops(net, res)["per_step"], axis=1)
        runs[label] = {"v_init": v_init, "seconds": seconds, **curves(res, cum_ops, y, horizons)}
        runs[label]["best"] = {k: best(v, ann_error, ann_ops) for k, v in runs[label].items()
                               if k in ("fixed T", "early decision", "decision margin")}
        print(f"{label}: error {runs[label]['fixed T'][-1]['error']:.2f} % after {args.steps} steps "
              f"({seconds:.0f} s)", file=sys.stderr)

    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    styles = {"fixed T": "-", "early decision": "--", "decision margin": ":"}
    colors = {"p99.9, V from 0": "C0", "p99.9, V from θ/2": "C3"}
    for label, r in runs.items():
        for kind, ls in styles.items():
            pts = sorted(r[kind], key=lambda q: q["ops"])
            ax.plot([q["ops"] / 1e6 for q in pts], [max(q["error"], 1e-2) for q in pts], ls=ls,
                    color=colors[label], marker="." if kind == "decision margin" else None, label=f"{label}: {kind}")
    ax.axvline(ann_ops / 1e6, color="k", ls=":", lw=1, label=f"ANN cost ({ann_ops / 1e6:.2f} MOps)")
    ax.axhline(ann_error, color="k", ls="--", lw=1, label=f"ANN error ({ann_error:.2f} %)")
    ax.axhline(ann_error + 1, color="grey", ls="-.", lw=0.8, label="ANN + 1 pp")
    ax.set(xlabel="synaptic operations per image (millions)", ylabel="test error (%)", yscale="log", xlim=(0, 4),
           ylim=(0.5, 100), title=f"Low-latency conversion, LeNet, {args.n} MNIST test images")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "fig5b_latency.png", dpi=120)
    plt.close(fig)

    summary = {"model": Path(args.model).name, "images": args.n, "steps": args.steps, "ann_error": ann_error,
               "ann_ops": ann_ops, "command": " ".join(["python", "validation/latency_curve.py"] + sys.argv[1:]),
               "runs": runs}
    (out / "latency.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    print(f"ANN: error {ann_error:.2f} %, {ann_ops / 1e6:.3f} MOps per image; {args.n} images")
    for label, r in runs.items():
        for kind, b in r["best"].items():
            for gap, q in b.items():
                text = "not reached" if q is None else (
                    f"{q['ops'] / 1e6:.3f} MOps (ANN/SNN {q['ann_over_snn_ops']:.2f}x), error {q['error']:.2f} %, "
                    f"{q['steps']:g} steps" + (f", margin {q['margin']}" if "margin" in q else "")
                    + (f", horizon {q['horizon']}" if kind == "early decision" else ""))
                print(f"{label:20s} {kind:16s} {gap:14s} {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
