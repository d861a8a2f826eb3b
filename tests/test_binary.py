"""Binary activations (sign with negative spikes, heaviside) from snnexport's own Keras layer to every simulator.

The reader accepts exactly one class a model file brings, snnexport.keras_layers.BinaryActivation,
and reads it with this package's code; the converter gives binary populations a gain so that their
rates follow the step function, not the clipped ramp; every exported script must match the
reference simulator spike for spike on the result (negative spikes, and a gate on a sign
population, included).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import model_zoo
from script_runner import every_simulator, export_and_run
from snnexport.scriptlib import runtime
from snnexport.compare import identical_fraction
from snnexport.convert import convert
from snnexport.errors import SnnexportError
from snnexport.readers.keras import read_model
from snnexport.simulator import ann_activations, simulate

STEPS = 100


def _saved(mode: str, tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    model = model_zoo.build_binary(mode)
    path = tmp_path / f"binary_{mode}.keras"
    model.save(path)
    x = model_zoo.sample_input(model, 40, seed=2)
    return path, x, model.predict(x, verbose=0)


@pytest.mark.parametrize("mode", ["sign", "heaviside"])
def test_reader_reads_the_binary_layer_like_keras(mode: str, tmp_path: Path) -> None:
    path, x, want = _saved(mode, tmp_path)
    graph = read_model(path)
    acts = graph.run(x, keep={"bin1", "bin2"})
    values = {-1.0, 1.0} if mode == "sign" else {0.0, 1.0}
    assert set(np.unique(acts["bin1"])) <= values and set(np.unique(acts["bin2"])) <= values
    np.testing.assert_allclose(graph.run(x)[graph.output], want, rtol=1e-5, atol=1e-6)


def test_a_foreign_class_of_the_same_name_is_refused(tmp_path: Path) -> None:
    """Another package's 'BinaryActivation' is user code: refused from the config, never loaded."""
    path, _, _ = _saved("sign", tmp_path)
    forged = model_zoo.edit_layers(path, "BinaryActivation", tmp_path / "forged.keras",
                                    model_zoo.from_package("mypackage>BinaryActivation", "mypackage.layers"))
    with pytest.raises(SnnexportError, match="mypackage>BinaryActivation"):
        read_model(forged)


@pytest.mark.parametrize("mode", ["sign", "heaviside"])
def test_binary_rates_follow_the_step_function(mode: str, tmp_path: Path) -> None:
    """Rates of binary populations are the ANN's binary values (not a ramp) for nearly every neuron."""
    path, x, _ = _saved(mode, tmp_path)
    net = convert(read_model(path), x)
    binary = [p for p in net.populations if p.activation == mode]
    assert [p.scale for p in binary] == [1.0, 1.0]  # rates times 1 are the activations
    r = simulate(net, x, steps=STEPS)
    ann = ann_activations(net, x)
    names = [str(n) for n in r["population_names"]]
    for p in binary:
        rate = r[f"counts_{names.index(p.name)}"].reshape(len(x), -1) / STEPS
        target = ann[p.name].reshape(len(x), -1)
        assert np.mean(np.abs(rate - target) < 0.1) > 0.97, p.name
    # (no classification check: this random net's logits are mostly negative, where a count readout
    # is decided by transient spikes; the suite's trained binary model measures classification)


@pytest.mark.parametrize("writer", every_simulator())
def test_every_simulator_matches_the_reference_on_a_binary_network(writer: str, tmp_path: Path) -> None:
    path, x, _ = _saved("sign", tmp_path)
    net = convert(read_model(path), runtime.coerce_samples(x, tuple(x.shape[1:])))
    x = x[:4]
    ours = export_and_run(writer, net, x, tmp_path, 40)
    ref = simulate(net, x, steps=40, delay="step")
    assert (ref["counts_0"] < 0).any()  # negative spikes are exercised
    assert identical_fraction(ours, ref)["all"] >= 0.999
    np.testing.assert_array_equal(ours["gate_counts_0"], ref["gate_counts_0"])
