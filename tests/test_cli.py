"""The command a user types: one clear line and a non-zero exit for bad input, no partial output files."""

import ast
import importlib
import importlib.metadata
import re
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from snnexport import writers
from snnexport.cli import main
from snnexport.network import Network

from cli_runner import ENV, assert_refused, small_network, snnexport
from conftest import BUNDLED_MODEL, BUNDLED_SAMPLES, ROOT, needs
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
    code, text, _ = run(["--to", "pynn", "--capabilities"], capsys)
    assert code == 0 and "runs with pyNN, nest" in text
    code, text, _ = run(["writers"], capsys)
    assert code == 0 and "network" in text
    for name in writers.runnable():  # a simulator missing here is named, with how to install it
        line = next(line for line in text.splitlines() if line.startswith(f"{name} "))
        assert ("not installed here" in line) == bool(writers.missing_modules(name)), line


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in requirements}


def test_writer_facts_agree_with_the_pyproject_extras():
    """One registration source: the extras install exactly what the writers say their scripts need."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    runnable = [writers.get(name) for name in writers.runnable()]
    assert {w.name for w in runnable} >= {"brian2", "pynn", "nest", "nengo"}
    assert not writers.get("network").runnable
    distribution_of = {w.module: w.distribution for w in runnable}  # the writer importing a module names it
    installed = importlib.metadata.packages_distributions()
    for w in runnable:
        assert w.module in w.requires and set(w.requires) <= set(distribution_of), w.name
        needed = {distribution_of[m].lower() for m in w.requires}
        assert needed <= _requirement_names(extras[w.extra]), (w.name, w.extra)
        assert needed <= _requirement_names(extras["all"]), w.name
        if w.module in installed:  # the installed module really comes from that distribution
            assert w.distribution.lower() in {d.lower() for d in installed[w.module]}, w.name
    # onnx: the ONNX reader; nir: the nir writer, whose output is a graph, not a script validate runs
    simulator_extras = set(extras) - {"report", "onnx", "nir", "all", "test"}
    assert simulator_extras == {w.extra for w in runnable}
    assert set().union(*(_requirement_names(extras[e]) for e in simulator_extras)) == \
        {w.distribution.lower() for w in runnable}  # an extra installs nothing no writer needs


# --- options checked up front, through the real command --------------------------------------------

@pytest.fixture(scope="module")
def network(tmp_path_factory) -> tuple[Path, Path]:
    """A small network file and 300 labelled samples for it."""
    d = small_network(tmp_path_factory.mktemp("net"), 300)
    return d / "net.snn", d / "data.npz"


BAD_OPTIONS = [
    (["--clamp", "-1"], "--clamp must be at least 0, got -1"),
    (["--clamp", "1.5"], "--clamp must be an integer (at least 0), got '1.5'"),
    (["--steps", "0"], "--steps must be from 1 to 16777215, got 0"),
    (["--steps", str(2 ** 24)], "--steps must be from 1 to 16777215"),
    (["--calibration-samples", "0"], "--calibration-samples must be at least 1, got 0"),
    (["--calibration-samples", "-1"], "--calibration-samples must be at least 1, got -1"),
    (["--percentile", "0"], "--percentile must be a number in (0, 100], got 0"),
    (["--percentile", "100.5"], "--percentile must be a number in (0, 100]"),
    (["--percentile", "nan"], "--percentile must be a number in (0, 100], got nan"),
    (["--input-scale", "0"], "--input-scale must be a finite number > 0, got 0"),
    (["--input-scale", "-1"], "--input-scale must be a finite number > 0, got -1"),
    (["--input-scale", "inf"], "--input-scale must be a finite number > 0, got inf"),
    (["--embed-limit", "nan"], "--embed-limit must be a finite number > 0, got nan"),
    (["--embed-limit", "0"], "--embed-limit must be a finite number > 0"),
    (["--reset", "sideways"], "invalid choice: 'sideways'"),
    (["--v-init", "1"], "--v-init must be a number in [0, 1), got 1"),
    (["--v-init", "-0.1"], "--v-init must be a number in [0, 1), got -0.1"),
    (["--v-init", "nan"], "--v-init must be a number in [0, 1), got nan"),
    (["--v-init", "half"], "--v-init must be a number in [0, 1), got 'half'"),
    (["--threshold-rule", "lt"], "invalid choice: 'lt'"),
]


@pytest.mark.parametrize("args, message", BAD_OPTIONS)
def test_bad_conversion_options_are_one_line_before_any_work(tmp_path, small_model, args, message):
    out = tmp_path / "net.py"
    proc = snnexport(small_model, "--to", "brian2", "-o", out, *args)
    line = assert_refused(proc, message)
    assert "converting" not in proc.stderr.decode() and not out.exists(), line


@pytest.mark.parametrize("args, message", [
    (["-n", "-1"], "-n must be at least 1, got -1"),
    (["-n", "0"], "-n must be at least 1, got 0"),
    (["--batch", "0"], "--batch must be at least 1, got 0"),
    (["--seed", "-1"], "--seed must be from 0 to 4294967295, got -1"),
    (["--steps", "-5"], "--steps must be from 1 to 16777215, got -5"),
    (["--clamp", "-2"], "--clamp must be at least 0, got -2"),
    (["--input-scale", "0"], "--input-scale must be a finite number > 0, got 0"),
    (["--decision-margin", "0"], "--decision-margin must be at least 1, got 0"),
    (["--early-decision", "--readout", "membrane"], "early decision needs a readout that counts spikes"),
])
def test_bad_simulate_options(network, tmp_path, args, message):
    net, data = network
    proc = snnexport("simulate", net, "--data", data, "--out", tmp_path / "r.npz", *args)
    assert_refused(proc, message)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args, message", [
    (["-n", "0"], "-n must be at least 1, got 0"),
    (["--batch", "-3"], "--batch must be at least 1, got -3"),
    (["--jobs", "0"], "--jobs must be at least 1, got 0"),
    (["--timeout", "0"], "--timeout must be a finite number > 0, got 0"),
    (["--timeout", "nan"], "--timeout must be a finite number > 0, got nan"),
    (["--script-n", "0"], "--script-n must be at least 1"),
    (["--sim", "nosuch"], "unknown simulator 'nosuch'; known: "),
    (["--sim", "nosuch,other"], "unknown simulators 'nosuch', 'other'; known: "),
])
def test_bad_validate_options(network, tmp_path, args, message):
    net, data = network
    proc = snnexport("validate", net, "--data", data, "--report", tmp_path / "rep", *args)
    line = assert_refused(proc, message)
    if "unknown simulator" in message:
        assert "reference" in line and "brian2" in line
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("command", ["info", "simulate", "convert", "validate"])
def test_conversion_options_with_a_network_file_are_refused_not_ignored(network, tmp_path, command):
    net, data = network
    given = ["--percentile", "99", "--reset", "zero", "--calibration", str(data)]
    extra = {"info": ["info", net], "simulate": ["simulate", net, "--data", data],
             "convert": [net, "--to", "brian2", "-o", tmp_path / "x.py"],
             "validate": ["validate", net, "--data", data, "--report", tmp_path / "rep"]}[command]
    proc = snnexport(*extra, *given)
    assert_refused(proc, f"{net} is a network file", "--calibration, --percentile, --reset", "only to a model")
    assert not list(tmp_path.iterdir())


def test_settings_still_apply_to_a_network_file_and_default_to_its_own(network, tmp_path):
    net, _ = network
    proc = snnexport("info", net, "--steps", "37", "--readout", "membrane")
    assert proc.returncode == 0 and "readout membrane, 37 steps" in proc.stdout.decode()
    out = tmp_path / "n.snn"
    assert snnexport(net, "--steps", "37", "-o", out).returncode == 0
    assert "readout count, 37 steps" in snnexport("info", out).stdout.decode()  # kept, not reset to 100
    help_text = snnexport("--help").stdout.decode()
    assert "a model only; refused with a network file" in help_text
    assert "for a network file: default the file's own" in help_text


def test_neuron_settings_apply_to_a_model_and_a_network_file(network, small_model, tmp_path):
    """--v-init and --threshold-rule set the neuron's settings, for a model (defaults 0 and "ge") and for a
    network file (default: the file's own)."""
    net, _ = network
    out, again = tmp_path / "n.snn", tmp_path / "m.snn"
    assert snnexport(net, "--v-init", "0.5", "--threshold-rule", "gt", "-o", out).returncode == 0
    loaded = Network.load(out)
    assert loaded.neuron.v_init == 0.5 and loaded.neuron.threshold_rule == "gt"
    assert snnexport(out, "--steps", "20", "-o", again).returncode == 0  # kept where no option names them
    assert Network.load(again).neuron.v_init == 0.5 and Network.load(again).neuron.threshold_rule == "gt"
    info = snnexport("info", out).stdout.decode()
    assert "fires where V > threshold" in info and "initial V 0.5 x threshold" in info
    converted = tmp_path / "c.snn"
    assert snnexport(small_model, "--v-init", "0.25", "-o", converted).returncode == 0
    assert Network.load(converted).neuron.v_init == 0.25 and Network.load(converted).neuron.threshold_rule == "ge"


def test_simulate_with_early_decision_records_and_reports_the_step(network, tmp_path):
    net, data = network
    out = tmp_path / "r.npz"
    proc = snnexport("simulate", net, "--data", data, "-n", "8", "--decision-margin", "2", "--out", out)
    assert proc.returncode == 0, proc.stderr.decode()
    assert re.search(r"early decision: at step [0-9.]+ of \d+ on average \(median \d+\); SNN operations to it "
                     r"[0-9,]+ per sample, [0-9.]+ x the ANN's [0-9,]+", proc.stdout.decode()), proc.stdout.decode()
    from snnexport.scriptlib.runtime import load_results
    r = load_results(out)
    assert r["decision_steps"].shape == (8,) and r["meta"]["early_decision"] == {"margin": 2}


def test_simulate_progress_is_prefixed_and_its_rate_leaves_out_compilation(network):
    net, data = network
    proc = snnexport("simulate", net, "--data", data, "-n", "40", "--batch", "10")
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    lines = err.strip().splitlines()
    assert all(line.startswith("snnexport: ") for line in lines), err
    progress = [line for line in lines if line.startswith("snnexport: simulated ")]
    assert len(progress) >= 2, err
    assert "compilation included" in progress[0]
    assert all(line.endswith("sample-steps/s)") for line in progress[1:]), err


@pytest.mark.parametrize("trial", range(3))
def test_ctrl_c_during_simulate_ends_with_130_and_one_line(network, tmp_path, trial):
    net, data = network
    out = tmp_path / "r.npz"
    cmd = [sys.executable, "-m", "snnexport", "simulate", str(net), "--data", str(data), "--steps", "3000",
           "--batch", "20", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    lines = []
    for line in proc.stderr:  # wait until it simulates (its compiled calls running in threads)
        lines.append(line)
        if line.startswith("snnexport: simulated "):
            break
    time.sleep(0.3 * trial)  # at different moments of the run
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    assert lines and lines[-1].startswith("snnexport: simulated "), "".join(lines) + rest
    assert proc.returncode == 130, f"exit {proc.returncode}: {''.join(lines)}{rest}"
    tail = [line for line in rest.strip().splitlines() if not line.startswith("snnexport: simulated ")]
    assert tail == ["snnexport: interrupted"], rest
    assert not list(tmp_path.iterdir())  # no results file, no temporary file


@needs("brian2")
def test_ctrl_c_during_validate_stops_its_scripts_and_leaves_no_partial_files(network, tmp_path):
    net, data = network
    rep = tmp_path / "rep"
    cmd = [sys.executable, "-m", "snnexport", "validate", str(net), "--data", str(data), "-n", "300",
           "--sim", "reference,brian2", "--report", str(rep)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "running snn_brian2.py" in line:
            break
    time.sleep(1.0)  # the script is importing Brian2 or simulating
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130, f"exit {proc.returncode}: {''.join(lines)}{rest}"
    assert rest.strip().splitlines()[-1] == "snnexport: interrupted", rest
    assert "Traceback" not in rest
    assert not (rep / "report.json").exists() and not (rep / "report.html").exists()
    assert not list(rep.rglob("_inputs*")) and not list(rep.rglob(".*.part"))


# --- model files --------------------------------------------------------------------------------------

def test_a_keras_archive_with_escaping_members_is_refused_before_keras_sees_it(tmp_path, small_model):
    good = tmp_path / "good.keras"
    keras.models.load_model(small_model).save(good)
    for bad_name in ("../escape.txt", "/etc/abs.txt", "a/../../up.txt"):
        evil = tmp_path / "evil.keras"
        with zipfile.ZipFile(good) as z, zipfile.ZipFile(evil, "w") as o:
            for name in z.namelist():
                o.writestr(name, z.read(name))
            o.writestr(bad_name, b"x")
        proc = snnexport(evil, "-o", tmp_path / "out.snn")
        line = assert_refused(proc, f"{evil}: the archive holds the member {bad_name!r}")
        assert "Warning" not in proc.stderr.decode(), line
        assert not (tmp_path / "out.snn").exists() and not (tmp_path.parent / "escape.txt").exists()


def test_refusals_name_the_model_file(tmp_path):
    lam = tmp_path / "lam.h5"
    inp = keras.Input((4,))
    keras.Model(inp, keras.layers.Dense(2)(keras.layers.Lambda(lambda t: t * 2, name="dbl")(inp))).save(lam)
    assert_refused(snnexport(lam), f"{lam}: layer 'dbl' (Lambda)")
    pool_out = tmp_path / "pool.h5"
    keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3, name="c"),
                      keras.layers.MaxPooling2D(2, name="p")]).save(pool_out)
    assert_refused(snnexport(pool_out), f"{pool_out}: the model ends in max-pooling")


# --- the package's modules ----------------------------------------------------------------------------

def _package_modules() -> dict[str, Path]:
    """Every module of snnexport by dotted name (a package by its __init__.py)."""
    out = {}
    for path in sorted((ROOT / "snnexport").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules ``name`` imports anywhere, inside functions too (a lazy import still ties
    two modules together); imports only for type checkers are left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in
                   ast.unparse(node.test) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            # `from pkg import mod` imports the module; `from mod import name` the module holding the name
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
    return {m for m in found if m in modules and m != name}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of the graph as [a, b, ..., a], or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_every_module_imports_and_no_module_imports_another_that_imports_it_back():
    modules = _package_modules()
    for name in modules:
        if not name.endswith("__main__"):  # that one runs the command
            importlib.import_module(name)
    graph = {name: _imported(name, path, modules) for name, path in modules.items()}
    assert "snnexport.validate" in graph["snnexport.cli"] and "snnexport.loading" in graph["snnexport.cli"]
    assert not {m for m in graph["snnexport.validate.runner"] if m.startswith("snnexport.cli")}
    assert _cycle(graph) == [], " → ".join(_cycle(graph))
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check itself can fail
