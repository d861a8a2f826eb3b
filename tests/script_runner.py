"""Running an exported script as a user would, but proving it never imports snnexport."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import needs
from snnexport.scriptlib import runtime
from snnexport.network import Network
from snnexport.writers import get, runnable
from snnexport.writers.base import WriteOptions

# The script writers and the simulator module each one's scripts import (the writers' own facts).
SIMULATORS = {name: get(name).module for name in runnable()}


def every_simulator() -> list:
    """pytest parameters, one per script writer, each skipped (naming what is missing) without its simulator."""
    return [pytest.param(writer, marks=needs(module), id=writer) for writer, module in SIMULATORS.items()]

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


def run_for_results(script: Path, inputs: np.ndarray, *args: str, timeout: float = 600) -> dict:
    """Runs the script on ``inputs`` and returns its results file's arrays."""
    inp = script.parent / (script.stem + "_inputs.npy")
    out = script.parent / (script.stem + "_results.npz")
    np.save(inp, inputs)
    run_script(script, "--input", str(inp), "--out", str(out), "--quiet", *args, timeout=timeout)
    return runtime.load_results(out)


def export_and_run(writer: str, net: Network, inputs: np.ndarray, workdir: Path, steps: int) -> dict:
    """Exports ``net`` with ``writer`` into ``workdir`` and returns the results of its script on ``inputs``."""
    script = workdir / f"snn_{writer}.py"  # not "nest.py": a script must not shadow its simulator
    rendered = get(writer).render(net, WriteOptions(output=script))
    script.write_bytes(rendered.main)
    for name, content in rendered.beside.items():
        (workdir / name).write_bytes(content)
    return run_for_results(script, inputs, "--steps", str(steps))
