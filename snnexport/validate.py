"""``snnexport validate``: run one converted network on every simulator and report how well they agree.

    snnexport validate MODEL --calibration FILE --data FILE [--sim reference,brian2,pynn,nest,nengo]
                       [-n N] [--script-n M] [--steps T] [--timeout S] --report DIR

The network is converted once. The reference simulator runs in this process; every other simulator
gets its script exported to ``DIR/scripts/`` and run in a subprocess of its own (so a crash, a hang
or a missing package stays there) on the same samples, with the same steps. Every simulator writes
the shared results file (docs/semantics.md), so the measures below need no knowledge of who wrote it:

* per simulator and population: Pearson r, slope and RMSE of firing rates (counts / T) against the
  ANN activations divided by λ (:func:`snnexport.compare.rate_fit`);
* classification: SNN error against the ANN's on the same samples, agreement with the ANN's classes,
  error versus steps and versus synaptic operations (:mod:`snnexport.opcount`);
* across simulators: the fraction of identical spike counts (:func:`snnexport.compare.identical_fraction`),
  the correlation of their counts and the agreement of their classes.

``DIR/report.json`` holds every number, the versions and the exact command; ``DIR/report.html`` is one
self-contained page (plots embedded as PNG). A simulator that is not installed, whose writer refuses
the network or whose script fails gets a column that says so (with the tail of its stderr), and the
report goes on without it. The targets of the project (SNN error within 0.05 pp of the ANN's, r ≥ 0.99
per layer, ≥ 99.9 % identical spike counts between simulators) are stated with pass or miss and margin.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import html
import importlib.metadata
import importlib.util
import io
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
import traceback
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import SnnexportError

REPORT_FORMAT = 1
DEFAULT_SIMS = ("reference", "brian2", "pynn", "nest", "nengo")
# Python modules each simulator needs; a missing one makes a "not installed" column, not a failure.
REQUIRES: dict[str, tuple[str, ...]] = {
    "reference": ("jax",), "brian2": ("brian2",), "pynn": ("pyNN", "nest"), "nest": ("nest",),
    "nengo": ("nengo",),
}
INSTALL_HINT = {"brian2": "pip install 'snnexport[brian2]'", "pynn": "pip install 'snnexport[nest]'",
                "nest": "pip install nest-simulator", "nengo": "pip install 'snnexport[nengo]'",
                "reference": "pip install jax"}
# Distributions whose versions every report records.
DISTRIBUTIONS = ("snnexport", "numpy", "keras", "jax", "jaxlib", "h5py", "matplotlib", "brian2",
                 "nest-simulator", "pyNN", "nengo")
SIM_DISTRIBUTIONS = {"reference": "snnexport", "brian2": "brian2", "pynn": "pyNN", "nest": "nest-simulator",
                     "nengo": "nengo"}

# The project's targets (the issue): SNN error at most 0.05 percentage points above the ANN's,
# Pearson r ≥ 0.99 in every layer, ≥ 99.9 % identical spike counts between any two simulators.
TARGET_ERROR_PP = 0.05
TARGET_PEARSON = 0.99
TARGET_IDENTICAL = 0.999

CHUNK = 250  # samples per slice when comparing with the ANN: bounds memory on 10,000-image runs
SCATTER_POINTS = 2500  # points per scatter panel (the fits use every point)
TAIL_CHARS = 3000  # stderr kept from a failed script


# --- command line ------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    from .cli import Parser, add_conversion_options, int_range, number_range
    p = Parser(
        prog="snnexport validate",
        description="Run the converted network on the reference simulator and on every exported "
                    "simulator script, and write a report comparing their spikes with the ANN and "
                    "with each other.")
    p.add_argument("model", help="Keras model (.h5/.keras) or network file (.snn)")
    p.add_argument("--data", required=True, help="evaluation samples (.npy, or .npz with x/y or x_test/y_test)")
    p.add_argument("--sim", default=",".join(DEFAULT_SIMS),
                   help=f"comma-separated simulators (default: {','.join(DEFAULT_SIMS)})")
    p.add_argument("-n", type=int_range("-n", 1), default=None, metavar="N",
                   help="use the first N samples (default: all; only these are read)")
    p.add_argument("--script-n", default=None, metavar="M",
                   help="samples for the exported simulators (default: N; the reference runs N): a number, "
                        "and/or SIM=COUNT pairs, e.g. 1000,brian2=200")
    p.add_argument("--batch", type=int_range("--batch", 1), default=100, help="samples the reference simulates at once (default 100)")
    p.add_argument("--jobs", type=int_range("--jobs", 1), default=1, metavar="J",
                   help="exported scripts run at once (default 1; their timings then share the CPU)")
    p.add_argument("--timeout", type=number_range("--timeout", 0), default=3600.0, metavar="S",
                   help="seconds each exported script may run before it is stopped (default 3600)")
    p.add_argument("--report", required=True, metavar="DIR", help="directory for report.html, report.json, scripts/")
    p.add_argument("--keep-results", action="store_true",
                   help="keep every simulator's results file in DIR/results/ (large for big runs)")
    p.add_argument("--reuse-results", action="store_true",
                   help="take a simulator's results from DIR/results/ instead of running it again when they "
                        "were made from this very network, samples and steps (implies --keep-results)")
    p.add_argument("--title", default=None, help="title of the report (default: the model's file name)")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 2 when a simulator fails or a target is missed")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_conversion_options(p)
    return p


def validate_main(argv: list[str]) -> int:
    """Entry point of ``snnexport validate``; returns the exit status."""
    argv = list(argv)
    args = _parser().parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    log = Progress(args.quiet)
    default_script_n, per_sim_n = parse_script_n(args.script_n)
    sims = [s.strip() for s in args.sim.split(",") if s.strip()]
    if not sims:
        raise SnnexportError("--sim names no simulator")
    sims = list(dict.fromkeys(sims))  # a simulator named twice runs once
    known = known_simulators()
    if not set(sims) & set(known):  # one unknown name among known ones becomes a column that says so
        raise SnnexportError(f"--sim: unknown simulator{'s' if len(sims) > 1 else ''} "
                             f"{', '.join(map(repr, sims))}; known: {', '.join(known)}")
    out = Path(args.report)
    _check_report_dir(out, (args.model, args.data, args.calibration))

    from . import data
    from .cli import load_network
    net = load_network(args.model, args, quiet=args.quiet)
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
        _stop_children()  # they run in sessions of their own: the terminal's Ctrl-C does not reach them
        for f in [*(out / "scripts").glob("_inputs*.npy"), *(out / "scripts").glob(".*.part"),
                  *(out / "results").glob(".*.part")]:
            f.unlink(missing_ok=True)  # nothing half-made stays behind
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


def _validate(args: argparse.Namespace, argv: list[str], log: "Progress", net, x: np.ndarray, labels: np.ndarray,
              n_scripts: int, sims: list[str], per_sim_n: dict[str, int], out: Path) -> int:
    """The runs, the comparison and the report, once the inputs are loaded."""
    from .scriptlib import runtime

    t0 = time.perf_counter()
    steps = net.settings.steps
    log(f"{len(sims)} simulator(s), {len(x)} samples (exported scripts: {n_scripts}), {steps} steps")
    counts = {sim: len(x) if sim == "reference" else min(len(x), per_sim_n.get(sim, n_scripts)) for sim in sims}
    for n in {counts[s] for s in sims if s != "reference"}:
        np.save(out / "scripts" / f"_inputs_{n}.npy", x[:n])  # written once, before scripts run in parallel

    def one(i: int, sim: str) -> SimRun:
        log(f"[{i}/{len(sims)}] {sim}")
        run = run_simulator(sim, net, x[:counts[sim]], labels[:counts[sim]], out, args, log)
        log(f"[{i}/{len(sims)}] {sim}: {run.status}" + (f" ({run.seconds:.1f} s)" if run.seconds else "")
            + (f": {_first_line(run.message)}" if run.status != "ok" else ""))
        return run

    # The reference first and alone (it uses every core); then the scripts, --jobs at a time.
    order = list(enumerate(sims, 1))
    done = {sim: one(i, sim) for i, sim in order if sim == "reference"}
    pool = ThreadPoolExecutor(max_workers=args.jobs)
    try:
        futures = {sim: pool.submit(one, i, sim) for i, sim in order if sim != "reference"}
        done.update({sim: f.result() for sim, f in futures.items()})
    finally:  # on Ctrl-C, do not wait here for scripts still running (the caller stops them)
        pool.shutdown(wait=False, cancel_futures=True)
    runs = [done[sim] for sim in sims]

    log("comparing with the ANN and between simulators")
    report = analyze(net, x, labels, runs, log)
    report.update(_context(args, argv, net, x, labels, n_scripts, sims))
    report["seconds"] = round(time.perf_counter() - t0, 2)
    scatter = report.pop("_scatter", {})
    report = _json_safe(report)
    text = json.dumps(report, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    log("drawing the plots")
    page = render_html(report, scatter)
    try:
        runtime.write_outputs({out / "report.json": lambda f: f.write(text.encode("utf-8")),
                               out / "report.html": lambda f: f.write(page.encode("utf-8"))})
    except ValueError as e:
        raise SnnexportError(str(e)) from None
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


def parse_script_n(text: str | None) -> tuple[int | None, dict[str, int]]:
    """``--script-n``: "1000" or "1000,brian2=200,nest=500" → (default, {simulator: count})."""
    default, per_sim = None, {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, _, value = item.rpartition("=")
        try:
            count = int(value)
        except ValueError:
            raise SnnexportError(f"--script-n: {item!r} is not a number or SIM=COUNT") from None
        if count < 1:
            raise SnnexportError("--script-n must be at least 1")
        if name:
            per_sim[name.strip()] = count
        else:
            default = count
    return default, per_sim


class Progress:
    """Progress lines on stderr, with the seconds since the start."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"snnexport validate [{time.perf_counter() - self.t0:6.1f} s]: {message}", file=sys.stderr,
                  flush=True)


# --- running the simulators ------------------------------------------------------------------------

@dataclass
class SimRun:
    """One simulator's run: its status, and its results when it worked."""
    name: str
    status: str = "ok"  # ok | not installed | no writer | unknown | refused | failed | timeout
    message: str = ""  # why it did not run, with the tail of stderr for a failed script
    samples: int = 0
    seconds: float = 0.0
    version: str = ""
    notes: list[str] = field(default_factory=list)  # the writer's approximations
    script: str = ""
    results: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def missing_modules(sim: str) -> list[str]:
    """The Python modules ``sim`` needs that are not installed here."""
    out = []
    for module in REQUIRES.get(sim, ()):
        try:
            if importlib.util.find_spec(module) is None:
                out.append(module)
        except (ImportError, ValueError):
            out.append(module)
    return out


def known_simulators() -> list[str]:
    """Simulator names this build knows: the reference and every script writer registered."""
    from . import writers
    names = set(DEFAULT_SIMS)
    try:
        names |= set(writers.available())
    except Exception:  # a broken entry point must not stop a validation
        pass
    names.discard("network")  # writes a file, not a runnable simulation
    return sorted(names)


def run_simulator(sim: str, net, x: np.ndarray, labels: np.ndarray, out: Path, args: argparse.Namespace,
                  log: Progress) -> SimRun:
    """Run one simulator on x; never raises (a failure becomes the run's status and message)."""
    run = SimRun(sim, samples=len(x))
    if sim not in known_simulators():
        run.status, run.message = "unknown", (f"unknown simulator {sim!r}; known: {', '.join(known_simulators())}")
        return run
    missing = missing_modules(sim)
    if missing:
        run.status = "not installed"
        run.message = f"{', '.join(missing)} not installed ({INSTALL_HINT.get(sim, 'install it')})"
        return run
    run.version = _dist_version(SIM_DISTRIBUTIONS.get(sim, sim)) or ""
    if args.reuse_results:
        if _reuse(run, net, x, labels, out):
            log(f"  reusing results/{_safe_file(sim)}.npz of an earlier run")
            return run
        run = SimRun(sim, samples=len(x), version=run.version)  # nothing of a rejected file stays
    stem = _safe_file(sim)
    for old in [*(out / "scripts").glob(f"snn_{stem}.*"), *(out / "logs").glob(f"{stem}.*")]:
        old.unlink()  # a script or log of an earlier run must not pass for this one's
    if sim != "reference":
        from . import writers
        if sim not in writers.available():
            run.status = "no writer"
            run.message = f"no {sim} writer in this snnexport (available: {', '.join(writers.available())})"
            return run
    try:
        if sim == "reference":
            _run_reference(run, net, x, labels, out, args)
        else:
            _run_script(run, net, x, labels, out, args, log)
    except SnnexportError as e:
        run.status, run.message = ("refused" if "cannot express" in str(e) else "failed"), str(e)
    except Exception as e:  # a bug in a simulator or writer: the report still completes
        run.status = "failed"
        run.message = f"{type(e).__name__}: {e}\n" + _tail(traceback.format_exc())
    if run.status != "ok":
        run.results = None
    elif args.keep_results or args.reuse_results:
        _remember(run, net, x, labels, out)
    return run


def _network_sha256(net) -> str:
    return hashlib.sha256(net.to_bytes()).hexdigest()


def _code_sha256(run: SimRun, net, x: np.ndarray, labels: np.ndarray, out: Path) -> str:
    """What simulated: the exported script's bytes, or the reference simulator's source files."""
    h = hashlib.sha256()
    if run.name == "reference":
        from . import simulator
        from .scriptlib import runtime
        for module in (simulator, runtime):
            h.update(Path(module.__file__).read_bytes())
    else:
        h.update(_render(SimRun(run.name), net, x, labels, out)[1].main)
    return h.hexdigest()


def _remember(run: SimRun, net, x: np.ndarray, labels: np.ndarray, out: Path) -> None:
    """Beside a kept results file, what it was made from: what --reuse-results checks."""
    from . import data
    from .scriptlib import runtime
    info = {"network_sha256": _network_sha256(net), "inputs_sha256": data.sha256_of(x), "samples": len(x),
            "steps": net.settings.steps, "code_sha256": _code_sha256(run, net, x, labels, out),
            "seconds": run.seconds, "version": run.version, "notes": run.notes, "script": run.script}
    text = (json.dumps(info, indent=1) + "\n").encode("utf-8")
    runtime.write_output(out / "results" / f"{_safe_file(run.name)}.json", lambda f: f.write(text))


def _reuse(run: SimRun, net, x: np.ndarray, labels: np.ndarray, out: Path) -> bool:
    """Load an earlier run's results when network, samples, steps and the simulating code are the same."""
    from . import data
    from .scriptlib import runtime
    stem = out / "results" / _safe_file(run.name)
    try:
        info = json.loads(stem.with_suffix(".json").read_text())
        if (info["network_sha256"] != _network_sha256(net) or info["inputs_sha256"] != data.sha256_of(x)
                or info["steps"] != net.settings.steps or not stem.with_suffix(".npz").exists()
                or info["code_sha256"] != _code_sha256(run, net, x, labels, out)):
            return False
        res = runtime.load_results(stem.with_suffix(".npz"))
    except (OSError, ValueError, KeyError, SnnexportError):
        return False
    run.meta = dict(res.pop("meta", {}) or {}, reused=True)
    run.results, run.seconds, run.version = res, float(info["seconds"]), str(info["version"])
    run.notes, run.script = list(info["notes"]), str(info["script"])
    _check_results(run, net, len(x))
    return run.status == "ok"


def _run_reference(run: SimRun, net, x: np.ndarray, labels: np.ndarray, out: Path,
                   args: argparse.Namespace) -> None:
    from .scriptlib import runtime
    from .simulator import simulate
    t = time.perf_counter()
    res = simulate(net, x, labels, steps=net.settings.steps, delay="step", batch=args.batch,
                   seed=net.settings.seed, progress=not args.quiet and len(x) >= 1000)
    run.seconds = time.perf_counter() - t
    from .simulator import results_meta
    meta = results_meta(net, res, delay="step", seconds=run.seconds)
    if args.keep_results or args.reuse_results:
        runtime.save_results(out / "results" / "reference.npz", res, meta)
    run.results, run.meta = res, meta
    _check_results(run, net, len(x))


def _render(run: SimRun, net, x: np.ndarray, labels: np.ndarray, out: Path):
    """(script path, Rendered) of a simulator's script; sets run.notes (the writer's approximations)."""
    from . import writers
    from .writers.base import WriteOptions
    writer = writers.get(run.name)
    run.notes = writer.check(net)  # raises SnnexportError for a feature it refuses
    # Never "<simulator>.py": the script's folder comes first on sys.path, so it would shadow the package.
    script = out / "scripts" / f"snn_{_safe_file(run.name)}{writer.suffix or '.py'}"
    return script, writer.render(net, WriteOptions(output=script, samples=x[:10], labels=labels[:10]))


def _run_script(run: SimRun, net, x: np.ndarray, labels: np.ndarray, out: Path, args: argparse.Namespace,
                log: Progress) -> None:
    from .scriptlib import runtime
    from .cli import write_atomically
    script, rendered = _render(run, net, x, labels, out)
    write_atomically({script: rendered.main, **{script.parent / k: v for k, v in rendered.beside.items()}})
    run.script = str(script.relative_to(out))
    inputs = out / "scripts" / f"_inputs_{len(x)}.npy"  # written by validate_main for this run
    results = out / "results" / f"{_safe_file(run.name)}.npz"
    if results.exists():
        results.unlink()  # an old file must never pass for this run's
    cmd = [sys.executable, script.name, "--input", str(inputs.resolve()), "--out", str(results.resolve()),
           "--quiet", "-n", str(len(x)), "--steps", str(net.settings.steps)]
    log(f"  running {shlex.join(cmd[1:2])} on {len(x)} samples (timeout {args.timeout:g} s)")
    stem = out / "logs" / _safe_file(run.name)
    t = time.perf_counter()
    code, timed_out = _run_process(cmd, script.parent, stem, args.timeout)
    run.seconds = time.perf_counter() - t
    stderr = _read_tail(stem.with_suffix(".stderr.txt"))
    if timed_out:
        run.status = "timeout"
        run.message = f"stopped after {args.timeout:g} s (--timeout)\n{stderr}"
        return
    if code != 0 or not results.exists():
        run.status = "failed"
        why = f"exit status {code}" if code != 0 else "it exited 0 but wrote no results file"
        run.message = f"the script failed ({why})\n{stderr}"
        return
    res = runtime.load_results(results)
    run.meta = res.pop("meta", {}) or {}
    run.version = str(run.meta.get("version") or run.meta.get("simulator_version") or run.version)
    run.results = res
    _check_results(run, net, len(x))


_CHILDREN: set[subprocess.Popen] = set()  # scripts running now, for Ctrl-C (_stop_children)


def _stop_children(grace: float = 5.0) -> None:
    """Interrupt every running script's process group (each removes its own temporary files, as on
    Ctrl-C); kill the groups still there after ``grace`` seconds."""
    procs = list(_CHILDREN)
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except (ProcessLookupError, PermissionError):
            pass
    end = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _run_process(cmd: list[str], cwd: Path, stem: Path, timeout: float) -> tuple[int, bool]:
    """Run cmd with stdout/stderr to files; on timeout kill its whole process group. (code, timed out)."""
    with open(stem.with_suffix(".stdout.txt"), "wb") as fo, open(stem.with_suffix(".stderr.txt"), "wb") as fe:
        # A session of its own: a timeout stops the script's children too (compilers, MPI helpers).
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        _CHILDREN.add(proc)
        try:
            return proc.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            return proc.returncode, True
        except BaseException:  # Ctrl-C: do not leave the simulator running
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            raise
        finally:
            _CHILDREN.discard(proc)


def _check_results(run: SimRun, net, n: int) -> None:
    """A results file that does not describe this network and these samples is a failure, not data."""
    res = run.results
    assert res is not None
    want = [p.name for p in net.populations]
    problems = []
    for key in ("predictions", "output_steps", "population_names"):
        if key not in res:
            problems.append(f"it has no {key!r}")
    if not problems:
        got = [str(s) for s in res["population_names"]]
        if got != want:
            problems.append(f"its populations {got[:5]} are not the network's {want[:5]}")
        if len(res["predictions"]) != n:
            problems.append(f"it holds {len(res['predictions'])} samples, not {n}")
        for k, p in enumerate(net.populations):
            c = res.get(f"counts_{k}")
            if c is None or c.shape != (n, int(np.prod(p.shape))):
                problems.append(f"counts_{k} has shape {None if c is None else c.shape}")
                break
        if res["output_steps"].ndim != 3 or res["output_steps"].shape[1] != net.settings.steps:
            problems.append(f"output_steps has shape {res['output_steps'].shape}, "
                            f"not (N, {net.settings.steps}, classes)")
    if problems:
        run.status, run.results = "failed", None
        run.message = "its results file is not usable: " + "; ".join(problems)


# --- measures ----------------------------------------------------------------------------------------

class RateStats:
    """Streaming version of :func:`snnexport.compare.rate_fit` (same definitions), for data too big for memory.

    Chunks are merged with the pairwise update of means and co-moments (Chan et al.), so r close to 1
    keeps its digits over 10⁸ points.
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean_r = self.mean_a = 0.0
        self.m2_r = self.m2_a = self.c_ra = 0.0
        self.s_ra = self.s_aa = self.s_dd = 0.0  # uncentered sums for slope through 0 and RMSE
        self.close = True  # np.allclose over all chunks, for rate_fit's constant-data rule
        self.sum_r = 0.0

    def add(self, rates: np.ndarray, activations: np.ndarray) -> None:
        r = np.asarray(rates, np.float64).reshape(-1)
        a = np.asarray(activations, np.float64).reshape(-1)
        if r.size == 0:
            return
        m = r.size
        mr, ma = float(r.mean()), float(a.mean())
        dr, da = r - mr, a - ma
        m2r, m2a, cra = float(dr @ dr), float(da @ da), float(dr @ da)
        n = self.n + m
        delta_r, delta_a = mr - self.mean_r, ma - self.mean_a
        f = self.n * m / n
        self.m2_r += m2r + delta_r * delta_r * f
        self.m2_a += m2a + delta_a * delta_a * f
        self.c_ra += cra + delta_r * delta_a * f
        self.mean_r += delta_r * m / n
        self.mean_a += delta_a * m / n
        self.n = n
        self.s_ra += float(r @ a)
        self.s_aa += float(a @ a)
        d = r - a
        self.s_dd += float(d @ d)
        self.sum_r += float(r.sum())
        self.close = self.close and bool(np.allclose(r, a))

    def result(self) -> dict[str, float]:
        if self.n == 0:
            return {"pearson": float("nan"), "slope": float("nan"), "rmse": float("nan")}
        if self.m2_r <= 0 or self.m2_a <= 0:
            pearson = 1.0 if self.close else 0.0
        else:
            pearson = self.c_ra / math.sqrt(self.m2_r * self.m2_a)
        slope = self.s_ra / self.s_aa if self.s_aa > 0 else 0.0
        return {"pearson": float(min(1.0, max(-1.0, pearson))), "slope": float(slope),
                "rmse": float(math.sqrt(self.s_dd / self.n))}


def cumulative_predictions(output_steps: np.ndarray) -> np.ndarray:
    """(N, T) class after each step from cumulative output counts, ties to the lower index (semantics.md)."""
    c = np.cumsum(np.asarray(output_steps, np.int32), axis=1, dtype=np.int32)
    return np.argmax(c, axis=2)


def error_curve(output_steps: np.ndarray, labels: np.ndarray, chunk: int = 1000) -> np.ndarray:
    """(T,) error in percent after each step over the labelled samples (NaN where none is labelled)."""
    known = labels >= 0
    steps = output_steps.shape[1]
    if not known.any():
        return np.full(steps, np.nan)
    wrong = np.zeros(steps, np.int64)
    for s in range(0, len(labels), chunk):
        k = known[s:s + chunk]
        pred = cumulative_predictions(output_steps[s:s + chunk][k])
        wrong += (pred != labels[s:s + chunk][k][:, None]).sum(axis=0)
    return 100.0 * wrong / int(known.sum())


def _ops_measures(net, run: SimRun, x: np.ndarray) -> dict[str, Any]:
    """Synaptic operations (paper §2.3) of one run, from :func:`snnexport.opcount.snn_ops`.

    Means over the run's samples: per sample, per node, and cumulated after each step (for the
    error-versus-operations curve). Missing op counts are reported with why, never fatal.
    """
    try:
        from .opcount import snn_ops
        ops = snn_ops(net, run.results, x=x[:run.samples], seed=int(run.meta.get("seed", net.settings.seed)))
    except Exception as e:  # op counts are a measure among several: report why they are missing
        return {"ops_note": f"operation counts unavailable: {type(e).__name__}: {_first_line(str(e))}"}
    per_step = np.asarray(ops["per_step"], np.float64)
    return {"snn_ops_per_sample": float(np.mean(ops["total"])),
            "input_ops_per_sample": float(np.mean(ops["input"])),
            "ops_per_node": {k: float(np.mean(v)) for k, v in ops["per_node"].items()},
            "ops_vs_steps": [float(v) for v in np.cumsum(per_step, axis=1).mean(axis=0)]}


def _ann_ops(net) -> int | None:
    try:
        from .opcount import ann_ops
        return int(ann_ops(net))
    except Exception:  # reported as missing, like the SNN's
        return None


def analyze(net, x: np.ndarray, labels: np.ndarray, runs: list[SimRun], log: Progress) -> dict[str, Any]:
    """Every number of the report, from the runs' results and the ANN."""
    from .compare import identical_fraction
    from .network import Gate
    ok = [r for r in runs if r.status == "ok" and r.results is not None]
    steps = net.settings.steps
    pops = [p.name for p in net.populations]
    gates = [g.name for g in net.nodes if isinstance(g, Gate)]
    known = labels >= 0
    n_max = len(x)  # the ANN's error and classes: on every sample, even if no simulator ran

    # ANN activations, one slice at a time; every simulator's counts are compared against each slice.
    stats = {(r.name, name): RateStats() for r in ok for name in pops + gates}
    scatter: dict[tuple[str, str], list[np.ndarray]] = {}
    ann_pred = np.zeros(n_max, np.int64)
    ann_error_note = ""
    rng = np.random.default_rng(0)
    if n_max:
        try:
            from .simulator import ann_activations
        except Exception as e:
            ann_activations, ann_error_note = None, f"ANN activations unavailable: {type(e).__name__}: {e}"
        for s in (range(0, n_max, CHUNK) if ann_activations else ()):
            e = min(n_max, s + CHUNK)
            try:
                acts = ann_activations(net, x[s:e])
            except Exception as exc:  # the report still shows the simulators against each other
                ann_error_note = f"ANN activations failed: {type(exc).__name__}: {_first_line(str(exc))}"
                break
            ann_pred[s:e] = np.asarray(acts[net.output]).reshape(e - s, -1).argmax(axis=1)
            for r in ok:
                m = min(r.samples, e) - s
                if m <= 0:
                    continue
                for k, name in enumerate(pops):
                    _add_fit(stats, scatter, rng, r, name, r.results[f"counts_{k}"][s:s + m], acts, m, steps, s)
                gnames = [str(g) for g in r.results.get("gate_names", [])]
                for name in gates:
                    if name in gnames and name in acts:
                        k = gnames.index(name)
                        _add_fit(stats, scatter, rng, r, name, r.results[f"gate_counts_{k}"][s:s + m], acts, m,
                                 steps, s)
            if n_max > CHUNK and (e // CHUNK) % 8 == 0 or e == n_max > CHUNK:
                log(f"  ANN comparison: {e}/{n_max} samples")

    ann_ok = not ann_error_note and n_max > 0
    ann_ops = _ann_ops(net)
    sims: dict[str, dict[str, Any]] = {}
    targets: list[dict[str, Any]] = []
    for r in runs:
        entry: dict[str, Any] = {"status": r.status, "message": r.message, "samples": r.samples,
                                 "version": r.version, "notes": r.notes, "script": r.script,
                                 "seconds": round(r.seconds, 3)}
        if r.status == "ok":
            entry.update(_classification(r, labels, ann_pred if ann_ok else None, known, steps))
            entry["seconds_per_sample"] = r.seconds / max(r.samples, 1)
            entry["meta"] = r.meta
            layers = {}
            for name in pops + gates:
                st = stats.get((r.name, name))
                if st is None or st.n == 0:
                    continue
                fit = st.result()
                node = net.node(name)
                layers[name] = {**fit, "kind": "gate" if name in gates else "population",
                                "in_target": name in _target_layers(net),
                                "activation": getattr(node, "activation", "max-pool"),
                                "neurons": int(np.prod(node.shape)), "scale": float(node.scale),
                                "mean_rate": st.sum_r / st.n}
            entry["layers"] = layers
            entry.update(_ops_measures(net, r, x))
            if entry.get("snn_ops_per_sample") is not None and ann_ops:
                entry["ops_ratio_to_ann"] = entry["snn_ops_per_sample"] / ann_ops
            targets += _sim_targets(r.name, entry, net)
        sims[r.name] = entry

    pairs = []
    for i, a in enumerate(ok):
        for b in ok[i + 1:]:
            pairs.append(_pair(a, b, identical_fraction))
    for p in pairs:
        if p.get("identical_fraction") is None:
            continue
        v = p["identical_fraction"]["all"]
        targets.append(_target("identical spike counts", f"{p['a']} vs {p['b']}", v, TARGET_IDENTICAL, ">=",
                               "fraction"))
    ann = {"samples": int(n_max), "note": ann_error_note}
    if ann_ok:
        ann["predictions_head"] = [int(v) for v in ann_pred[:20]]
        if known[:n_max].any():
            ann["error_percent"] = 100.0 * float((ann_pred[known[:n_max]] != labels[:n_max][known[:n_max]]).mean())
            ann["accuracy"] = 1 - ann["error_percent"] / 100
    ann["ops_per_sample"] = ann_ops
    return {"ann": ann, "simulators": sims, "pairs": pairs, "targets": targets,
            "summary": {"all_targets_pass": bool(targets) and all(t["pass"] for t in targets),
                        "targets_passed": sum(t["pass"] for t in targets), "targets": len(targets),
                        "simulators_ok": [r.name for r in ok],
                        "simulators_not_ok": {r.name: r.status for r in runs if r.status != "ok"}},
            "_scatter": scatter}


def _add_fit(stats: dict, scatter: dict, rng: np.random.Generator, run: SimRun, name: str, counts: np.ndarray,
             acts: dict[str, np.ndarray], m: int, steps: int, start: int) -> None:
    if name not in acts:
        return
    rates = counts.reshape(m, -1).astype(np.float64) / steps
    a = np.asarray(acts[name])[:m].reshape(m, -1)
    stats[(run.name, name)].add(rates, a)
    if start == 0:  # the scatter plots show a random subset of the first slice
        idx = rng.choice(rates.size, min(SCATTER_POINTS, rates.size), replace=False)
        scatter[(run.name, name)] = [a.reshape(-1)[idx].astype(np.float32), rates.reshape(-1)[idx].astype(np.float32)]


def _classification(r: SimRun, labels: np.ndarray, ann_pred: np.ndarray | None, known: np.ndarray,
                    steps: int) -> dict[str, Any]:
    res = r.results
    n = r.samples
    pred = np.asarray(res["predictions"]).astype(np.int64)
    k = known[:n]
    out: dict[str, Any] = {"labelled": int(k.sum())}
    if k.any():
        out["error_percent"] = 100.0 * float((pred[k] != labels[:n][k]).mean())
        out["accuracy"] = 1 - out["error_percent"] / 100
        out["error_vs_steps"] = [float(v) for v in error_curve(res["output_steps"], labels[:n])]
    if ann_pred is not None:
        out["agreement_with_ann"] = float((pred == ann_pred[:n]).mean())
        if k.any():
            ann_err = 100.0 * float((ann_pred[:n][k] != labels[:n][k]).mean())
            out["ann_error_percent"] = ann_err  # the ANN on exactly these samples
            out["error_difference_pp"] = out["error_percent"] - ann_err
        cum = np.zeros(steps, np.int64)
        for s in range(0, n, 1000):
            pred_t = cumulative_predictions(res["output_steps"][s:s + 1000])
            cum += (pred_t == ann_pred[s:min(n, s + 1000), None]).sum(axis=0)
        out["agreement_vs_steps"] = [float(v) for v in cum / max(n, 1)]
    spikes = np.asarray(res.get("spikes_per_step", np.zeros((n, steps, 0))))
    if spikes.size:
        out["spikes_per_sample"] = float(np.abs(spikes).sum(dtype=np.float64) / max(n, 1))
    return out


def _sim_targets(sim: str, entry: dict[str, Any], net) -> list[dict[str, Any]]:
    out = []
    if "error_difference_pp" in entry:
        out.append(_target("SNN error − ANN error", sim, entry["error_difference_pp"], TARGET_ERROR_PP, "<=", "pp"))
    rs = [(name, v["pearson"]) for name, v in entry.get("layers", {}).items()
          if v["in_target"] and not math.isnan(v["pearson"])]
    if rs:
        worst, value = min(rs, key=lambda t: t[1])
        t = _target("per-layer Pearson r (lowest layer)", sim, value, TARGET_PEARSON, ">=", "r")
        t["layer"] = worst
        out.append(t)
    return out


def _target_layers(net) -> set[str]:
    """The populations the r target applies to: all but a softmax/linear output, whose ANN value is a
    signed pre-activation that rates (never below 0) cannot follow below zero. Gates are reported only."""
    return {p.name for p in net.populations if p.activation not in ("softmax", "linear")}


def _target(what: str, subject: str, value: float, threshold: float, op: str, unit: str) -> dict[str, Any]:
    ok = value <= threshold if op == "<=" else value >= threshold
    margin = threshold - value if op == "<=" else value - threshold  # > 0: by how much it passes
    return {"target": what, "subject": subject, "value": value, "threshold": threshold, "op": op, "unit": unit,
            "pass": bool(ok), "margin": margin}


def _pair(a: SimRun, b: SimRun, identical_fraction) -> dict[str, Any]:
    m = min(a.samples, b.samples)
    out: dict[str, Any] = {"a": a.name, "b": b.name, "samples": m}
    try:
        out["identical_fraction"] = identical_fraction(a.results, b.results)
    except ValueError as e:
        out["identical_fraction"] = None
        out["note"] = str(e)
        return out
    st = RateStats()
    for k in range(len(a.results["population_names"])):
        for s in range(0, m, CHUNK):
            e = min(m, s + CHUNK)
            st.add(a.results[f"counts_{k}"][s:e], b.results[f"counts_{k}"][s:e])
    out["rate_pearson"] = st.result()["pearson"]  # of rates: counts / T, T the same for both
    pa, pb = np.asarray(a.results["predictions"][:m]), np.asarray(b.results["predictions"][:m])
    out["prediction_agreement"] = float((pa == pb).mean()) if m else 1.0
    return out


# --- context: versions, command, network ---------------------------------------------------------------

def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """Versions of Python, snnexport, numpy, keras and every simulator (None: not installed)."""
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for dist in DISTRIBUTIONS:
        out[dist] = _dist_version(dist)
    out["snnexport"] = __version__
    return out


def _context(args: argparse.Namespace, argv: list[str], net, x: np.ndarray, labels: np.ndarray, n_scripts: int,
             sims: list[str]) -> dict[str, Any]:
    from .network import Gate
    prov, norm, s = net.provenance, net.normalization, net.settings
    nodes = []
    for node in net.nodes:
        d = {"name": node.name, "shape": list(node.shape), "neurons": int(np.prod(node.shape)),
             "scale": float(node.scale), "depth": int(node.depth)}
        if isinstance(node, Gate):
            d.update(kind="gate", source=node.source, pool=list(node.pool))
        else:
            d.update(kind="population", activation=node.activation)
        nodes.append(d)
    return {
        "format": REPORT_FORMAT,
        "title": args.title or Path(args.model).name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["snnexport", "validate", *argv]),
        "argv": list(argv),
        "cwd": os.getcwd(),
        "versions": versions(),
        "model": {"file": args.model, "name": prov.model_file, "sha256": prov.model_sha256,
                  "keras": prov.keras_version},
        "data": {"file": args.data, "samples": int(len(x)), "samples_exported_scripts": int(n_scripts),
                 "labelled": int((labels >= 0).sum())},
        "network": {"input": {"name": net.input.name, "shape": list(net.input.shape), "encoding": net.input.encoding},
                    "output": net.output, "nodes": nodes,
                    "neurons": int(sum(np.prod(p.shape) for p in net.populations))},
        "settings": {"steps": s.steps, "readout": s.readout, "delay": "step", "clamp": s.clamp, "seed": s.seed,
                     "reset": net.neuron.reset, "threshold": net.neuron.threshold,
                     "normalization": {"method": norm.method, "percentile": norm.percentile,
                                       "samples": norm.samples, "data_sha256": norm.data_sha256}},
        "simulators_requested": sims,
        "jobs": args.jobs,  # exported scripts run at once: above 1, their timings share the CPU
        "targets_definition": {"error_difference_pp_max": TARGET_ERROR_PP, "pearson_min": TARGET_PEARSON,
                               "identical_fraction_min": TARGET_IDENTICAL},
    }


def _json_safe(obj: Any) -> Any:
    """NaN/inf → None, numpy scalars → Python; private keys (the scatter data) dropped."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
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
        rs = [v["pearson"] for v in e.get("layers", {}).values() if v.get("in_target") and v.get("pearson") is not None]
        lines.append(f"{name}: {e['samples']} samples" + (f", error {err:.2f} %" if err is not None else "")
                     + (f", agreement with ANN {100 * e['agreement_with_ann']:.2f} %"
                        if "agreement_with_ann" in e else "")
                     + (f", lowest spiking-layer r {min(rs):.4f}" if rs else ""))
    s = report["summary"]
    lines.append(f"targets: {s['targets_passed']}/{s['targets']} pass")
    return lines


# --- HTML ------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.l,th.l{text-align:left}
.pass{color:#0a6b1f;font-weight:600}.miss{color:#b00020;font-weight:600}
.bad{background:#fff1f1}pre{white-space:pre-wrap;font-size:.8em;max-width:38em;text-align:left;margin:0}
img{max-width:100%}code{font-size:.9em}.small{font-size:.85em;color:#555}
"""


def _e(value: Any) -> str:
    """HTML-escaped text of any value: model and layer names are never trusted."""
    return html.escape(str(value), quote=True)


def _fmt(v: Any, digits: int = 4, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if pct:
        return f"{100 * v:.{max(digits - 2, 1)}f} %"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3) else f"{v:.{digits}f}"
    return _e(v)


def render_html(report: dict[str, Any], scatter: dict[tuple[str, str], list[np.ndarray]] | None = None) -> str:
    """The report as one self-contained HTML page (figures inlined as base64 PNG).

    ``scatter``: (simulator, layer) → [activations, rates], the points of the scatter plots.
    """
    scatter = scatter or {}
    sims = report["simulators"]
    ok = [n for n, e in sims.items() if e["status"] == "ok"]
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>snnexport validation: "
             f"{_e(report['title'])}</title><style>{_CSS}</style></head><body>"]
    parts.append(f"<h1>Validation of <code>{_e(report['title'])}</code></h1>")
    st = report["settings"]
    parts.append(
        f"<p>{report['data']['samples']} samples from <code>{_e(report['data']['file'])}</code> "
        f"({report['data']['labelled']} labelled; each simulator's count is in its column), "
        f"{st['steps']} steps, one-step delay per population, reset by {_e(st['reset'])}, readout "
        f"{_e(st['readout'])}, {_e(report['network']['input']['encoding'])} input, "
        + (f"{report['jobs']} exported scripts at a time (their timings share the CPU), "
           if report.get("jobs", 1) > 1 else "")
        + f"normalization: {_e(st['normalization']['method'])}"
        + (f" ({st['normalization']['percentile']:g}th percentile over {st['normalization']['samples']} samples)"
           if st["normalization"]["method"] == "percentile" else "") + ".</p>")
    parts.append(f"<p class='small'>Created {_e(report['created'])} in {report['seconds']:.1f} s by "
                 f"<code>{_e(report['command'])}</code></p>")

    # targets
    parts.append("<h2>Targets</h2><table><tr><th class='l'>target</th><th class='l'>subject</th><th>value</th>"
                 "<th>required</th><th>result</th><th>margin</th></tr>")
    for t in report["targets"]:
        unit = t["unit"]
        op = {">=": "≥", "<=": "≤"}[t["op"]]
        if unit == "fraction":  # shown in percent; the margin in percentage points
            val, req, margin = _fmt(t["value"], 6, pct=True), f"{op} {100 * t['threshold']:g} %", \
                f"{100 * t['margin']:+.3f} pp"
        else:
            u = " pp" if unit == "pp" else ""
            val, req, margin = f"{_fmt(t['value'], 4)}{u}", f"{op} {t['threshold']:g}{u}", f"{t['margin']:+.4f}{u}"
        subject = _e(t["subject"]) + (f" <span class='small'>(layer <code>{_e(t['layer'])}</code>)</span>"
                                      if t.get("layer") is not None else "")
        cls = "pass" if t["pass"] else "miss"
        parts.append(f"<tr><td class='l'>{_e(t['target'])}</td><td class='l'>{subject}</td><td>{val}</td>"
                     f"<td>{req}</td><td class='{cls}'>{'pass' if t['pass'] else 'miss'}</td><td>{margin}</td></tr>")
    if not report["targets"]:
        parts.append("<tr><td class='l' colspan='6'>no target could be measured</td></tr>")
    s = report["summary"]
    parts.append(f"</table><p>{s['targets_passed']} of {s['targets']} targets pass.</p>")

    # simulators: one column each
    parts.append("<h2>Simulators</h2><table><tr><th class='l'></th>"
                 + "".join(f"<th>{_e(n)}</th>" for n in sims) + "</tr>")
    ann = report["ann"]

    def row(label: str, cells: list[str]) -> None:
        parts.append(f"<tr><th class='l'>{label}</th>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")

    def unit(v: Any, digits: int, suffix: str) -> str:
        return "–" if v is None else f"{_fmt(v, digits)}{suffix}"

    row("status", [("<span class='pass'>ok</span>" if e["status"] == "ok" else
                    f"<span class='miss'>{_e(e['status'])}</span><pre>{_e(e['message'])}</pre>")
                   for e in sims.values()])
    row("version", [_e(e.get("version") or "–") for e in sims.values()])
    row("samples", [str(e["samples"]) if e["status"] == "ok" else "–" for e in sims.values()])
    row("SNN error", [unit(e.get("error_percent"), 3, " %") for e in sims.values()])
    row("ANN error, same samples", [unit(e.get("ann_error_percent"), 3, " %") for e in sims.values()])
    row("SNN − ANN error", [unit(e.get("error_difference_pp"), 3, " pp") for e in sims.values()])
    row("agreement with ANN", [_fmt(e.get("agreement_with_ann"), 4, pct=True) for e in sims.values()])
    row("spikes per sample", [_fmt(e.get("spikes_per_sample"), 1) for e in sims.values()])
    row("synaptic ops per sample", [_fmt(e.get("snn_ops_per_sample"), 4) for e in sims.values()])
    row("ops relative to ANN", [_fmt(e.get("ops_ratio_to_ann"), 3) for e in sims.values()])
    row("wall time", [(f"{e['seconds']:.1f} s" + (" (earlier run, reused)" if e.get("meta", {}).get("reused")
                                                   else "")) if e["status"] == "ok" else "–" for e in sims.values()])
    row("per sample", [f"{1000 * e['seconds_per_sample']:.1f} ms" if e.get("seconds_per_sample") else "–"
                       for e in sims.values()])
    row("approximations", [("<br>".join(_e(n) for n in e.get("notes") or []) or "none") if e["status"] == "ok"
                           else "–" for e in sims.values()])
    row("script", [f"<code>{_e(e['script'])}</code>" if e.get("script") else "–" for e in sims.values()])
    parts.append("</table>")
    if ann.get("error_percent") is not None:
        parts.append(f"<p>ANN error on all {ann['samples']} samples: {ann['error_percent']:.3f} %"
                     + (f"; ANN operations per sample: {ann['ops_per_sample']:.4g}"
                        if ann.get("ops_per_sample") else "")
                     + ".</p>")
    if ann.get("note"):
        parts.append(f"<p class='miss'>{_e(ann['note'])}</p>")

    # per-layer fits
    layer_names = [n["name"] for n in report["network"]["nodes"]]
    parts.append("<h2>Firing rates against ANN activations</h2><p>Per layer: Pearson r, slope (through 0) and "
                 "RMSE of rates (spikes per step) against ANN activation / λ, over every neuron of every sample. "
                 "The r target applies to the spiking layers (red: below it); a softmax or linear output is "
                 "compared with its signed pre-activation, and max-pool gates are shown for information.</p>"
                 "<table><tr><th class='l'>layer</th><th class='l'>kind</th><th>neurons</th><th>λ</th>"
                 + "".join(f"<th>{_e(n)}<br>r / slope / RMSE</th>" for n in ok) + "</tr>")
    nodes = {n["name"]: n for n in report["network"]["nodes"]}
    for name in layer_names:
        cells = []
        for sim in ok:
            v = sims[sim].get("layers", {}).get(name)
            if v is None:
                cells.append("–")
                continue
            bad = v["pearson"] is not None and v["pearson"] < TARGET_PEARSON and v.get("in_target")
            cells.append(f"<span class='{'miss' if bad else ''}'>{_fmt(v['pearson'], 4)}</span> / "
                         f"{_fmt(v['slope'], 3)} / {_fmt(v['rmse'], 4)}")
        node = nodes[name]
        kind = ("max-pool gate" if node["kind"] == "gate" else f"{node.get('activation')} IF")
        parts.append(f"<tr><td class='l'><code>{_e(name)}</code></td><td class='l'>{_e(kind)}</td>"
                     f"<td>{node['neurons']}</td><td>{node['scale']:.4g}</td>"
                     + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append("</table>")

    # pairs
    if report["pairs"]:
        parts.append("<h2>Simulators against each other</h2><table><tr><th class='l'>pair</th><th>samples</th>"
                     "<th>identical spike counts</th><th>rate correlation (Pearson r)</th><th>same class</th></tr>")
        for p in report["pairs"]:
            idf = p.get("identical_fraction")
            val = _fmt(idf["all"], 6, pct=True) if idf else _e(p.get("note", "–"))
            bad = idf is not None and idf["all"] < TARGET_IDENTICAL
            parts.append(f"<tr><td class='l'>{_e(p['a'])} vs {_e(p['b'])}</td><td>{p['samples']}</td>"
                         f"<td class='{'miss' if bad else ''}'>{val}</td><td>{_fmt(p.get('rate_pearson'), 6)}</td>"
                         f"<td>{_fmt(p.get('prediction_agreement'), 4, pct=True)}</td></tr>")
        parts.append("</table>")
        worst = [(p, k, v) for p in report["pairs"] if p.get("identical_fraction")
                 for k, v in p["identical_fraction"].items() if k != "all" and v < TARGET_IDENTICAL]
        if worst:
            parts.append("<p>Layers below the target: " + "; ".join(
                f"{_e(p['a'])} vs {_e(p['b'])}, <code>{_e(k)}</code>: {100 * v:.3f} %" for p, k, v in worst[:30])
                + "</p>")

    # figures
    parts.append("<h2>Figures</h2>")
    for title, png in figures(report, scatter):
        parts.append(f"<h3>{_e(title)}</h3><img alt='{_e(title)}' src='data:image/png;base64,{png}'>")

    # versions
    parts.append("<h2>Versions</h2><table>" + "".join(
        f"<tr><th class='l'>{_e(k)}</th><td class='l'>{_e(v if v is not None else 'not installed')}</td></tr>"
        for k, v in report["versions"].items()) + "</table>")
    m = report["model"]
    parts.append(f"<p class='small'>Model <code>{_e(m['file'])}</code>, sha256 <code>{_e(m['sha256'])}</code>. "
                 "Method: Rueckauer et al. 2017, Front. Neurosci. 11:682. Every number of this page is in "
                 "<code>report.json</code>.</p></body></html>\n")
    return "\n".join(parts)


# --- figures ----------------------------------------------------------------------------------------------

def _label(name: str, width: int = 28) -> str:
    """A layer name safe for matplotlib: no mathtext ($), no line breaks, not too long."""
    s = " ".join(str(name).split()).replace("$", r"\$")
    return s if len(s) <= width else s[: width - 1] + "…"


_STYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))


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


def figures(report: dict[str, Any], scatter: dict[tuple[str, str], list[np.ndarray]]) -> list[tuple[str, str]]:
    """(title, base64 PNG) of every figure; none when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out: list[tuple[str, str]] = []
    sims = report["simulators"]
    ok = [n for n, e in sims.items() if e["status"] == "ok"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # rate against activation, one figure per simulator, one panel per layer
        layer_names = [n["name"] for n in report["network"]["nodes"]]
        for sim in ok:
            names = [n for n in layer_names if (sim, n) in scatter]
            if not names:
                continue
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
                fit = sims[sim]["layers"].get(name, {})
                rr = fit.get("pearson")
                ax.set_title(f"{_label(name)}\nr = {rr:.4f}" if rr is not None else _label(name), fontsize=8)
                ax.tick_params(labelsize=7)
            for ax in list(axes.flat)[len(names):]:
                ax.axis("off")
            fig.supxlabel("ANN activation / λ", fontsize=9)
            fig.supylabel("SNN rate (spikes / step)", fontsize=9)
            fig.tight_layout()
            out.append((f"Rates against activations: {sim}", _png(fig)))

        ann_err = report["ann"].get("error_percent")
        curves = {s: sims[s]["error_vs_steps"] for s in ok if sims[s].get("error_vs_steps")}
        if curves:
            fig, ax = plt.subplots(figsize=(7, 4))
            for i, (s, c) in enumerate(curves.items()):  # identical curves must stay visible: styles differ
                ax.plot(np.arange(1, len(c) + 1), c, label=f"{_label(s)} ({sims[s]['samples']})",
                        ls=_STYLES[i % len(_STYLES)], lw=1.4)
            if ann_err is not None:
                ax.axhline(ann_err, color="k", ls="--", lw=1,
                           label=f"ANN ({ann_err:.2f} %, {report['ann']['samples']})")
            ax.set_xlabel("steps")
            ax.set_ylabel("error (%)")
            _error_axis(ax, [v for c in curves.values() for v in c] + [ann_err],
                        max(sims[s]["samples"] for s in curves))
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
            ax.set_title("Error against simulation steps (cumulative output spike counts)", fontsize=9)
            out.append(("Error against steps", _png(fig)))

        ops = {s: (sims[s]["ops_vs_steps"], sims[s]["error_vs_steps"]) for s in ok
               if sims[s].get("ops_vs_steps") and sims[s].get("error_vs_steps")}
        if ops:
            fig, ax = plt.subplots(figsize=(7, 4))
            for i, (s, (o, c)) in enumerate(ops.items()):
                ax.plot(np.asarray(o) / 1e6, c, label=f"{_label(s)} ({sims[s]['samples']})",
                        ls=_STYLES[i % len(_STYLES)], lw=1.4)
            ann_ops = report["ann"].get("ops_per_sample")
            if ann_ops and ann_err is not None:
                ax.plot([ann_ops / 1e6], [ann_err], "k*", ms=10, label="ANN")
                ax.axvline(ann_ops / 1e6, color="k", ls=":", lw=0.8)
            ax.set_xlabel("synaptic operations per sample (millions)")
            ax.set_ylabel("error (%)")
            _error_axis(ax, [v for _, c in ops.values() for v in c] + [ann_err],
                        max(sims[s]["samples"] for s in ops))
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
            ax.set_title("Error against operations (paper §2.3)", fontsize=9)
            out.append(("Error against operations", _png(fig)))

        if len(ok) >= 2 or (ok and report["ann"].get("predictions_head") is not None):
            out.append(("Agreement matrices", _png(_agreement_figure(plt, report, ok))))
    return out


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


# --- small helpers ---------------------------------------------------------------------------------------

def _tail(text: str, limit: int = TAIL_CHARS) -> str:
    text = text.rstrip()
    return text if len(text) <= limit else "…" + text[-limit:]


def _read_tail(path: Path, limit: int = TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return _tail(f.read().decode("utf-8", "replace"), limit)
    except OSError:
        return ""


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def _safe_file(name: str) -> str:
    """A simulator name as a file name (letters, digits, - and _ only)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "sim"


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass
