"""Keras layers that snnexport provides for training networks it converts: binary activations.

Keras has no built-in binary activation, and the reader refuses every class a model file brings
(it would have to run that class's code). ``BinaryActivation`` is the one exception, because its
code is this module's: a model trained with it is read with snnexport's own implementation.

    from snnexport.keras_layers import BinaryActivation
    model = keras.Sequential([..., keras.layers.BatchNormalization(), BinaryActivation("sign"), ...])

Forward: sign(x) = +1 where x >= 0, else -1 (BinaryNet), or heaviside(x) = 1 where x >= 0, else
0. Backward: the straight-through estimator, the gradient of hard tanh (sign) or of the hard
sigmoid clip(x/2 + 1/2, 0, 1) (heaviside), zero where the input is beyond saturation.
Keras is imported only when the class is first used.
"""

from __future__ import annotations

from typing import Any

MODES = ("sign", "heaviside")
REGISTERED_NAME = "snnexport>BinaryActivation"  # how Keras 3 names it in a saved model's config

_CLASS: Any = None


def _make_class() -> Any:
    import keras
    from keras import ops as K

    @keras.saving.register_keras_serializable(package="snnexport", name="BinaryActivation")
    class BinaryActivation(keras.layers.Layer):
        """Binary activation with a straight-through gradient: mode "sign" (±1) or "heaviside" (0/1)."""

        def __init__(self, mode: str = "sign", **kwargs: Any) -> None:
            super().__init__(**kwargs)
            if mode not in MODES:
                raise ValueError(f"BinaryActivation mode must be one of {MODES}, not {mode!r}")
            self.mode = mode

        def call(self, x: Any) -> Any:
            if self.mode == "sign":
                hard = K.where(x >= 0, 1.0, -1.0)
                soft = K.clip(x, -1.0, 1.0)
            else:
                hard = K.cast(x >= 0, x.dtype)
                soft = K.clip(0.5 * x + 0.5, 0.0, 1.0)
            # exactly `hard` in the forward pass (soft - soft is 0), the gradient of `soft` backward
            return K.cast(hard, x.dtype) + (soft - K.stop_gradient(soft))

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "mode": self.mode}

    return BinaryActivation


def binary_activation_class() -> Any:
    """The Keras layer class (made, and registered with Keras, on first use)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _make_class()
    return _CLASS


def __getattr__(name: str) -> Any:
    if name == "BinaryActivation":
        return binary_activation_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
