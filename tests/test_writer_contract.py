"""What every script writer promises (the design's "exported script" contract), one test per promise,
each run on every installed writer: its capability table, printed by the command; scripts that run on
the real simulator and agree with the reference simulator on the model zoo, with every optional part
of the contract, on hostile layer names and on the bundled model; byte-identical output for the same
inputs; weights beside the script above --embed-limit, checked by hash.

Every script runs in a subprocess with ``import snnexport`` blocked (tests/script_runner.py), as a
user runs it, and is compared with ``snnexport.simulator.simulate`` (delay "step", or "zero" for the
scripts' --delay zero) by backends.assert_agree. What is specific to one simulator is in tests/test_writer_<name>.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import model_zoo
from backends import Reference, Script, assert_agree, total_spikes, with_options
from conftest import BUNDLED_MODEL, BUNDLED_SAMPLES, STEPS, ZOO_SAMPLES
from script_runner import every_simulator, export, run_script, write_rendered
from snnexport.scriptlib import runtime
from snnexport.cli import main
from snnexport.network import Gate, Network
from snnexport.writers import get
from snnexport.writers.base import APPROXIMATED, FEATURES, NATIVE, REFUSED, WriteOptions

MODELS = model_zoo.SPIKING  # the zoo's models that convert into spiking networks, each one feature set
WRITERS = every_simulator()

# What a writer's table must say beyond "covers every feature": the exact gates (never average pooling)
# everywhere; NEST's reset by subtraction through eprop_iaf; everything on PyNN's default back end, pyNN.nest.
MUST_BE_NATIVE = {"brian2": ("maxpool_gate",), "nest": ("maxpool_gate", "reset_subtract"),
                  "pynn": FEATURES, "nengo": FEATURES}


def reference(net: Network, x: np.ndarray, steps: int = STEPS, **options) -> dict:
    return Reference().run(net, x, steps=steps, **options)


# --- the capability table ------------------------------------------------------------------------------------

@pytest.mark.parametrize("writer", WRITERS)
def test_capability_table_covers_every_feature_and_the_command_prints_it(writer, capsys):
    table = get(writer).capabilities
    assert list(table) == list(FEATURES)
    for feature, (status, how) in table.items():
        assert status in (NATIVE, APPROXIMATED, REFUSED) and how, feature
    for feature in MUST_BE_NATIVE[writer]:
        assert table[feature][0] == NATIVE, feature
    assert main(["--to", writer, "--capabilities"]) == 0
    rows = [line.split(None, 2) for line in capsys.readouterr().out.splitlines()]
    printed = [row for row in rows if row and row[0] in FEATURES]  # after the summary and what it runs with
    assert printed == [[f, table[f][0], table[f][1]] for f in FEATURES]


# --- agreement with the reference simulator -------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("writer", WRITERS)
def test_zoo_model_runs_bare_and_matches_the_reference(writer, name, zoo, zoo_runs):
    net, x = zoo(name)
    _, stdout, ours = zoo_runs(writer, name)
    assert f"sample {ZOO_SAMPLES - 1}: class" in stdout  # no --input: the samples bundled in the script
    assert ours["meta"]["simulator"] == writer and ours["meta"]["steps"] == STEPS
    assert_agree(ours, reference(net, x))
    assert total_spikes(ours) > 0


# model, encoding, reset, clamp, sign, readout, seed: together every option on a converted network
OPTIONS = {
    "poisson-clamp-sign-softmax": ("lenet", "poisson", "subtract", 2, True, "softmax", 5),
    "poisson-zero-clamp-sign-membrane": ("maxpool_stride", "poisson", "zero", 1, True, "membrane", 3),
    "zero-membrane": ("maxpool_stride", "analog", "zero", 0, False, "membrane", 0),
}


@pytest.mark.parametrize("options", list(OPTIONS))
@pytest.mark.parametrize("writer", WRITERS)
def test_options_and_encodings_match_the_reference(writer, options, zoo, tmp_path):
    """Poisson input, reset to zero, clamp, negative spikes into a gate; readout and seed chosen by the
    script's options. A writer that refuses a combination (NEST: sign with reset to zero) is skipped."""
    name, encoding, reset, clamp, sign, readout, seed = OPTIONS[options]
    net, x = zoo(name)
    net = with_options(net, encoding, reset, clamp, sign)
    ours = Script(writer, tmp_path).run(net, x, steps=STEPS, readout=readout, seed=seed)
    ref = reference(net, x, readout=readout, seed=seed)
    assert_agree(ours, ref)
    np.testing.assert_array_equal(ours["predictions"], ref["predictions"])
    assert ours["meta"]["readout"] == readout
    if sign:
        assert (ours["counts_0"] < 0).any() and (ours["counts_0"] > 0).any()
    if clamp:
        assert ours["spikes_per_step"][:, :clamp].sum() == 0  # the first population is clamped for d steps
    if readout == "membrane":
        assert ours["output_counts"].sum() == 0
        np.testing.assert_array_equal(ours["predictions"], np.argmax(ours["output_v"], axis=1))


# model, reset, v_init, threshold rule, clamp: the neuron's settings on converted networks with gates
NEURON_OPTIONS = {
    "half-start-clamp": ("lenet", "subtract", 0.5, "ge", 1),
    "half-start-gt-zero": ("maxpool_stride", "zero", 0.5, "gt", 0),
    "gt-subtract": ("lenet", "subtract", 0.0, "gt", 0),
}


@pytest.mark.parametrize("options", list(NEURON_OPTIONS))
@pytest.mark.parametrize("writer", WRITERS)
def test_neuron_settings_match_the_reference(writer, options, zoo, tmp_path):
    """v_init and the threshold rule on converted networks (NEST and PyNN only approximate "gt" with reset by
    subtraction: skipped there, by their check)."""
    name, reset, v_init, rule, clamp = NEURON_OPTIONS[options]
    net, x = zoo(name)
    net = with_options(net, "analog", reset, clamp, False)
    net.neuron.v_init, net.neuron.threshold_rule = v_init, rule
    ours = Script(writer, tmp_path).run(net, x, steps=STEPS, decision=0)
    ref = reference(net, x, decision=0)
    assert_agree(ours, ref)
    assert total_spikes(ref) > 0
    np.testing.assert_array_equal(ours["predictions"], ref["predictions"])
    np.testing.assert_array_equal(ours["decision_steps"], ref["decision_steps"])


# --- delay mode zero ------------------------------------------------------------------------------------------

# model, encoding, clamp, v_init: a chain with max-pool gates (depth 1 to 4); a residual block whose skip
# connection spans two populations (depth 1 into 3); branches with a gate and a skip from depth 1 into the
# output at depth 3, and Poisson input
ZERO_DELAY = {
    "lenet-clamp-half-start": ("lenet", "analog", 1, 0.5),
    "residual-clamp": ("residual", "analog", 2, 0.0),
    "branches-poisson": ("branches", "poisson", 0, 0.0),
}


@pytest.mark.parametrize("case", list(ZERO_DELAY))
@pytest.mark.parametrize("writer", WRITERS)
def test_delay_zero_gives_the_spikes_of_the_zero_delay_network(writer, case, zoo, tmp_path):
    """`--delay zero`: the script gives the reference's --delay zero results (docs/semantics.md, "Delay mode
    zero"), one sample at a time and seven at once alike; the reference's mode step differs from them, so a
    script that ignored the option would fail."""
    name, encoding, clamp, v_init = ZERO_DELAY[case]
    net, x = zoo(name)
    net = with_options(net, encoding, "subtract", clamp, False)
    net.neuron.v_init = v_init
    x = np.concatenate([x, x[::-1] * np.float32(0.8), x[:1]])  # 7 samples
    script = Script(writer, tmp_path)
    ours = script.run(net, x, steps=STEPS, delay="zero", batch=1)
    ref = reference(net, x, delay="zero")
    assert ours["meta"]["delay"] == "zero"
    assert_agree(ours, ref)
    np.testing.assert_array_equal(ours["predictions"], ref["predictions"])
    assert total_spikes(ref) > 0
    batched = script.run(net, x, steps=STEPS, delay="zero", batch=7)
    for key in ours:
        if key != "meta":
            np.testing.assert_array_equal(batched[key], ours[key], err_msg=key)
    step = reference(net, x)
    assert np.mean(step["spikes_per_step"] == ref["spikes_per_step"]) < 0.999  # what assert_agree would catch
    if clamp:  # population 0 (depth 1) is held for its first clamp steps in either mode
        assert ours["spikes_per_step"][:, :clamp, 0].sum() == 0 and ours["spikes_per_step"][:, clamp:, 0].sum() > 0


# --- names, determinism, files ------------------------------------------------------------------------------

@pytest.mark.parametrize("writer", WRITERS)
def test_hostile_names_are_data_not_code(writer, zoo, tmp_path):
    net, x = zoo("hostile_names")
    script = export(writer, net, tmp_path / f"snn_{writer}.py", x)
    text = script.read_text(encoding="utf-8")
    compile(text, str(script), "exec")
    out = tmp_path / "results.npz"
    proc = run_script(script, "--steps", "20", "--out", str(out))  # no --input: the bundled samples
    assert "pwned" not in [line.strip() for line in (proc.stdout + proc.stderr).splitlines()]  # echo never ran
    for pop in net.populations:
        assert repr(pop.name) in proc.stdout  # the summary prints every population by its real name
    ours = runtime.load_results(out)
    assert [str(n) for n in ours["population_names"]] == [p.name for p in net.populations]
    assert [str(n) for n in ours["gate_names"]] == [n.name for n in net.nodes if isinstance(n, Gate)]
    assert_agree(ours, reference(net, x, steps=20))


_RENDER_ALL = """
import sys
from pathlib import Path
import numpy as np
from snnexport.network import Network
from snnexport.writers import get
from snnexport.writers.base import WriteOptions
net, x, folder = Network.load(sys.argv[1]), np.load(sys.argv[2]), Path(sys.argv[3])
for writer in sys.argv[4:]:
    (folder / writer).write_bytes(get(writer).render(net, WriteOptions(output=Path("net.py"), samples=x)).main)
"""


def test_same_inputs_give_byte_identical_scripts(zoo, tmp_path):
    """Rendered twice, from the network and from its file, and once more in another process with
    another hash seed: the same bytes, for every writer (installed simulator or not: rendering needs none)."""
    net, x = zoo("branches")
    path = tmp_path / "net.snn"
    net.save(path)
    np.save(tmp_path / "x.npy", x)
    writers = [p.values[0] for p in WRITERS]
    subprocess.run([sys.executable, "-c", _RENDER_ALL, str(path), str(tmp_path / "x.npy"), str(tmp_path), *writers],
                   check=True, capture_output=True, env=dict(os.environ, PYTHONHASHSEED="12345"))
    for writer in writers:
        first = get(writer).render(net, WriteOptions(output=Path("net.py"), samples=x)).main
        again = get(writer).render(Network.load(path), WriteOptions(output=Path("net.py"), samples=x)).main
        assert first == again, writer
        assert (tmp_path / writer).read_bytes() == first, writer


@pytest.mark.parametrize("writer", WRITERS)
def test_weights_beside_the_script_are_hash_checked_and_give_the_same_spikes(writer, zoo, zoo_runs, tmp_path):
    """Above --embed-limit the weights go to net.npz beside net.py; the script loads them from its own
    folder, refuses them if they were changed, and gives exactly the spikes of the embedded script
    (another process, the same inputs: results are deterministic too)."""
    net, x = zoo("depthwise")
    rendered = get(writer).render(net, WriteOptions(output=tmp_path / "net.py", samples=x, embed_limit=100))
    assert list(rendered.beside) == ["net.npz"] and b"W = load_beside(__file__" in rendered.main
    script = write_rendered(rendered, tmp_path / "net.py")
    out = tmp_path / "results.npz"
    run_script(script, "--steps", str(STEPS), "--out", str(out), "--quiet")
    ours, embedded = runtime.load_results(out), zoo_runs(writer, "depthwise")[2]
    for key in embedded:
        if key != "meta":
            np.testing.assert_array_equal(ours[key], embedded[key], err_msg=key)
    data = bytearray((tmp_path / "net.npz").read_bytes())
    data[-30] ^= 1  # one bit in the zip's directory
    (tmp_path / "net.npz").write_bytes(bytes(data))
    proc = run_script(script, "--steps", "2", check=False)
    assert proc.returncode == 1 and "sha256 differs" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not proc.stdout


# --- the bundled model, as a user takes it ----------------------------------------------------------------------

@pytest.mark.parametrize("writer", WRITERS)
def test_bundled_model_exports_runs_bare_and_matches_the_reference(writer, bundled, tmp_path):
    """The README's command exports the bundled LeNet; `python net.py` runs on the samples bundled in it
    and matches the reference simulator on them (MNIST digits, three of the ten)."""
    _, net, x = bundled
    script = tmp_path / f"lenet_{writer}.py"
    assert main([str(BUNDLED_MODEL), "--calibration", str(BUNDLED_SAMPLES), "--to", writer, "-o", str(script)]) == 0
    out = tmp_path / "results.npz"
    proc = run_script(script, "-n", str(ZOO_SAMPLES), "--steps", str(STEPS), "--out", str(out))
    assert "accuracy:" in proc.stdout and "sample 0: class" in proc.stdout and "'conv1'" in proc.stdout
    ours, ref = runtime.load_results(out), reference(net, x)
    assert_agree(ours, ref, per_step=False)
    np.testing.assert_array_equal(ours["predictions"], ref["predictions"])
    with np.load(BUNDLED_SAMPLES) as data:
        y = data["y"][:ZOO_SAMPLES]
    np.testing.assert_array_equal(ours["labels"], y)
    assert (ours["predictions"] == y).mean() >= 2 / 3
