"""Conversion: structure of the spiking network, the paper's normalization, and equivalence to the ANN."""

import numpy as np
import pytest

from snnexport import ops
from snnexport.convert import convert
from snnexport.errors import SnnexportError
from snnexport.graph import Graph, Node
from snnexport.network import Gate, Population

rng = np.random.default_rng(3)


def _k(*shape, s=0.4):
    return (rng.normal(size=shape) * s).astype(np.float32)


def inception_graph() -> Graph:
    """conv → relu → maxpool → BN → two branches (3x3, 1x1 stride 2) → concat → flatten → dense → softmax."""
    nodes = [
        Node("c1:linear", ops.Conv2D(_k(3, 3, 1, 4), _k(4), (1, 1), ((1, 1), (1, 1))), ("in",)),
        Node("c1", ops.Activation("relu"), ("c1:linear",)),
        Node("p1", ops.MaxPool((2, 2), (2, 2)), ("c1",)),
        Node("bn", ops.Affine(_k(4) + 1, _k(4)), ("p1",)),
        Node("b1:linear", ops.Conv2D(_k(3, 3, 4, 6), _k(6)), ("bn",)),
        Node("b1", ops.Activation("relu"), ("b1:linear",)),
        Node("b2:linear", ops.Conv2D(_k(1, 1, 4, 5), _k(5), (2, 2)), ("p1",)),
        Node("b2", ops.Activation("relu"), ("b2:linear",)),
        Node("cat", ops.Concat(2), ("b1", "b2")),
        Node("flat", ops.Reshape((2 * 2 * 11,)), ("cat",)),
        Node("d:linear", ops.Dense(_k(44, 5), _k(5)), ("flat",)),
        Node("d", ops.Activation("softmax"), ("d:linear",)),
    ]
    return Graph("in", (8, 8, 1), nodes, "d")


def residual_graph() -> Graph:
    """conv → relu; then relu(conv(a) + a) (a residual Add), average pooling, logits without activation."""
    nodes = [
        Node("a:linear", ops.Conv2D(_k(3, 3, 1, 3), _k(3), (1, 1), ((1, 1), (1, 1))), ("in",)),
        Node("a", ops.Activation("relu"), ("a:linear",)),
        Node("r", ops.Conv2D(_k(3, 3, 3, 3), _k(3), (1, 1), ((1, 1), (1, 1))), ("a",)),
        Node("sum", ops.Add(), ("r", "a")),
        Node("s", ops.Activation("relu"), ("sum",)),
        Node("avg", ops.AvgPool((2, 2), (2, 2), ((0, 1), (0, 1))), ("s",)),
        Node("flat", ops.Reshape((3 * 3 * 3,)), ("avg",)),
        Node("logits", ops.Dense(_k(27, 4), _k(4)), ("flat",)),
    ]
    return Graph("in", (5, 5, 1), nodes, "logits")


def test_structure_of_an_inception_block():
    net = convert(inception_graph(), rng.random((30, 8, 8, 1)).astype(np.float32))
    kinds = [(type(n).__name__, n.name) for n in net.nodes]
    assert kinds == [("Population", "c1"), ("Gate", "p1"), ("Population", "b1"), ("Population", "b2"),
                     ("Population", "d")]
    assert [n.depth for n in net.nodes] == [1, 1, 2, 2, 3]
    into_d = net.incoming("d")
    assert sorted(p.source for p in into_d) == ["b1", "b2"]
    assert all(any(isinstance(o, ops.Embed) for o in p.ops) for p in into_d)
    # the batch-norm after the gate is folded into b1's kernel (scale) and bias (offset)
    assert [o.kind for o in net.incoming("b1")[0].ops] == ["conv2d"]


def test_residual_add_gives_two_projections_and_a_linear_output():
    net = convert(residual_graph(), rng.random((30, 5, 5, 1)).astype(np.float32))
    assert sorted(p.source for p in net.incoming("s")) == ["a", "a"]
    out = net.node(net.output)
    assert isinstance(out, Population) and out.activation == "linear"


def test_lambda_is_the_percentile_of_nonzero_activations():
    g = inception_graph()
    x = rng.random((40, 8, 8, 1)).astype(np.float32)
    net = convert(g, x, percentile=90.0)
    acts = g.run(x, keep=["c1", "b2"])
    for name in ("c1", "b2"):
        a = acts[name].ravel()
        assert net.node(name).scale == pytest.approx(float(np.percentile(a[a > 0], 90.0)), rel=1e-6)
    assert isinstance(net.node("p1"), Gate) and net.node("p1").scale == net.node("c1").scale
    assert net.normalization.method == "percentile" and net.normalization.samples == 40


def test_max_norm_bounds_every_normalized_activation():
    from snnexport.simulator import ann_activations
    g = inception_graph()
    x = rng.random((40, 8, 8, 1)).astype(np.float32)
    net = convert(g, x, percentile=100.0)
    acts = ann_activations(net, x)
    for p in net.populations:
        if p.activation == "relu":
            assert acts[p.name].max() <= 1.0 + 1e-5


def bottleneck_graph() -> Graph:
    """MobileNetV2's linear bottleneck: relu → 3×3 conv (linear) → 1×1 conv → relu, and relu → 1×1 conv (linear)
    → strided 3×3 conv → relu."""
    nodes = [
        Node("a:linear", ops.Conv2D(_k(3, 3, 2, 4), _k(4), (1, 1), ((1, 1), (1, 1))), ("in",)),
        Node("a", ops.Activation("relu"), ("a:linear",)),
        Node("project", ops.Conv2D(_k(3, 3, 4, 3), _k(3)), ("a",)),
        Node("b:linear", ops.Conv2D(_k(1, 1, 3, 5), _k(5)), ("project",)),
        Node("b", ops.Activation("relu"), ("b:linear",)),
        Node("squeeze", ops.Conv2D(_k(1, 1, 5, 2), _k(2)), ("b",)),
        Node("c:linear", ops.Conv2D(_k(3, 3, 2, 4), _k(4), (2, 2), ((1, 0), (0, 1))), ("squeeze",)),
        Node("c", ops.Activation("relu"), ("c:linear",)),
    ]
    return Graph("in", (7, 7, 2), nodes, "c")


def test_a_convolution_and_a_pointwise_one_are_one_convolution_in_the_projection():
    net = convert(bottleneck_graph(), rng.random((10, 7, 7, 2)).astype(np.float32))
    chains = {p.target: p.ops for p in net.projections}
    assert [type(op) for op in chains["b"]] == [ops.Conv2D] and chains["b"][0].kernel.shape == (3, 3, 4, 5)
    assert [type(op) for op in chains["c"]] == [ops.Conv2D] and chains["c"][0].kernel.shape == (3, 3, 5, 4)
    assert chains["c"][0].strides == (2, 2) and chains["c"][0].padding == ((1, 0), (0, 1))


@pytest.mark.parametrize("make", [inception_graph, residual_graph, bottleneck_graph])
def test_normalized_network_is_the_ann_scaled_by_lambda(make):
    from snnexport.simulator import ann_activations
    g = make()
    x = rng.random((25,) + g.input_shape).astype(np.float32)
    net = convert(g, x)
    ann = g.run(x, keep=[p.name for p in net.populations if p.activation == "relu"])
    mine = ann_activations(net, x)
    for p in net.populations:
        if p.activation == "relu":
            np.testing.assert_allclose(mine[p.name].reshape(25, -1) * p.scale, ann[p.name].reshape(25, -1),
                                       rtol=1e-4, atol=1e-5)
    assert np.array_equal(mine[net.output].reshape(25, -1).argmax(1), ann[g.output].reshape(25, -1).argmax(1))


def test_without_calibration_a_bound_from_the_weights(capsys):
    g = inception_graph()
    net = convert(g, None)
    assert "no calibration data" in capsys.readouterr().err
    x = rng.uniform(-1, 1, (50, 8, 8, 1)).astype(np.float32)
    acts = g.run(x, keep=["c1", "b1", "b2"])
    for name in ("c1", "b1", "b2"):  # a bound: no activation for inputs in [-1, 1] exceeds λ
        assert acts[name].max() <= net.node(name).scale
    assert net.normalization.method == "model-bound"


def test_maxpool_before_relu_is_reordered():
    nodes = [Node("c", ops.Conv2D(_k(3, 3, 1, 2), _k(2)), ("in",)),
             Node("p", ops.MaxPool((2, 2), (2, 2)), ("c",)),
             Node("r", ops.Activation("relu"), ("p",)),
             Node("f", ops.Reshape((8,)), ("r",)),
             Node("o", ops.Dense(_k(8, 3)), ("f",)),
             Node("s", ops.Activation("softmax"), ("o",))]
    net = convert(Graph("in", (6, 6, 1), nodes, "s"), rng.random((10, 6, 6, 1)).astype(np.float32))
    assert [type(n).__name__ for n in net.nodes] == ["Population", "Gate", "Population"]
    assert net.node("p").source == "r"


@pytest.mark.parametrize("bad, message", [
    ([Node("p", ops.MaxPool((2, 2), (2, 2)), ("in",)), Node("f", ops.Reshape((9,)), ("p",)),
      Node("o", ops.Dense(_k(9, 2)), ("f",))], "max-pooling of the input"),
    ([Node("c", ops.Conv2D(_k(3, 3, 1, 1)), ("in",)), Node("s", ops.Activation("softmax"), ("c",)),
      Node("f", ops.Reshape((16,)), ("s",)), Node("o", ops.Dense(_k(16, 2)), ("f",))], "only as the output"),
])
def test_unsupported_structures_are_refused(bad, message):
    with pytest.raises(SnnexportError, match=message):
        convert(Graph("in", (6, 6, 1), bad, bad[-1].name), None)


# --- max-pooling of tensors that are not populations (keras.applications, issue 14) ------------------

def test_the_max_pools_of_the_applications_become_gates_and_keep_the_function(zoo):
    """ResNet's padded stem pool, Inception's pool of a concatenation, a pool of a sum of ReLUs and one
    after ReLU → BatchNormalization: all gates, and the description's ANN is Keras' function."""
    import model_zoo
    net, x = zoo("pooled_blocks")
    gates = {n.name: n.source for n in net.nodes if isinstance(n, Gate)}
    assert gates["stem_pool"] == "stem_relu" and net.node("stem_pool").padding == ((1, 1), (1, 1))
    assert sorted(v for k, v in gates.items() if k.startswith("cat_pool")) == ["a", "sep"]
    assert net.node(gates["mean_pool:pooled"]).activation == "relu"  # the one population the sum needed
    assert gates["bn_pool:pooled"] == "diff_relu"
    assert len(gates) == 5 and len(net.populations) == 8
    want = model_zoo.build_pooled_blocks().predict(x, verbose=0)
    from snnexport.simulator import ann_activations
    z = ann_activations(net, x)[net.output] * net.node(net.output).scale
    got = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(got / got.sum(1, keepdims=True), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, populations", [
    ("resnet_blocks", ["stem_relu", "block1_relu1", "block1_out", "block2_relu1", "block2_out", "out"]),
    # DenseNet concatenates convolution outputs before any activation: each BN → ReLU over a concatenation
    # is one population whose synapses compose the convolutions of every earlier map
    ("dense_blocks", ["dense1_l1_relu", "dense1_l2_relu", "trans_relu", "dense2_l1_relu", "dense2_l2_relu",
                      "final_relu", "out"]),
])
def test_resnet_and_densenet_blocks_convert_and_keep_the_function(zoo, name: str, populations: list[str]):
    """The validation suite's mnist_resnet and mnist_densenet architectures (issue 14), in small: one
    population per rectifier and the output, and the description evaluated as an ANN is Keras' function."""
    import model_zoo
    from snnexport.simulator import ann_activations
    net, x = zoo(name)
    assert [p.name for p in net.populations] == populations
    assert not [n for n in net.nodes if isinstance(n, Gate)]
    want = model_zoo.BUILDERS[name]().predict(x, verbose=0)
    assert want.std(axis=0).max() > 1e-3  # outputs that differ between inputs: a dead net would prove nothing
    z = ann_activations(net, x)[net.output] * net.node(net.output).scale
    got = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(got / got.sum(1, keepdims=True), want, rtol=1e-5, atol=1e-6)


def _signed_pool_graph() -> Graph:
    """Xception's pattern: conv → BN → max-pool → + shortcut, twice; no rectifier before either pool."""
    nodes, prev = [], "in"
    for i in (1, 2):
        nodes += [Node(f"c{i}", ops.Conv2D(_k(1, 1, 2, 2), _k(2)), (prev,), f"conv{i}"),
                  Node(f"bn{i}", ops.Affine(_k(2) + 1, _k(2)), (f"c{i}",), f"bn{i}"),
                  Node(f"p{i}", ops.MaxPool((2, 2), (1, 1)), (f"bn{i}",), f"pool{i}"),
                  Node(f"s{i}", ops.Conv2D(_k(2, 2, 2, 2)), (prev,), f"shortcut{i}"),
                  Node(f"add{i}", ops.Add(), (f"p{i}", f"s{i}"), f"add{i}"),
                  Node(f"r{i}", ops.Activation("relu"), (f"add{i}",), f"relu{i}")]
        prev = f"r{i}"
    nodes += [Node("flat", ops.Reshape((2 * 2 * 2,)), (prev,)), Node("o", ops.Dense(_k(8, 3)), ("flat",))]
    return Graph("in", (4, 4, 2), nodes, "o")


def test_max_pools_of_signed_tensors_are_refused_in_one_line_naming_each():
    with pytest.raises(SnnexportError) as e:
        convert(_signed_pool_graph(), None)
    msg = str(e.value)
    assert "'pool1', 'pool2'" in msg and "'bn1', 'bn2'" in msg and "no exact spiking construction" in msg
    assert "\n" not in msg


def test_padding_wider_than_the_pool_gets_a_population_of_its_own():
    """A zero padding that would leave a window without a real cell is not merged into the gate; the
    padded (non-negative) tensor becomes a ReLU population instead, which is exact."""
    nodes = [Node("c", ops.Conv2D(_k(3, 3, 1, 2), _k(2)), ("in",)), Node("r", ops.Activation("relu"), ("c",)),
             Node("pad", ops.Pad(((2, 2), (2, 2))), ("r",)), Node("p", ops.MaxPool((2, 2), (2, 2)), ("pad",)),
             Node("flat", ops.Reshape((3 * 3 * 2,)), ("p",)), Node("o", ops.Dense(_k(18, 3)), ("flat",))]
    g = Graph("in", (4, 4, 1), nodes, "o")
    x = rng.random((10, 4, 4, 1)).astype(np.float32)
    net = convert(g, x)
    assert net.node("p").source == "p:rectified" and net.node("p").padding == ((0, 0), (0, 0))
    from snnexport.simulator import ann_activations
    z = ann_activations(net, x)[net.output] * net.node(net.output).scale
    np.testing.assert_allclose(z, g.run(x)["o"].reshape(10, -1), rtol=1e-5, atol=1e-5)


def test_without_calibration_a_bound_beyond_float32_keeps_the_weights(capsys):
    """40 layers that each may grow activations 30-fold: the bound (~1e59) is no usable λ."""
    nodes, prev = [], "in"
    for i in range(40):
        nodes += [Node(f"d{i}", ops.Dense(np.full((4, 4), 7.5, np.float32)), (prev,)),
                  Node(f"r{i}", ops.Activation("relu"), (f"d{i}",), f"relu{i}")]
        prev = f"r{i}"
    g = Graph("in", (4,), nodes, prev)
    net = convert(g, None)
    assert net.normalization.method == "none" and all(p.scale == 1.0 for p in net.populations)
    err = capsys.readouterr().err
    assert "layer 'relu20'" in err and "--calibration" in err  # the first layer whose bound is beyond 1e30


@pytest.mark.parametrize("p", [99.9, 90.0, 50.0, 0.1, 100.0])
def test_streaming_percentile_keeps_few_values_and_is_numpys_bit_for_bit(p):
    from snnexport.normalization import _Extreme, _kept
    chunks = [rng.exponential(size=n).astype(np.float32) for n in (700, 1, 3000, 0, 1299)]
    every = np.concatenate(chunks)
    ext = _Extreme(_kept(p, every.size), low=p < 50)
    for c in chunks:
        ext.add(c)
    assert ext.kept.size + ext.pending_size <= 3 * _kept(p, every.size)  # bounded memory
    assert ext.percentile(p) == float(np.percentile(every, p))
    assert ext.kept.size <= _kept(p, every.size) < every.size


def test_streaming_percentile_is_exact_with_ties_and_many_batches():
    from snnexport.normalization import _Extreme, _kept
    # few distinct values: the value at the kept values' bound recurs in later batches (dropped ones)
    chunks = [rng.integers(1, 6, size=n).astype(np.float32) for n in rng.integers(0, 400, size=60)]
    every = np.concatenate(chunks)
    for p in (99.9, 99.0, 1.0):
        ext = _Extreme(_kept(p, every.size), low=p < 50)
        for c in chunks:
            ext.add(c)
        assert ext.percentile(p) == float(np.percentile(every, p))
