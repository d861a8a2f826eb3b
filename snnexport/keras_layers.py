"""Keras layers that snnexport provides for training networks it converts: binary activations and the
conversion-aware quantized clipped ReLU.

Keras has neither, and the reader refuses every class a model file brings (it would have to run that
class's code). ``BinaryActivation`` and ``QuantizedReLU`` are the exceptions, because their code is
this module's: a model trained with them is read with snnexport's own implementation.

    from snnexport.keras_layers import BinaryActivation
    model = keras.Sequential([..., keras.layers.BatchNormalization(), BinaryActivation("sign"), ...])

Forward: sign(x) = +1 where x >= 0, else -1 (BinaryNet), or heaviside(x) = 1 where x >= 0, else
0. Backward: the straight-through estimator, the gradient of hard tanh (sign) or of the hard
sigmoid clip(x/2 + 1/2, 0, 1) (heaviside), zero where the input is beyond saturation.

``QuantizedReLU(levels=L, threshold=λ0)``: the quantization-clip-floor-shift activation of Bu et al.
(ICLR 2022), y = λ · clip(floor(x·L/λ + 1/2) / L, 0, 1), with a trainable scalar threshold λ (one per
layer, initially λ0). Converted with λ as the layer's normalization scale and V₀ = θ/2, an IF neuron
driven by a constant input spikes exactly floor(x·L/λ + 1/2) times in T = L steps.
Keras is imported only when a class is first used.
"""

from __future__ import annotations

import math
from typing import Any

MODES = ("sign", "heaviside")
REGISTERED_NAME = "snnexport>BinaryActivation"  # how Keras 3 names it in a saved model's config
QUANTIZED_REGISTERED_NAME = "snnexport>QuantizedReLU"
MAX_LEVELS = 1024  # quantization levels of a QuantizedReLU: 1 … MAX_LEVELS

_CLASSES: dict[str, Any] = {}


def quantized_relu_problem(levels: Any, threshold: Any) -> str | None:
    """What is wrong with a QuantizedReLU's levels or threshold (None if nothing): the one check, used by
    the layer itself and by the reader on a model file's raw config and trained weight."""
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= MAX_LEVELS:
        return f"levels must be an integer in 1 … {MAX_LEVELS}, not {levels!r}"
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
            or threshold <= 0:
        return f"threshold must be a finite number > 0, not {threshold!r}"
    return None


def _make_binary() -> Any:
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


def _make_quantized() -> Any:
    import keras
    from keras import ops as K

    @keras.saving.register_keras_serializable(package="snnexport", name="QuantizedReLU")
    class QuantizedReLU(keras.layers.Layer):
        """y = λ · clip(floor(x·L/λ + 1/2) / L, 0, 1) with a trainable threshold λ (Bu et al. 2022, QCFS).

        Gradients (u = x/λ, q(u) = clip(floor(u·L + 1/2) / L, 0, 1), so y = λ·q(u)), with the
        straight-through estimator for the floor, i.e. dq/du = 1 where 0 < u < 1 and 0 outside:
          dy/dx = λ · q'(u) · (1/λ) = 1 where 0 < x < λ, else 0;
          dy/dλ = q(u) + λ · q'(u) · (−x/λ²) = q(u) − u·q'(u)
                = (y − x)/λ where 0 < x < λ,   1 where x ≥ λ (q = 1, q' = 0),   0 where x ≤ 0.
        (the paper's Eq. for ∂h/∂λ). Built as hard + (soft − stop_gradient(soft)): the forward value is
        exactly ``hard`` (whose own gradient is stopped), the gradient that of
        ``soft`` = min(max(x, 0), λ) + λ·sg((y − x)/λ)·[0 < x < λ], whose λ-derivative is 1 above λ (the min)
        and sg((y − x)/λ) on the ramp.
        """

        def __init__(self, levels: int = 8, threshold: float = 1.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            problem = quantized_relu_problem(levels, threshold)
            if problem is not None:
                raise ValueError(f"QuantizedReLU: {problem}")
            self.levels = int(levels)
            self.threshold = float(threshold)

        def build(self, input_shape: Any) -> None:
            self.lam = self.add_weight(name="threshold", shape=(), trainable=True,
                                       initializer=keras.initializers.Constant(self.threshold))

        def call(self, x: Any) -> Any:
            lam = K.cast(self.lam, x.dtype)
            levels = float(self.levels)
            hard = lam * K.clip(K.floor(x * levels / lam + 0.5) / levels, 0.0, 1.0)
            ramp = K.cast(K.logical_and(x > 0, x < lam), x.dtype)
            soft = K.minimum(K.maximum(x, 0.0), lam) + lam * K.stop_gradient((hard - x) / lam * ramp)
            return K.stop_gradient(hard) + (soft - K.stop_gradient(soft))

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "levels": self.levels, "threshold": self.threshold}

    return QuantizedReLU


_MAKERS = {REGISTERED_NAME: _make_binary, QUANTIZED_REGISTERED_NAME: _make_quantized}
CLASS_NAMES = {"BinaryActivation": REGISTERED_NAME, "QuantizedReLU": QUANTIZED_REGISTERED_NAME}


def _class(registered: str) -> Any:
    if registered not in _CLASSES:
        _CLASSES[registered] = _MAKERS[registered]()
    return _CLASSES[registered]


def binary_activation_class() -> Any:
    """The BinaryActivation Keras layer class (made, and registered with Keras, on first use)."""
    return _class(REGISTERED_NAME)


def quantized_relu_class() -> Any:
    """The QuantizedReLU Keras layer class (made, and registered with Keras, on first use)."""
    return _class(QUANTIZED_REGISTERED_NAME)


def own_classes() -> dict[str, Any]:
    """snnexport's own layer classes by their registered names (what Keras' custom_objects wants)."""
    return {name: _class(name) for name in _MAKERS}


def __getattr__(name: str) -> Any:
    if name in CLASS_NAMES:
        return _class(CLASS_NAMES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
