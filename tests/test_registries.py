"""Every registry keyed by op class covers every op it must, and each entry does what it says.

Adding an op class to :mod:`snnexport.ops` fails here until it has an example below and an entry in
each registry: the simulator's lowering, op counting, the normalization facts and feature detection
(linear ops that a projection may hold for the first two, every linear op for normalization, every
op for features).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

from snnexport import normalization, opcount  # noqa: E402
from snnexport.errors import SnnexportError  # noqa: E402
from snnexport.network_check import PROJECTION_OPS  # noqa: E402
from snnexport.ops import (OP_TYPES, Activation, Add, Affine, AvgPool, Concat, Conv2D, ConvTranspose,  # noqa: E402
                           Dense, Embed, MaxPool, Op, Pad, Reshape, Scale, Transpose)
from snnexport.simulator import lowering  # noqa: E402
from snnexport.writers.base import FEATURES, OP_FEATURES, op_features  # noqa: E402

_rng = np.random.default_rng(7)


def _w(*shape: int) -> np.ndarray:
    """Weights with some exact zeros (zero weights are no synapses)."""
    w = _rng.normal(0, 1, shape).astype(np.float32)
    w[_rng.random(shape) < 0.3] = 0
    return w


# one instance of every op class, with the shapes of its inputs: geometry that is not the default
EXAMPLES: dict[type[Op], tuple[Op, list[tuple[int, ...]]]] = {
    Dense: (Dense(_w(4, 3), _w(3)), [(2, 4)]),
    Conv2D: (Conv2D(_w(3, 2, 1, 4), _w(4), (2, 1), ((1, 0), (1, 1)), (1, 2), 2), [(6, 7, 2)]),
    ConvTranspose: (ConvTranspose(_w(3, 2, 1, 4), _w(4), (2, 3), ((1, -1), (2, 0)), (1, 2), 2), [(4, 3, 2)]),
    Transpose: (Transpose((2, 0, 1)), [(2, 3, 4)]),
    AvgPool: (AvgPool((2, 3), (2, 2), ((1, 0), (1, 2))), [(5, 6, 2)]),
    Pad: (Pad(((1, 0), (0, 2))), [(3, 3, 2)]),
    Reshape: (Reshape((12,)), [(2, 3, 2)]),
    Affine: (Affine(np.array([0.5, 0.0, -2.0], np.float32), _w(3)), [(2, 3)]),
    Scale: (Scale(-0.75), [(5,)]),
    Embed: (Embed(0, 1, 5), [(3, 2)]),
    Concat: (Concat(1), [(2, 2), (2, 3)]),
    Add: (Add(), [(3,), (3,)]),
    MaxPool: (MaxPool((2, 2), (2, 2)), [(4, 4, 1)]),
    Activation: (Activation("relu"), [(3,)]),
}
PROJECTION = sorted((OP_TYPES[k] for k in PROJECTION_OPS), key=lambda c: c.kind)
LINEAR = sorted((c for c in OP_TYPES.values() if c.linear), key=lambda c: c.kind)


def _input(shape: tuple[int, ...], n: int = 2) -> np.ndarray:
    return _rng.uniform(-1, 1, (n,) + shape).astype(np.float32)


def _matrix(f, in_shape: tuple[int, ...]) -> np.ndarray:
    """The matrix of a linear map on (1, *in_shape) arrays, column by column."""
    size = int(np.prod(in_shape))
    cols = [np.asarray(f(np.eye(size, dtype=np.float32)[i].reshape((1,) + in_shape)), np.float64).reshape(-1)
            for i in range(size)]
    return np.stack(cols, axis=1)


def test_every_op_class_has_an_example() -> None:
    assert set(EXAMPLES) == set(OP_TYPES.values())


def test_lowering_covers_every_projection_op() -> None:
    assert set(lowering.LOWERINGS) == set(PROJECTION)
    op, (shape,) = EXAMPLES[MaxPool]
    with pytest.raises(SnnexportError, match="^op 'maxpool' cannot be part of a projection$"):
        lowering.lower(op, shape)


@pytest.mark.parametrize("cls", PROJECTION, ids=lambda c: c.kind)
def test_lowering_computes_the_op_without_its_constant(cls) -> None:
    op, (shape,) = EXAMPLES[cls]
    fn, arrays = lowering.lower(op, shape)
    x = _input(shape)
    np.testing.assert_allclose(np.asarray(fn(x, *arrays)), op.linear_part().forward(x), rtol=1e-5, atol=1e-6)


def test_counting_covers_every_projection_op() -> None:
    assert set(opcount.COUNTING) == set(PROJECTION)
    assert {c for c, e in opcount.COUNTING.items() if e.mixing} == {Conv2D, ConvTranspose, Dense, AvgPool}


@pytest.mark.parametrize("cls", PROJECTION, ids=lambda c: c.kind)
def test_counting_gives_one_per_synapse_and_its_transpose(cls) -> None:
    op, (shape,) = EXAMPLES[cls]
    ind = opcount.COUNTING[cls].indicator(op, shape)
    synapses = _matrix(ind.forward, shape)
    weights = _matrix(op.linear_part().forward, shape)  # one path per entry: nonzero where a synapse is
    np.testing.assert_array_equal(synapses, (weights != 0).astype(np.float64))
    out_shape = tuple(op.output_shape(shape))
    np.testing.assert_array_equal(_matrix(ind.transpose, out_shape), synapses.T)


def test_normalization_covers_every_linear_op() -> None:
    assert set(normalization.LINEAR) == set(LINEAR)
    for cls in PROJECTION:  # what a projection may hold has a gain
        assert normalization.LINEAR[cls].gain is not None, cls.kind


@pytest.mark.parametrize("cls", PROJECTION, ids=lambda c: c.kind)
def test_gain_bounds_the_op(cls) -> None:
    op, (shape,) = EXAMPLES[cls]
    x = _input(shape, 50)
    y = op.linear_part().forward(x)
    gain = normalization.LINEAR[cls].gain(op)
    assert np.abs(y).max() <= gain * np.abs(x).max() * (1 + 1e-6)


@pytest.mark.parametrize("cls", LINEAR, ids=lambda c: c.kind)
def test_constant_term_and_weight_fields(cls) -> None:
    op, shapes = EXAMPLES[cls]
    facts = normalization.LINEAR[cls]
    fields = {f.name for f in dataclasses.fields(op)}
    for name in (facts.weight, facts.constant):
        assert name is None or name in fields, (cls.kind, name)
    if facts.weight is not None:
        assert isinstance(getattr(op, facts.weight), np.ndarray)
    zeros = [np.zeros((1,) + s, np.float32) for s in shapes]
    out_shape = tuple(op.output_shape(*shapes))
    const = normalization.constant_term(op, out_shape)
    at_zero = op.forward(*zeros)
    if const is None:
        assert not at_zero.any(), cls.kind  # an op without a constant term maps zero to zero
    else:
        np.testing.assert_allclose(const, at_zero, rtol=1e-6)


def test_features_cover_every_op() -> None:
    assert set(OP_FEATURES) == set(OP_TYPES.values())
    for cls, (op, _) in EXAMPLES.items():
        assert op_features(op) <= set(FEATURES), cls.kind
    assert op_features(EXAMPLES[Conv2D][0]) == {"depthwise_conv", "padding"}
    assert op_features(Conv2D(_w(1, 1, 2, 2))) == {"conv2d"}
