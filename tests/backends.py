"""The back ends a scenario test runs on, in the manner of PyNN's run_with_simulators and Nengo's
Simulator fixture: the reference simulator and every installed script writer, behind one call.

``backend.run(net, x, steps=..., readout=..., seed=..., clamp=..., labels=..., decision=...)`` returns the arrays
of docs/semantics.md's results file: from ``snnexport.simulator.simulate`` (delay "step" or "zero"), or from
the writer's exported script, run in a subprocess as a user runs it (script_runner). A script back
end skips the test where the writer's capability table refuses or only approximates a feature the
network needs (``Writer.check``): such a simulator cannot honour the documented semantics exactly.
(The ``backend`` fixture, in conftest.py, skips a back end whose simulator is not installed.)

Also here: the one agreement check of a script's results against the reference's, :func:`assert_agree`.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
from pathlib import Path

import numpy as np
import pytest

from script_runner import run_for_results, script_writers, write_rendered
from snnexport.compare import identical_fraction
from snnexport.errors import FeatureRefused
from snnexport.network import Network
from snnexport.simulator import simulate
from snnexport.writers import get
from snnexport.writers.base import WriteOptions

REFERENCE = "reference"
# Exported scripts that break docs/semantics.md today, found by running test_semantics on every back
# end: (back end, test) → the defect, in the writer (snnexport/writers), not in the test. conftest.py
# marks each a strict xfail: the test keeps its exact assertions, is reported (XFAIL) in every run, and
# fails (XPASS) as soon as the writer is fixed, so that the entry must then go. An entry needs a diagnosis.
KNOWN_DEFECTS: dict[tuple[str, str], str] = {}


def names() -> list[str]:
    """Every back end a scenario test runs on: the reference first, then the script writers."""
    return [REFERENCE] + script_writers()


class Backend:
    """One way to run a network; :meth:`run` gives the results-file arrays."""
    name = ""

    def run(self, net: Network, x: np.ndarray, *, steps: int, readout: str | None = None,
            seed: int | None = None, clamp: int | None = None, labels: np.ndarray | None = None,
            decision: int | None = None, delay: str = "step", batch: int | None = None) -> dict[str, np.ndarray]:
        """``decision``: None (no early decision), 0 (early decision), M ≥ 1 (decision margin M); ``delay``:
        "step" or "zero" (docs/semantics.md); ``batch``: samples simulated at once (None: the back end's default)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class Reference(Backend):
    """snnexport.simulator.simulate, with one step of delay per population (as every script) unless asked otherwise."""
    name = REFERENCE

    def run(self, net: Network, x: np.ndarray, *, steps: int, readout: str | None = None,
            seed: int | None = None, clamp: int | None = None, labels: np.ndarray | None = None,
            decision: int | None = None, delay: str = "step", batch: int | None = None) -> dict[str, np.ndarray]:
        return simulate(net, x, labels, steps=steps, delay=delay, readout=readout, seed=seed, clamp=clamp,
                        early_decision=decision is not None, decision_margin=decision or None)


class Script(Backend):
    """A writer's exported script, run on its real simulator; one folder per distinct run.

    Runs are cached by the script's bytes, the inputs and the options: a script is deterministic
    (test_writer_contract checks that), so a second identical run would only cost time.
    """

    def __init__(self, writer: str, folder: Path) -> None:
        self.name = writer
        self.folder = folder
        self._count = itertools.count()
        self._cache: dict[str, dict[str, np.ndarray]] = {}

    def prepared(self, net: Network, *, readout: str | None = None, seed: int | None = None,
                 clamp: int | None = None) -> Network:
        """A copy of ``net`` with these settings; skips the test where the writer cannot run it exactly."""
        net = copy.deepcopy(net)
        if readout is not None:
            net.settings.readout = readout
        if seed is not None:
            net.settings.seed = int(seed)
        if clamp is not None:
            net.settings.clamp = int(clamp)
        try:
            notes = get(self.name).check(net)
        except FeatureRefused as e:  # any other error of check (a network that breaks the schema) fails
            pytest.skip(f"the {self.name} writer refuses this network: {e}")
        if notes:
            pytest.skip(f"the {self.name} writer only approximates this network: {'; '.join(notes)}")
        return net

    def run(self, net: Network, x: np.ndarray, *, steps: int, readout: str | None = None,
            seed: int | None = None, clamp: int | None = None, labels: np.ndarray | None = None,
            decision: int | None = None, delay: str = "step", batch: int | None = None) -> dict[str, np.ndarray]:
        net = self.prepared(net, readout=readout, seed=seed, clamp=clamp)
        name = f"snn_{self.name}.py"  # not "nest.py": a script must not shadow its simulator
        rendered = get(self.name).render(net, WriteOptions(output=Path(name)))  # only the name reaches the script
        args = ["--steps", str(steps), "--readout", net.settings.readout, "--seed", str(net.settings.seed)]
        if decision is not None:
            args += ["--decision-margin", str(decision)] if decision else ["--early-decision"]
        if delay != "step":
            args += ["--delay", delay]
        if batch is not None:
            args += ["--batch", str(batch)]
        key = hashlib.sha256()
        for part in (rendered.main, *rendered.beside.values(), repr(args).encode(), _array_bytes(x),
                     _array_bytes(labels)):
            key.update(hashlib.sha256(part).digest())
        digest = key.hexdigest()
        if digest not in self._cache:
            folder = self.folder / f"run{next(self._count)}"
            folder.mkdir()
            script = write_rendered(rendered, folder / name)
            self._cache[digest] = run_for_results(script, np.asarray(x), *args, labels=labels)
        return dict(self._cache[digest])


def _array_bytes(a: np.ndarray | None) -> bytes:
    if a is None:
        return b"none"
    a = np.ascontiguousarray(a)
    return repr((a.dtype.str, a.shape)).encode() + a.tobytes()


def make(name: str, folder: Path) -> Backend:
    return Reference() if name == REFERENCE else Script(name, folder)


def with_options(net: Network, encoding: str, reset: str, clamp: int, sign: bool) -> Network:
    """A copy of ``net`` using optional parts of the contract; with sign, the first population spikes ±1."""
    net = copy.deepcopy(net)
    net.input.encoding, net.neuron.reset, net.settings.clamp = encoding, reset, clamp
    if sign:
        first = net.populations[0]
        first.activation = "sign"
        first.bias = (first.bias - np.float32(0.3)).astype(np.float32)  # some neurons sink below -θ
    return net


# --- agreement ----------------------------------------------------------------------------------------

def assert_agree(ours: dict[str, np.ndarray], reference: dict[str, np.ndarray], min_identical: float = 0.999,
                 per_step: bool = True) -> None:
    """A script's results agree with the reference simulator's (docs/semantics.md, "State is float32").

    Same populations and gates in the same order; at least ``min_identical`` of the (sample, neuron)
    spike counts identical, and of every gate's passed counts; with ``per_step``, of the per-step
    output spikes and population totals as well, else the total number of spikes within that margin
    (one neuron a step apart changes several per-step entries of a large network); output membrane
    potentials within 1e-3. The margin is for a neuron whose V lands within float32 rounding of θ,
    its inputs summed in another order (docs/semantics.md); the tests' runs rarely use it.
    """
    assert list(ours["population_names"]) == list(reference["population_names"])
    assert list(ours["gate_names"]) == list(reference["gate_names"])
    fraction = identical_fraction(ours, reference)
    assert fraction["all"] >= min_identical, fraction
    for k in range(len(reference["gate_names"])):
        same = float(np.mean(ours[f"gate_counts_{k}"] == reference[f"gate_counts_{k}"]))
        assert same >= min_identical, (reference["gate_names"][k], same)
    if per_step:
        for key in ("output_steps", "spikes_per_step"):
            same = float(np.mean(ours[key] == reference[key]))
            assert same >= min_identical, (key, same)
    else:
        total, other = int(ours["spikes_per_step"].sum()), int(reference["spikes_per_step"].sum())
        assert abs(total - other) <= (1 - min_identical) * other, (total, other)
    np.testing.assert_allclose(ours["output_v"], reference["output_v"], atol=1e-3)


def total_spikes(results: dict[str, np.ndarray]) -> int:
    """Spike events of every population (either sign): a run that agrees by staying silent proves nothing."""
    return sum(int(np.abs(results[f"counts_{k}"]).sum()) for k in range(len(results["population_names"])))
