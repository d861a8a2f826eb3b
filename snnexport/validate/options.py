"""The options of ``snnexport validate``."""

from __future__ import annotations

import argparse

from ..errors import SnnexportError
from ..options import Parser, add_conversion_options, add_decision_options, int_range, number_range
from .mpi import MAX_PROCESSES


def default_simulators() -> list[str]:
    """The reference simulator, then every writer whose script runs (the registry's order)."""
    from .. import writers
    return ["reference", *writers.runnable()]


def parser() -> argparse.ArgumentParser:
    sims = ",".join(default_simulators())
    p = Parser(
        prog="snnexport validate",
        description="Run the converted network on the reference simulator and on every exported "
                    "simulator script, and write a report comparing their spikes with the ANN and "
                    "with each other.")
    p.add_argument("model", help="Keras (.h5/.keras) or ONNX (.onnx) model, or network file (.snn), or NIR "
                                 "graph (.nir)")
    p.add_argument("--data", required=True, help="evaluation samples (.npy, or .npz with x/y or x_test/y_test)")
    p.add_argument("--sim", default=sims, help=f"comma-separated simulators (default: {sims})")
    p.add_argument("-n", type=int_range("-n", 1), default=None, metavar="N",
                   help="use the first N samples (default: all; only these are read)")
    p.add_argument("--script-n", default=None, metavar="M",
                   help="samples for the exported simulators (default: N; the reference runs N): a number, "
                        "and/or SIM=COUNT pairs, e.g. 1000,brian2=200")
    p.add_argument("--batch", type=int_range("--batch", 1), default=100,
                   help="samples the reference simulates at once (default 100)")
    p.add_argument("--delay", choices=("step", "zero"), default="step",
                   help="step: a spike reaches its targets one step later (default); zero: in the same step, the "
                        "paper's zero-latency network, on the reference and in every script (docs/semantics.md)")
    add_decision_options(p)  # the reference and every script decide the same way; ops are counted to it
    p.add_argument("--jobs", type=int_range("--jobs", 1), default=1, metavar="J",
                   help="exported scripts run at once (default 1; their timings then share the CPU)")
    p.add_argument("--mpi", type=int_range("--mpi", 1, MAX_PROCESSES), default=None, metavar="N",
                   help="run the scripts of NEST-based simulators (nest, pynn) under mpirun -np N (needs an "
                        "MPI-enabled NEST: scripts/install-nest-mpi.sh); the others run as usual")
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


def parse_sims(text: str) -> list[str]:
    """``--sim``: the names in order, each once; a name unknown here among known ones stays (it becomes
    a column that says so), but not a list of unknown names only."""
    from .runner import known_simulators
    sims = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    if not sims:
        raise SnnexportError("--sim names no simulator")
    known = known_simulators()
    if not set(sims) & set(known):
        raise SnnexportError(f"--sim: unknown simulator{'s' if len(sims) > 1 else ''} "
                             f"{', '.join(map(repr, sims))}; known: {', '.join(known)}")
    return sims


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
