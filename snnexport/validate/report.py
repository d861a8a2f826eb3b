"""The report: ``report.json`` (every number) and ``report.html`` (one self-contained page rendered from
``templates/report.html.j2`` with autoescape, the figures inlined as base64 PNG)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from .figures import figures
from .measures import TARGET_IDENTICAL, TARGET_PEARSON, Scatter

TEMPLATES = Path(__file__).with_name("templates")

# The rows of the simulators' table that are one formatted value each: (label, key of _column).
_ROWS = (("version", "version"), ("samples", "samples"), ("SNN error", "error"),
         ("ANN error, same samples", "ann_error"), ("SNN − ANN error", "difference"),
         ("agreement with ANN", "agreement"), ("spikes per sample", "spikes"),
         ("synaptic ops per sample", "ops"), ("ops relative to ANN", "ops_ratio"),
         ("decision step, mean (median)", "decision"), ("ops to the decision", "decided_ops"),
         ("ops to the decision relative to ANN", "decided_ratio"), ("wall time", "wall"),
         ("per sample", "per_sample"))


def report_json(report: dict[str, Any]) -> str:
    """The text of report.json, from a report made safe by :func:`json_safe`."""
    return json.dumps(report, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def json_safe(obj: Any) -> Any:
    """NaN/inf → None, numpy values → Python's, private keys (starting with "_") dropped."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A few lines for stderr: each simulator's error and lowest r, and the targets."""
    lines = []
    ann = report["ann"]
    if ann.get("error_percent") is not None:
        lines.append(f"ANN error {ann['error_percent']:.2f} % on {ann['samples']} samples")
    for name, e in report["simulators"].items():
        if e["status"] != "ok":
            lines.append(f"{name}: {e['status']}")
            continue
        err = e.get("error_percent")
        rs = [v["pearson"] for v in e.get("layers", {}).values()
              if v.get("in_target") and v.get("pearson") is not None and math.isfinite(v["pearson"])]
        lines.append(f"{name}: {e['samples']} samples" + (f", error {err:.2f} %" if err is not None else "")
                     + (f", agreement with ANN {100 * e['agreement_with_ann']:.2f} %"
                        if "agreement_with_ann" in e else "")
                     + (f", lowest spiking-layer r {min(rs):.4f}" if rs else ""))
    s = report["summary"]
    lines.append(f"targets: {s['targets_passed']}/{s['targets']} pass")
    return lines


def render_html(report: dict[str, Any], scatter: Scatter | None = None) -> str:
    """The report (as written to report.json) as one self-contained HTML page.

    ``scatter``: (simulator, layer) → [activations, rates], the points of the scatter plots.
    """
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["spec"] = format  # {{ value | spec(".3f") }}: Python's format(), as text to escape
    sims = report["simulators"]
    ok = [n for n, e in sims.items() if e["status"] == "ok"]
    pairs, below = _pairs(report)
    return env.get_template("report.html.j2").render(
        report=report, targets=[_target(t) for t in report["targets"]],
        columns=[_column(name, e) for name, e in sims.items()], rows=_ROWS, ok=ok, layers=_layers(report, ok),
        pairs=pairs, below=below, decisions=report.get("settings", {}).get("early_decision") is not None,
        figures=figures(report, scatter or {}))


def _fmt(v: Any, digits: int = 4, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if pct:
        return f"{100 * v:.{max(digits - 2, 1)}f} %"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3) else f"{v:.{digits}f}"
    return str(v)


def _target(t: dict[str, Any]) -> SimpleNamespace:
    """A row of the targets' table: value, requirement and margin as text, in the target's unit."""
    op = {">=": "≥", "<=": "≤"}[t["op"]]
    if t["unit"] == "fraction":  # shown in percent; the margin in percentage points
        value, required, margin = (_fmt(t["value"], 6, pct=True), f"{op} {100 * t['threshold']:g} %",
                                   f"{100 * t['margin']:+.3f} pp")
    else:
        u = " pp" if t["unit"] == "pp" else ""
        value, required, margin = f"{_fmt(t['value'], 4)}{u}", f"{op} {t['threshold']:g}{u}", f"{t['margin']:+.4f}{u}"
    return SimpleNamespace(target=t["target"], subject=t["subject"], layer=t.get("layer"), value=value,
                           required=required, passed=t["pass"], margin=margin)


def _column(name: str, e: dict[str, Any]) -> dict[str, Any]:
    """A simulator's column of the simulators' table, every cell as text."""
    ok = e["status"] == "ok"

    def unit(v: Any, digits: int, suffix: str) -> str:
        return "–" if v is None else f"{_fmt(v, digits)}{suffix}"

    reused = " (earlier run, reused)" if e.get("meta", {}).get("reused") else ""
    return {"name": name, "ok": ok, "status": e["status"], "message": e["message"],
            "notes": e.get("notes") or [], "script": e.get("script") or "",
            "version": e.get("version") or "–", "samples": str(e["samples"]) if ok else "–",
            "error": unit(e.get("error_percent"), 3, " %"), "ann_error": unit(e.get("ann_error_percent"), 3, " %"),
            "difference": unit(e.get("error_difference_pp"), 3, " pp"),
            "agreement": _fmt(e.get("agreement_with_ann"), 4, pct=True),
            "spikes": _fmt(e.get("spikes_per_sample"), 1), "ops": _fmt(e.get("snn_ops_per_sample"), 4),
            "ops_ratio": _fmt(e.get("ops_ratio_to_ann"), 3),
            "decision": (f"{e['decision_step_mean']:.2f} ({e['decision_step_median']:g})"
                         if e.get("decision_step_mean") is not None else "–"),
            "decided_ops": _fmt(e.get("decided_ops_per_sample"), 4),
            "decided_ratio": _fmt(e.get("decided_ops_ratio_to_ann"), 3),
            "wall": f"{e['seconds']:.1f} s{reused}" if ok else "–",
            "per_sample": f"{1000 * e['seconds_per_sample']:.1f} ms" if e.get("seconds_per_sample") else "–"}


def _layers(report: dict[str, Any], ok: list[str]) -> list[SimpleNamespace]:
    """The rows of the per-layer fits: every node, a cell per simulator that ran."""
    rows = []
    for node in report["network"]["nodes"]:
        cells = []
        for sim in ok:
            v = report["simulators"][sim].get("layers", {}).get(node["name"])
            cells.append(None if v is None else SimpleNamespace(
                miss=v["pearson"] is not None and v["pearson"] < TARGET_PEARSON and v.get("in_target"),
                pearson="silent" if v.get("silent") else _fmt(v["pearson"], 4), slope=_fmt(v["slope"], 3),
                rmse=_fmt(v["rmse"], 4)))
        kind = "max-pool gate" if node["kind"] == "gate" else f"{node.get('activation')} IF"
        rows.append(SimpleNamespace(name=node["name"], kind=kind, neurons=node["neurons"],
                                    scale=f"{node['scale']:.4g}", cells=cells))
    return rows


def _pairs(report: dict[str, Any]) -> tuple[list[SimpleNamespace], list[SimpleNamespace]]:
    """The rows of the simulator pairs' table, and the layers of pairs below the identical-counts target."""
    rows, below = [], []
    for p in report["pairs"]:
        idf = p.get("identical_fraction")
        rows.append(SimpleNamespace(a=p["a"], b=p["b"], samples=p["samples"],
                                    identical=_fmt(idf["all"], 6, pct=True) if idf else p.get("note", "–"),
                                    miss=idf is not None and idf["all"] < TARGET_IDENTICAL,
                                    rate_pearson=_fmt(p.get("rate_pearson"), 6),
                                    agreement=_fmt(p.get("prediction_agreement"), 4, pct=True),
                                    decision=_fmt(p.get("decision_step_agreement"), 4, pct=True)))
        below += [SimpleNamespace(a=p["a"], b=p["b"], layer=k, value=f"{100 * v:.3f} %")
                  for k, v in (idf or {}).items() if k != "all" and v < TARGET_IDENTICAL]
    return rows, below[:30]
