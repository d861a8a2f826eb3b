"""Shared test set-up: the Keras backend, paths of the bundled example, and skips that name what is missing."""

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODEL = ROOT / "snnexport" / "data" / "lenet_mnist.h5"
BUNDLED_SAMPLES = ROOT / "snnexport" / "data" / "mnist_samples.npz"
MNIST = ROOT.parent / "shared" / "data" / "mnist.npz"


def needs(module: str):
    """Skip a test when a simulator is not installed, naming it."""
    missing = importlib.util.find_spec(module) is None
    return pytest.mark.skipif(missing, reason=f"{module} is not installed (pip install 'snnexport[all]')")
