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


@pytest.mark.parametrize("make", [inception_graph, residual_graph])
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
