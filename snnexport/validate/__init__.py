"""``snnexport validate``: run one converted network on every simulator and report how well they agree.

    snnexport validate MODEL --calibration FILE --data FILE [--sim reference,brian2,pynn,nest,nengo]
                       [-n N] [--script-n M] [--steps T] [--delay step|zero] [--early-decision]
                       [--timeout S] --report DIR

The network is converted once. The reference simulator runs in this process; every other simulator
gets its script exported to ``DIR/scripts/`` and run in a subprocess of its own (so a crash, a hang
or a missing package stays there) on the same samples, with the same steps. Every simulator writes
the shared results file (docs/semantics.md), so the measures need no knowledge of who wrote it.
The simulators are those of the writer registry whose scripts run (:func:`snnexport.writers.runnable`).

``DIR/report.json`` holds every number, the versions and the exact command; ``DIR/report.html`` is one
self-contained page (plots embedded as PNG). A simulator that is not installed, whose writer refuses
the network or whose script fails gets a column that says so (with the tail of its stderr), and the
report goes on without it. The targets of the project (SNN error within 0.05 pp of the ANN's, r ≥ 0.99
per layer, ≥ 99.9 % identical spike counts between simulators) are stated with pass or miss and margin.

The modules: :mod:`.options` (the command line), :mod:`.runner` (the runs, subprocesses, the
``--reuse-results`` cache), :mod:`.measures` (statistics, analysis, targets), :mod:`.provenance`
(versions, command, hashes), :mod:`.report` (JSON and the HTML page) and :mod:`.figures` (matplotlib).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from ..errors import SnnexportError, user_errors
from .measures import TARGETS_DEFINITION, RateStats, analyze, cumulative_predictions, error_curve
from .mpi import check_mpi
from .options import parse_script_n, parse_sims, parser
from .provenance import REPORT_FORMAT, context
from .report import json_safe, render_html, report_json, summary_lines
from .runner import Progress, SimRun, interrupted, missing_modules, run_all

__all__ = ["validate_main", "analyze", "render_html", "RateStats", "cumulative_predictions", "error_curve",
           "missing_modules", "SimRun", "REPORT_FORMAT"]


def validate_main(argv: list[str]) -> int:
    """Entry point of ``snnexport validate``; returns the exit status."""
    argv = list(argv)
    args = parser().parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    log = Progress(args.quiet)
    default_script_n, per_sim_n = parse_script_n(args.script_n)
    sims = parse_sims(args.sim)
    if args.mpi:
        check_mpi(sims)
    out = Path(args.report)
    _check_report_dir(out, (args.model, args.data, args.calibration))

    from .. import data
    from ..loading import load_network
    net = load_network(args.model, args, quiet=args.quiet)
    from ..simulator.run import decision_rule
    # the rule every simulator runs (run_mode), checked against the readout before any file is written
    args.decision = decision_rule(net.settings.readout, args.early_decision, args.decision_margin)
    x, y = data.load_samples(args.data, net.input.shape, "data", False, args.input_scale, limit=args.n)
    n_scripts = min(len(x), default_script_n) if default_script_n is not None else len(x)
    labels = y if y is not None else np.full(len(x), -1, np.int64)

    try:
        (out / "scripts").mkdir(parents=True, exist_ok=True)
        (out / "logs").mkdir(exist_ok=True)
        (out / "results").mkdir(exist_ok=True)
    except OSError as e:
        raise SnnexportError(f"cannot create the report directory {out}: {e}") from None
    try:
        return _validate(args, argv, log, net, x, labels, n_scripts, sims, per_sim_n, out)
    except KeyboardInterrupt:
        interrupted(out)
        raise


def _check_report_dir(out: Path, inputs: tuple[str | None, ...]) -> None:
    """--report names a directory (made if missing) whose managed files are none of the inputs."""
    if out.exists() and not out.is_dir():
        raise SnnexportError(f"--report {out} is a file, not a directory")
    managed = [out / "report.json", out / "report.html", out / "scripts", out / "logs", out / "results"]
    for source in inputs:
        if not source:
            continue
        src = Path(source).resolve()
        for m in managed:
            m = m.resolve()
            if src == m or m in src.parents:
                raise SnnexportError(f"--report {out}: the input {source} lies in {m.name}, which validate "
                                     "writes or clears; give another report directory")


def _validate(args: argparse.Namespace, argv: list[str], log: Progress, net, x: np.ndarray, labels: np.ndarray,
              n_scripts: int, sims: list[str], per_sim_n: dict[str, int], out: Path) -> int:
    """The runs, the comparison and the report, once the inputs are loaded."""
    from ..scriptlib import outputs

    t0 = time.perf_counter()
    log(f"{len(sims)} simulator(s), {len(x)} samples (exported scripts: {n_scripts}), {net.settings.steps} steps")
    counts = {sim: len(x) if sim == "reference" else min(len(x), per_sim_n.get(sim, n_scripts)) for sim in sims}
    for n in {counts[s] for s in sims if s != "reference"}:
        np.save(out / "scripts" / f"_inputs_{n}.npy", x[:n])  # written once, before scripts run in parallel
    runs = run_all(sims, counts, net, x, labels, out, args, log)

    log("comparing with the ANN and between simulators")
    report, scatter = analyze(net, x, labels, runs, log)
    report.update(context(args, argv, net, x, labels, n_scripts, sims))
    report["targets_definition"] = TARGETS_DEFINITION
    report["seconds"] = round(time.perf_counter() - t0, 2)
    report = json_safe(report)  # the page shows exactly what the JSON holds
    text = report_json(report)
    log("drawing the plots")
    page = render_html(report, scatter)
    with user_errors():
        outputs.write_outputs({out / "report.json": lambda f: f.write(text.encode("utf-8")),
                               out / "report.html": lambda f: f.write(page.encode("utf-8"))})
    if not (args.keep_results or args.reuse_results):
        for f in [*(out / "results").glob("*.npz"), *(out / "results").glob("*.json")]:
            f.unlink()
        _remove_if_empty(out / "results")
    for f in (out / "scripts").glob("_inputs*.npy"):  # the samples: bulky, and in --data already
        f.unlink()
    log(f"wrote {out / 'report.html'} and {out / 'report.json'}")
    for line in summary_lines(report):
        log(line)
    if args.strict and (any(r.status != "ok" for r in runs) or not report["summary"]["all_targets_pass"]):
        return 2
    return 0


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass
