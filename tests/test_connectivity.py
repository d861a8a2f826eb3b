"""connectivity.expand must give exactly the linear map that the ops' numpy forward computes."""

import numpy as np
import pytest

from snnexport import ops
from snnexport.resize import keras_matrix, separable_chain
from snnexport.scriptlib import connectivity

rng = np.random.default_rng(1)


def _matrix(ops_chain, in_shape):
    (pre, post, w), out_shape = connectivity.expand([(o.kind, o.params()) for o in ops_chain], in_shape)
    m = np.zeros((int(np.prod(in_shape)), int(np.prod(out_shape))))
    np.add.at(m, (pre, post), w)
    return m, out_shape


def _forward(ops_chain, x):
    for o in ops_chain:
        x = o.forward(x)
    return x


def _k(*shape):
    return rng.normal(size=shape).astype(np.float32)


def _resize(method, in_shape, factors):
    h, w, _ = in_shape
    return [op for _, op in separable_chain(keras_matrix(method, h, h * factors[0]),
                                            keras_matrix(method, w, w * factors[1]))]


def _sparse(*shape):
    k = _k(*shape)
    k[rng.random(shape) < 0.6] = 0
    return k


CASES = {
    "conv valid": ([ops.Conv2D(_k(3, 3, 2, 4))], (6, 7, 2)),
    "conv even kernel, asymmetric padding, stride 2": ([ops.Conv2D(_k(4, 2, 3, 5), None, (2, 2), ((1, 2), (0, 1)))], (9, 8, 3)),
    "conv dilated": ([ops.Conv2D(_k(3, 3, 2, 2), None, (1, 1), ((2, 2), (2, 2)), (2, 2))], (7, 7, 2)),
    "grouped / depthwise": ([ops.Conv2D(_k(3, 3, 1, 6), None, (1, 2), ((1, 1), (1, 1)), (1, 1), 3)], (5, 6, 3)),
    "conv1d as H=1": ([ops.Conv2D(_k(1, 3, 2, 3), None, (1, 2), ((0, 0), (2, 0)))], (1, 9, 2)),
    "conv transpose, stride 2, 'same' crop": ([ops.ConvTranspose(_k(3, 3, 2, 4), None, (2, 2), ((1, 0), (1, 0)))],
                                              (4, 5, 2)),
    "conv transpose, grouped, dilated, output padding": (
        [ops.ConvTranspose(_k(2, 3, 1, 6), None, (3, 2), ((0, -2), (1, -1)), (2, 1), 3)], (3, 4, 3)),
    "nearest upsampling then cropping": ([ops.ConvTranspose(np.ones((2, 3, 1, 2), np.float32), None, (2, 3), groups=2),
                                          ops.ConvTranspose(np.ones((1, 1, 1, 2), np.float32), None,
                                                            crop=((1, 2), (0, 3)), groups=2)], (3, 2, 2)),
    "permute": ([ops.Transpose((1, 2, 0))], (2, 3, 4)),
    "permute then dense": ([ops.Transpose((1, 0, 2)), ops.Reshape((24,)), ops.Dense(_k(24, 3))], (2, 4, 3)),
    "dense": ([ops.Dense(_k(12, 5))], (12,)),
    "dense on last axis": ([ops.Dense(_k(3, 4))], (2, 5, 3)),
    "avgpool same": ([ops.AvgPool((3, 3), (2, 2), ((1, 1), (0, 1)))], (6, 5, 2)),
    "pad": ([ops.Pad(((0, 2), (1, 0)))], (3, 4, 2)),
    "embed": ([ops.Embed(2, 1, 6)], (2, 3, 2)),
    "affine": ([ops.Affine(_k(3))], (2, 2, 3)),
    "scale": ([ops.Scale(0.7)], (5,)),
    "flatten then dense": ([ops.Reshape((24,)), ops.Dense(_k(24, 3))], (2, 4, 3)),
    "bilinear resize, factors 2 and 3": (_resize("bilinear", (5, 4, 3), (2, 3)), (5, 4, 3)),
    "bicubic resize of the rows only": (_resize("bicubic", (3, 4, 2), (3, 1)), (3, 4, 2)),
    "lanczos3 resize of the columns only": (_resize("lanczos3", (2, 5, 2), (1, 2)), (2, 5, 2)),
    "dense with zero weights, on the last axis": ([ops.Dense(_sparse(4, 5))], (3, 2, 4)),
    "pad, conv, avgpool, flatten, dense": ([ops.Pad(((1, 0), (0, 1))), ops.Conv2D(_k(3, 3, 2, 3), None, (1, 1), ((1, 1), (1, 1))),
                                            ops.AvgPool((2, 2), (2, 2)), ops.Reshape((27,)), ops.Dense(_k(27, 4))], (5, 5, 2)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_synapses_compute_the_forward_pass(name):
    chain, in_shape = CASES[name]
    x = rng.normal(size=(3,) + in_shape).astype(np.float32)
    y = _forward(chain, x)
    m, out_shape = _matrix(chain, in_shape)
    assert out_shape == y.shape[1:]
    np.testing.assert_allclose(x.reshape(3, -1) @ m, y.reshape(3, -1), rtol=1e-4, atol=1e-5)


def test_reshape_alone_is_the_identity():
    (pre, post, w), shape = connectivity.expand([("reshape", {"shape": (12,)})], (2, 2, 3))
    assert shape == (12,)
    np.testing.assert_array_equal(pre, np.arange(12))
    np.testing.assert_array_equal(post, np.arange(12))
    np.testing.assert_array_equal(w, np.ones(12))


def test_zero_weights_make_no_synapses():
    k = np.zeros((3, 3, 1, 1), np.float32)
    k[1, 1] = 2.0
    (pre, post, w), _ = connectivity.expand([("conv2d", ops.Conv2D(k).params())], (4, 4, 1))
    assert len(pre) == 4 and np.all(w == 2.0)


TARGET_CASES = dict(CASES, **{
    "reshape alone": ([ops.Reshape((12,))], (2, 2, 3)),
    "conv then avgpool (paths summed)": ([ops.Conv2D(_k(3, 3, 2, 3), None, (1, 1), ((1, 1), (1, 1))),
                                          ops.AvgPool((2, 2), (2, 2))], (6, 6, 2)),
})


@pytest.mark.parametrize("name", list(TARGET_CASES))
def test_synapses_onto_some_targets_are_the_full_list_filtered(name):
    """An MPI process expands only the synapses onto its own neurons (targets): exactly the full list's
    elements whose post is a target, in the same order, with the same float32 weights."""
    chain, in_shape = TARGET_CASES[name]
    params = [(o.kind, o.params()) for o in chain]
    (pre, post, w), out_shape = connectivity.expand(params, in_shape)
    n_out = int(np.prod(out_shape))
    masks = [np.zeros(n_out, bool), np.ones(n_out, bool), np.arange(n_out) % 2 == 1]
    masks += [rng.random(n_out) < density for density in (0.05, 0.5, 0.9)]
    for targets in masks:
        (pre_t, post_t, w_t), shape_t = connectivity.expand(params, in_shape, targets)
        keep = targets[post]
        assert shape_t == out_shape
        assert pre_t.dtype == pre.dtype and post_t.dtype == post.dtype and w_t.dtype == w.dtype
        np.testing.assert_array_equal(pre_t, pre[keep])
        np.testing.assert_array_equal(post_t, post[keep])
        np.testing.assert_array_equal(w_t, w[keep])
    assert len(pre) > 0 and 0 < masks[2][post].sum() < len(post)  # the filter had something to drop
