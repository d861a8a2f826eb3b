"""NIR in and out (issue 18): the nir writer's graphs pass nir's own type check and, run by a numpy NIR
interpreter (tests/nir_interpreter.py), give snnexport's zero-delay spike counts; .nir files read back into
networks that simulate identically (round trip); a graph built with ``nir`` in the NIR paper's N-MNIST CNN
layout runs on every exported simulator; bad and unsupported files are one line each."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import needs
from script_runner import every_simulator, export_and_run
from snnexport.cli import main
from snnexport.compare import identical_fraction
from snnexport.network import Network
from snnexport.simulator import simulate

pytestmark = needs("nir")
MNIST = os.environ.get("SNNEXPORT_MNIST", str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz"))


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def mnist_net(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """An avg-pool MNIST CNN (seeded weights, normalized on 200 training images), reset to zero, as a .snn
    file; and 100 test images."""
    if not Path(MNIST).is_file():
        pytest.skip(f"MNIST not found at {MNIST} (set SNNEXPORT_MNIST)")
    import keras
    from keras import layers as L
    import model_zoo
    from snnexport import data
    from snnexport.convert import convert
    from snnexport.readers.keras import read_model
    folder = tmp_path_factory.mktemp("nir")
    model = model_zoo.randomize(keras.Sequential([
        keras.Input((28, 28, 1)),
        model_zoo.Conv2D(6, 5, activation="relu", name="conv1"), L.AveragePooling2D(2, name="pool1"),
        model_zoo.Conv2D(12, 3, padding="same", activation="relu", name="conv2"), L.AveragePooling2D(2, name="pool2"),
        L.Flatten(name="flat"), model_zoo.Dense(10, name="out")], name="avgpool_mnist"), 18)
    model.save(folder / "m.keras")
    with np.load(MNIST) as f:
        calib = (f["x_train"][:200, :, :, None] / 255).astype(np.float32)
    x, _ = data.load_samples(MNIST, (28, 28, 1), "data", False, None, limit=100)
    net = convert(read_model(folder / "m.keras"), calib, reset="zero")
    net.save(folder / "m.snn")
    return folder / "m.snn", x


def test_writer_output_passes_nirs_type_check_and_is_deterministic(mnist_net, tmp_path, capsys):
    import nir
    snn, _ = mnist_net
    for name in ("a.nir", "b.nir"):
        code, _, err = _cli(capsys, snn, "--to", "nir", "-o", tmp_path / name)
        assert code == 0, err
    assert (tmp_path / "a.nir").read_bytes() == (tmp_path / "b.nir").read_bytes()
    graph = nir.read(tmp_path / "a.nir", type_check=True)
    types = sorted({type(n).__name__ for n in graph.nodes.values()})
    assert types == ["Affine", "AvgPool2d", "Conv2d", "Flatten", "IF", "Input", "Output"], types
    assert "v > v_threshold" in str(graph.metadata["approximations"])
    assert "approximation: threshold rule ge: NIR's IF fires where v > v_threshold" in err
    code, _, err = _cli(capsys, snn, "--threshold-rule", "gt", "--to", "nir", "-o", tmp_path / "gt.nir")
    assert code == 0 and "threshold rule" not in err and "reset" not in err, err  # NIR's own IF: no note
    code, _, err = _cli(capsys, snn, "--to", "nir")
    assert code == 1 and err.count("\n") == 1 and "-o FILE.nir" in err


@pytest.mark.parametrize("rule", ["gt", "ge"])
def test_interpreter_reproduces_zero_delay_simulation_on_mnist(rule, mnist_net, tmp_path, capsys):
    """100 MNIST images, 40 steps, reset to zero; the interpreter fires by NIR's rule (v > θ), the network
    by threshold rule gt (NIR's) or ge (the paper's: an approximation in NIR)."""
    import nir
    import nir_interpreter
    snn, x = mnist_net
    net = Network.load(snn)
    net.neuron.threshold_rule = rule
    net.save(tmp_path / "m.snn")
    assert _cli(capsys, tmp_path / "m.snn", "--to", "nir", "-o", tmp_path / "m.nir")[0] == 0
    graph = nir.read(tmp_path / "m.nir", type_check=True)
    ref = simulate(net, x, steps=40, delay="zero")
    counts = nir_interpreter.run(graph, np.moveaxis(x, -1, 1), 40)
    same, total = 0, 0
    for k, pop in enumerate(net.populations):
        ours = ref[f"counts_{k}"].reshape((len(x),) + tuple(pop.shape))
        theirs = counts[pop.name]
        theirs = np.moveaxis(theirs, 1, -1) if theirs.ndim == 4 else theirs
        same += int((ours == theirs).sum())
        total += ours.size
        assert ours.sum() > 0, pop.name  # every layer fires
    print(f"threshold rule {rule}: identical counts: {same}/{total} = {same / total:.5f}")
    assert same / total >= 0.999


def test_round_trip_simulates_identically(mnist_net, tmp_path, capsys):
    snn, x = mnist_net
    a = Network.load(snn)
    a.neuron.threshold_rule = "gt"  # with reset zero: NIR's IF exactly
    a.save(tmp_path / "a.snn")
    assert _cli(capsys, tmp_path / "a.snn", "--to", "nir", "-o", tmp_path / "m.nir")[0] == 0
    code, _, err = _cli(capsys, tmp_path / "m.nir", "--to", "network", "-o", tmp_path / "back.snn")
    assert code == 0, err
    b = Network.load(tmp_path / "back.snn")
    assert (b.neuron.reset, b.neuron.threshold_rule, b.provenance.model_format) == ("zero", "gt", "nir")
    for delay in ("zero", "step"):
        ra, rb = simulate(a, x[:30], steps=40, delay=delay), simulate(b, x[:30], steps=40, delay=delay)
        assert identical_fraction(ra, rb)["all"] == 1.0
        assert np.array_equal(ra["predictions"], rb["predictions"])


def nmnist_graph(path: Path) -> None:
    """The NIR paper's N-MNIST CNN (its cnn_sinabs.nir layout: 2×34×34 events; conv 5×5 stride 2 → IF,
    conv 3×3 → IF, sum-pool, conv 3×3 → IF, sum-pool, flatten, linear 128→256 → IF, linear 256→10 → IF;
    no biases), built with ``nir`` and seeded weights."""
    import nir
    rng = np.random.default_rng(5)

    def conv(cin, cout, k, stride, size):
        w = rng.normal(0.02, 1.5 / np.sqrt(cin * k * k), (cout, cin, k, k)).astype(np.float32)
        return nir.Conv2d(input_shape=size, weight=w, stride=stride, padding=1, dilation=1, groups=1,
                          bias=np.zeros(cout, np.float32))

    def neurons(*shape):
        return nir.IF(r=np.ones(shape, np.float32), v_threshold=np.ones(shape, np.float32),
                      v_reset=np.zeros(shape, np.float32))

    def pool():
        return nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))

    nodes = {"input": nir.Input(np.array([2, 34, 34])),
             "0": conv(2, 16, 5, 2, (34, 34)), "1": neurons(16, 16, 16),
             "2": conv(16, 16, 3, 1, (16, 16)), "3": neurons(16, 16, 16), "4": pool(),
             "5": conv(16, 8, 3, 1, (8, 8)), "6": neurons(8, 8, 8), "7": pool(),
             "8": nir.Flatten(input_type={"input": np.array([8, 4, 4])}, start_dim=0, end_dim=-1),
             "9": nir.Linear(weight=rng.normal(0.01, 0.15, (256, 128)).astype(np.float32)), "10": neurons(256),
             "11": nir.Linear(weight=rng.normal(0.01, 0.15, (10, 256)).astype(np.float32)), "12": neurons(10),
             "output": nir.Output(np.array([10]))}
    names = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(names, names[1:])), type_check=True)
    nir.write(path, graph)


@pytest.fixture(scope="module")
def nmnist(tmp_path_factory) -> tuple[Network, np.ndarray]:
    from snnexport.readers.nir import read_network
    path = tmp_path_factory.mktemp("nmnist") / "cnn.nir"
    nmnist_graph(path)
    x = (np.random.default_rng(1).random((2, 34, 34, 2)) < 0.3).astype(np.float32)  # event frames
    return read_network(path), x


def test_nmnist_layout_reads_and_runs_on_the_reference(nmnist):
    net, x = nmnist
    assert [p.shape for p in net.populations] == [(16, 16, 16), (16, 16, 16), (8, 8, 8), (256,), (10,)]
    res = simulate(net, x, steps=20)
    print([int(res[f'counts_{k}'].sum()) for k in range(len(net.populations))])
    assert all(res[f"counts_{k}"].sum() > 0 for k in range(len(net.populations)))


@pytest.mark.parametrize("writer", every_simulator())
def test_nmnist_layout_runs_on_every_simulator(writer, nmnist, tmp_path):
    net, x = nmnist
    ref = simulate(net, x, steps=20)
    got = export_and_run(writer, net, x, tmp_path, 20)
    assert identical_fraction(ref, got)["all"] >= 0.999


def _write(path: Path, nodes: dict, edges: list) -> Path:
    import nir
    nir.write(path, nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    return path


def test_reader_refusals_are_one_line(tmp_path, capsys):
    import nir
    one = np.ones(4, np.float32)
    lif = _write(tmp_path / "lif.nir", {"input": nir.Input(np.array([4])),
                                        "fc": nir.Linear(weight=np.eye(4, dtype=np.float32)),
                                        "leaky": nir.LIF(tau=one, r=one, v_leak=0 * one, v_threshold=one),
                                        "output": nir.Output(np.array([4]))},
                 [("input", "fc"), ("fc", "leaky"), ("leaky", "output")])
    reset = _write(tmp_path / "reset.nir", {"input": nir.Input(np.array([4])),
                                            "n": nir.IF(r=one, v_threshold=one, v_reset=-one),
                                            "output": nir.Output(np.array([4]))},
                   [("input", "n"), ("n", "output")])
    cycle = _write(tmp_path / "cycle.nir", {"input": nir.Input(np.array([4])),
                                            "a": nir.IF(r=one, v_threshold=one), "b": nir.IF(r=one, v_threshold=one),
                                            "output": nir.Output(np.array([4]))},
                   [("input", "a"), ("a", "b"), ("b", "a"), ("b", "output")])
    damaged = tmp_path / "damaged.nir"
    damaged.write_bytes(lif.read_bytes()[:600])
    import h5py
    linked = tmp_path / "linked.nir"
    linked.write_bytes(reset.read_bytes())
    with h5py.File(linked, "a") as f:
        del f["node/nodes/n/r"]
        f["node/nodes/n/r"] = h5py.ExternalLink(str(reset), "/node/nodes/n/r")
    for path, says in ((lif, "node 'leaky' is a NIR LIF node"), (reset, "v_reset = -1"),
                       (cycle, "cycle through node"), (damaged, "not a readable NIR"),
                       (linked, "link to elsewhere"), (tmp_path / "none.nir", "no such file")):
        code, _, err = _cli(capsys, "info", path)
        assert code == 1 and err.count("\n") == 1 and says in err, (path.name, err)


def test_refused_features_and_the_approximation_flag(tmp_path, capsys, zoo):
    import nir
    net, _ = zoo("lenet")  # max-pooling
    net.save(tmp_path / "lenet.snn")
    code, _, err = _cli(capsys, tmp_path / "lenet.snn", "--to", "nir", "-o", tmp_path / "l.nir")
    assert code == 1 and "maxpool" in err and not (tmp_path / "l.nir").exists()
    code, _, err = _cli(capsys, tmp_path / "lenet.snn", "--to", "nir", "-o", tmp_path / "l.nir",
                        "--nir-approximate", "maxpool=avgpool")
    assert code == 0, err
    graph = nir.read(tmp_path / "l.nir", type_check=True)
    assert graph.metadata["nir_approximate"] == "maxpool=avgpool"
    assert "max-pooling written as average pooling" in graph.metadata["approximations"]
    code, _, err = _cli(capsys, tmp_path / "lenet.snn", "--to", "network", "--nir-approximate", "maxpool=avgpool")
    assert code == 1 and "only to --to nir" in err


def test_every_feature_has_an_entry_and_resampling_is_refused_in_one_line(tmp_path, capsys, zoo):
    """NIR has no transposed convolution or axis permutation: the zoo's resampling model (Conv2DTranspose,
    nearest and bilinear UpSampling2D, Permute) is refused in one line, not with an internal error."""
    from snnexport.writers.base import FEATURES
    from snnexport.writers.nir import NirWriter
    assert list(NirWriter.capabilities) == list(FEATURES)
    net, _ = zoo("resampling")
    net.save(tmp_path / "r.snn")
    capsys.readouterr()  # the conversion's own messages
    code, _, err = _cli(capsys, tmp_path / "r.snn", "--to", "nir", "-o", tmp_path / "r.nir")
    assert code == 1 and err.count("\n") == 1 and "cannot express conv transpose" in err, err
    assert not (tmp_path / "r.nir").exists()


@pytest.mark.parametrize("model", ["avgpool", "residual", "depthwise", "zero_padding"])
def test_round_trip_of_zoo_geometry(model, zoo, tmp_path):
    """Padded average pooling, sums, grouped convolutions, asymmetric padding: written and read back,
    the network simulates as before (reset to zero: within NIR's vocabulary)."""
    import nir
    from snnexport.readers.nir import read_network
    from snnexport.writers.base import WriteOptions
    from snnexport.writers.nir import NirWriter
    net, x = zoo(model)
    net = copy.deepcopy(net)
    net.neuron.reset, net.neuron.threshold_rule = "zero", "gt"
    (tmp_path / "m.nir").write_bytes(NirWriter().render(net, WriteOptions(output=tmp_path / "m.nir")).main)
    nir.read(tmp_path / "m.nir", type_check=True)
    back = read_network(tmp_path / "m.nir")
    for delay in ("zero", "step"):
        a, b = simulate(net, x, steps=40, delay=delay), simulate(back, x, steps=40, delay=delay)
        assert identical_fraction(a, b)["all"] == 1.0, delay


def test_damaged_files_are_one_line_or_read(tmp_path, capsys):
    """Bytes changed anywhere in a written graph: read (the damage hit unused or compressed-through data)
    or one line, exit 1; never an internal error."""
    path = tmp_path / "g.nir"
    nmnist_graph(path)
    good = path.read_bytes()
    rng = np.random.default_rng(0)
    codes = set()
    for _ in range(40):
        damaged = bytearray(good)
        for at in rng.integers(0, len(good), 4):
            damaged[at] = int(rng.integers(256))
        path.write_bytes(bytes(damaged))
        code, _, err = _cli(capsys, "info", path)
        assert code in (0, 1) and (code == 0 or err.count("\n") == 1), err
        codes.add(code)
    assert 1 in codes


def test_validate_runs_a_nir_graph_on_every_simulator(tmp_path, capsys):
    """`snnexport validate model.nir`: every installed simulator's spike counts agree (≥ 99.9 % identical)."""
    import json
    nmnist_graph(tmp_path / "cnn.nir")
    np.save(tmp_path / "x.npy", (np.random.default_rng(2).random((2, 34, 34, 2)) < 0.3).astype(np.float32))
    code, _, err = _cli(capsys, "validate", tmp_path / "cnn.nir", "--data", tmp_path / "x.npy", "--steps", "10",
                        "--report", tmp_path / "report")
    from snnexport import writers
    assert code == 0, err
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    installed = [w for w in writers.runnable() if not writers.missing_modules(w)]
    assert report["summary"]["simulators_ok"] == ["reference"] + installed, err
    assert len(report["pairs"]) == (len(installed) + 1) * len(installed) // 2
    for pair in report["pairs"]:
        assert pair["identical_fraction"]["all"] >= 0.999, pair


def test_reader_matches_the_interpreter_on_sums_scales_pools_and_thresholds(tmp_path):
    """Two edges into an IF node, r ≠ 1, thresholds that differ between nodes, a per-channel Scale, average
    and sum pooling, biases: the network read simulates (zero delay) as the NIR interpreter runs the graph."""
    import nir
    import nir_interpreter
    from snnexport.readers.nir import read_network
    rng = np.random.default_rng(11)

    def f32(*shape, scale=1.0, low=None):
        return (rng.uniform(low, scale, shape) if low is not None else rng.normal(0, scale, shape)).astype(np.float32)

    def conv(bias):
        return nir.Conv2d(input_shape=(8, 8), weight=f32(3, 1, 3, 3, scale=0.5), stride=1, padding=1, dilation=1,
                          groups=1, bias=f32(3, scale=0.1, low=0) if bias else np.zeros(3, np.float32))

    nodes = {"in": nir.Input(np.array([1, 8, 8])), "ca": conv(True), "cb": conv(False),
             "s": nir.Scale(scale=np.repeat(f32(3, scale=1.5, low=0.5), 64).reshape(3, 8, 8)),
             "a": nir.IF(r=np.full((3, 8, 8), 2, np.float32), v_threshold=np.full((3, 8, 8), 0.5, np.float32)),
             "avg": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
             "sum": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
             "fa": nir.Flatten(input_type={"input": np.array([3, 4, 4])}, start_dim=0, end_dim=-1),
             "fs": nir.Flatten(input_type={"input": np.array([3, 4, 4])}, start_dim=0, end_dim=-1),
             "aff": nir.Affine(weight=f32(6, 48, scale=0.6), bias=f32(6, scale=0.05, low=0)),
             "lin": nir.Linear(weight=f32(6, 48, scale=0.3)),
             "b": nir.IF(r=np.ones(6, np.float32), v_threshold=np.full(6, 1.5, np.float32)),
             "out": nir.Output(np.array([6]))}
    edges = [("in", "ca"), ("in", "cb"), ("cb", "s"), ("ca", "a"), ("s", "a"), ("a", "avg"), ("a", "sum"),
             ("avg", "fa"), ("sum", "fs"), ("fa", "aff"), ("fs", "lin"), ("aff", "b"), ("lin", "b"), ("b", "out")]
    nir.write(tmp_path / "g.nir", nir.NIRGraph(nodes=nodes, edges=edges, type_check=True))
    net = read_network(tmp_path / "g.nir")
    assert net.neuron.threshold == 1 and net.neuron.threshold_rule == "gt" and len(net.incoming("b")) == 2
    x = rng.random((20, 8, 8, 1)).astype(np.float32)
    ref = simulate(net, x, steps=50, delay="zero")
    counts = nir_interpreter.run(nir.read(tmp_path / "g.nir"), np.moveaxis(x, -1, 1), 50)
    a, b = np.moveaxis(counts["a"], 1, -1).reshape(20, -1), counts["b"]
    assert a.sum() > 0 and b.sum() > 0
    same = (np.sum(ref["counts_0"] == a) + np.sum(ref["counts_1"] == b)) / (a.size + b.size)
    print(f"identical counts: {same:.5f} ({int(a.sum())}, {int(b.sum())} spikes)")
    assert same >= 0.999, same


def test_conversion_options_are_refused_for_a_nir_graph(tmp_path, capsys):
    nmnist_graph(tmp_path / "cnn.nir")
    np.save(tmp_path / "x.npy", np.zeros((2, 34, 34, 2), np.float32))
    code, _, err = _cli(capsys, tmp_path / "cnn.nir", "--calibration", tmp_path / "x.npy", "-o", tmp_path / "n.snn")
    assert code == 1 and "is a NIR graph, a spiking network already: --calibration" in err
    code, _, err = _cli(capsys, tmp_path / "cnn.nir", "--threshold-rule", "ge", "-o", tmp_path / "n.snn")
    assert code == 0 and Network.load(tmp_path / "n.snn").neuron.threshold_rule == "ge", err
