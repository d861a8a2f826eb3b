"""Exported scripts are data-safe and check their own command line.

* **Injection.** Every string and number field of a real network's ``network.json`` gets injection
  payloads (line breaks of every kind followed by code that would create a file named CANARY, quotes
  that would close a string, template syntax, extreme numbers). Each mutant is rendered by every script
  writer twice: in-process from a Network object built directly (so the writers themselves are tested,
  whatever a schema check on load refuses) and through the CLI from a ``.snn`` file. Every script must
  compile, hold no line separator but ``\\n``, and show the payload's code only inside string literals
  or comments. A deterministic subset of mutants runs on the real simulators, and ``snnexport
  validate`` on an evil file: no CANARY may appear.
* **Arguments.** Every exported script refuses a bad option, input or output with one line on stderr
  and a non-zero exit, before it builds anything; stdout on /dev/full or a closed pipe and Ctrl-C end it
  with one line (or none for the pipe), never a traceback or a results file.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import tokenize
import zipfile
from unittest import mock
from pathlib import Path

import numpy as np
import pytest

import model_zoo
from conftest import BUNDLED_MODEL, BUNDLED_SAMPLES, needs
from script_runner import SIMULATORS, every_simulator, run_script
from snnexport import cli, network
from snnexport.errors import SnnexportError
from snnexport.network import Network
from snnexport.writers import get
from snnexport.writers.base import WriteOptions
from snnexport.writers.script import Code, Literal, _environment, py

WRITERS = list(SIMULATORS)
MARK = "canary_hit"  # every code payload assigns it: as a name outside a string it would be injected code
_CODE = f"{MARK} = open('CANARY', 'w')"
PAYLOADS: list[object] = [
    f"0\n{_CODE}",  # given to every field; the others rotate over the fields
    f"0\r{MARK} = __import__('os').system('touch CANARY')",
    f"0\r\n{_CODE}",
    f"0\u2028{_CODE}",
    f"0\u2029{_CODE}",
    f"0\x85{_CODE}",
    f"0\x0b{_CODE}",
    f"0\x0c{_CODE}",
    f"0\x1c{_CODE}",
    f"0\x00{_CODE}",
    f'"""\n{MARK} = open("CANARY", "w")\n"""',
    f"'''\n{_CODE}\n'''",
    f"0\\\n{_CODE}",  # a line continuation if written raw
    "\\",
    f"x'); {_CODE}; ('",
    f'x"); {MARK} = open("CANARY", "w"); ("',
    f"0 # \n{_CODE}",
    f"{{{{ 7*7 }}}}\n{_CODE}",
    f"{{% raw %}}\n{_CODE}",
    "{{ 7*7 }}",
    1e308, -1e308, float("nan"), float("inf"), 2 ** 70, -1, 0, True, None,
]
# Line separators other than "\n": Python's tokenizer ends a line at "\r"; str.splitlines() and editors at all.
OTHER_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
JSON_ONLY = {"type", "op", "format"}  # structure of the file, no field of the Network object
TRACEBACK = "Traceback (most recent call last)"


# --- the network and its mutants ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The zoo's LeNet (conv, max-pool gates, dense), converted by the CLI with calibration data."""
    folder = tmp_path_factory.mktemp("safety_base")
    model = model_zoo.build_lenet()
    model.save(folder / "lenet.keras")
    np.save(folder / "x.npy", model_zoo.sample_input(model, 20))
    np.save(folder / "two.npy", model_zoo.sample_input(model, 2, seed=3))
    snn = folder / "lenet.snn"
    assert cli.main([str(folder / "lenet.keras"), "--calibration", str(folder / "x.npy"), "-o", str(snn)]) == 0
    return snn


def network_json(snn: Path) -> dict:
    with zipfile.ZipFile(snn) as z:
        return json.loads(z.read("network.json"))


def leaves(doc: object, path: tuple = ()) -> list[tuple]:
    """JSON paths of every scalar (string, number, bool, null) of network.json, array references left out."""
    if isinstance(doc, dict):
        if set(doc) == {"array"}:
            return []
        return [p for k, v in doc.items() for p in leaves(v, path + (k,))]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in leaves(v, path + (i,))]
    return [path]


def mutants(doc: dict) -> list[tuple[tuple, object]]:
    """(path, payload): the first payload for every field, and two more per field, rotating over the rest."""
    rest = PAYLOADS[1:]
    out = []
    for i, path in enumerate(leaves(doc)):
        out.append((path, PAYLOADS[0]))
        out += [(path, rest[(2 * i) % len(rest)]), (path, rest[(2 * i + 1) % len(rest)])]
    return out


def set_in(obj: object, path: tuple, value: object) -> object:
    """obj with the value at path replaced: dict keys or dataclass fields by name, list or tuple items by index."""
    if not path:
        return value
    key, rest = path[0], path[1:]
    if isinstance(obj, tuple):
        return obj[:key] + (set_in(obj[key], rest, value),) + obj[key + 1:]
    if isinstance(obj, (list, dict)):
        obj[key] = set_in(obj[key], rest, value)
        return obj
    setattr(obj, key, set_in(getattr(obj, key), rest, value))
    return obj


def on_objects(path: tuple) -> bool:
    """Whether a path of network.json names a field of the Network object (not the file's structure)."""
    return not JSON_ONLY & {k for k in path if isinstance(k, str)}


def mutated_network(net: Network, changes: list[tuple[tuple, object]]) -> Network:
    """A copy of net with the changes made directly on its objects (no file, no load-time checks)."""
    net = copy.deepcopy(net)
    for path, value in changes:
        if on_objects(path):
            set_in(net, path, value)
    return net


def mutated_file(base: Path, changes: list[tuple[tuple, object]], out: Path) -> Path:
    """A copy of the .snn file with the changes made in its network.json."""
    with zipfile.ZipFile(base) as z:
        members = {n: z.read(n) for n in z.namelist()}
    doc = json.loads(members["network.json"])
    for path, value in changes:
        set_in(doc, path, value)
    members["network.json"] = json.dumps(doc).encode("utf-8")  # NaN and Infinity as Python's json writes them
    with zipfile.ZipFile(out, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out


def assert_safe(src: str, where: str) -> None:
    """The script compiles, has no line break but "\\n", and the payloads' code is inside literals or comments."""
    compile(src, where, "exec")
    found = OTHER_BREAKS.search(src)
    assert found is None, f"{where}: {found.group()!r} in line {src.count(chr(10), 0, found.start()) + 1}"
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if MARK in tok.string:
            assert tok.type in (tokenize.STRING, tokenize.COMMENT), f"{where}: code in line {tok.start[0]}"


def render(writer: str, net: Network, output: Path | None = None) -> str:
    return get(writer).render(net, WriteOptions(output=output)).main.decode("utf-8")


def render_unchecked(writer: str, net: Network) -> str:
    """The writer alone, without the network check (which refuses most hostile values on load and in
    Writer.check): the literal function by itself must keep every value data."""
    with mock.patch.object(network, "check_network", lambda net, where="network": None):
        return render(writer, net)


# --- the literal function and its enforcement ---------------------------------------------------------

def test_py_is_one_line_and_refuses_what_it_cannot_write():
    class Sneaky(str):
        def __repr__(self) -> str:
            return "0\nimport os"

    assert py(Sneaky("a")) == "'a'" and isinstance(py(1), Literal)
    for value in PAYLOADS:
        text = py(value)
        assert "\n" not in text and not OTHER_BREAKS.search(text)
        assert eval(text) == value or value != value  # NaN is not equal to itself
    assert py((1,)) == "(1,)" and py([np.float32(0.5), np.int64(3), np.bool_(True)]) == "[0.5, 3, True]"
    for bad in ({"a": 1}, object(), b"bytes", np.zeros(2)):
        with pytest.raises(TypeError):
            py(bad)


def test_templates_cannot_print_a_raw_value():
    env = _environment()
    assert env.from_string("X = {{ v | py }}").render(v="a\nb") == "X = 'a\\nb'"
    assert env.from_string("{{ c }}").render(c=Code("pass")) == "pass"
    for value in ("a\nb", 3, 2.5, None, Literal("1") + "\nimport os"):
        with pytest.raises(TypeError, match=r"\| py"):
            env.from_string("X = {{ v }}").render(v=value)


# --- injection ----------------------------------------------------------------------------------------

# The fields that carried code into scripts before (issue 11): each must render, as data, for every writer.
REPORTED = [("settings", "seed"), ("provenance", "keras_version"), ("nodes", 0, "activation"),
            ("input", "encoding"), ("normalization", "data_sha256")]


def test_every_field_every_writer_in_process_and_through_the_cli(base, tmp_path):
    net, doc = Network.load(base), network_json(base)  # in process: the writers alone; the CLI: both layers
    changes = mutants(doc)
    assert len(changes) > 300 and {type(v) for _, v in changes} >= {str, float, int, bool, type(None)}
    checked: dict[str, set[int]] = {w: set() for w in WRITERS}  # hashes of scripts already checked
    rendered = {w: set() for w in WRITERS}  # paths whose first payload rendered
    cli_outcomes: dict[int, int] = {}
    for path, value in changes:
        mutant = mutated_network(net, [(path, value)]) if on_objects(path) else None
        snn = mutated_file(base, [(path, value)], tmp_path / "evil.snn")
        for writer in WRITERS:
            where = f"{writer} with {'.'.join(map(str, path))} = {value!r}"
            if mutant is not None:
                try:
                    src = render_unchecked(writer, mutant)
                except Exception:  # a writer may fail on nonsense: it wrote nothing, so nothing can run
                    pass
                else:
                    assert_safe(src, where)
                    checked[writer].add(hash(src))
                    if value is PAYLOADS[0]:
                        rendered[writer].add(path)
            out = tmp_path / f"evil_{writer}.py"
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = cli.main([str(snn), "--to", writer, "-o", str(out)])
            cli_outcomes[code] = cli_outcomes.get(code, 0) + 1
            if code == 0:
                src = out.read_text(encoding="utf-8")
                out.unlink()
                if hash(src) not in checked[writer]:
                    assert_safe(src, "CLI: " + where)
            else:
                # refused on load (the network check) or by the writer: one line, exit 1, and no script
                assert code == 1 and not out.exists(), (where, code, err.getvalue())
                lines = err.getvalue().splitlines()
                assert len(lines) == 1 and TRACEBACK not in lines[0], (where, lines)
    for writer in WRITERS:
        missing = [p for p in REPORTED if p not in rendered[writer]]
        assert not missing, f"{writer} did not render {missing}"
    assert cli_outcomes.get(0, 0) > 0
    assert not (Path.cwd() / "CANARY").exists()


def _names(doc: dict) -> dict[str, str]:
    """Every input, population and gate name → a distinct payload name that keeps the network whole."""
    breaks = ["\n", "\r", "\u2028", "\x85", "\x0b", "\x0c", "\r\n", "\u2029"]
    names = [doc["input"]["name"]] + [node["name"] for node in doc["nodes"]]
    return {name: f"{name}{breaks[i % len(breaks)]}{_CODE}" for i, name in enumerate(names)}


def run_mutants(doc: dict) -> dict[str, list[tuple[tuple, object]]]:
    """A mutant per kind of field, for running: free text, names (renamed everywhere), activations, the
    settings a script checks, enumerations, other numbers."""
    renamed = _names(doc)
    text = [(("provenance", k), PAYLOADS[i]) for i, k in enumerate(
        ("model_file", "model_sha256", "keras_version", "snnexport_version", "model_format", "model_producer"))]
    text += [(("normalization", "data_sha256"), PAYLOADS[4]), (("normalization", "method"), PAYLOADS[10])]
    names = [(p, renamed[v]) for p in leaves(doc) if p[-1] in ("name", "source", "target", "output")
             for v in [_get(doc, p)]]
    activations = [(("nodes", i, "activation"), PAYLOADS[i % 9]) for i, node in enumerate(doc["nodes"])
                   if "activation" in node]
    return {
        "text": text, "names": names, "activations": activations,
        "seed": [(("settings", "seed"), PAYLOADS[0])],
        "steps": [(("settings", "steps"), PAYLOADS[1])],
        "enums": [(("neuron", "reset"), PAYLOADS[3]), (("settings", "readout"), PAYLOADS[5]),
                  (("input", "encoding"), PAYLOADS[0]), (("settings", "delay"), PAYLOADS[2])],
        "numbers": [(("neuron", "threshold"), 1e308), (("settings", "clamp"), PAYLOADS[0]),
                    (("nodes", 0, "scale"), 1e308), (("normalization", "percentile"), PAYLOADS[6])],
    }


def _get(doc: object, path: tuple) -> object:
    for k in path:
        doc = doc[k]
    return doc


@pytest.mark.parametrize("writer", every_simulator())
def test_mutants_run_without_running_their_payload(writer, base, tmp_path):
    net, doc = Network.load(base), network_json(base)
    ran_clean, stdout = [], {}
    for kind, changes in run_mutants(doc).items():
        folder = tmp_path / kind
        folder.mkdir()
        try:
            src = render_unchecked(writer, mutated_network(net, changes))
        except Exception:
            continue  # nothing written, nothing to run
        assert_safe(src, f"{writer}/{kind}")
        script = folder / f"snn_{writer}.py"
        script.write_text(src, encoding="utf-8")
        steps = [] if kind == "steps" else ["--steps", "3"]  # the mutant's own default steps are the test
        proc = run_script(script, "-n", "1", *steps, timeout=300, check=False)
        assert not list(tmp_path.rglob("CANARY")), (kind, proc.stdout[-2000:], proc.stderr[-2000:])
        if kind in ("text", "names", "activations"):  # data only: the script works as it is
            assert proc.returncode == 0, (kind, proc.stderr[-3000:])
            ran_clean.append(kind)
            stdout[kind] = proc.stdout
        if kind in ("seed", "steps"):  # its own defaults are checked like the options
            lines = proc.stderr.splitlines()
            assert proc.returncode == 2 and len(lines) == 1 and f"--{kind}" in lines[0], (kind, proc.stderr)
    assert ran_clean == ["text", "names", "activations"]
    names = _names(doc)
    for node in doc["nodes"]:  # the summary prints every population by its (hostile) name
        if "activation" in node:
            assert repr(names[node["name"]]) in stdout["names"]


@needs("brian2")
def test_validate_on_an_evil_file_runs_no_payload(base, tmp_path):
    changes = run_mutants(network_json(base))
    evil = mutated_file(base, changes["text"] + changes["names"] + changes["activations"] + changes["seed"],
                        tmp_path / "evil.snn")
    proc = subprocess.run([sys.executable, "-m", "snnexport", "validate", str(evil), "--data",
                           str(base.parent / "two.npy"), "--sim", "brian2", "--report", "report", "--quiet"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert not list(tmp_path.rglob("CANARY"))
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert TRACEBACK not in proc.stderr
    if proc.returncode == 1:
        assert len(proc.stderr.splitlines()) == 1, proc.stderr


# --- the scripts' own command line --------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundled(tmp_path_factory) -> tuple[Path, Network]:
    """The bundled LeNet as the CLI converts it, and a folder with good and bad input files."""
    folder = tmp_path_factory.mktemp("safety_bundled")
    snn = folder / "bundled.snn"
    assert cli.main([str(BUNDLED_MODEL), "--calibration", str(BUNDLED_SAMPLES), "-o", str(snn)]) == 0
    with np.load(BUNDLED_SAMPLES) as z:
        x, y = z["x"][:100], z["y"][:100]
    np.save(folder / "inputs.npy", x[:2])
    np.save(folder / "many.npy", x)
    nan = x[:2].astype(np.float32)
    nan[1, 3, 3, 0] = np.nan
    np.save(folder / "nan.npy", nan)
    np.save(folder / "shape.npy", np.zeros((2, 5), np.float32))
    np.savez(folder / "labels.npz", x=x[:3], y=y[:2])
    (folder / "damaged.npy").write_bytes((folder / "inputs.npy").read_bytes()[:200])
    (folder / "random.npy").write_bytes(np.random.default_rng(0).bytes(999))
    return folder, Network.load(snn)


def _script(bundled: tuple[Path, Network], writer: str) -> Path:
    folder, net = bundled
    script = folder / f"snn_{writer}.py"
    if not script.exists():
        script.write_bytes(get(writer).render(net, WriteOptions(output=script)).main)
    return script


BAD_ARGUMENTS = [  # (arguments, what the one line must name)
    (["--steps", "0"], "--steps"), (["--steps", "-5"], "--steps"), (["--steps", "16777216"], "--steps"),
    (["--steps", "ten"], "--steps"), (["-n", "0"], "-n"), (["-n", "-1"], "-n"), (["--seed", "-1"], "--seed"),
    (["--out", "nodir/r.npz"], "--out"), (["--input", "inputs.npy", "--out", "inputs.npy"], "--out"),
    (["--out", "."], "--out"), (["--input", "missing.npy"], "--input"), (["--input", "damaged.npy"], "--input"),
    (["--input", "random.npy"], "--input"), (["--input", "nan.npy"], "--input"),
    (["--input", "shape.npy"], "--input"), (["--input", "labels.npz"], "--input"),
]

# Runs the script's main() once per argument list in one process (a simulator import costs seconds):
# prints [[exit status, stderr], ...] as JSON. `import snnexport` is blocked, as for every script run.
_GROUP = r"""
import contextlib, io, json, runpy, sys
sys.modules["snnexport"] = None
script, cases = sys.argv[1], json.loads(sys.argv[2])
module = runpy.run_path(script, run_name="exported_script")
results = []
for argv in cases:
    sys.argv = [script] + argv
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            module["main"]()
            code = 0
        except SystemExit as e:
            code = e.code
    if isinstance(code, str):  # sys.exit("message"): Python prints it and exits 1
        err.write(code + "\n")
        code = 1
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


@pytest.mark.parametrize("writer", every_simulator())
def test_bad_arguments_give_one_line_before_anything_runs(writer, bundled):
    script = _script(bundled, writer)
    cases = BAD_ARGUMENTS + [(["--out", script.name], "--out")]
    if writer in ("nest", "pynn"):
        cases += [(["--threads", "0"], "--threads"), (["--threads", "-2"], "--threads")]
    proc = subprocess.run([sys.executable, "-c", _GROUP, str(script), json.dumps([a for a, _ in cases])],
                          capture_output=True, text=True, timeout=300, cwd=script.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.splitlines()[-1])
    for (args, option), (code, err) in zip(cases, results):
        lines = err.splitlines()
        assert code in (1, 2) and len(lines) == 1 and option in lines[0], (args, code, err)
    assert (script.parent / "inputs.npy").stat().st_size > 1000 and script.stat().st_size > 1000  # not replaced
    assert not (script.parent / "nodir").exists()


@pytest.mark.parametrize("writer", every_simulator())
def test_broken_stdout_and_interrupts_end_the_script_in_one_line(writer, bundled):
    script = _script(bundled, writer)
    folder = script.parent
    # a bad option as a user meets it: the real interpreter, its real stderr
    proc = subprocess.run([sys.executable, script.name, "--steps", "0"], capture_output=True, text=True,
                          timeout=300, cwd=folder)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        f"{script.name}: error: argument --steps: must be an integer from 1 to 16777215, not 0"], proc.stderr
    # standard output on a full device
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, script.name, "-n", "1", "--steps", "2"], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=300, cwd=folder)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "No space left" in proc.stderr
    # standard output closed by its reader: silent, non-zero
    p = subprocess.Popen([sys.executable, script.name, "-n", "1", "--steps", "2"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=folder)
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=300) == 1 and err == "", err
    # Ctrl-C in the middle of the samples: exit 130, one line, no results file
    out = folder / f"results_{writer}.npz"
    p = subprocess.Popen([sys.executable, script.name, "--input", "many.npy", "--steps", "1000",
                          "--out", out.name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=folder,
                         env=dict(os.environ, PYTHONUNBUFFERED="1"))
    started = time.monotonic()
    while not p.stdout.readline().startswith("sample 0"):
        assert p.poll() is None and time.monotonic() - started < 300, p.stderr.read()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and err.splitlines() == [f"{script.name}: interrupted"], err
    assert not out.exists() and not list(folder.glob("*.part"))


def test_writers_refuse_a_network_that_breaks_the_schema(base):
    """A network built in code is checked like a file: the writers render nothing for a broken one."""
    net = Network.load(base)
    net.populations[0].bias[:] = np.nan
    for writer in WRITERS + ["network"]:
        with pytest.raises(SnnexportError, match=r"bias") as refused:
            get(writer).render(net, WriteOptions())
        assert "\n" not in str(refused.value)
