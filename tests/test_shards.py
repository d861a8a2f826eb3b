"""The reference simulator past one device: samples split over the JAX devices of a process
(``--devices``) and over processes (``simulate --shard I/N`` + ``merge``), identical in every array
to one process on one device."""

import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from snnexport.cli import main
from snnexport.network import Network, Projection
from snnexport.scriptlib import runtime
from snnexport.shards import sample_range
from snnexport.simulator import run_plan, simulate

from cli_runner import ENV, assert_refused, snnexport
from conftest import BUNDLED_SAMPLES, ROOT

N = 31  # samples of the bundled LeNet: an odd count, so that the last group of the plan is padded
STEPS = 40


def cli(*argv: object) -> int:
    return main([str(a) for a in argv])


def arrays_of(path: Path) -> dict[str, np.ndarray]:
    """Every array of a results file as stored, ``meta`` (its JSON text) included."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def assert_same_file(a: Path, b: Path) -> None:
    x, y = arrays_of(a), arrays_of(b)
    assert x.keys() == y.keys()
    for k in x:
        assert x[k].dtype == y[k].dtype, k
        np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.fixture(scope="module")
def lenet(bundled, tmp_path_factory) -> tuple[Path, Path]:
    """(network file, results file of one process on one device, N samples)."""
    snn = bundled[0]
    one = tmp_path_factory.mktemp("one") / "one.npz"
    assert cli("simulate", snn, "--data", BUNDLED_SAMPLES, "-n", N, "--steps", STEPS, "--devices", 1,
               "--out", one) == 0
    return snn, one


def shard(snn: Path, out: Path, spec: str, *extra: object) -> Path:
    steps = () if "--steps" in extra else ("--steps", STEPS)
    assert cli("simulate", snn, "--data", BUNDLED_SAMPLES, "-n", N, *steps, "--shard", spec, "--out", out, *extra) == 0
    return out


def test_shards_merged_equal_one_process(lenet, tmp_path, capsys) -> None:
    snn, one = lenet
    for count in (2, 3):
        files = [shard(snn, tmp_path / f"s{i}of{count}.npz", f"{i}/{count}") for i in range(1, count + 1)]
        merged = tmp_path / f"merged{count}.npz"
        capsys.readouterr()
        assert cli("merge", *reversed(files), "--out", merged) == 0  # any order
        out = capsys.readouterr().out
        assert_same_file(merged, one)
        r = runtime.load_results(one)
        assert f"SNN accuracy: {100 * float((r['predictions'] == r['labels']).mean()):.2f} %" in out
        assert "shard" not in r["meta"] and r["meta"]["samples"] == N
        sizes = [runtime.load_results(f)["meta"]["shard"] for f in files]
        assert [(s["start"], s["stop"]) for s in sizes][0][0] == 0 and sizes[-1]["stop"] == N


def test_shard_ranges_tile_the_samples_in_whole_groups() -> None:
    for total in (1, 2, 7, 31, 100, 1001):
        for group in (1, 2, 25, 256):
            for count in range(1, min(total, 9) + 1):
                ranges = [sample_range(i, count, total, group) for i in range(1, count + 1)]
                assert ranges[0][0] == 0 and ranges[-1][1] == total
                assert all(a < b for a, b in ranges)  # no shard is empty
                assert all(ranges[k][1] == ranges[k + 1][0] for k in range(count - 1))
                if -(-total // group) >= count:  # enough groups: no group is cut
                    assert all(a % group == 0 for a, _ in ranges)
    assert sample_range(2, 2, 1000, 256) == (512, 1000)


def _small_net(encoding: str):
    from test_semantics import dense, network, pop
    rng = np.random.default_rng(3)
    h = pop("h", (8,), 1, 0.05)
    o = pop("o", (3,), 2, 0.0)
    return network([h, o], [Projection("x", "h", dense(rng.normal(0, 0.6, (5, 8)))),
                            Projection("h", "o", dense(rng.normal(0, 0.6, (8, 3))))], "o", (5,), encoding=encoding)


def test_a_shard_draws_poisson_input_and_the_softmax_as_one_process() -> None:
    """Poisson input and the spiking softmax draw per sample index: ``first`` gives a shard its indices."""
    net = _small_net("poisson")
    x = np.random.default_rng(4).uniform(0, 1, (13, 5)).astype(np.float32)
    whole = simulate(net, x, steps=40, seed=7, readout="softmax")
    parts = [simulate(net, x[a:b], steps=40, seed=7, readout="softmax", first=a) for a, b in ((0, 4), (4, 13))]
    for k, v in whole.items():
        if k in ("population_names", "gate_names"):
            continue
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), v, err_msg=k)
    shifted = simulate(net, x[4:], steps=40, seed=7, readout="softmax")  # indices from 0: other draws
    assert not np.array_equal(shifted["output_steps"], whole["output_steps"][4:])


# Run with two forced host devices (this must be set before JAX starts, hence a fresh process).
_DEVICES = """
import sys, numpy as np, jax
from test_shards import _small_net
from snnexport.simulator import simulate
from snnexport.simulator.plan import Batching, plan
assert len(jax.devices()) == 2, jax.devices()
x = np.random.default_rng(4).uniform(0, 1, (93, 5)).astype(np.float32)
group = plan(40, 8)[0]
for enc, readout in (("poisson", "softmax"), ("analog", "count")):
    net = _small_net(enc)
    for batch in (93, 2 * group):
        assert Batching.of(40, batch, 8, devices=2).devices == 2  # both devices get groups
        a = simulate(net, x, steps=40, seed=7, readout=readout, batch=batch, devices=1)
        b = simulate(net, x, steps=40, seed=7, readout=readout, batch=batch, devices=2)
        c = simulate(net, x[5:], steps=40, seed=7, readout=readout, batch=batch, devices=2, first=5)
        for k in a:
            assert np.array_equal(a[k], b[k]), (enc, batch, k)
            if k not in ("population_names", "gate_names"):
                assert np.array_equal(a[k][5:], c[k]), (enc, batch, k)
print("same")
"""


def _two_devices() -> dict[str, str]:
    return dict(ENV, JAX_NUM_CPU_DEVICES="2", JAX_PLATFORMS="cpu")


def test_two_devices_give_what_one_gives() -> None:
    proc = subprocess.run([sys.executable, "-c", _DEVICES], cwd=ROOT / "tests", env=_two_devices(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "same", proc.stderr[-3000:]


def test_lenet_on_two_devices_via_the_command(lenet, tmp_path) -> None:
    """In one process that sees two CPU devices (the pytest process may run on another backend)."""
    files = []
    for d in (1, 2):
        files.append(tmp_path / f"d{d}.npz")
        args = ["simulate", lenet[0], "--data", BUNDLED_SAMPLES, "-n", N, "--steps", STEPS, "--devices", d,
                "--out", files[-1]]
        proc = subprocess.run([sys.executable, "-m", "snnexport", *map(str, args)], env=_two_devices(),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_file(*files)


@pytest.mark.parametrize("spec, message", [
    ("0/2", "--shard 0/2: the shard must be from 1 to 2"),
    ("3/2", "--shard 3/2: the shard must be from 1 to 2"),
    ("1/0", "--shard 1/0: the number of shards must be at least 1"),
    ("x", "--shard 'x': expected I/N"),
    ("1/2/3", "expected I/N"),
    ("-1/2", "expected one argument"),
])
def test_bad_shard_specs(lenet, tmp_path, spec, message) -> None:
    out = tmp_path / "s.npz"
    assert_refused(snnexport("simulate", lenet[0], "--data", BUNDLED_SAMPLES, "--shard", spec, "--out", out), message)
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--shard", "1/2"], "--shard needs --out"),
    (["-n", "3", "--shard", "1/5", "--out", "{tmp}/s.npz"], "--shard 1/5: 3 samples cannot make 5 shards"),
    (["--devices", "4096", "--out", "{tmp}/s.npz"], "devices must be from 1 to"),
    (["--devices", "0"], "--devices must be at least 1, got 0"),
])
def test_bad_spread_options(lenet, tmp_path, args, message) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert_refused(snnexport("simulate", lenet[0], "--data", BUNDLED_SAMPLES, *args), message)
    assert not list(tmp_path.iterdir())


def _doctored(src: Path, dst: Path, **shard: object) -> Path:
    """A copy of a shard's results file whose shard entry says something else (as a hand-edited file would)."""
    arrays = runtime.load_results(src)
    meta = arrays.pop("meta")
    meta["shard"].update(shard)
    runtime.save_results(dst, arrays, meta)
    return dst


def test_merge_refuses_what_is_not_the_shards_of_one_run(lenet, tmp_path) -> None:
    snn, one = lenet
    s1, s2 = shard(snn, tmp_path / "s1.npz", "1/2"), shard(snn, tmp_path / "s2.npz", "2/2")
    other_seed = shard(snn, tmp_path / "seed.npz", "2/2", "--seed", "5")
    other_n = tmp_path / "n.npz"
    assert cli("simulate", snn, "--data", BUNDLED_SAMPLES, "-n", N + 4, "--steps", STEPS, "--shard", "2/2",
               "--out", other_n) == 0
    third = shard(snn, tmp_path / "t3.npz", "3/3")
    other_steps = shard(snn, tmp_path / "steps.npz", "2/2", "--steps", "50")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    out = tmp_path / "merged.npz"
    cases = [
        ([s1], "shard 2/2 is missing"),
        ([s1, s1, s2], "shard 1/2 is given twice"),
        ([s1, other_seed], "its seed is 5, not 0"),
        ([s1, other_n], "its total is 35, not 31"),
        ([s1, third], "its count is 3, not 2"),
        ([s1, other_steps], "is not a shard of the run of"),
        ([s1, one], "is not a shard's results file"),
        ([s1, snn], "is not a shard's results file"),
        ([s1, junk], "is not a results file"),
        ([s1, tmp_path / "none.npz"], "does not exist"),
        ([s1, _doctored(s2, tmp_path / "gap.npz", start=18)], "its shard entry 13"),
        ([s1, _doctored(s2, tmp_path / "plan.npz", plan=[1, 1, 100])], "its plan is [1, 1, 100]"),
        ([s1, _doctored(s2, tmp_path / "tpu.npz", backend="tpu")], "its backend is tpu, not "),
        ([s1, _doctored(s2, tmp_path / "bad.npz", stop="x")], "its shard entry is damaged"),
    ]
    for files, message in cases:
        assert_refused(snnexport("merge", *files, "--out", out), message)
        assert not out.exists(), message
    assert cli("merge", s2, s1, "--out", out) == 0
    assert_same_file(out, one)


def test_the_shard_entry_is_the_only_difference_from_a_whole_run(lenet, tmp_path) -> None:
    """A 1/1 shard holds the whole run; its meta has the shard entry and nothing else more."""
    snn, one = lenet
    s = runtime.load_results(shard(snn, tmp_path / "all.npz", "1/1"))
    r = runtime.load_results(one)
    entry = s["meta"].pop("shard")
    assert s["meta"] == r["meta"]
    assert entry["start"] == 0 and entry["stop"] == entry["total"] == N
    net = Network.load(snn)
    assert entry["backend"] == jax.default_backend() and entry["plan"] == list(run_plan(net, STEPS))
