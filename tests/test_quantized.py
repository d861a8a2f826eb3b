"""The conversion-aware quantized clipped ReLU (snnexport.keras_layers.QuantizedReLU, issue 17).

The reader takes its levels and its trained threshold λ from the file (config and weights, never code);
the converter uses λ as the population's normalization scale and starts V at θ/2, so that an IF
neuron driven by a constant input z spikes exactly floor(L·z/λ + 1/2) times in T = L steps: the
quantized ANN's activation, level for level.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers as L

import model_zoo
from backends import Reference, Script, assert_agree, total_spikes
from cli_runner import snnexport
from script_runner import every_simulator
from snnexport.convert import convert
from snnexport.errors import SnnexportError
from snnexport.keras_layers import QuantizedReLU
from snnexport.network import Network
from snnexport.readers.keras import read_model
from snnexport.simulator import ann_activations, simulate
from snnexport.summary import describe

LAMBDA = 1.37  # the "trained" threshold set into the file (not the initial one)


def _model(levels: int) -> keras.Model:
    m = keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(6, 3, name="conv1"), QuantizedReLU(levels, 0.8, name="q1"),
        L.MaxPooling2D(2, name="pool1"),
        L.Flatten(name="flatten"),
        L.Dense(12, name="fc1"), QuantizedReLU(levels, 2.0, name="q2"),
        L.Dense(5, activation="softmax", name="out"),
    ], name=f"quantized_{levels}")
    for layer in m.layers:  # randomize the weighted layers, then "train" the thresholds
        if layer.name in ("conv1", "fc1", "out"):
            rng = np.random.default_rng(len(layer.name))
            layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32) for w in layer.get_weights()])
    m.get_layer("q1").set_weights([np.float32(LAMBDA)])
    m.get_layer("q2").set_weights([np.float32(2.0)])
    return m


def _saved(levels: int, tmp_path: Path) -> tuple[Path, keras.Model, np.ndarray]:
    model = _model(levels)
    path = tmp_path / f"quantized_{levels}.keras"
    model.save(path)
    return path, model, model_zoo.sample_input(model, 30, seed=4)


def test_forward_is_the_quantization_clip_floor_shift() -> None:
    layer = QuantizedReLU(4, 2.0)
    x = np.array([-1.0, 0.0, 0.24, 0.26, 0.74, 0.76, 1.9, 2.0, 5.0], np.float32)
    np.testing.assert_array_equal(np.asarray(layer(x)), [0, 0, 0, 0.5, 0.5, 1.0, 2.0, 2.0, 2.0])


def test_threshold_gradient_is_the_papers() -> None:
    """dy/dλ = (y − x)/λ on the ramp, 1 above λ, 0 below; dy/dx = 1 on the ramp only (straight through)."""
    import jax
    import jax.numpy as jnp
    layer = QuantizedReLU(4, 2.0)
    layer.build(())
    x = jnp.asarray([-0.5, 0.3, 0.7, 1.1, 2.5, 3.0], jnp.float32)

    def total(lam: jax.Array, xs: jax.Array) -> jax.Array:
        return layer.stateless_call([lam], [], xs)[0].sum()

    d_lam, d_x = jax.grad(total, argnums=(0, 1))(jnp.float32(2.0), x)
    y = np.asarray(layer(x))
    ramp = (np.asarray(x) > 0) & (np.asarray(x) < 2.0)
    want = np.where(ramp, (y - np.asarray(x)) / 2.0, 0.0).sum() + (np.asarray(x) >= 2.0).sum()
    assert float(d_lam) == pytest.approx(want, abs=1e-6)
    np.testing.assert_array_equal(np.asarray(d_x), ramp.astype(np.float32))


def test_reader_reads_levels_and_the_trained_threshold(tmp_path: Path) -> None:
    path, model, x = _saved(8, tmp_path)
    graph = read_model(path)
    q1 = graph.node("q1").op
    assert (q1.function, q1.levels, q1.max_value) == ("clip", 8, pytest.approx(LAMBDA))
    np.testing.assert_allclose(graph.run(x)[graph.output], model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("levels", [4, 8, 16])
def test_spike_counts_at_t_equal_levels_are_the_quantized_activations(levels: int, tmp_path: Path) -> None:
    """The first population, driven by the constant analog input, spikes floor(L·z/λ + 1/2) times in L steps."""
    path, model, x = _saved(levels, tmp_path)
    net = convert(read_model(path), x)
    pops = {p.name: p for p in net.populations}
    assert net.neuron.v_init == 0.5 and net.neuron.reset == "subtract"
    assert pops["q1"].scale == pytest.approx(LAMBDA) and pops["q2"].scale == pytest.approx(2.0)
    assert pops["q1"].levels == levels
    r = simulate(net, x, steps=levels, delay="step")
    names = [str(n) for n in r["population_names"]]
    counts = r[f"counts_{names.index('q1')}"].reshape(len(x), -1)
    keras_q1 = keras.Model(model.inputs, model.get_layer("q1").output).predict(x, verbose=0).reshape(len(x), -1)
    want = np.rint(keras_q1 * levels / np.float32(LAMBDA))  # the layer's level index, 0 … L
    assert want.max() == levels and (want == 0).any() and len(np.unique(want)) > levels // 2  # every regime
    np.testing.assert_array_equal(counts, want)
    # the network's own ANN (the reference for "the ANN's error") is the quantized one too
    np.testing.assert_allclose(ann_activations(net, x)["q1"] * levels, want, atol=1e-4)


@pytest.mark.parametrize("delay", ["step", "zero"])
@pytest.mark.parametrize("writer", every_simulator())
def test_exported_scripts_match_the_reference_from_half_threshold(writer: str, delay: str, tmp_path: Path) -> None:
    """A converted QuantizedReLU network (V from θ/2, λ its trained thresholds, a max-pool gate) on every
    exported simulator at T = 2L, the small T these models are run at: the reference's spike counts, in
    either delay mode (zero: the mode these models reach their ANN's accuracy in, issue 17)."""
    path, _, x = _saved(4, tmp_path)
    net = convert(read_model(path), x)
    assert net.neuron.v_init == 0.5
    ours = Script(writer, tmp_path).run(net, x, steps=8, delay=delay)
    ref = Reference().run(net, x, steps=8, delay=delay)
    assert ours["meta"]["delay"] == delay
    assert_agree(ours, ref)
    assert total_spikes(ref) > 0
    np.testing.assert_array_equal(ours["predictions"], ref["predictions"])


def test_without_the_shift_the_counts_floor(tmp_path: Path) -> None:
    """The user may still override v_init: V starting at 0 floors instead of rounding (fewer spikes)."""
    path, model, x = _saved(8, tmp_path)
    net = convert(read_model(path), x)
    net.neuron.v_init = 0.0
    counts = simulate(net, x, steps=8)["counts_0"].reshape(len(x), -1)
    keras_q1 = keras.Model(model.inputs, model.get_layer("q1").output).predict(x, verbose=0).reshape(len(x), -1)
    assert (counts <= np.rint(keras_q1 * 8 / np.float32(LAMBDA))).all()
    assert (counts < np.rint(keras_q1 * 8 / np.float32(LAMBDA))).any()


def test_trained_thresholds_are_recorded(tmp_path: Path) -> None:
    path, _, x = _saved(4, tmp_path)
    net = convert(read_model(path), x)
    text = describe(net)
    assert "4 levels (QuantizedReLU)" in text and "trained threshold of 'q1', 'q2'" in text
    out = tmp_path / "net.snn"
    net.save(out)
    back = Network.load(out)
    assert [p.levels for p in back.populations] == [4, 4, None] and back.neuron.v_init == 0.5


def _with_config(path: Path, tmp_path: Path, **values: object) -> Path:
    return model_zoo.edit_layers(path, "QuantizedReLU", tmp_path / "edited.keras",
                                 lambda layer: layer["config"].update(values))


@pytest.mark.parametrize("values, message", [
    ({"levels": 0}, "levels must be an integer in 1 … 1024, not 0"),
    ({"levels": 1025}, "levels must be an integer in 1 … 1024"),
    ({"levels": 2.5}, "levels must be an integer"),
    ({"levels": True}, "levels must be an integer"),
    ({"threshold": -1.0}, "threshold must be a finite number > 0"),
    ({"threshold": 0}, "threshold must be a finite number > 0"),
    ({"threshold": "1"}, "threshold must be a finite number > 0"),
])
def test_bad_config_values_are_one_line(values: dict, message: str, tmp_path: Path) -> None:
    path, _, _ = _saved(4, tmp_path)
    with pytest.raises(SnnexportError, match=r"layer 'q1' \(QuantizedReLU\): " + message) as e:
        read_model(_with_config(path, tmp_path, **values))
    assert "\n" not in str(e.value)


def test_a_trained_threshold_that_is_not_positive_is_refused(tmp_path: Path) -> None:
    model = _model(4)
    model.get_layer("q2").set_weights([np.float32(-0.5)])
    path = tmp_path / "negative.keras"
    model.save(path)
    with pytest.raises(SnnexportError, match=r"layer 'q2' \(QuantizedReLU\): its trained threshold must be"):
        read_model(path)


def test_a_foreign_class_of_the_same_name_is_refused(tmp_path: Path) -> None:
    path, _, _ = _saved(4, tmp_path)
    forged = model_zoo.edit_layers(path, "QuantizedReLU", tmp_path / "forged.keras",
                                   model_zoo.from_package("other>QuantizedReLU", "other.layers"))
    with pytest.raises(SnnexportError, match="other>QuantizedReLU"):
        read_model(forged)


def test_the_command_starts_v_at_half_unless_told_otherwise(tmp_path: Path) -> None:
    """`snnexport` on a QuantizedReLU model: V₀ = θ/2 by default, --v-init still decides; a bad file is one line."""
    path, _, x = _saved(4, tmp_path)
    calib = tmp_path / "calib.npy"
    np.save(calib, x)
    default, told = tmp_path / "default.snn", tmp_path / "told.snn"
    assert snnexport(path, "--calibration", calib, "-o", default).returncode == 0
    assert snnexport(path, "--calibration", calib, "--v-init", "0", "-o", told).returncode == 0
    assert Network.load(default).neuron.v_init == 0.5 and Network.load(told).neuron.v_init == 0.0
    info = snnexport("info", default).stdout.decode()
    assert "clip IF, 4 levels (QuantizedReLU)" in info and "initial V 0.5 x threshold" in info
    bad = _with_config(path, tmp_path, levels=4096)
    r = snnexport(bad, "-o", tmp_path / "bad.snn")
    err = r.stderr.decode().strip()
    assert r.returncode == 1 and len(err.splitlines()) == 1 and "levels must be an integer in 1 … 1024" in err
    assert not (tmp_path / "bad.snn").exists()
