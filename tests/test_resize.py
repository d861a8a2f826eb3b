"""Resizing by interpolation (snnexport/resize.py): the 1-D matrices against the layers they stand for,
and the synapses of a resize projection (its matrices' nonzero entries, nothing more)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import keras
from keras import layers as L

from snnexport import opcount
from snnexport.convert import convert
from snnexport.ops import Dense, Transpose
from snnexport.readers.keras import read_model
from snnexport.resize import KERAS_KERNELS, keras_matrix, separable_chain

rng = np.random.default_rng(14)

# (height, width) of the input, (height, width) factors: odd and even sizes, unequal factors, 1×N maps
GEOMETRIES = [((4, 6), (2, 2)), ((5, 3), (2, 3)), ((3, 4), (3, 1)), ((1, 7), (1, 2)), ((1, 5), (4, 4)),
              ((6, 1), (2, 5)), ((2, 2), (5, 3))]


def _apply(a_h: np.ndarray, a_w: np.ndarray, x: np.ndarray) -> np.ndarray:
    for _, op in separable_chain(a_h, a_w):
        x = op.forward(x)
    return x


@pytest.mark.parametrize("method", list(KERAS_KERNELS))
def test_keras_matrices_reproduce_the_layer(method: str) -> None:
    for (h, w), (fh, fw) in GEOMETRIES:
        x = rng.normal(size=(2, h, w, 3)).astype(np.float32)
        want = np.asarray(L.UpSampling2D((fh, fw), interpolation=method)(x))
        got = _apply(keras_matrix(method, h, h * fh), keras_matrix(method, w, w * fw), x)
        assert got.shape == want.shape == (2, h * fh, w * fw, 3)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=f"{method} {(h, w)} x {(fh, fw)}")


def test_bilinear_matrix_is_half_pixel_with_edge_weights() -> None:
    """2× on 3 cells: outputs at input coordinates −¼, ¼, ¾, 1¼, 1¾, 2¼; the outer ones read the edge cell."""
    want = np.array([[1, 0, 0], [.75, .25, 0], [.25, .75, 0], [0, .75, .25], [0, .25, .75], [0, 0, 1]])
    np.testing.assert_array_equal(keras_matrix("bilinear", 3, 6), want.astype(np.float32))
    for method in KERAS_KERNELS:
        np.testing.assert_allclose(keras_matrix(method, 4, 12).sum(axis=1), 1, rtol=1e-6)  # renormalized rows
        a = keras_matrix(method, 5, 15)  # odd factor: every third output sits on a cell, and copies it exactly
        np.testing.assert_array_equal(a[1::3], np.eye(5, dtype=np.float32))


def test_chain_is_transposes_and_dense_and_skips_unchanged_axes() -> None:
    both = separable_chain(keras_matrix("bilinear", 3, 6), keras_matrix("bilinear", 4, 8))
    assert [type(op) for _, op in both] == [Transpose, Dense, Transpose, Dense, Transpose]
    assert all(op.bias is None for _, op in both if isinstance(op, Dense))
    rows = separable_chain(keras_matrix("bilinear", 3, 6), np.eye(4, dtype=np.float32))
    assert [type(op) for _, op in rows] == [Transpose, Dense, Transpose]
    assert separable_chain(np.eye(3, dtype=np.float32), np.eye(4, dtype=np.float32)) == []


def _upsampling_model(shape: tuple[int, int, int], size: tuple[int, int], method: str) -> keras.Model:
    """conv (ReLU) → UpSampling2D → ReLU: the resize is one projection between two populations."""
    x = keras.Input(shape)
    h = L.Conv2D(shape[-1], 1, activation="relu", name="conv")(x)
    h = L.UpSampling2D(size, interpolation=method, name="resize")(h)
    y = L.Dense(3, name="out")(L.Flatten()(L.ReLU(name="after")(h)))
    model = keras.Model(x, y)
    model.get_layer("conv").set_weights([np.eye(shape[-1], dtype=np.float32)[None, None],
                                         np.full(shape[-1], 0.1, np.float32)])
    return model


@pytest.mark.parametrize("ext", ["h5", "keras"])
def test_model_with_bilinear_upsampling_reads_exactly(tmp_path: Path, ext: str) -> None:
    model = _upsampling_model((5, 4, 3), (2, 3), "bilinear")
    path = tmp_path / f"m.{ext}"
    model.save(path)
    x = rng.normal(size=(4, 5, 4, 3)).astype(np.float32)
    graph = read_model(path)
    got = graph.run(x, keep=["resize"])
    inner = keras.Model(model.inputs, model.get_layer("resize").output)
    want = np.asarray(inner.predict(x, verbose=0))
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(got["resize"], want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got[graph.output], model.predict(x, verbose=0), rtol=0, atol=1e-5)


def test_resize_projection_holds_the_nonzero_weights_only(tmp_path: Path) -> None:
    """16×16×8 upsampled 2× bilinearly: each output cell and channel has the product of its row's and its
    column's nonzero weights (1, 2 or 4), no dense block; the op counts use those synapses."""
    h, w, c = 16, 16, 8
    model = _upsampling_model((h, w, c), (2, 2), "bilinear")
    model.save(tmp_path / "m.keras")
    net = convert(read_model(tmp_path / "m.keras"), rng.uniform(size=(8, h, w, c)).astype(np.float32))
    proj = next(p for p in net.projections if any(isinstance(op, Dense) for op in p.ops))
    pre, post, weight = net.synapses(proj)
    a_h, a_w = keras_matrix("bilinear", h, 2 * h), keras_matrix("bilinear", w, 2 * w)
    per_cell = np.outer((a_h != 0).sum(axis=1), (a_w != 0).sum(axis=1))  # (2h, 2w) synapses per channel
    assert len(pre) == per_cell.sum() * c
    assert per_cell.max() == 4 and len(pre) < 4 * (2 * h) * (2 * w) * c
    fan_in, fan_out = opcount.projection_degrees(net, proj)
    np.testing.assert_array_equal(fan_in, np.repeat(per_cell.reshape(-1), c))
    np.testing.assert_array_equal(fan_in, np.bincount(post, minlength=fan_in.size))
    assert fan_out.sum() == len(pre)
    # the weights are the interpolation products, times the projection's normalization factor
    m = np.zeros((h * w * c, 4 * h * w * c))
    m[pre, post] = weight
    kron = np.kron(np.kron(a_h, a_w), np.eye(c)).T  # (in, out) over flat channels-last indices
    ratio = m[kron != 0] / kron[kron != 0]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)
    assert (m[kron == 0] == 0).all()


def test_one_axis_resize_is_counted_without_a_synapse_list(tmp_path: Path) -> None:
    """Factors (3, 1): one Dense in the chain, so opcount counts it from indicator maps; the same degrees as
    the expanded synapses."""
    model = _upsampling_model((4, 5, 2), (3, 1), "bicubic")
    model.save(tmp_path / "m.h5")
    net = convert(read_model(tmp_path / "m.h5"), rng.uniform(size=(8, 4, 5, 2)).astype(np.float32))
    proj = next(p for p in net.projections if any(isinstance(op, Dense) for op in p.ops))
    assert sum(isinstance(op, Dense) for op in proj.ops) == 1
    pre, post, _ = net.synapses(proj)
    fan_in, fan_out = opcount.projection_degrees(net, proj)
    np.testing.assert_array_equal(fan_in, np.bincount(post, minlength=fan_in.size))
    np.testing.assert_array_equal(fan_out, np.bincount(pre, minlength=fan_out.size))
    per_row = (keras_matrix("bicubic", 4, 12) != 0).sum(axis=1)  # synapses of each output row, per cell
    np.testing.assert_array_equal(fan_in.reshape(12, 5, 2), np.broadcast_to(per_row[:, None, None], (12, 5, 2)))
