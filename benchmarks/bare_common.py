"""What the bare-network benchmarks (benchmarks/bare_<sim>.py) share: the exported script they start from."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path


def export_script(snn: Path, sim: str, folder: Path) -> Path:
    """Exports ``sim``'s script of the network file ``snn`` into ``folder`` as snn_<sim>.py (a script named
    after its simulator would shadow it)."""
    script = Path(folder) / f"snn_{sim}.py"
    env = dict(os.environ, KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "jax"))
    subprocess.run([sys.executable, "-m", "snnexport", str(snn), "--to", sim, "-o", str(script)],
                   check=True, capture_output=True, env=env)
    return script


def load_script(path: Path):
    """The exported script as a module (its main() is not run)."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
