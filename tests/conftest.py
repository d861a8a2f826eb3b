"""Shared test set-up: the Keras backend, paths of the bundled example, skips that name what is
missing, the ``backend`` fixture (every scenario test on every back end, tests/backends.py) and the
converted model-zoo networks every writer test uses."""

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

import backends  # noqa: E402
from script_runner import skip_reason  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODEL = ROOT / "snnexport" / "data" / "lenet_mnist.h5"
BUNDLED_SAMPLES = ROOT / "snnexport" / "data" / "mnist_samples.npz"
MNIST = ROOT.parent / "shared" / "data" / "mnist.npz"

ZOO_CALIBRATION = 20  # samples each zoo model is calibrated on
ZOO_SAMPLES = 3  # other samples each writer test runs
STEPS = 60  # steps of the writer tests' runs: every layer of the zoo's small nets fires many times


def needs(module: str):
    """Skip a test when a simulator is not installed, naming it."""
    missing = importlib.util.find_spec(module) is None
    return pytest.mark.skipif(missing, reason=f"{module} is not installed (pip install 'snnexport[all]')")


def _backend_params() -> list:
    params = []
    for name in backends.names():
        reason = None if name == backends.REFERENCE else skip_reason(name)
        params.append(pytest.param(name, id=name, marks=pytest.mark.skipif(reason is not None, reason=reason or "")))
    return params


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A strict xfail on each (back end, test) of backends.KNOWN_DEFECTS, naming the defect."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        reason = callspec and backends.KNOWN_DEFECTS.get((callspec.params.get("backend"), item.originalname))
        if reason:
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


@pytest.fixture(scope="session", params=_backend_params())
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> backends.Backend:
    """The reference simulator, then every installed script writer (a test runs once on each)."""
    return backends.make(request.param, tmp_path_factory.mktemp(f"backend-{request.param}"))


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple]:
    """name → (Network, inputs) of a model_zoo model: saved, read back by the Keras reader, converted with
    ZOO_CALIBRATION seeded samples; the inputs are ZOO_SAMPLES others. Converted once per session."""
    import model_zoo
    from snnexport.scriptlib import runtime
    from snnexport.convert import convert
    from snnexport.readers.keras import read_model
    folder = tmp_path_factory.mktemp("zoo")
    cache: dict[str, tuple] = {}

    def network(name: str) -> tuple:
        if name not in cache:
            model = model_zoo.BUILDERS[name]()
            path = folder / f"{name}.keras"
            model.save(path)
            graph = read_model(path)
            calibration = runtime.coerce_samples(model_zoo.sample_input(model, ZOO_CALIBRATION, seed=7),
                                                 graph.input_shape)  # Keras' (L, C) of 1-D layers is (1, L, C)
            x = runtime.coerce_samples(model_zoo.sample_input(model, ZOO_SAMPLES, seed=3), graph.input_shape)
            cache[name] = (convert(graph, calibration), x)
        return cache[name]

    return network


@pytest.fixture(scope="session")
def zoo_runs(zoo, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], tuple]:
    """(writer, model) → (script, stdout, results) of the zoo model's script run bare (on the inputs
    bundled into it, ``zoo(model)[1]``) for STEPS steps, once per session; the results are the contract's
    (test_writer_contract) and the reference point of a back end's own options (test_writer_<name>)."""
    from script_runner import export, run_script
    from snnexport.scriptlib import runtime
    folder = tmp_path_factory.mktemp("zoo_runs")
    done: dict[tuple[str, str], tuple] = {}

    def run(writer: str, name: str) -> tuple:
        if (writer, name) not in done:
            net, x = zoo(name)
            (folder / name).mkdir(exist_ok=True)
            script = export(writer, net, folder / name / f"snn_{writer}.py", x)
            out = script.with_suffix(".npz")
            proc = run_script(script, "--steps", str(STEPS), "--out", str(out))
            done[writer, name] = (script, proc.stdout, runtime.load_results(out))
        return done[writer, name]

    return run


@pytest.fixture(scope="session")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """(network file, Network, first samples): the bundled LeNet converted by the command a user types."""
    from snnexport.cli import main
    from snnexport.network import Network
    from snnexport.scriptlib.runtime import coerce_samples
    path = tmp_path_factory.mktemp("bundled") / "lenet.snn"
    assert main([str(BUNDLED_MODEL), "--calibration", str(BUNDLED_SAMPLES), "--to", "network", "-o", str(path)]) == 0
    net = Network.load(path)
    with np.load(BUNDLED_SAMPLES) as data:
        x = coerce_samples(data["x"][:ZOO_SAMPLES], net.input.shape)
    return path, net, x
