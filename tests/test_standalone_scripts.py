"""Exported scripts need only their simulator: each runs in a fresh venv holding numpy and that
simulator's extra (from pyproject.toml), without snnexport, Keras or JAX, and matches the reference."""

import subprocess
import sys
import tomllib
import venv

import numpy as np
import pytest

from backends import Reference, assert_agree
from conftest import BUNDLED_SAMPLES, ROOT, ZOO_SAMPLES
from script_runner import every_simulator
from snnexport import writers
from snnexport.scriptlib import runtime
from snnexport.cli import main


def _requirements(extra: str) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    numpy_pin = [d for d in project["dependencies"] if d.startswith("numpy")]
    return numpy_pin + project["optional-dependencies"][extra]


@pytest.fixture(scope="module")
def venvs(tmp_path_factory):
    made = {}

    def make(extra: str):
        if extra not in made:
            path = tmp_path_factory.mktemp(f"venv-{extra}")
            venv.create(path)  # without pip: this process's pip installs into it (--python), seconds sooner
            python = path / "bin" / "python"
            subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                            "--disable-pip-version-check", *_requirements(extra)], check=True, capture_output=True,
                           timeout=900)
            made[extra] = python
        return made[extra]

    return make


@pytest.mark.parametrize("writer", every_simulator())
def test_script_runs_with_only_its_simulator(writer, venvs, bundled, tmp_path):
    net_file, net, x = bundled
    script = tmp_path / f"net_{writer}.py"
    assert main([str(net_file), "--to", writer, "--samples", str(BUNDLED_SAMPLES), "-o", str(script)]) == 0
    python = venvs(writers.get(writer).extra)  # the pyproject extra its scripts need
    probe = subprocess.run([str(python), "-c", "import importlib.util as u; print([m for m in "
                            "('snnexport', 'keras', 'jax') if u.find_spec(m)])"], capture_output=True, text=True,
                           cwd=tmp_path)
    assert probe.stdout.strip() == "[]", probe.stdout  # really nothing but the simulator
    out = tmp_path / "results.npz"
    proc = subprocess.run([str(python), str(script), "-n", str(ZOO_SAMPLES), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = runtime.load_results(out)
    ref = Reference().run(net, x, steps=net.settings.steps)  # the script's default steps
    np.testing.assert_array_equal(ours["predictions"], ref["predictions"])
    assert_agree(ours, ref, per_step=False)
