"""What is specific to the Brian2 scripts: the analog input's current is summed one kernel tap at a
time in float32, the order in which the reference simulator's convolution sums, so that the currents,
and with them the membrane potentials, agree bit for bit; --batch runs samples as copies of the
network without changing a result; --device cpp_standalone (and its OpenMP threads) gives the runtime
device's results. The contract every writer keeps is tested in tests/test_writer_contract.py, the
semantics in tests/test_semantics.py.
"""

from __future__ import annotations

import importlib.util
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from backends import Reference, Script, assert_agree, with_options
from conftest import BUNDLED_SAMPLES, needs
from script_runner import export, run_for_results, run_script
from snnexport.scriptlib.runtime import coerce_samples
from snnexport.network import Gate, InputSpec, Network, Neuron, Population, Projection
from snnexport.ops import Conv2D

pytestmark = needs("brian2")


def test_input_taps_give_the_reference_currents_bit_for_bit(tmp_path):
    """A 5x5 convolution of 3 channels, random float32 weights, inputs and biases: after one step the
    membrane potential is the input current, W*x + b, and equals the reference simulator's in every bit."""
    rng = np.random.default_rng(11)
    kernel = rng.normal(0, 0.3, (5, 5, 3, 4)).astype(np.float32)
    bias = rng.normal(0, 0.1, (6, 6, 4)).astype(np.float32)
    out = Population("conv", (6, 6, 4), bias, "relu", 1.0, 1)
    net = Network(InputSpec("x", (10, 10, 3)), [out], [Projection("x", "conv", [Conv2D(kernel)])], "conv",
                  Neuron(1.0, "subtract"))
    x = rng.uniform(0, 1, (2, 10, 10, 3)).astype(np.float32)
    ours = Script("brian2", tmp_path).run(net, x, steps=1, readout="membrane")
    ref = Reference().run(net, x, steps=1, readout="membrane")
    assert np.abs(ref["output_v"]).max() > 0.5  # currents of a size where float32 sums round differently
    np.testing.assert_array_equal(ours["output_v"], ref["output_v"])


def assert_same_results(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    """Every array of two results files identical (the meta, with its timings, aside)."""
    assert sorted(a) == sorted(b)
    for key in a:
        if key != "meta":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_batches_give_the_results_of_one_sample_at_a_time(bundled, tmp_path):
    """The bundled LeNet on 9 MNIST samples at --batch 1 and --batch 7 (a full batch of 7 copies and a
    last one of 2 that runs with 5 silent copies): identical results, and the reference simulator's."""
    _, net, _ = bundled
    with np.load(BUNDLED_SAMPLES) as data:
        x = coerce_samples(data["x"][:9], net.input.shape)
    script = export("brian2", net, tmp_path / "snn_brian2.py")
    one = run_for_results(script, x, "--steps", "60", "--batch", "1")
    seven = run_for_results(script, x, "--steps", "60", "--batch", "7")
    assert (one["meta"]["batch"], seven["meta"]["batch"]) == (1, 7)
    assert_same_results(one, seven)
    assert_agree(seven, Reference().run(net, x, steps=60))


def test_batches_keep_signs_gates_on_gates_poisson_input_and_softmax(zoo, tmp_path):
    """A gate on a gate over a sign population, Poisson input and the spiking softmax, each drawn per
    sample by its global index: --batch 4 on 9 samples gives the results of --batch 1 and the reference's."""
    net, _ = zoo("maxpool_stride")
    net = with_options(net, "poisson", "subtract", 0, sign=True)
    net.settings.readout = "softmax"
    gates = [n for n in net.nodes if isinstance(n, Gate)]
    assert gates[1].source == gates[0].name  # the zoo net still has a gate on a gate
    x = np.random.default_rng(5).uniform(0, 1, (9,) + tuple(net.input.shape)).astype(np.float32)
    script = export("brian2", net, tmp_path / "snn_brian2.py")
    one = run_for_results(script, x, "--steps", "40", "--batch", "1")
    four = run_for_results(script, x, "--steps", "40", "--batch", "4")
    assert_same_results(one, four)
    assert (one["counts_0"] < 0).any() and (one["gate_counts_1"] != 0).any()  # -1 spikes, and through both gates
    assert_agree(four, Reference().run(net, x, steps=40))


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="no C++ compiler (g++) for Brian2's cpp_standalone device")
@pytest.mark.parametrize("sign", [False, True], ids=["offers", "slots"])
def test_cpp_standalone_and_its_threads_give_the_runtime_results(zoo, tmp_path, sign):
    """The C++ standalone device, compiled once and run per batch (5 samples at --batch 2: the last
    batch has a silent copy): the runtime device's results exactly (numpy: slots compare every cell of
    a window; the tally counts each step's spikes). The network has a gate on a gate. Without sign
    layers, analog input: the compiled gates take offers and a rate monitor counts each step's spikes,
    on one OpenMP thread and on two. With a sign layer, Poisson input: slots and the tally there too."""
    net, _ = zoo("maxpool_stride")
    net = with_options(net, "poisson" if sign else "analog", "subtract", 0, sign=sign)
    x = np.random.default_rng(6).uniform(0, 1, (5,) + tuple(net.input.shape)).astype(np.float32)
    script = export("brian2", net, tmp_path / "snn_brian2.py")
    options = ("--steps", "30", "--batch", "2")
    runtime = run_for_results(script, x, *options, "--device", "runtime")
    assert (runtime["gate_counts_1"] != 0).any()  # spikes pass through both gates
    standalone = run_for_results(script, x, *options, "--device", "cpp_standalone", timeout=900)
    assert_same_results(runtime, standalone)
    if not sign:
        threads = run_for_results(script, x, *options, "--device", "cpp_standalone", "--threads", "2", timeout=900)
        assert_same_results(runtime, threads)


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="no C++ compiler (g++) for Brian2's cpp_standalone device")
def test_cpp_standalone_runs_delay_zero_as_the_runtime_device(zoo, tmp_path):
    """--delay zero compiled: the samples' rounds last T + the largest offset and each population's window and
    synaptic delays are in the C++ program (offers gate, a skip connection over two populations, a silent copy
    in the last batch): the runtime device's results exactly, which are the reference's zero-delay network's."""
    net, _ = zoo("branches")
    x = np.random.default_rng(6).uniform(0, 1, (5,) + tuple(net.input.shape)).astype(np.float32)
    script = export("brian2", net, tmp_path / "snn_brian2.py")
    options = ("--steps", "30", "--batch", "2", "--delay", "zero")
    runtime = run_for_results(script, x, *options, "--device", "runtime")
    standalone = run_for_results(script, x, *options, "--device", "cpp_standalone", timeout=900)
    assert_same_results(runtime, standalone)
    assert standalone["meta"]["delay"] == "zero"
    assert_agree(standalone, Reference().run(net, x, steps=30, delay="zero"))


def test_cpp_standalone_refuses_a_batch_longer_than_its_clocks_stay_in_step(bundled, tmp_path):
    """cpp_standalone runs a batch's samples one after another: beyond 2**15 steps a run, Brian2's clock
    of the samples' starts would drift from the steps' clock, so a longer batch is refused in one line,
    before anything is built; the default batch splits the samples into runs within that bound."""
    _, net, _ = bundled
    script = export("brian2", net, tmp_path / "snn_brian2.py")
    proc = run_script(script, "--input", str(BUNDLED_SAMPLES), "-n", "10", "--steps", "4000", "--batch", "9",
                      "--device", "cpp_standalone", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith("error: argument --batch: at most 8 with --device cpp_standalone at 4000 "
                                        "steps (its samples run one after another, at most 32768 steps a run), got 9")
    module = load_module(script)
    args = SimpleNamespace(device="cpp_standalone", steps=4000, readout="count", samples=10, delay="step")
    assert module.default_batch(10, args)[0] == 5  # 2 runs of 5 (at most 8 a run), not 1 run of 10


def load_module(script):
    """The exported script as a module, its main() not run."""
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
