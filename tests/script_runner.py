"""Running an exported script as a user would, but proving it never imports snnexport.

The tests' one list of script writers is here (:func:`script_writers`, from the writer registry),
with why one cannot run here (:func:`skip_reason`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from snnexport import writers
from snnexport.scriptlib import runtime
from snnexport.network import Network
from snnexport.writers import get
from snnexport.writers.base import Rendered, WriteOptions


def script_writers() -> list[str]:
    """The writers whose output is a runnable script, from the writer registry (their own facts)."""
    return writers.runnable()


# writer → the simulator module its scripts import (test_script_safety's list of writers)
SIMULATORS = {name: get(name).module for name in script_writers()}


def skip_reason(writer: str) -> str | None:
    """Why ``writer``'s scripts cannot run here, naming the missing modules and how to install them, or None."""
    missing = writers.missing_modules(writer)
    if not missing:
        return None
    return f"{', '.join(missing)} not installed: the {writer} scripts cannot run ({writers.install_hint(writer)})"


def every_simulator() -> list:
    """pytest parameters, one per script writer, each skipped (naming what is missing) without its simulator."""
    params = []
    for writer in script_writers():
        reason = skip_reason(writer)
        params.append(pytest.param(writer, marks=pytest.mark.skipif(reason is not None, reason=reason or ""),
                                   id=writer))
    return params


# Blocks `import snnexport` inside the script's process: an exported script must be self-contained.
_LAUNCH = ("import sys, runpy; sys.modules['snnexport'] = None; sys.argv = sys.argv[1:]; "
           "runpy.run_path(sys.argv[0], run_name='__main__')")


def run_script(script: Path, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Runs the script in its folder; check=False returns a failed run instead of raising."""
    proc = subprocess.run([sys.executable, "-c", _LAUNCH, str(script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=script.parent)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script.name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def run_for_results(script: Path, inputs: np.ndarray, *args: str, timeout: float = 600,
                    labels: np.ndarray | None = None) -> dict:
    """Runs the script on ``inputs`` (with ``labels``: an .npz of x and y) and returns its results file's arrays."""
    out = script.parent / (script.stem + "_results.npz")
    if labels is None:
        inp = script.parent / (script.stem + "_inputs.npy")
        np.save(inp, inputs)
    else:
        inp = script.parent / (script.stem + "_inputs.npz")
        np.savez(inp, x=inputs, y=labels)
    run_script(script, "--input", str(inp), "--out", str(out), "--quiet", *args, timeout=timeout)
    return runtime.load_results(out)


def export(writer: str, net: Network, script: Path, samples: np.ndarray | None = None,
           **options: object) -> Path:
    """Writes ``writer``'s script of ``net`` to ``script`` (and its data files beside it, if any)."""
    return write_rendered(get(writer).render(net, WriteOptions(output=script, samples=samples, **options)), script)


def write_rendered(rendered: Rendered, script: Path) -> Path:
    """Writes a rendered script to ``script`` and its data files beside it."""
    script.write_bytes(rendered.main)
    for name, content in rendered.beside.items():
        (script.parent / name).write_bytes(content)
    return script


def export_and_run(writer: str, net: Network, inputs: np.ndarray, workdir: Path, steps: int) -> dict:
    """Exports ``net`` with ``writer`` into ``workdir`` and returns the results of its script on ``inputs``."""
    script = export(writer, net, workdir / f"snn_{writer}.py")  # not "nest.py": it must not shadow its simulator
    return run_for_results(script, inputs, "--steps", str(steps))
