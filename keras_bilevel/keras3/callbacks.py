"""Keras 3 callbacks for AdaSTE training: the mu schedule, the binarization gap, skipped steps.

The Keras 3 twins of `keras_bilevel.keras2.callbacks` (same arguments, same logs), for every
backend: what they do is written once in `keras_bilevel.core.callbacks`, and this module
binds it to Keras 3. They find every AdaSTE quantizer in a model (nested models and
layers included) and act on it once per epoch; they hold no training state that a
resumed run would need (the mu schedule is a function of the epoch index). mu is a
variable of the model, so a value written here is what the next compiled training step
reads.
"""

import logging

import keras
from keras import ops

from keras_bilevel.core import callbacks as _callbacks
from keras_bilevel.keras3 import formulas
from keras_bilevel.keras3.quantizers import AdaSTE

__all__ = ["AnnealMu", "BinarizationGap", "NonFiniteSteps", "adaste_quantizers",
           "adaste_variables"]

log = logging.getLogger(__name__)

# (quantizer attribute, latent kernel attribute) of the quantized layers.
_QUANTIZED_KERNELS = (("kernel_quantizer", "kernel"),
                      ("depthwise_quantizer", "depthwise_kernel"))


def _layers(model):
    return model._flatten_layers(include_self=True, recursive=True)


def adaste_variables(model):
    """Pairs `(quantizer, latent_variable)` for every kernel quantized by AdaSTE, in the
    order of the model's layers."""
    pairs = {}
    for layer in _layers(model):
        for quantizer_name, kernel_name in _QUANTIZED_KERNELS:
            quantizer = getattr(layer, quantizer_name, None)
            kernel = getattr(layer, kernel_name, None)
            if isinstance(quantizer, AdaSTE) and kernel is not None:
                pairs.setdefault(id(kernel), (quantizer, kernel))
    return list(pairs.values())


def adaste_quantizers(model):
    """Every distinct AdaSTE quantizer inside `model` (nested models and layers too):
    those of quantized kernels first, then any other a layer holds."""
    found = {id(q): q for q, _ in adaste_variables(model)}
    for layer in _layers(model):
        candidates = [layer, *vars(layer).values()]
        for candidate in candidates:
            if isinstance(candidate, AdaSTE):
                found.setdefault(id(candidate), candidate)
    return list(found.values())


class _Callback(keras.callbacks.Callback):
    """The Keras 3 side of the shared callbacks (`keras_bilevel.core.callbacks`)."""

    _log = log
    _find_quantizers = staticmethod(adaste_quantizers)
    _find_variables = staticmethod(adaste_variables)
    _number = staticmethod(ops.convert_to_numpy)


# The behaviour, arguments, logs and documentation are those of `keras_bilevel.core.callbacks`,
# shared with the Larq front end; what reads tensors is here.


@keras.saving.register_keras_serializable(package="keras_bilevel")
class AnnealMu(_callbacks.AnnealMu, _Callback):
    __doc__ = _callbacks.AnnealMu.__doc__


@keras.saving.register_keras_serializable(package="keras_bilevel")
class BinarizationGap(_callbacks.BinarizationGap, _Callback):
    __doc__ = _callbacks.BinarizationGap.__doc__

    @staticmethod
    def _gap_sum(quantizer, latent):
        theta = ops.convert_to_tensor(latent)
        w = quantizer.training_forward(theta)
        return ops.sum(ops.abs(w - ops.cast(formulas.sign(theta), w.dtype)))


@keras.saving.register_keras_serializable(package="keras_bilevel")
class NonFiniteSteps(_callbacks.NonFiniteSteps, _Callback):
    __doc__ = _callbacks.NonFiniteSteps.__doc__

    def _counter(self, optimizer):
        # A Keras 3 optimizer creates `skipped_steps` when it is built (first step).
        return super()._counter(optimizer) if optimizer.built else None
