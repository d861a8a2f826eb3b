"""The network file: an exact round trip for every node and op type, deterministic bytes, clear refusals."""

import numpy as np
import pytest

from snnexport import ops
from snnexport.errors import SnnexportError
from snnexport.network import (Gate, InputSpec, Network, Neuron, Normalization, Population, Projection,
                               Provenance, Settings, networks_equal)

rng = np.random.default_rng(2)
HOSTILE = ["q'uote\"s", "back\\slash", "new\nline", "{braces}", "__import__('os').system('echo hacked')",
           "ünïcødé µ-λ 漢字", "tab\tand\x00nul"]


def _k(*shape):
    return rng.normal(size=shape).astype(np.float32)


def every_op():
    """Every projection op with non-default parameters, in a chain (2, 2, 2) → (3,) that fits together."""
    return [ops.Conv2D(_k(3, 2, 1, 4), None, (2, 1), ((1, 0), (0, 1)), (1, 2), 2),  # → (1, 1, 4)
            ops.Pad(((1, 2), (3, 4))),  # → (4, 8, 4)
            ops.AvgPool((2, 2), (1, 2), ((0, 1), (1, 0))),  # → (4, 4, 4)
            ops.Affine(_k(4)), ops.Reshape((64,)), ops.Dense(_k(64, 2)),  # → (2,)
            ops.Embed(0, 1, 3), ops.Scale(0.123456789012345)]  # → (3,)


def make_network(names=("in", "a", "pool", "out")) -> Network:
    i, a, pool, out = names
    nodes = [Population(a, (4, 4, 2), _k(4, 4, 2), "relu", 2.5, 1),
             Gate(pool, a, (2, 2, 2), (2, 2), (2, 2), ((0, 0), (0, 0)), 2.5, 1),
             Population(out, (3,), _k(3), "softmax", 1.25, 2, None),
             Population(out + "2", (3,), _k(3), "clip", 0.5, 2, 6.0)]
    projs = [Projection(i, a, [ops.Conv2D(_k(3, 3, 1, 2), None, (1, 1), ((1, 1), (1, 1)))]),
             Projection(pool, out, [ops.Reshape((8,)), ops.Dense(_k(8, 3))]),
             Projection(pool, out + "2", every_op())]
    return Network(InputSpec(i, (4, 4, 1), "poisson"), nodes, projs, out, Neuron(1.0, "zero"),
                   Settings(50, "softmax", "zero", 2, 7), Normalization("percentile", 99.9, 10, "ab" * 32),
                   Provenance("m.h5", "cd" * 32, "3.15.1", "0.1.0"))


def test_round_trip_is_exact(tmp_path):
    net = make_network()
    path = tmp_path / "net.snn"
    net.save(path)
    back = Network.load(path)
    assert networks_equal(net, back)
    assert back.to_bytes() == net.to_bytes()
    for op_a, op_b in zip(net.projections[2].ops, back.projections[2].ops):
        assert op_a == op_b and type(op_a) is type(op_b)
    assert isinstance(back.node("pool"), Gate) and back.node("pool").padding == ((0, 0), (0, 0))
    assert back.settings.readout == "softmax" and back.neuron.reset == "zero" and back.input.encoding == "poisson"


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_survive(tmp_path, name):
    net = make_network((name + "_in", name, name + "_pool", name + "_out"))
    path = tmp_path / "net.snn"
    net.save(path)
    back = Network.load(path)
    assert [n.name for n in back.nodes] == [n.name for n in net.nodes]
    assert back.input.name == name + "_in"
    assert networks_equal(net, back)


def test_equal_networks_give_identical_bytes():
    global rng
    rng = np.random.default_rng(5)
    first = make_network().to_bytes()
    rng = np.random.default_rng(5)
    assert make_network().to_bytes() == first


def test_a_changed_weight_is_not_equal():
    import io
    net = make_network()
    back = Network.load(io.BytesIO(net.to_bytes()))
    back.projections[0].ops[0].kernel[0, 0, 0, 0] += 1e-6
    assert not networks_equal(net, back)


@pytest.mark.parametrize("content", [b"", b"not a zip", b"PK\x03\x04broken"])
def test_damaged_files_are_refused(tmp_path, content):
    path = tmp_path / "bad.snn"
    path.write_bytes(content)
    with pytest.raises(SnnexportError):
        Network.load(path)


def test_foreign_zip_is_refused(tmp_path):
    import zipfile
    path = tmp_path / "x.snn"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("network.json", '{"format": "something-else"}')
    with pytest.raises(SnnexportError, match="not a snnexport network"):
        Network.load(path)
