"""What is specific to the Nengo scripts: batches of independent copies, and the projections they build.

A projection that is one convolution, dense layer or unpadded average pooling is a kernel product (one
matrix product per copy, np.matmul over the batch); everything else is a nengo.transforms.Sparse of the
expanded synapses repeated per copy; ``--transforms sparse`` builds Sparse everywhere, and both match
the reference. A batch of B samples runs as B copies of the network inside one Nengo model, with the
results of B = 1 bit for bit. The contract every writer keeps is tested in
tests/test_writer_contract.py, the semantics in tests/test_semantics.py.
"""

from __future__ import annotations

import numpy as np

from backends import Reference, assert_agree, total_spikes, with_options
from conftest import BUNDLED_SAMPLES, STEPS, needs
from script_runner import export, run_for_results, run_script
from snnexport.scriptlib import runtime

pytestmark = needs("nengo")


def _connections(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("nengo: connections: "))


def _assert_same_results(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    """Every array of two results files identical; meta aside (it holds the batch size and the times)."""
    assert sorted(a) == sorted(b)
    for key in sorted(a):
        if key != "meta":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_native_and_sparse_transforms_both_match_the_reference(zoo, zoo_runs):
    net, x = zoo("lenet")
    script, native_out, native = zoo_runs("nengo", "lenet")  # the contract's run: native transforms
    native_kinds = _connections(native_out)
    assert "kernel product (convolution)" in native_kinds and "kernel product (dense)" in native_kinds, native_kinds
    out = script.parent / "sparse.npz"
    proc = run_script(script, "--steps", str(STEPS), "--transforms", "sparse", "--out", str(out))
    kinds = _connections(proc.stdout)
    assert "nengo.transforms.Sparse" in kinds and "kernel product" not in kinds, kinds
    sparse = runtime.load_results(out)
    reference = Reference().run(net, x, steps=STEPS)
    assert_agree(sparse, reference)
    assert_agree(native, reference)


def test_batch_of_seven_gives_the_results_of_one_sample_at_a_time(bundled, tmp_path):
    """The bundled LeNet on 9 samples: --batch 7 (a batch of 7, then one of 2) against --batch 1."""
    _, net, _ = bundled
    with np.load(BUNDLED_SAMPLES) as data:
        x = runtime.coerce_samples(data["x"][:9], net.input.shape)
    script = export("nengo", net, tmp_path / "snn_nengo.py")
    one = run_for_results(script, x, "--steps", str(STEPS), "--batch", "1")
    seven = run_for_results(script, x, "--steps", str(STEPS), "--batch", "7")
    assert len(one["predictions"]) == 9 and total_spikes(one) > 0
    _assert_same_results(seven, one)
    assert_agree(seven, Reference().run(net, x, steps=STEPS))


def test_batches_keep_poisson_sign_clamp_and_softmax_draws_per_sample(zoo, tmp_path):
    """Poisson input, a sign population into the max-pool gate, clamp and the spiking softmax: each
    sample's seeded draws follow its global index, whichever batch and copy it runs in."""
    net, x = zoo("lenet")
    net = with_options(net, "poisson", "zero", 1, sign=True)
    script = export("nengo", net, tmp_path / "snn_nengo.py")
    options = ("--steps", str(STEPS), "--readout", "softmax", "--seed", "5")
    one = run_for_results(script, x, *options, "--batch", "1")
    two = run_for_results(script, x, *options, "--batch", "2")
    assert total_spikes(one) > 0 and (one["counts_0"] < 0).any()  # negative spikes did happen
    _assert_same_results(two, one)
    assert_agree(two, Reference().run(net, x, steps=STEPS, readout="softmax", seed=5))


def test_gate_process_follows_gate_pass_for_every_copy(bundled, tmp_path):
    """The script's MaxPoolGate against runtime.gate_pass, step by step, on random spikes of either sign
    (a sign source: leaders lose spikes), for overlapping, padded windows and three copies at once."""
    import importlib.util
    _, net, _ = bundled
    script = export("nengo", net, tmp_path / "snn_nengo.py")
    spec = importlib.util.spec_from_file_location("snn_nengo", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shape, copies, steps = (5, 6, 2), 3, 40
    windows = runtime.gate_windows(shape, (3, 2), (2, 1), ((1, 1), (0, 1)))
    n = int(np.prod(shape))
    gate = module.MaxPoolGate("g", windows, n, copies)
    size_out = (copies * len(windows),)
    step = gate.make_step((copies * n,), size_out, 1.0, None, gate.make_state((copies * n,), size_out, 1.0))
    spikes = np.random.default_rng(4).choice([-1.0, 0.0, 0.0, 1.0, 1.0], size=(steps, copies, n))
    counts, since = np.cumsum(spikes, axis=0), runtime.last_change(spikes)
    for t in range(steps):
        expected = runtime.gate_pass(windows, counts[t], since[t], spikes[t])  # (copies, cells)
        passed = step(float(t + 1), spikes[t].reshape(-1).astype(np.float32))
        np.testing.assert_array_equal(passed.reshape(copies, -1), expected, err_msg=f"step {t + 1}")
