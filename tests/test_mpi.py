"""The exported PyNEST and PyNN scripts under MPI (issue 15): the bundled LeNet run with ``mpirun -np 1``,
``-np 2`` and ``-np 2`` with two NEST threads on each rank gives the same results file in every array,
and agrees with the reference simulator. Needs an MPI-enabled NEST (CI installs ../shared/wheels'
build; users build one with scripts/install-nest-mpi.sh) and ``mpirun``; skipped, saying which is
missing, without them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends import Reference, assert_agree, total_spikes
from script_runner import _LAUNCH, skip_reason, write_rendered
from snnexport.scriptlib import runtime
from snnexport.validate.mpi import mpi_missing, mpirun_command
from snnexport.writers import get
from snnexport.writers.base import WriteOptions

STEPS = 30  # enough for every LeNet layer to fire; small, as CI runs six MPI launches
RUNS = {"np1": (1, 1), "np2": (2, 1), "np2-threads2": (2, 2)}  # name → (processes, NEST threads per process)
TIMINGS = ("build_seconds", "run_seconds")  # the only meta fields that may differ between runs


def _skip_reason(writer: str) -> str | None:
    return skip_reason(writer) or mpi_missing()


@pytest.fixture(scope="module")
def reference(bundled) -> dict[str, np.ndarray]:
    _, net, x = bundled
    return Reference().run(net, x, steps=STEPS)


def _run(script: Path, inputs: Path, name: str, processes: int, threads: int) -> dict[str, np.ndarray]:
    out = script.parent / f"results_{name}.npz"
    cmd = mpirun_command(processes, [sys.executable, "-c", _LAUNCH, script.name, "--input", str(inputs),
                                     "--out", out.name, "--quiet", "--steps", str(STEPS), "--threads", str(threads)])
    proc = subprocess.run(cmd, cwd=script.parent, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                                  f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    # rank 0 alone prints (and writes): one summary, not one per rank
    assert proc.stdout.count("simulation ") == 1 and proc.stdout.count("predicted classes") == 1, proc.stdout
    return runtime.load_results(out)


@pytest.mark.mpi
@pytest.mark.parametrize("writer", [pytest.param(w, marks=pytest.mark.skipif(_skip_reason(w) is not None,
                                                                            reason=_skip_reason(w) or ""))
                                    for w in ("nest", "pynn")])
def test_mpi_ranks_and_threads_give_identical_results(writer, bundled, reference, tmp_path):
    _, net, x = bundled
    rendered = get(writer).render(net, WriteOptions(output=Path(f"snn_{writer}.py")))
    script = write_rendered(rendered, tmp_path / f"snn_{writer}.py")
    inputs = tmp_path / "inputs.npy"
    np.save(inputs, x)
    results = {name: _run(script, inputs, name, *run) for name, run in RUNS.items()}
    one = results["np1"]
    assert total_spikes(one) > 0
    assert_agree(one, reference)
    for name, res in results.items():
        assert sorted(res) == sorted(one), name
        for key in one:
            if key == "meta":
                meta, base = dict(res[key]), dict(one[key])
                for timing in TIMINGS:
                    meta.pop(timing, None), base.pop(timing, None)
                assert json.dumps(meta, sort_keys=True) == json.dumps(base, sort_keys=True), name
            else:
                assert res[key].dtype == one[key].dtype and np.array_equal(res[key], one[key]), (name, key)


@pytest.mark.parametrize("options, message", [
    (["--mpi", "0"], "--mpi must be from 1 to"),
    (["--mpi", "99999"], "--mpi must be from 1 to"),
    (["--mpi", "2", "--sim", "reference"], "--mpi: none of the simulators asked for runs under MPI"),
])
def test_validate_mpi_refuses_in_one_line(options, message, bundled, tmp_path, capsys):
    from conftest import BUNDLED_SAMPLES
    from snnexport.cli import main
    path, _, _ = bundled
    assert main(["validate", str(path), "--data", str(BUNDLED_SAMPLES), "--report", str(tmp_path / "r"),
                 *options]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_mpirun_command_flags():
    cmd = mpirun_command(3, ["python", "net.py"], mpirun="/opt/mpi/bin/mpirun")
    assert cmd[:3] == ["/opt/mpi/bin/mpirun", "-np", "3"] and cmd[-2:] == ["python", "net.py"]
    assert "--oversubscribe" in cmd and ("--allow-run-as-root" in cmd) == (os.geteuid() == 0)


@pytest.mark.parametrize("writer", [pytest.param(w, marks=pytest.mark.skipif(skip_reason(w) is not None,
                                                                            reason=skip_reason(w) or ""))
                                    for w in ("nest", "pynn")])
def test_a_launch_the_simulator_does_not_see_stops_in_one_line(writer, bundled, tmp_path):
    """Started as 2 processes of an MPI launcher (PMI_SIZE, as MPICH's and srun's set it) while NEST sees
    one: two whole simulations would write one results file. Needs no MPI: a NEST that has MPI but was
    not started by that launcher sees one process too."""
    _, net, _ = bundled
    script = write_rendered(get(writer).render(net, WriteOptions(output=Path(f"snn_{writer}.py"))),
                            tmp_path / f"snn_{writer}.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMI"))}
    proc = subprocess.run([sys.executable, "-c", _LAUNCH, script.name, "-n", "1", "--steps", "5", "--out", "r.npz"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, env=dict(env, PMI_SIZE="2"),
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "started as 2 MPI processes, but the simulator sees 1" in lines[0], proc.stderr
    assert not (tmp_path / "r.npz").exists() and proc.stdout == ""


@pytest.mark.skipif(skip_reason("nest") is not None, reason=skip_reason("nest") or "")
def test_the_memory_estimate_counts_what_nest_builds(bundled, tmp_path, capsys):
    """The counts behind the estimate (snnexport info, the scripts' build line) are NEST's own connections:
    the synapses (with one pacemaker synapse per neuron), plus what records: a spike_recorder connection
    per neuron and a multimeter connection per output neuron."""
    from snnexport.cli import main
    from snnexport.scriptlib.nest_memory import nest_memory
    from snnexport.writers.nest_common import network_counts
    path, net, _ = bundled
    counts = network_counts(net)
    assert main(["info", str(path)]) == 0
    one = nest_memory(counts["neurons"], counts["synapses"], counts["largest_projection"]) / 1e9
    assert f"memory per MPI process (estimate, one sample at a time): {one:,.2f} GB on 1, " in capsys.readouterr().out
    script = write_rendered(get("nest").render(net, WriteOptions(output=Path("snn_nest.py"))), tmp_path / "snn_nest.py")
    code = ("import runpy, sys; sys.argv = [sys.argv[1], '-n', '1', '--steps', '3', '--quiet']; "
            "runpy.run_path(sys.argv[0], run_name='__main__'); import nest; print('connections', nest.num_connections)")
    proc = subprocess.run([sys.executable, "-c", code, script.name], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outputs = int(np.prod(net.node(net.output).shape))
    assert f"connections {counts['synapses'] + counts['neurons'] + outputs}\n" in proc.stdout, proc.stdout[-500:]


@pytest.mark.mpi
@pytest.mark.skipif(_skip_reason("nest") is not None, reason=_skip_reason("nest") or "")
def test_validate_runs_nest_under_mpirun(bundled, reference, tmp_path, capsys):
    """``snnexport validate --mpi 2``: the PyNEST script runs under mpirun -np 2 and its results agree
    with the reference's; the reference runs in this process as always."""
    from conftest import BUNDLED_SAMPLES
    from snnexport.cli import main
    path, _, x = bundled
    data = tmp_path / "x.npz"
    with np.load(BUNDLED_SAMPLES) as z:
        np.savez(data, x=z["x"][:len(x)], y=z["y"][:len(x)])
    report = tmp_path / "rep"
    assert main(["validate", str(path), "--data", str(data), "--sim", "reference,nest", "--steps", str(STEPS),
                 "--report", str(report), "--keep-results", "--mpi", "2"]) == 0
    err = capsys.readouterr().err
    assert "mpirun -np 2" in err and "[2/2] nest: ok" in err, err
    ours = runtime.load_results(report / "results" / "nest.npz")
    assert total_spikes(ours) > 0
    assert_agree(ours, runtime.load_results(report / "results" / "reference.npz"))
    assert_agree(ours, reference)
