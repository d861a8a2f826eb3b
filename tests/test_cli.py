"""The command a user types: one clear line and a non-zero exit for bad input, no partial output files."""

import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from snnexport.cli import main
from snnexport.network import Network

from conftest import BUNDLED_MODEL, BUNDLED_SAMPLES
from model_zoo import HOSTILE_NAMES, build_hostile_names, build_lenet


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code != 0
    lines = [l for l in err.strip().splitlines() if not l.startswith("snnexport: loading") and
             not l.startswith("snnexport: converting")]
    assert len(lines) == 1, err
    assert lines[0].startswith("snnexport: error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("m") / "lenet.h5"
    build_lenet().save(path)
    return path


def _bad_files(tmp: Path, good: Path) -> dict[str, Path]:
    files = {}
    files["empty .h5"] = tmp / "empty.h5"
    files["empty .h5"].write_bytes(b"")
    files["truncated HDF5"] = tmp / "trunc.h5"
    files["truncated HDF5"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    files["HDF5 without a model"] = tmp / "data.h5"
    with h5py.File(files["HDF5 without a model"], "w") as f:
        f["x"] = np.zeros(3)
    files["plain text named .h5"] = tmp / "text.h5"
    files["plain text named .h5"].write_text("this is not a model\n")
    files["corrupt .keras"] = tmp / "bad.keras"
    files["corrupt .keras"].write_bytes(b"PK\x03\x04 garbage")
    files["weights only"] = tmp / "w.weights.h5"
    build_lenet().save_weights(files["weights only"])
    nan = build_lenet()
    w = nan.layers[-1].get_weights()
    w[0][0, 0] = np.nan
    nan.layers[-1].set_weights(w)
    files["NaN weights"] = tmp / "nan.h5"
    nan.save(files["NaN weights"])
    inp = keras.Input((4,))
    lam = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2)(keras.layers.Dense(3)(inp)))
    files["Lambda layer"] = tmp / "lambda.keras"
    lam.save(files["Lambda layer"])
    return files


def test_bad_models_give_one_line_and_no_output(tmp_path, small_model, capsys):
    files = _bad_files(tmp_path, small_model)
    for what, path in files.items():
        out = tmp_path / "out.snn"
        code, _, err = run([path, "-o", out], capsys)
        assert_one_line_error(code, err)
        assert not out.exists(), what
        assert not list(tmp_path.glob(".out.snn.*")), what  # no temporary leftovers


@pytest.mark.parametrize("data, needle", [
    (np.zeros((5, 15, 16, 1), np.float32), "shape"),  # the zoo LeNet takes 16 x 16 x 1
    (np.full((5, 16, 16, 1), np.nan, np.float32), "nan"),
    (np.zeros((0, 16, 16, 1), np.float32), "empty"),
    (np.array(["a", "b"]), "dtype"),
])
def test_bad_calibration_data(tmp_path, small_model, capsys, data, needle):
    calib = tmp_path / "calib.npy"
    np.save(calib, data)
    out = tmp_path / "net.snn"
    code, _, err = run([small_model, "--calibration", calib, "-o", out], capsys)
    assert_one_line_error(code, err, needle)
    assert not out.exists()


def test_unknown_writer_lists_the_available_ones(small_model, capsys):
    code, _, err = run([small_model, "--to", "loihi"], capsys)
    assert_one_line_error(code, err, "unknown writer 'loihi'", "network")


def test_missing_and_wrong_files(tmp_path, capsys):
    code, _, err = run([tmp_path / "nope.h5"], capsys)
    assert_one_line_error(code, err, "no such file")
    code, _, err = run([tmp_path], capsys)
    assert_one_line_error(code, err, "directory")


def test_bundled_model_converts_and_round_trips(tmp_path, capsys):
    out = tmp_path / "net.snn"
    code, _, err = run([BUNDLED_MODEL, "--calibration", BUNDLED_SAMPLES, "-o", out], capsys)
    assert code == 0, err
    net = Network.load(out)
    assert [n.name for n in net.nodes] == ["conv1", "pool1", "conv2", "pool2", "fc1", "output"]
    assert net.normalization.method == "percentile" and net.normalization.samples == 300
    # deterministic: the same command gives the same bytes
    again = tmp_path / "again.snn"
    assert run([BUNDLED_MODEL, "--calibration", BUNDLED_SAMPLES, "-o", again], capsys)[0] == 0
    assert again.read_bytes() == out.read_bytes()
    code, text, _ = run(["info", out], capsys)
    assert code == 0
    assert "neurons: 11374" in text and "ANN operations per frame (paper Eq. 9): 2214974" in text
    assert "'pool1'" in text


def test_network_to_stdout_through_the_real_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "snnexport", str(BUNDLED_MODEL), "--to", "network"],
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    assert "no calibration data" in proc.stderr.decode()
    path = tmp_path / "stdout.snn"
    path.write_bytes(proc.stdout)
    assert Network.load(path).normalization.method == "model-bound"


def test_hostile_names_survive_the_command(tmp_path, capsys):
    model = tmp_path / "hostile.keras"
    build_hostile_names().save(model)
    out = tmp_path / "h.snn"
    code, _, err = run([model, "-o", out], capsys)
    assert code == 0, err
    names = {n.name for n in Network.load(out).nodes}
    assert names & set(HOSTILE_NAMES), names


def test_capabilities_and_writers(capsys):
    code, text, _ = run(["--to", "network", "--capabilities"], capsys)
    assert code == 0 and "maxpool_gate" in text
    code, text, _ = run(["writers"], capsys)
    assert code == 0 and "network" in text
