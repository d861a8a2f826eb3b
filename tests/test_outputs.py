"""Output files: never an input, never a directory or a missing folder, devices and pipes written as
streams, regular files replaced atomically in the mode open() would give. Through the real command."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from cli_runner import assert_refused, small_network, snapshot, snnexport
from snnexport.scriptlib import outputs, runtime
from snnexport.network import Network


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with a small model, labelled data for it, its network file and a few samples."""
    d = small_network(tmp_path_factory.mktemp("outputs"), 12)
    np.save(d / "samples.npy", np.load(d / "data.npz")["x"][:4])
    return d


def _unchanged(folder: Path, run) -> subprocess.CompletedProcess:
    before = snapshot(folder)
    proc = run()
    assert snapshot(folder) == before  # nothing created, replaced or re-moded
    return proc


@pytest.mark.parametrize("args, needles", [
    (["model.h5", "-o", "model.h5"], ["-o model.h5", "input file"]),
    (["model.h5", "--calibration", "data.npz", "-o", "data.npz"], ["-o data.npz", "input file"]),
    (["model.h5", "--samples", "samples.npy", "--to", "brian2", "-o", "samples.npy"], ["input file"]),
    (["net.snn", "--to", "nest", "-o", "net.snn"], ["-o net.snn", "input file"]),
    (["net.snn", "-o", "./link-to-net.snn"], ["input file net.snn"]),  # another name, same file
    (["net.snn", "-o", "."], ["is a directory"]),
    (["net.snn", "-o", "newdir/"], ["is a directory"]),
    (["net.snn", "-o", "nodir/net.snn"], ["folder nodir does not exist"]),
    (["simulate", "net.snn", "--data", "data.npz", "--out", "net.snn"], ["--out net.snn", "input file"]),
    (["simulate", "net.snn", "--data", "data.npz", "--out", "data.npz"], ["--out data.npz", "input file"]),
    (["simulate", "net.snn", "--data", "data.npz", "--out", "nodir/r.npz"], ["--out", "nodir does not exist"]),
    (["simulate", "net.snn", "--data", "data.npz", "--out", "."], ["is a directory"]),
    (["validate", "net.snn", "--data", "data.npz", "--report", "data.npz"], ["--report data.npz", "not a directory"]),
    (["validate", "net.snn", "--data", "rep/results/d.npz", "--report", "rep"], ["rep/results/d.npz", "results"]),
])
def test_an_output_that_would_destroy_an_input_or_cannot_exist_is_refused_first(work, args, needles):
    link = work / "link-to-net.snn"
    if not link.exists():
        link.symlink_to("net.snn")
    (work / "rep" / "results").mkdir(parents=True, exist_ok=True)
    if not (work / "rep" / "results" / "d.npz").exists():
        (work / "rep" / "results" / "d.npz").write_bytes((work / "data.npz").read_bytes())
    proc = _unchanged(work, lambda: snnexport(*args, cwd=work))
    line = assert_refused(proc, *needles)
    # refused before any work: no conversion, no loading, no simulation
    assert not any(s in proc.stderr.decode() for s in ("converting", "simulating", "loading")), line


@pytest.mark.parametrize("writer, name", [("brian2", "brian2.py"), ("nest", "nest.py"), ("nengo", "nengo.py"),
                                          ("pynn", "pyNN.py"), ("pynn", "nest.py"), ("brian2", "numpy.py")])
def test_a_script_named_like_a_module_it_imports_is_refused(work, writer, name):
    proc = _unchanged(work, lambda: snnexport("net.snn", "--to", writer, "-o", name, cwd=work))
    assert_refused(proc, f"-o {name}", "shadow", f"'{Path(name).stem}'")


def test_a_script_may_carry_a_name_its_simulator_does_not_import(work, tmp_path):
    proc = snnexport(work / "net.snn", "--to", "pynn", "-o", tmp_path / "pynn.py")  # pyNN is another module
    assert proc.returncode == 0, proc.stderr.decode()
    assert (tmp_path / "pynn.py").is_file()


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_outputs_get_the_mode_of_the_umask(work, tmp_path, mask, mode):
    out = tmp_path / "net.py"
    proc = snnexport(work / "net.snn", "--to", "brian2", "--embed-limit", "0.0001", "-o", out, umask=mask)
    assert proc.returncode == 0, proc.stderr.decode()
    assert (tmp_path / "net.npz").is_file()  # the weights went beside the script: same rule for both
    for f in (out, tmp_path / "net.npz"):
        assert stat.S_IMODE(f.stat().st_mode) == mode, (f, oct(f.stat().st_mode))
    results = tmp_path / "r.npz"
    proc = snnexport("simulate", work / "net.snn", "--data", work / "data.npz", "-n", "2", "--out", results,
                     umask=mask)
    assert proc.returncode == 0, proc.stderr.decode()
    assert stat.S_IMODE(results.stat().st_mode) == mode
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_a_replaced_output_keeps_its_mode_and_a_symlink_keeps_pointing(work, tmp_path):
    target = tmp_path / "real.snn"
    target.write_bytes(b"old")
    target.chmod(0o640)
    link = tmp_path / "link.snn"
    link.symlink_to(target.name)
    proc = snnexport(work / "net.snn", "-o", link)
    assert proc.returncode == 0, proc.stderr.decode()
    assert link.is_symlink() and os.readlink(link) == target.name
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert Network.load(target).output == Network.load(work / "net.snn").output


def test_a_failed_run_leaves_an_existing_output_as_it_was(work, tmp_path):
    out = tmp_path / "out.snn"
    out.write_bytes(b"keep me")
    bad = tmp_path / "bad.npy"
    np.save(bad, np.full((3, 16, 16, 1), np.nan, np.float32))
    proc = _unchanged(tmp_path, lambda: snnexport(work / "model.h5", "--calibration", bad, "-o", out))
    assert_refused(proc, "nan")


def _device(tmp_path: Path, name: str, minor: int) -> Path:
    """A character device node like /dev/null (minor 3) or /dev/full (7), in a test folder: the real
    ones must never be at risk of being replaced by a regular file, even by a broken build."""
    path = tmp_path / name
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
        os.close(os.open(path, os.O_WRONLY))
    except PermissionError:
        pytest.skip("creating device nodes needs root (CAP_MKNOD) on a filesystem mounted without nodev")
    return path


def test_devices_are_written_as_streams(work, tmp_path):
    null = _device(tmp_path, "null", 3)
    full = _device(tmp_path, "full", 7)
    for args in ([work / "net.snn", "-o", null], [work / "net.snn", "--to", "brian2", "-o", null],
                 ["simulate", work / "net.snn", "--data", work / "data.npz", "-n", "2", "--out", null]):
        proc = snnexport(*args)
        assert proc.returncode == 0, proc.stderr.decode()
        assert stat.S_ISCHR(null.lstat().st_mode)  # still the device, not a regular file
    for args in ([work / "net.snn", "-o", full],
                 ["simulate", work / "net.snn", "--data", work / "data.npz", "-n", "2", "--out", full]):
        proc = snnexport(*args)
        assert_refused(proc, str(full), "No space left on device")
        assert stat.S_ISCHR(full.lstat().st_mode)


def test_standard_output_on_a_full_device_is_one_line(work, tmp_path):
    full = _device(tmp_path, "full", 7)
    for args in ([work / "net.snn", "--to", "brian2"], [work / "net.snn", "--to", "network"],
                 ["info", work / "net.snn"], ["writers"],
                 ["simulate", work / "net.snn", "--data", work / "data.npz", "-n", "2"]):
        with open(full, "wb") as stdout:
            proc = snnexport(*args, stdout=stdout)
        assert_refused(proc, "cannot write to standard output", "No space left on device")


def test_a_symlink_to_our_own_stdout_and_a_fifo_stay_what_they_are(work, tmp_path):
    link = tmp_path / "stdout.snn"
    link.symlink_to("/proc/self/fd/1")
    proc = snnexport(work / "net.snn", "-o", link)  # stdout is a pipe here
    assert proc.returncode == 0, proc.stderr.decode()
    assert link.is_symlink()
    (tmp_path / "piped.snn").write_bytes(proc.stdout)
    assert Network.load(tmp_path / "piped.snn").output == Network.load(work / "net.snn").output

    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    got = {}
    reader = threading.Thread(target=lambda: got.update(data=fifo.read_bytes()))
    reader.start()
    proc = snnexport("simulate", work / "net.snn", "--data", work / "data.npz", "-n", "3", "--out", fifo)
    reader.join(60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    (tmp_path / "r.npz").write_bytes(got["data"])
    assert runtime.load_results(tmp_path / "r.npz")["predictions"].shape == (3,)


# --- the functions themselves (exported scripts embed them) ----------------------------------------

def test_write_outputs_is_all_or_none(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes(b"old a")

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        outputs.write_outputs({a: lambda f: f.write(b"new a"), b: boom})
    assert a.read_bytes() == b"old a" and not b.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # temporary files removed
    with pytest.raises(ValueError, match="is a directory"):
        outputs.write_output(tmp_path, lambda f: f.write(b"x"))


def test_check_output_path_compares_files_not_names(tmp_path):
    src = tmp_path / "in.npz"
    src.write_bytes(b"data")
    os.link(src, tmp_path / "hard.npz")
    with pytest.raises(ValueError, match="is the input file"):
        outputs.check_output_path(tmp_path / "hard.npz", [src], "--out")
    outputs.check_output_path(tmp_path / "new.npz", [src, tmp_path / "missing.npz", None], "--out")
    with pytest.raises(ValueError, match="^--out .*folder .*nodir does not exist$"):
        outputs.check_output_path(tmp_path / "nodir" / "r.npz", [], "--out")
