"""Train the bundled LeNet-style MNIST example model for snnexport.

Regenerates ``snnexport/data/lenet_mnist.h5`` (legacy Keras HDF5) and
``snnexport/data/mnist_samples.npz`` (first 300 test images)::

    KERAS_BACKEND=jax python examples/train_lenet.py --data ../shared/data/mnist.npz

The run is seeded; on the JAX CPU backend repeated runs give the same weights.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")  # must precede the keras import

import keras
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_SHIFT = 2  # pixels; small translations are the only augmentation
BATCH_SIZE = 128
N_SAMPLES = 300  # test images shipped for quick conversion checks


def build_model() -> keras.Sequential:
    """LeNet variant: ReLU everywhere (spike-rate friendly), biases kept, no BN."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1), name="input"),
            layers.Conv2D(16, 5, activation="relu", name="conv1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(32, 5, activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Flatten(name="flatten"),
            layers.Dense(100, activation="relu", name="fc1"),
            layers.Dense(10, activation="softmax", name="output"),
        ],
        name="lenet_mnist",
    )


def load_mnist(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_train, y_train, x_test, y_test); x as float32 NHWC in [0, 1]."""
    with np.load(path) as d:
        prep = lambda x: (x.astype(np.float32) / 255.0)[..., None]  # noqa: E731
        return prep(d["x_train"]), d["y_train"], prep(d["x_test"]), d["y_test"]


def random_shift(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Translate each image by up to MAX_SHIFT px (zero fill) via pad + crop.

    Done in numpy so the augmentation depends only on ``rng`` (no tf.data).
    """
    m = MAX_SHIFT
    padded = np.pad(x, ((0, 0), (m, m), (m, m), (0, 0)))
    dy = rng.integers(0, 2 * m + 1, len(x))
    dx = rng.integers(0, 2 * m + 1, len(x))
    out = np.empty_like(x)
    # Loop over the 25 offset pairs rather than the 60k images.
    for oy in range(2 * m + 1):
        for ox in range(2 * m + 1):
            idx = np.flatnonzero((dy == oy) & (dx == ox))
            out[idx] = padded[idx, oy : oy + 28, ox : ox + 28]
    return out


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    pred = model.predict(x, batch_size=1000, verbose=0).argmax(axis=1)
    return float(np.mean(pred == y))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO_ROOT / "../shared/data/mnist.npz")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out-dir", type=Path, default=REPO_ROOT / "snnexport/data")
    args = ap.parse_args()

    keras.utils.set_random_seed(args.seed)  # python, numpy and keras seeds
    rng = np.random.default_rng(args.seed)  # own stream for shuffle/augment
    x_train, y_train, x_test, y_test = load_mnist(args.data)

    model = build_model()
    steps = args.epochs * int(np.ceil(len(x_train) / BATCH_SIZE))
    # Cosine decay to ~0 lets the last epochs settle without a separate tuning pass.
    lr = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=steps, alpha=0.01)
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        # Shuffle and augment ourselves (shuffle=False below) so order is seeded.
        perm = rng.permutation(len(x_train))
        xb = random_shift(x_train[perm], rng)
        model.fit(xb, y_train[perm], batch_size=BATCH_SIZE, shuffle=False,
                  initial_epoch=epoch, epochs=epoch + 1, verbose=2)
    train_s = time.perf_counter() - t0

    acc = accuracy(model, x_test, y_test)
    print(f"training time {train_s:.0f} s, params {model.count_params()}")

    args.out_dir.mkdir(parents=True, exist_ok=True)
    h5_path = args.out_dir / "lenet_mnist.h5"
    # No optimizer state: smaller file, and nothing that could break loading.
    model.save(h5_path, include_optimizer=False)
    np.savez_compressed(args.out_dir / "mnist_samples.npz",
                        x=x_test[:N_SAMPLES], y=y_test[:N_SAMPLES].astype(np.uint8))

    # Check the saved file is loadable without custom objects and matches.
    reloaded = keras.models.load_model(h5_path, safe_mode=True, compile=False)
    acc_reloaded = accuracy(reloaded, x_test, y_test)
    assert acc_reloaded == acc, (acc, acc_reloaded)
    print(f"test accuracy {acc:.4f} (error {100 * (1 - acc):.2f} %) on {len(y_test)} images")


if __name__ == "__main__":
    main()
