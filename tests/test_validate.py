"""The validation harness (`snnexport validate`) on a small model with the real simulators installed here.

A simulator that is not installed is left out (skipped, never faked); one that is installed must
produce a column with numbers. Failures of a simulator — an unknown name, a timeout, a script that
exits with an error — must each become a column that says why, and the report must still be written.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import model_zoo
from conftest import needs
from snnexport import compare, validate, writers
from snnexport.errors import FeatureRefused
from snnexport.writers.base import Rendered, Writer

STEPS = 20
SAMPLES = 12
EXPORTED = tuple(writers.runnable())


def _installed_exported() -> list[str]:
    """Exported simulators runnable here: simulator installed."""
    return [s for s in EXPORTED if not writers.missing_modules(s)]


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    """The zoo's small LeNet (12×12 input) as a .h5 file, and labelled samples for it."""
    d = tmp_path_factory.mktemp("validate")
    model = model_zoo.build_lenet()
    path = d / "lenet.h5"
    model.save(path)
    x = model_zoo.sample_input(model, 40, seed=5)
    y = model.predict(x, verbose=0).argmax(axis=1)
    y[::5] = (y[::5] + 1) % 10  # some wrong labels: the ANN error is not zero
    data = d / "data.npz"
    np.savez(data, x=x, y=y)
    return path, data


def _validate(model, data, report, *extra: str) -> dict:
    code = validate.validate_main([str(model), "--calibration", str(data), "--data", str(data), "-n", str(SAMPLES),
                                   "--steps", str(STEPS), "--report", str(report), "--quiet", *extra])
    assert code == 0
    assert (report / "report.html").is_file() and (report / "report.json").is_file()
    return json.loads((report / "report.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def full(lenet, tmp_path_factory):
    """One validation run on the reference, every installed exported simulator and a bogus name."""
    model, data = lenet
    report_dir = tmp_path_factory.mktemp("full") / "rep"
    sims = ["reference", *_installed_exported()]
    report = _validate(model, data, report_dir, "--sim", ",".join(sims + ["bogus"]), "--jobs", "2")
    return report, report_dir, sims


def test_report_records_its_context(full):
    report, _, _ = full
    assert report["command"].startswith("snnexport validate ")
    assert "--sim" in report["argv"]
    for dist in ("snnexport", "numpy", "keras", "brian2", "nest-simulator", "pyNN", "nengo"):
        assert dist in report["versions"]
    assert report["settings"]["steps"] == STEPS and report["jobs"] == 2
    assert report["ann"]["samples"] == SAMPLES and 0 <= report["ann"]["error_percent"] <= 100


@pytest.mark.parametrize("sim", ["reference", *EXPORTED])
def test_simulator_column_has_the_numbers(full, sim):
    report, report_dir, sims = full
    if sim not in sims:
        pytest.skip(f"{sim} is not installed here (or its writer is missing)")
    e = report["simulators"][sim]
    assert e["status"] == "ok", e["message"]
    assert e["samples"] == SAMPLES
    assert 0 <= e["error_percent"] <= 100 and 0 <= e["agreement_with_ann"] <= 1
    assert math.isfinite(e["error_difference_pp"])
    assert len(e["error_vs_steps"]) == STEPS
    assert e["snn_ops_per_sample"] > 0 and len(e["ops_vs_steps"]) == STEPS  # opcount, from this results file
    assert e["ops_vs_steps"][-1] == pytest.approx(e["snn_ops_per_sample"])
    assert report["ann"]["ops_per_sample"] > 0
    for name in (n["name"] for n in report["network"]["nodes"] if n["kind"] == "population"):
        fit = e["layers"][name]
        assert -1 <= fit["pearson"] <= 1 and math.isfinite(fit["slope"]) and fit["rmse"] >= 0
    if sim != "reference":
        assert (report_dir / e["script"]).is_file()
        assert e["version"]


def test_pairs_and_targets(full):
    report, _, sims = full
    pops = [n["name"] for n in report["network"]["nodes"] if n["kind"] == "population"]
    assert len(report["pairs"]) == len(sims) * (len(sims) - 1) // 2
    for p in report["pairs"]:
        assert 0 <= p["identical_fraction"]["all"] <= 1 and set(pops) <= set(p["identical_fraction"])
        assert -1 <= p["rate_pearson"] <= 1 and 0 <= p["prediction_agreement"] <= 1
    kinds = {t["target"] for t in report["targets"]}
    assert {"SNN error − ANN error", "per-layer Pearson r (lowest layer)"} <= kinds
    if len(sims) > 1:
        assert "identical spike counts" in kinds
    for t in report["targets"]:
        assert isinstance(t["pass"], bool) and math.isfinite(t["margin"])
    assert report["summary"]["targets"] == len(report["targets"])


def test_an_unknown_simulator_is_a_column_and_the_page_is_complete(full):
    report, report_dir, _ = full
    assert report["simulators"]["bogus"]["status"] == "unknown"
    assert "bogus" in report["simulators"]["bogus"]["message"]
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    assert "unknown simulator &#39;bogus&#39;" in page
    assert page.count("data:image/png;base64,") >= 3  # scatter, error vs steps, agreement
    assert "<script" not in page  # self-contained and inert
    assert not list(report_dir.glob("results/*.npz"))  # removed without --keep-results


def test_a_timed_out_script_becomes_a_column(lenet, tmp_path):
    model, data = lenet
    sims = _installed_exported()
    if not sims:
        pytest.skip("no exported simulator is installed")
    report = _validate(model, data, tmp_path / "rep", "--sim", f"reference,{sims[0]}", "--timeout", "0.2")
    e = report["simulators"][sims[0]]
    assert e["status"] == "timeout" and "0.2 s" in e["message"]
    assert report["simulators"]["reference"]["status"] == "ok"
    assert report["simulators"]["reference"]["layers"]


class BrokenWriter(Writer):
    """A writer whose script dies with a message on stderr, as a simulator crash would."""
    name = "broken"
    summary = "a script that fails"
    runnable = True

    def check(self, net):
        return ["everything (on purpose)"]

    def render(self, net, options):
        return Rendered(b"import sys\nprint('starting', flush=True)\n"
                        b"sys.stderr.write('simulator exploded: <boom> & more\\n')\nsys.exit(3)\n")


def test_a_failing_script_becomes_a_column_with_its_stderr(lenet, tmp_path, monkeypatch):
    monkeypatch.setitem(writers.BUILTIN, "broken", f"{__name__}:BrokenWriter")
    model, data = lenet
    report = _validate(model, data, tmp_path / "rep", "--sim", "reference,broken", "--keep-results")
    e = report["simulators"]["broken"]
    assert e["status"] == "failed"
    assert "exit status 3" in e["message"] and "simulator exploded" in e["message"]
    assert e["notes"] == ["everything (on purpose)"]  # the writer's approximations are kept
    page = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert "simulator exploded: &lt;boom&gt; &amp; more" in page
    assert report["simulators"]["reference"]["status"] == "ok"
    assert (tmp_path / "rep" / "results" / "reference.npz").is_file()  # --keep-results
    assert report["summary"]["simulators_not_ok"] == {"broken": "failed"}
    # --strict turns a failed simulator into a non-zero exit
    assert validate.validate_main([str(model), "--calibration", str(data), "--data", str(data), "-n", "4",
                                   "--steps", "5", "--sim", "broken", "--report", str(tmp_path / "r2"),
                                   "--quiet", "--strict"]) == 2


def test_names_are_escaped_in_the_page(tmp_path):
    import keras
    from keras import layers as L
    names = ("<img src=x onerror=alert(1)>", "a&b $x$ \"q\"")
    model = keras.Sequential([keras.Input((6, 6, 1)), L.Conv2D(2, 3, activation="relu", name=names[0]),
                              L.Flatten(name="flat"), L.Dense(3, activation="softmax", name=names[1])])
    model_zoo.randomize(model, 4)
    model.save(tmp_path / "m.keras")
    x = model_zoo.sample_input(model, 8)
    np.save(tmp_path / "x.npy", x)
    code = validate.validate_main([str(tmp_path / "m.keras"), "--calibration", str(tmp_path / "x.npy"), "--data",
                                   str(tmp_path / "x.npy"), "--steps", "10", "--sim", "reference",
                                   "--title", "<b>title</b>", "--report", str(tmp_path / "rep"), "--quiet"])
    assert code == 0
    page = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "a&amp;b $x$ &#34;q&#34;" in page
    assert "&lt;b&gt;title&lt;/b&gt;" in page and "<b>title" not in page
    report = json.loads((tmp_path / "rep" / "report.json").read_text(encoding="utf-8"))
    assert set(names) <= set(report["simulators"]["reference"]["layers"])  # JSON keeps the real names
    assert "error_percent" not in report["ann"]  # no labels: no error, but agreement still measured
    assert report["simulators"]["reference"]["agreement_with_ann"] is not None


def test_rate_stats_match_compare_rate_fit():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (300, 50))
    r = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1).round(2)
    st = validate.RateStats()
    for s in range(0, 300, 37):  # uneven chunks
        st.add(r[s:s + 37], a[s:s + 37])
    got, want = st.result(), compare.rate_fit(r, a)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-12)
    # constant data: r undefined in both, never 1 (a silent layer is not a perfect fit)
    for rr, aa in ((np.zeros(10), np.zeros(10)), (np.ones(10), np.zeros(10)), (np.zeros(10), a[0, :10])):
        st = validate.RateStats()
        st.add(rr, aa)
        got, want = st.result(), compare.rate_fit(rr, aa)
        assert np.isnan(got["pearson"]) and np.isnan(want["pearson"])
        assert got["silent"] == want["silent"] == (not rr.any())


def test_a_silent_layer_fails_the_r_target_unless_the_ann_is_constant_too():
    from snnexport.validate.measures import _sim_targets
    fit = {"slope": 0.0, "rmse": 0.1, "in_target": True}
    layers = {"ok": {**fit, "pearson": 0.995, "silent": False, "ann_constant": False},
              "dead": {**fit, "pearson": float("nan"), "silent": True, "ann_constant": False}}
    (t,) = _sim_targets("brian2", {"layers": layers})
    assert t["layer"] == "dead" and not t["pass"]
    layers["dead"]["ann_constant"] = True  # the ANN's layer is constant as well: nothing to follow
    (t,) = _sim_targets("brian2", {"layers": layers})
    assert t["layer"] == "ok" and t["pass"]


def test_error_curve_uses_cumulative_counts_with_ties_to_the_lower_index():
    steps = np.zeros((2, 3, 3), np.int16)
    steps[0, 0, 2] = 1  # sample 0: class 2 from step 1
    steps[1, 1, 1] = 1  # sample 1: class 0 (a tie of zeros) at step 1, then class 1
    steps[1, 2, 2] = 1  # step 3: a tie of 1 and 2 goes to 1
    np.testing.assert_array_equal(validate.cumulative_predictions(steps), [[2, 2, 2], [0, 1, 1]])
    np.testing.assert_allclose(validate.error_curve(steps, np.array([2, 1])), [50.0, 0.0, 0.0])
    assert np.isnan(validate.error_curve(steps, np.array([-1, -1]))).all()


def test_bad_options_are_one_line_errors(lenet, tmp_path, capsys):
    from snnexport.cli import main
    model, data = lenet
    assert main(["validate", str(model), "--data", str(data), "-n", "0", "--report", str(tmp_path)]) == 1
    assert "-n must be at least 1" in capsys.readouterr().err
    assert main(["validate", str(model), "--data", str(tmp_path / "nope.npz"), "--report", str(tmp_path)]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_reuse_results_skips_a_run_of_the_same_network_and_samples(lenet, tmp_path):
    model, data = lenet
    args = ["--sim", "reference", "--reuse-results"]
    first = _validate(model, data, tmp_path / "rep", *args)
    assert not first["simulators"]["reference"]["meta"].get("reused")
    again = _validate(model, data, tmp_path / "rep", *args)
    assert again["simulators"]["reference"]["meta"]["reused"] is True
    assert again["simulators"]["reference"]["layers"] == first["simulators"]["reference"]["layers"]
    other = _validate(model, data, tmp_path / "rep", *args, "--percentile", "99")  # another network
    assert not other["simulators"]["reference"]["meta"].get("reused")
    zero = _validate(model, data, tmp_path / "rep", *args, "--percentile", "99", "--delay", "zero")  # another mode
    assert not zero["simulators"]["reference"]["meta"].get("reused")
    early = _validate(model, data, tmp_path / "rep", *args, "--percentile", "99", "--delay", "zero",
                      "--early-decision")  # another decision rule: its predictions differ
    assert not early["simulators"]["reference"]["meta"].get("reused")
    assert early["simulators"]["reference"]["meta"]["early_decision"] == {"margin": None}


def test_delay_zero_reaches_the_reference_and_every_script(lenet, tmp_path):
    """--delay zero: the reference runs the zero-delay network and every installed script its time-shifted
    equivalent; the settings and every results file's meta say so, and every pair has identical spike counts."""
    model, data = lenet
    sims = ["reference", *_installed_exported()]
    report = _validate(model, data, tmp_path / "rep", "--sim", ",".join(sims), "--delay", "zero")
    assert report["settings"]["delay"] == "zero"
    for sim in sims:
        e = report["simulators"][sim]
        assert e["status"] == "ok", e["message"]
        assert e["meta"]["delay"] == "zero"
    assert len(report["pairs"]) == len(sims) * (len(sims) - 1) // 2
    for p in report["pairs"]:
        assert p["identical_fraction"]["all"] >= 0.999, p


def test_early_decision_reaches_the_reference_and_every_script(lenet, tmp_path):
    """--early-decision (with a margin): every simulator decides at the same step of every sample, the
    class and the operations are the decided ones, and the page says so."""
    model, data = lenet
    sims = ["reference", *_installed_exported()]
    full = _validate(model, data, tmp_path / "full", "--sim", "reference", "--delay", "zero")["simulators"]
    report = _validate(model, data, tmp_path / "rep", "--sim", ",".join(sims), "--delay", "zero",
                       "--decision-margin", "3")
    assert report["settings"]["early_decision"] == {"margin": 3}
    ref = report["simulators"]["reference"]
    assert 1 <= ref["decision_step_mean"] < STEPS  # a margin of 3 decides before the last step
    assert ref["decided_ops_per_sample"] < full["reference"]["snn_ops_per_sample"]
    assert ref["snn_ops_per_sample"] == pytest.approx(full["reference"]["snn_ops_per_sample"])  # the same run
    assert ref["decided_ops_ratio_to_ann"] == pytest.approx(ref["decided_ops_per_sample"] / report["ann"]["ops_per_sample"])
    for sim in sims:
        e = report["simulators"][sim]
        assert e["status"] == "ok", e["message"]
        assert e["meta"]["early_decision"] == {"margin": 3}
        assert e["decided_ops_per_sample"] == pytest.approx(ref["decided_ops_per_sample"], rel=1e-3)
    for p in report["pairs"]:
        assert p["decision_step_agreement"] == 1.0 and p["prediction_agreement"] == 1.0, p
    page = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert "early decision at a margin of 3 spikes" in page and "zero delay" in page
    assert "ops to the decision relative to ANN" in page and "same decision step" in page


def test_early_decision_with_a_membrane_readout_is_one_line_error(lenet, tmp_path, capsys):
    from snnexport.cli import main
    model, data = lenet
    assert main(["validate", str(model), "--calibration", str(data), "--data", str(data), "--readout", "membrane",
                 "--early-decision", "--report", str(tmp_path / "rep")]) == 1
    err = capsys.readouterr().err
    assert "early decision needs a readout that counts spikes" in err and "Traceback" not in err
    assert not (tmp_path / "rep").exists()


# --- refusals --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sign_model(tmp_path_factory):
    """The zoo's binary model with sign activations (negative spikes) as a .keras file, and samples."""
    d = tmp_path_factory.mktemp("sign")
    model = model_zoo.build_binary("sign")
    model.save(d / "sign.keras")
    np.save(d / "x.npy", model_zoo.sample_input(model, 8, seed=2))
    return d / "sign.keras", d / "x.npy"


def test_nest_refuses_sign_neurons_with_reset_to_zero_by_type(sign_model):
    from snnexport.convert import convert
    from snnexport.readers import read_model
    model, x = sign_model
    net = convert(read_model(model), np.load(x), reset="zero")
    for name in ("nest", "pynn"):
        with pytest.raises(FeatureRefused, match="cannot be expressed on NEST") as refused:
            writers.get(name).check(net)
        assert refused.value.writer == name and "negative_spikes" in refused.value.feature


def _column_says(report_dir, report, sim: str, status: str) -> None:
    """The simulator's column says ``status`` in the JSON and on the page; the reference still ran."""
    assert report["simulators"][sim]["status"] == status, report["simulators"][sim]["message"]
    assert report["summary"]["simulators_not_ok"] == {sim: status}
    assert report["simulators"]["reference"]["status"] == "ok"
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    assert f"<span class='miss'>{status}</span>" in page


@needs("nest")
def test_a_network_nest_refuses_is_reported_as_refused(sign_model, tmp_path):
    model, x = sign_model
    assert validate.validate_main([str(model), "--calibration", str(x), "--data", str(x), "--steps", "10",
                                   "--reset", "zero", "--sim", "reference,nest", "--report", str(tmp_path / "rep"),
                                   "--quiet"]) == 0
    report = json.loads((tmp_path / "rep" / "report.json").read_text(encoding="utf-8"))
    _column_says(tmp_path / "rep", report, "nest", "refused")
    assert "cannot be expressed on NEST" in report["simulators"]["nest"]["message"]


class RefusingWriter(Writer):
    """A runnable writer whose capability table refuses every feature."""
    name = "refusing"
    summary = "refuses everything"
    runnable = True

    def render(self, net, options):
        raise AssertionError("a refused network must never be rendered")


class GhostWriter(Writer):
    """A runnable writer whose simulator is not installed anywhere."""
    name = "ghost"
    summary = "needs a simulator nobody has"
    runnable = True
    module = "snnexport_ghost_simulator"
    requires = ("snnexport_ghost_simulator",)
    extra = "ghost"


@pytest.mark.parametrize("sim, status, message", [
    ("refusing", "refused", "the refusing writer cannot express"),
    ("ghost", "not installed", "snnexport_ghost_simulator not installed (pip install 'snnexport[ghost]')")])
def test_a_writer_that_cannot_run_here_is_a_column_that_says_why(lenet, tmp_path, monkeypatch, sim, status, message):
    monkeypatch.setitem(writers.BUILTIN, sim, f"{__name__}:{sim.capitalize()}Writer")
    assert sim in validate.options.default_simulators()  # the registry is the one list
    model, data = lenet
    report = _validate(model, data, tmp_path / "rep", "--sim", f"reference,{sim}")
    _column_says(tmp_path / "rep", report, sim, status)
    assert message in report["simulators"][sim]["message"]
