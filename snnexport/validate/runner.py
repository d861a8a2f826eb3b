"""Running the simulators: the reference in this process, every exported script in a subprocess.

A script runs in a session of its own (so a crash, a hang or a missing package stays there, and a
timeout or Ctrl-C stops its children too) with stdout and stderr in ``DIR/logs/``. ``--reuse-results``
takes an earlier run's results file from ``DIR/results/`` when the network, the samples, the steps and
the simulating code are the same (their hashes are kept beside the file). Nothing here raises for a
simulator's failure: it becomes the run's status and message.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import writers
from ..scriptlib import outputs, runtime
from ..errors import FeatureRefused, SnnexportError, user_errors
from .mpi import mpirun_command
from .provenance import dist_version, run_mode

TAIL_CHARS = 3000  # stderr kept from a failed script


class Progress:
    """Progress lines on stderr, with the seconds since the start."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"snnexport validate [{time.perf_counter() - self.t0:6.1f} s]: {message}", file=sys.stderr,
                  flush=True)


@dataclass
class SimRun:
    """One simulator's run: its status, and its results when it worked."""
    name: str
    status: str = "ok"  # ok | not installed | unknown | refused | failed | timeout
    message: str = ""  # why it did not run, with the tail of stderr for a failed script
    samples: int = 0
    seconds: float = 0.0
    version: str = ""
    notes: list[str] = field(default_factory=list)  # the writer's approximations
    script: str = ""
    results: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def known_simulators() -> list[str]:
    """Simulator names this build knows: the reference and every writer whose script runs."""
    try:
        return sorted(["reference", *writers.runnable()])
    except Exception:  # noqa: BLE001 - a broken entry point must not stop a validation
        return ["reference"]


def missing_modules(sim: str) -> list[str]:
    """The Python modules ``sim`` needs that are not installed here (the reference's are dependencies)."""
    return [] if sim == "reference" else writers.missing_modules(sim)


def run_all(sims: list[str], counts: dict[str, int], net, x: np.ndarray, labels: np.ndarray, out: Path,
            args: argparse.Namespace, log: Progress) -> list[SimRun]:
    """Every simulator's run, in the order of ``sims``: the reference first and alone (it uses every
    core), then the scripts, ``--jobs`` at a time, each on its first ``counts[sim]`` samples."""
    def one(i: int, sim: str) -> SimRun:
        log(f"[{i}/{len(sims)}] {sim}")
        run = run_simulator(sim, net, x[:counts[sim]], labels[:counts[sim]], out, args, log)
        log(f"[{i}/{len(sims)}] {sim}: {run.status}" + (f" ({run.seconds:.1f} s)" if run.seconds else "")
            + (f": {first_line(run.message)}" if run.status != "ok" else ""))
        return run

    order = list(enumerate(sims, 1))
    done = {sim: one(i, sim) for i, sim in order if sim == "reference"}
    pool = ThreadPoolExecutor(max_workers=args.jobs)
    try:
        futures = {sim: pool.submit(one, i, sim) for i, sim in order if sim != "reference"}
        done.update({sim: f.result() for sim, f in futures.items()})
    finally:  # on Ctrl-C, do not wait here for scripts still running (the caller stops them)
        pool.shutdown(wait=False, cancel_futures=True)
    return [done[sim] for sim in sims]


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
        run.message = f"{', '.join(missing)} not installed ({writers.install_hint(sim)})"
        return run
    run.version = dist_version("snnexport" if sim == "reference" else writers.get(sim).distribution) or ""
    if args.reuse_results:
        if _reuse(run, net, x, labels, out, run_mode(args)):
            log(f"  reusing results/{safe_file(sim)}.npz of an earlier run")
            return run
        run = SimRun(sim, samples=len(x), version=run.version)  # nothing of a rejected file stays
    stem = safe_file(sim)
    for old in [*(out / "scripts").glob(f"snn_{stem}.*"), *(out / "logs").glob(f"{stem}.*")]:
        old.unlink()  # a script or log of an earlier run must not pass for this one's
    try:
        if sim == "reference":
            _run_reference(run, net, x, labels, out, args)
        else:
            _run_script(run, net, x, labels, out, args, log)
    except FeatureRefused as e:
        run.status, run.message = "refused", str(e)
    except SnnexportError as e:
        run.status, run.message = "failed", str(e)
    except Exception as e:  # a bug in a simulator or writer: the report still completes
        run.status = "failed"
        run.message = f"{type(e).__name__}: {e}\n" + tail(traceback.format_exc())
    if run.status != "ok":
        run.results = None
    elif args.keep_results or args.reuse_results:
        _remember(run, net, x, labels, out, run_mode(args))
    return run


# --- the reuse cache -----------------------------------------------------------------------------------

def _code_sha256(run: SimRun, net, x: np.ndarray, labels: np.ndarray, out: Path) -> str:
    """What simulated: the exported script's bytes, or the reference simulator's source files."""
    h = hashlib.sha256()
    if run.name == "reference":
        from .. import simulator
        for module in (simulator, runtime):
            path = Path(module.__file__)  # a package: every module in it
            for source in sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]:
                h.update(source.read_bytes())
    else:
        h.update(_render(SimRun(run.name), net, x, labels, out)[1].main)
    return h.hexdigest()


def _remember(run: SimRun, net, x: np.ndarray, labels: np.ndarray, out: Path, mode: dict[str, Any]) -> None:
    """Beside a kept results file, what it was made from: what --reuse-results checks."""
    from .. import data
    info = {"network_sha256": net.sha256(), "inputs_sha256": data.sha256_of(x), "samples": len(x),
            "steps": net.settings.steps, **mode, "code_sha256": _code_sha256(run, net, x, labels, out),
            "seconds": run.seconds, "version": run.version, "notes": run.notes, "script": run.script}
    text = (json.dumps(info, indent=1) + "\n").encode("utf-8")
    outputs.write_output(out / "results" / f"{safe_file(run.name)}.json", lambda f: f.write(text))


def _reuse(run: SimRun, net, x: np.ndarray, labels: np.ndarray, out: Path, mode: dict[str, Any]) -> bool:
    """Load an earlier run's results when network, samples, steps, run mode (delay, early decision) and the
    simulating code are the same."""
    from .. import data
    stem = out / "results" / safe_file(run.name)
    try:
        info = json.loads(stem.with_suffix(".json").read_text())
        if (info["network_sha256"] != net.sha256() or info["inputs_sha256"] != data.sha256_of(x)
                or info["steps"] != net.settings.steps or info.get("delay", "step") != mode["delay"]
                or info.get("early_decision") != mode["early_decision"]
                or not stem.with_suffix(".npz").exists()
                or info["code_sha256"] != _code_sha256(run, net, x, labels, out)):
            return False
        res = runtime.load_results(stem.with_suffix(".npz"))
    except (OSError, ValueError, KeyError, SnnexportError):
        return False
    run.meta = dict(res.pop("meta", {}) or {}, reused=True)
    run.results, run.seconds, run.version = res, float(info["seconds"]), str(info["version"])
    run.notes, run.script = list(info["notes"]), str(info["script"])
    check_results(run, net, len(x))
    return run.status == "ok"


# --- the runs ----------------------------------------------------------------------------------------------

def _run_reference(run: SimRun, net, x: np.ndarray, labels: np.ndarray, out: Path,
                   args: argparse.Namespace) -> None:
    from ..simulator import results_meta, simulate
    t = time.perf_counter()
    res = simulate(net, x, labels, steps=net.settings.steps, delay=args.delay, batch=args.batch,
                   seed=net.settings.seed, progress=not args.quiet and len(x) >= 1000,
                   early_decision=args.early_decision, decision_margin=args.decision_margin)
    run.seconds = time.perf_counter() - t
    meta = results_meta(net, res, delay=args.delay, seconds=run.seconds, decision=run_mode(args)["early_decision"])
    if args.keep_results or args.reuse_results:
        runtime.save_results(out / "results" / "reference.npz", res, meta)
    run.results, run.meta = res, meta
    check_results(run, net, len(x))


def _render(run: SimRun, net, x: np.ndarray, labels: np.ndarray, out: Path):
    """(script path, Rendered) of a simulator's script; sets run.notes (the writer's approximations)."""
    from ..writers.base import WriteOptions
    writer = writers.get(run.name)
    run.notes = writer.check(net)  # raises FeatureRefused for a feature it refuses
    # Never "<simulator>.py": the script's folder comes first on sys.path, so it would shadow the package.
    script = out / "scripts" / f"snn_{safe_file(run.name)}{writer.suffix or '.py'}"
    return script, writer.render(net, WriteOptions(output=script, samples=x[:10], labels=labels[:10]))


def _run_script(run: SimRun, net, x: np.ndarray, labels: np.ndarray, out: Path, args: argparse.Namespace,
                log: Progress) -> None:
    script, rendered = _render(run, net, x, labels, out)
    with user_errors():
        outputs.write_outputs(rendered.writes(script))
    run.script = str(script.relative_to(out))
    inputs = out / "scripts" / f"_inputs_{len(x)}.npy"  # written by validate_main for this run
    results = out / "results" / f"{safe_file(run.name)}.npz"
    if results.exists():
        results.unlink()  # an old file must never pass for this run's
    cmd = [sys.executable, script.name, "--input", str(inputs.resolve()), "--out", str(results.resolve()),
           "--quiet", "-n", str(len(x)), "--steps", str(net.settings.steps), "--delay", args.delay]
    if args.early_decision:
        cmd.append("--early-decision")
    if args.decision_margin is not None:
        cmd += ["--decision-margin", str(args.decision_margin)]
    if args.mpi and writers.get(run.name).mpi:
        cmd = mpirun_command(args.mpi, cmd)
    launcher = cmd[:cmd.index(sys.executable)]  # mpirun and its options, or nothing
    log(f"  running {shlex.join(launcher + [script.name])} on {len(x)} samples (timeout {args.timeout:g} s)")
    stem = out / "logs" / safe_file(run.name)
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
    check_results(run, net, len(x))


_CHILDREN: set[subprocess.Popen] = set()  # scripts running now, for Ctrl-C (stop_children)


def interrupted(out: Path) -> None:
    """After Ctrl-C: stop the scripts still running and remove what is half made."""
    stop_children()  # they run in sessions of their own: the terminal's Ctrl-C does not reach them
    for f in [*(out / "scripts").glob("_inputs*.npy"), *(out / "scripts").glob(".*.part"),
              *(out / "results").glob(".*.part")]:
        f.unlink(missing_ok=True)  # nothing half-made stays behind


def stop_children(grace: float = 5.0) -> None:
    """Interrupt every running script's process group (each removes its own temporary files, as on
    Ctrl-C); kill the groups still there after ``grace`` seconds."""
    procs = list(_CHILDREN)
    for proc in procs:
        _signal_group(proc, signal.SIGINT)
    end = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
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
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
            return proc.returncode, True
        except BaseException:  # Ctrl-C: do not leave the simulator running
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            _CHILDREN.discard(proc)


def check_results(run: SimRun, net, n: int) -> None:
    """A results file that does not describe this network and these samples is a failure, not data."""
    res = run.results
    assert res is not None
    want = [p.name for p in net.populations]
    problems = [f"it has no {key!r}" for key in ("predictions", "output_steps", "population_names")
                if key not in res]
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


# --- small helpers ---------------------------------------------------------------------------------------

def tail(text: str, limit: int = TAIL_CHARS) -> str:
    text = text.rstrip()
    return text if len(text) <= limit else "…" + text[-limit:]


def _read_tail(path: Path, limit: int = TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return tail(f.read().decode("utf-8", "replace"), limit)
    except OSError:
        return ""


def first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def safe_file(name: str) -> str:
    """A simulator name as a file name (letters, digits, - and _ only)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "sim"
