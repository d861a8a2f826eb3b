"""What a report records about how it was made: versions, the exact command, the model's hash, the
network, the data and the settings."""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__

REPORT_FORMAT = 1
# Distributions whose versions every report records, before those of the simulators (the registry's).
DISTRIBUTIONS = ("snnexport", "numpy", "keras", "jax", "jaxlib", "h5py", "matplotlib")


def dist_version(dist: str) -> str | None:
    """The installed version of a distribution; None when it is not installed (or not named)."""
    try:
        return importlib.metadata.version(dist) if dist else None
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """Versions of Python, snnexport, numpy, keras and every simulator (None: not installed)."""
    from .. import writers
    simulators = [writers.get(name).distribution for name in writers.runnable()]
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for dist in dict.fromkeys([*DISTRIBUTIONS, *filter(None, simulators)]):
        out[dist] = dist_version(dist)
    out["snnexport"] = __version__
    return out


def run_mode(args: argparse.Namespace) -> dict[str, Any]:
    """How every simulator runs beyond the network's own settings: the delay mode and the early-decision
    rule (None, or {"margin": M or None}, as the results' meta records it; set by validate_main from
    :func:`snnexport.simulator.run.decision_rule`)."""
    return {"delay": args.delay, "early_decision": args.decision}


def context(args: argparse.Namespace, argv: list[str], net, x: np.ndarray, labels: np.ndarray, n_scripts: int,
            sims: list[str]) -> dict[str, Any]:
    """The report's record of the command, versions, model, data, network and settings (the keys after
    analyze's, in this order)."""
    prov, norm, s = net.provenance, net.normalization, net.settings
    return {
        "format": REPORT_FORMAT,
        "title": args.title or Path(args.model).name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["snnexport", "validate", *argv]),
        "argv": list(argv),
        "cwd": os.getcwd(),
        "versions": versions(),
        "model": {"file": args.model, "name": prov.model_file, "sha256": prov.model_sha256,
                  "format": prov.model_format, "producer": prov.model_producer, "keras": prov.keras_version},
        "data": {"file": args.data, "samples": int(len(x)), "samples_exported_scripts": int(n_scripts),
                 "labelled": int((labels >= 0).sum())},
        "network": {"input": {"name": net.input.name, "shape": list(net.input.shape), "encoding": net.input.encoding},
                    "output": net.output, "nodes": _nodes(net),
                    "neurons": int(sum(np.prod(p.shape) for p in net.populations))},
        "settings": {"steps": s.steps, "readout": s.readout, "delay": args.delay,
                     "early_decision": run_mode(args)["early_decision"], "clamp": s.clamp, "seed": s.seed,
                     "reset": net.neuron.reset, "threshold": net.neuron.threshold,
                     "threshold_rule": net.neuron.threshold_rule, "v_init": net.neuron.v_init,
                     "normalization": {"method": norm.method, "percentile": norm.percentile,
                                       "samples": norm.samples, "data_sha256": norm.data_sha256}},
        "simulators_requested": sims,
        "jobs": args.jobs,  # exported scripts run at once: above 1, their timings share the CPU
    }


def _nodes(net) -> list[dict[str, Any]]:
    from ..network import Gate
    nodes = []
    for node in net.nodes:
        d = {"name": node.name, "shape": list(node.shape), "neurons": int(np.prod(node.shape)),
             "scale": float(node.scale), "depth": int(node.depth)}
        if isinstance(node, Gate):
            d.update(kind="gate", source=node.source, pool=list(node.pool))
        else:
            d.update(kind="population", activation=node.activation)
        nodes.append(d)
    return nodes
