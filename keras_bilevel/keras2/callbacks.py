"""Keras callbacks for AdaSTE training (Larq path): the mu schedules, the binarization
gap, skipped steps, and the loss-scale link for mixed precision.

They find every AdaSTE quantizer in a model (nested models and layers included) and act
on it once per epoch; they must not hold any training state of their own that a resumed
run would need (the schedule is a function of the epoch index). What the first four do
is written once in `keras_bilevel.core.callbacks`, shared with the Keras 3 front end; this
module binds it to tf.keras and Larq.
"""

import keras_bilevel.keras2.legacy_keras  # noqa: F401  (Keras 2 mode before TensorFlow)

import logging

import tensorflow as tf

from keras_bilevel.core import callbacks as _callbacks
from keras_bilevel.keras2 import formulas
from keras_bilevel.keras2.quantizers import AdaSTE

__all__ = [
    "AnnealMu",
    "AnnealMuToBinary",
    "BinarizationGap",
    "LinkLossScale",
    "NonFiniteSteps",
    "adaste_quantizers",
    "adaste_variables",
]

log = logging.getLogger(__name__)


def adaste_variables(model):
    """Pairs `(quantizer, latent_variable)` for every weight quantized by AdaSTE, in the
    order of `model.weights`."""
    pairs = {}
    for variable in model.weights:
        quantizer = getattr(variable, "quantizer", None)
        if isinstance(quantizer, AdaSTE):
            latent = variable.latent_variable
            pairs.setdefault(id(latent), (quantizer, latent))
    return list(pairs.values())


def adaste_quantizers(model):
    """Every distinct AdaSTE quantizer inside `model` (nested models and layers too):
    those of quantized weights in weight order, then any others."""
    found = {id(q): q for q, _ in adaste_variables(model)}
    for module in model.submodules:
        if isinstance(module, AdaSTE):
            found.setdefault(id(module), module)
    return list(found.values())


class _Callback(tf.keras.callbacks.Callback):
    """The tf.keras side of the shared callbacks (`keras_bilevel.core.callbacks`)."""

    _log = log
    _find_quantizers = staticmethod(adaste_quantizers)
    _find_variables = staticmethod(adaste_variables)
    _number = staticmethod(lambda value: value.numpy())


# The behaviour, arguments, logs and documentation are those of `keras_bilevel.core.callbacks`,
# shared with the Keras 3 front end; what reads tensors is here.


@tf.keras.utils.register_keras_serializable(package="keras_bilevel")
class AnnealMu(_callbacks.AnnealMu, _Callback):
    __doc__ = _callbacks.AnnealMu.__doc__


@tf.keras.utils.register_keras_serializable(package="keras_bilevel")
class AnnealMuToBinary(_callbacks.AnnealMuToBinary, _Callback):
    __doc__ = _callbacks.AnnealMuToBinary.__doc__


@tf.keras.utils.register_keras_serializable(package="keras_bilevel")
class BinarizationGap(_callbacks.BinarizationGap, _Callback):
    __doc__ = _callbacks.BinarizationGap.__doc__

    @staticmethod
    def _gap_sum(quantizer, latent):
        theta = tf.convert_to_tensor(latent)
        return tf.reduce_sum(tf.abs(quantizer.training_forward(theta) - formulas.sign(theta)))


@tf.keras.utils.register_keras_serializable(package="keras_bilevel")
class NonFiniteSteps(_callbacks.NonFiniteSteps, _Callback):
    __doc__ = _callbacks.NonFiniteSteps.__doc__


@tf.keras.utils.register_keras_serializable(package="keras_bilevel")
class LinkLossScale(_callbacks.Configurable, tf.keras.callbacks.Callback):
    """Links every AdaSTE quantizer of the model to the optimizer's loss scale.

    Under mixed precision (`mixed_float16`) Keras wraps the optimizer in a
    `LossScaleOptimizer`, and the gradient reaching the quantizer's backward pass is
    the true one times the loss scale; linked, the dead band `grad_eps` keeps its float32
    meaning (see `AdaSTE.link_loss_scale`). Without a loss-scale optimizer it unlinks.
    Put it in the callbacks of the first `fit` (it acts before the step is traced).

    !!! example
        ```python
        tf.keras.mixed_precision.set_global_policy("mixed_float16")
        model.fit(x, y, callbacks=[keras_bilevel.keras2.callbacks.LinkLossScale()])
        ```
    """

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        # tf.keras.mixed_precision.LossScaleOptimizer is the base of both loss-scale
        # optimizer generations in tf-keras.
        scaled = isinstance(optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
        for quantizer in adaste_quantizers(self.model):
            quantizer.link_loss_scale((lambda: optimizer.loss_scale) if scaled else None)
