"""Exported scripts need only their simulator: each runs in a fresh venv holding numpy and that
simulator's extra (from pyproject.toml), without snnexport, Keras or JAX, and matches the reference."""

import subprocess
import sys
import tomllib
import venv

import numpy as np
import pytest

from conftest import BUNDLED_MODEL, BUNDLED_SAMPLES, ROOT
from snnexport import writers
from snnexport.scriptlib import runtime
from snnexport.cli import main
from snnexport.compare import identical_fraction
from snnexport.network import Network
from snnexport.simulator import simulate

# writer → the pyproject extra whose packages its script needs (the writers' own facts)
EXTRAS = {name: writers.get(name).extra for name in writers.runnable()}


def _requirements(extra: str) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    numpy_pin = [d for d in project["dependencies"] if d.startswith("numpy")]
    return numpy_pin + project["optional-dependencies"][extra]


@pytest.fixture(scope="module")
def venvs(tmp_path_factory):
    made = {}

    def get(extra: str):
        if extra not in made:
            path = tmp_path_factory.mktemp(f"venv-{extra}")
            venv.create(path, with_pip=True)
            python = path / "bin" / "python"
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            *_requirements(extra)], check=True, capture_output=True, timeout=900)
            made[extra] = python
        return made[extra]

    return get


@pytest.mark.parametrize("writer", list(EXTRAS))
def test_script_runs_with_only_its_simulator(writer, venvs, tmp_path):
    net_file, script = tmp_path / "net.snn", tmp_path / f"net_{writer}.py"
    assert main([str(BUNDLED_MODEL), "--calibration", str(BUNDLED_SAMPLES), "-o", str(net_file)]) == 0
    assert main([str(net_file), "--to", writer, "--samples", str(BUNDLED_SAMPLES), "-o", str(script)]) == 0
    python = venvs(EXTRAS[writer])
    probe = subprocess.run([str(python), "-c", "import importlib.util as u; print([m for m in "
                            "('snnexport', 'keras', 'jax') if u.find_spec(m)])"], capture_output=True, text=True,
                           cwd=tmp_path)
    assert probe.stdout.strip() == "[]", probe.stdout  # really nothing but the simulator
    out = tmp_path / "results.npz"
    proc = subprocess.run([str(python), str(script), "-n", "3", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = runtime.load_results(out)
    with np.load(BUNDLED_SAMPLES) as d:
        x, y = d["x"][:3], d["y"][:3]
    ref = simulate(Network.load(net_file), x, y)
    assert np.array_equal(ours["predictions"], ref["predictions"])
    assert identical_fraction(ours, ref)["all"] >= 0.999
