"""The report's figures (matplotlib, Agg), each as (title, base64 PNG); none when matplotlib is missing."""

from __future__ import annotations

import base64
import io
import math
import warnings
from typing import Any

import numpy as np

from .measures import Scatter

_STYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))


def figures(report: dict[str, Any], scatter: Scatter) -> list[tuple[str, str]]:
    """(title, base64 PNG) of every figure; none when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    sims = report["simulators"]
    ok = [n for n, e in sims.items() if e["status"] == "ok"]
    out: list[tuple[str, str]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for sim in ok:  # rate against activation, one figure per simulator, one panel per layer
            fig = _scatter_figure(plt, report, scatter, sim)
            if fig is not None:
                out.append((f"Rates against activations: {sim}", _png(fig)))
        curves = {s: (np.arange(1, len(c) + 1), c) for s in ok if (c := sims[s].get("error_vs_steps"))}
        if curves:
            fig = _error_figure(plt, report, curves, "steps",
                                "Error against simulation steps (cumulative output spike counts)", ann_line=True)
            out.append(("Error against steps", _png(fig)))
        ops = {s: (np.asarray(sims[s]["ops_vs_steps"]) / 1e6, sims[s]["error_vs_steps"]) for s in ok
               if sims[s].get("ops_vs_steps") and sims[s].get("error_vs_steps")}
        if ops:
            fig = _error_figure(plt, report, ops, "synaptic operations per sample (millions)",
                                "Error against operations (paper §2.3)", ann_ops=report["ann"].get("ops_per_sample"))
            out.append(("Error against operations", _png(fig)))
        if len(ok) >= 2 or (ok and report["ann"].get("predictions_head") is not None):
            out.append(("Agreement matrices", _png(_agreement_figure(plt, report, ok))))
    return out


def _label(name: str, width: int = 28) -> str:
    """A layer name safe for matplotlib: no mathtext ($), no line breaks, not too long."""
    s = " ".join(str(name).split()).replace("$", r"\$")
    return s if len(s) <= width else s[: width - 1] + "…"


def _plain_ticks(minor: bool = False):
    """Log-axis tick labels as plain numbers (2, 5, 10, 50), not powers of ten."""
    from matplotlib.ticker import FuncFormatter

    def fmt(v: float, _pos: int) -> str:
        if minor and f"{v:.0e}"[0] not in "25":
            return ""
        return f"{v:g}"
    return FuncFormatter(fmt)


def _error_axis(ax, values: list[float], samples: int) -> None:
    """Errors span 90 % down to a fraction of 1 %: logarithmic, linear below one image's worth (so 0 shows)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    positive = [v for v in finite if v > 0]
    if not positive:
        return
    # linear below the decade of the smallest error shown, so that 0 % fits without empty decades
    floor = max(10.0 ** math.floor(math.log10(min(positive))), 100.0 / max(samples, 1), 0.01)
    ax.set_yscale("symlog", linthresh=floor, linscale=0.5)
    ax.yaxis.set_major_formatter(_plain_ticks())
    ax.set_ylim(0, 100)


def _png(fig) -> str:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # glyphs missing for exotic layer names: boxes, not an error
        fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _scatter_figure(plt, report: dict[str, Any], scatter: Scatter, sim: str):
    """One simulator's rates against the ANN's activations, a panel per layer; None without points."""
    names = [n["name"] for n in report["network"]["nodes"] if (sim, n["name"]) in scatter]
    if not names:
        return None
    cols = min(5, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.7 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        a, r = scatter[(sim, name)]
        lim = max(1e-6, float(max(a.max(initial=0), r.max(initial=0))) * 1.05)
        ax.scatter(a, r, s=3, alpha=0.35, color="tab:blue", rasterized=True, linewidths=0)
        ax.plot([0, lim], [0, lim], color="tab:red", lw=0.8)
        ax.set_xlim(min(0, float(a.min(initial=0))), lim)
        ax.set_ylim(min(0, float(r.min(initial=0))) - 0.02, lim)
        fit = report["simulators"][sim]["layers"].get(name, {})
        rr = fit.get("pearson")
        fitted = "silent" if fit.get("silent") else (f"r = {rr:.4f}" if rr is not None and math.isfinite(rr) else "")
        ax.set_title(f"{_label(name)}\n{fitted}" if fitted else _label(name), fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.supxlabel("ANN activation / λ", fontsize=9)
    fig.supylabel("SNN rate (spikes / step)", fontsize=9)
    fig.tight_layout()
    return fig


def _error_figure(plt, report: dict[str, Any], curves: dict[str, tuple[Any, list[float]]], xlabel: str,
                  title: str, ann_line: bool = False, ann_ops: float | None = None):
    """Error curves of the simulators against x, with the ANN's error as a line across or, at its
    operations per sample, a star."""
    sims = report["simulators"]
    ann_err = report["ann"].get("error_percent")
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (s, (x, c)) in enumerate(curves.items()):  # identical curves must stay visible: styles differ
        ax.plot(x, c, label=f"{_label(s)} ({sims[s]['samples']})", ls=_STYLES[i % len(_STYLES)], lw=1.4)
    if ann_line and ann_err is not None:
        ax.axhline(ann_err, color="k", ls="--", lw=1, label=f"ANN ({ann_err:.2f} %, {report['ann']['samples']})")
    elif ann_ops and ann_err is not None:
        ax.plot([ann_ops / 1e6], [ann_err], "k*", ms=10, label="ANN")
        ax.axvline(ann_ops / 1e6, color="k", ls=":", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("error (%)")
    _error_axis(ax, [v for _, c in curves.values() for v in c] + [ann_err], max(sims[s]["samples"] for s in curves))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return fig


def _agreement_figure(plt, report: dict[str, Any], ok: list[str]):
    n = len(ok)
    ident = np.full((n, n), np.nan)
    same = np.full((n + 1, n + 1), np.nan)  # classes, the ANN as the last row/column
    for i in range(n):
        ident[i, i] = 1.0
        same[i, i] = 1.0
    same[n, n] = 1.0
    idx = {s: i for i, s in enumerate(ok)}
    for p in report["pairs"]:
        i, j = idx[p["a"]], idx[p["b"]]
        if p.get("identical_fraction"):
            ident[i, j] = ident[j, i] = p["identical_fraction"]["all"]
        if p.get("prediction_agreement") is not None:
            same[i, j] = same[j, i] = p["prediction_agreement"]
    for s in ok:
        v = report["simulators"][s].get("agreement_with_ann")
        if v is not None:
            same[idx[s], n] = same[n, idx[s]] = v
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.3 * n, 2.2 + 0.65 * n))
    for ax, m, names, title in ((axes[0], ident, ok, "identical spike counts (%)"),
                                (axes[1], same, ok + ["ANN"], "same class (%)")):
        ax.imshow(np.nan_to_num(m, nan=0.0), vmin=min(0.9, float(np.nanmin(m))), vmax=1.0, cmap="viridis")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, "–" if math.isnan(v) else f"{100 * v:.3f}", ha="center", va="center", fontsize=7,
                    color="w" if not math.isnan(v) and v < 0.97 else "k")
        ax.set_xticks(range(len(names)), [_label(s, 12) for s in names], rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), [_label(s, 12) for s in names], fontsize=8)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
