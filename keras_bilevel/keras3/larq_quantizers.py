"""Larq's quantizers on Keras 3: the same names, arguments, forward passes and
pseudo-gradients, on JAX, TensorFlow and PyTorch.

The formulas live in `keras_bilevel.core.larq_estimators` (written once, bound here to
`keras.ops`; the sign is the AdaSTE formulas' `sign`, fused where the backend fuses it);
each quantizer attaches its pseudo-gradient with `keras.ops.custom_gradient`.
`keras_bilevel.keras3.quantizers` exports them beside `AdaSTE` and `SteSign`, and its
`get` resolves Larq's string aliases (`"approx_sign"`, `"swish_sign"`,
`"ste_heaviside"`, `"magnitude_aware_sign"`, `"ste_tern"`, `"dorefa_quantizer"`,
`"noop"`), so a Larq model's quantizer arguments port unchanged.

!!! example
    ```python
    from keras_bilevel.keras3 import layers
    layer = layers.QuantConv2D(64, 3, input_quantizer="approx_sign",
                               kernel_quantizer="magnitude_aware_sign")
    ```
"""

import keras
from keras import ops

from keras_bilevel.core import larq_estimators as estimators
from keras_bilevel.core.arguments import check_number
from keras_bilevel.keras3 import formulas
from keras_bilevel.keras3.quantizer_base import Quantizer, quantizer_input

__all__ = ["NoOp", "ApproxSign", "SwishSign", "SteHeaviside", "MagnitudeAwareSign",
           "SteTern", "DoReFa", "NoOpQuantizer", "DoReFaQuantizer", "with_pseudo_gradient"]

_PACKAGE = "keras_bilevel"


def with_pseudo_gradient(x, forward, backward):
    """`forward(x)`, differentiated as `backward(x, dy)` (a custom gradient)."""

    @ops.custom_gradient
    def _quantize(x):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return backward(x, upstream)

        return forward(x), grad

    return _quantize(quantizer_input(x))


def checked_clip_value(name, clip_value):
    """`clip_value` as a float (> 0) or None, or a one-line ValueError naming `name`."""
    if clip_value is not None:
        check_number(name, "clip_value", clip_value, lambda v: v > 0, "> 0 or None")
        return float(clip_value)
    return None


def ste_sign(x, clip_value=1.0):
    """sgn(x), sgn(0) = +1, with the straight-through estimator clipped at `clip_value`."""
    return with_pseudo_gradient(
        x, formulas.sign, lambda x, dy: estimators.clipped_identity(ops, x, dy, clip_value))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NoOp(Quantizer):
    r"""The identity, \\( q(x) = x \\), marking a variable with a precision (as Larq's).

    Optimizers that route variables by precision (`Bop`-style) read it.

    # Arguments
        precision: the precision to mark, in bits (None: unmarked).
    """

    def __init__(self, precision=None, **kwargs):
        super().__init__(**kwargs)
        self.precision = precision

    def call(self, inputs):
        return inputs

    def get_config(self):
        return {**super().get_config(), "precision": self.precision}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ApproxSign(Quantizer):
    r"""sgn(x) with Bi-Real Net's ApproxSign pseudo-gradient.

    \\[ \frac{\partial q}{\partial x} = \begin{cases} 2 - 2|x| & |x| \leq 1 \\\
        0 & |x| > 1 \end{cases} \\]
    """

    precision = 1

    def call(self, inputs):
        return with_pseudo_gradient(
            inputs, formulas.sign,
            lambda x, dy: estimators.approx_sign_gradient(ops, x, dy))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SwishSign(Quantizer):
    r"""sgn(x) with BNN+'s SignSwish pseudo-gradient.

    \\[ \frac{\partial q}{\partial x} = \frac{\beta\,(2 - \beta x \tanh(\beta x / 2))}
        {1 + \cosh(\beta x)} \\]

    # Arguments
        beta: the steepness (> 0; 5 as in Larq).
    """

    precision = 1

    def __init__(self, beta=5.0, **kwargs):
        check_number("SwishSign", "beta", beta, lambda v: v > 0, "> 0")
        super().__init__(**kwargs)
        self.beta = float(beta)

    def call(self, inputs):
        return with_pseudo_gradient(
            inputs, formulas.sign,
            lambda x, dy: estimators.swish_sign_gradient(ops, x, dy, self.beta))

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


class _ClippedQuantizer(Quantizer):
    """A quantizer whose pseudo-gradient passes where |x| <= `clip_value` (None: all)."""

    def __init__(self, clip_value=1.0, **kwargs):
        self.clip_value = checked_clip_value(type(self).__name__, clip_value)
        super().__init__(**kwargs)

    def get_config(self):
        return {**super().get_config(), "clip_value": self.clip_value}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SteHeaviside(_ClippedQuantizer):
    r"""The Heaviside step (1 where x > 0, else 0) with the clipped straight-through
    estimator (1 where \\( |x| \leq \texttt{clip\_value} \\)).

    # Arguments
        clip_value: where the gradient passes (> 0), or None for everywhere.
    """

    precision = 1

    def call(self, inputs):
        return with_pseudo_gradient(
            inputs, lambda x: estimators.heaviside(ops, x),
            lambda x, dy: estimators.clipped_identity(ops, x, dy, self.clip_value))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MagnitudeAwareSign(_ClippedQuantizer):
    r"""Bi-Real Net's scaled sign: \\( q(x) = \bar{a}\,\mathrm{sgn}(x) \\), where
    \\( \bar{a} \\) is the mean of |x| over every axis but the last (one scale per output
    channel of a kernel), a constant for the gradient; the sign's gradient is the clipped
    straight-through estimator.

    # Arguments
        clip_value: where the gradient passes (> 0), or None for everywhere.
    """

    precision = 1

    def call(self, inputs):
        axes = tuple(range(len(inputs.shape) - 1))
        scale = ops.stop_gradient(ops.mean(ops.abs(inputs), axis=axes))
        return scale * ste_sign(inputs, self.clip_value)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SteTern(Quantizer):
    r"""Ternary: +1 above \\( \Delta \\), -1 below \\( -\Delta \\), 0 between, with the
    clipped straight-through estimator.

    \\( \Delta \\) is `threshold_value`, or with `ternary_weight_networks=True` the
    Ternary Weight Networks threshold \\( 0.7\,\mathrm{mean}(|x|) \\) of the whole tensor.

    # Arguments
        threshold_value: the fixed threshold (0.05 as in Larq).
        ternary_weight_networks: compute the threshold from the input instead.
        clip_value: where the gradient passes (> 0), or None for everywhere.
    """

    precision = 2

    def __init__(self, threshold_value=0.05, ternary_weight_networks=False, clip_value=1.0,
                 **kwargs):
        check_number("SteTern", "threshold_value", threshold_value, lambda v: v >= 0, ">= 0")
        self.threshold_value = float(threshold_value)
        self.ternary_weight_networks = bool(ternary_weight_networks)
        self.clip_value = checked_clip_value("SteTern", clip_value)
        super().__init__(**kwargs)

    def call(self, inputs):
        def forward(x):
            threshold = (estimators.twn_threshold(ops, x) if self.ternary_weight_networks
                         else self.threshold_value)
            return estimators.ternary(ops, x, threshold)

        return with_pseudo_gradient(
            inputs, forward,
            lambda x, dy: estimators.clipped_identity(ops, x, dy, self.clip_value))

    def get_config(self):
        return {**super().get_config(), "threshold_value": self.threshold_value,
                "ternary_weight_networks": self.ternary_weight_networks,
                "clip_value": self.clip_value}


_DOREFA_MODES = ("activations", "weights")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DoReFa(Quantizer):
    r"""DoReFa-Net's k-bit quantizer: \\( q_k(x) = \mathrm{round}(x n) / n \\),
    \\( n = 2^k - 1 \\), with an identity pseudo-gradient.

    `mode="activations"`: x clipped to [0, 1] first (the gradient passes inside it).
    `mode="weights"`: x limited as \\( \tanh(x) / (2 \max|\tanh(x)|) + 1/2 \\) (the
    maximum a constant for the gradient), quantized, then mapped back to [-1, 1] by
    \\( 2 q - 1 \\).

    # Arguments
        k_bit: bits (>= 1; the quantizer's precision).
        mode: `"activations"` or `"weights"`.
    """

    def __init__(self, k_bit=2, mode="activations", **kwargs):
        check_number("DoReFa", "k_bit", k_bit, lambda v: v >= 1 and int(v) == v,
                     "an integer >= 1")
        if mode not in _DOREFA_MODES:
            raise ValueError(f"DoReFa: mode must be one of {_DOREFA_MODES}, got {mode!r}.")
        super().__init__(**kwargs)
        self.precision = int(k_bit)
        self.mode = mode

    def call(self, inputs):
        bits = self.precision
        if self.mode == "activations":
            return with_pseudo_gradient(
                inputs, lambda x: estimators.k_bit(ops, ops.clip(x, 0.0, 1.0), bits),
                lambda x, dy: ops.where((x >= 0.0) & (x <= 1.0), dy, ops.zeros_like(dy)))
        limited = estimators.dorefa_weights(ops, inputs, ops.stop_gradient)
        levels = with_pseudo_gradient(
            limited, lambda x: estimators.k_bit(ops, x, bits), lambda x, dy: dy)
        return 2.0 * levels - 1.0

    def get_config(self):
        return {**super().get_config(), "k_bit": self.precision, "mode": self.mode}


NoOpQuantizer = NoOp
"""Larq's older name of `NoOp`."""
DoReFaQuantizer = DoReFa
"""Larq's older name of `DoReFa`."""

# Larq's string aliases of these quantizers (`quantizers.get` adds "ada_ste", "ste_sign").
ALIASES = {"approx_sign": ApproxSign, "swish_sign": SwishSign,
           "ste_heaviside": SteHeaviside, "magnitude_aware_sign": MagnitudeAwareSign,
           "ste_tern": SteTern, "dorefa_quantizer": DoReFa, "noop": NoOp}
