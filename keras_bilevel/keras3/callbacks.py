"""Keras 3 callbacks for AdaSTE training: the mu schedule, the binarization gap, skipped steps.

The Keras 3 twins of `keras_bilevel.callbacks` (same arguments, same logs), for every
backend. They find every AdaSTE quantizer in a model (nested models and layers included)
and act on it once per epoch; they hold no training state that a resumed run would need
(the mu schedule is a function of the epoch index). mu is a variable of the model, so a
value written here is what the next compiled training step reads.
"""

import logging

import keras
import numpy as np
from keras import ops

from keras_bilevel.keras3 import math as ada_math
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
    """A callback rebuilt from its `get_config` (Keras 3 callbacks have no `from_config`)."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_bilevel")
class AnnealMu(_Callback):
    r"""Raises AdaSTE's relaxation parameter at the start of every epoch.

    At the start of epoch \\(e\\) (0-based), for every AdaSTE quantizer of the model:
    \\[ \mu_e = \min(\mu_0 \cdot \text{rate}^{e+1}, \mu_{\max}) \\]
    which is `mu <- min(mu * rate, max_mu)` applied once per epoch, computed from the
    epoch index and the quantizer's `initial_mu` (\\(\mu_0\\)), so that a resumed run
    (`load_model` + `fit(initial_epoch=...)`) continues the schedule exactly. `max_mu`
    defaults to each quantizer's `1 / alpha`, where the relaxation becomes an exact
    binariser.

    The current mu is written to the epoch logs as `mu` (the first quantizer's value),
    so History and CSVLogger record it: list AnnealMu before them.

    !!! example
        ```python
        model.fit(x, y, epochs=10,
                  callbacks=[keras_bilevel.keras3.callbacks.AnnealMu(1.05)])
        ```

    # Arguments
        rate: factor applied per epoch (> 0).
        max_mu: cap on mu (> 0), or None for 1 / alpha.
    """

    def __init__(self, rate=1.05, max_mu=None):
        super().__init__()
        if not rate > 0:
            raise ValueError(f"AnnealMu: `rate` must be > 0, got {rate!r}.")
        if max_mu is not None and not max_mu > 0:
            raise ValueError(f"AnnealMu: `max_mu` must be > 0 or None, got {max_mu!r}.")
        self.rate = float(rate)
        self.max_mu = None if max_mu is None else float(max_mu)

    def mu_at_epoch(self, quantizer, epoch):
        """The mu that `quantizer` trains with during epoch `epoch` (0-based)."""
        cap = quantizer.max_mu if self.max_mu is None else self.max_mu
        return min(quantizer.initial_mu * self.rate ** (epoch + 1), cap)

    def on_train_begin(self, logs=None):
        self._quantizers = adaste_quantizers(self.model)
        if not self._quantizers:
            log.warning("AnnealMu: the model has no AdaSTE quantizer; nothing to anneal.")

    def on_epoch_begin(self, epoch, logs=None):
        for quantizer in self._quantizers:
            quantizer.mu.assign(self.mu_at_epoch(quantizer, epoch))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._quantizers:
            logs["mu"] = float(ops.convert_to_numpy(self._quantizers[0].mu))

    def get_config(self):
        return {"rate": self.rate, "max_mu": self.max_mu}


@keras.saving.register_keras_serializable(package="keras_bilevel")
class BinarizationGap(_Callback):
    r"""Logs how far the trained network is from the binary network, once per epoch.

    \\[ \text{binarization\_gap} = \operatorname{mean} |q_{\text{train}}(\theta) - \mathrm{sgn}(\theta)| \\]
    over all AdaSTE-quantized latent weights, where \\(q_{\text{train}}\\) is the
    forward pass used in training (w*(theta; mu) with `relaxed_forward=True`, else the
    sign, whose gap is 0). A large gap means the network being fitted is not the binary
    network evaluated at inference; a warning is logged once when it exceeds `warn_above`.

    !!! example
        ```python
        history = model.fit(x, y, callbacks=[BinarizationGap()])
        history.history["binarization_gap"]
        ```

    # Arguments
        warn_above: gap above which a warning is logged (>= 0), or None for never.
    """

    def __init__(self, warn_above=0.1):
        super().__init__()
        if warn_above is not None and not warn_above >= 0:
            raise ValueError(
                f"BinarizationGap: `warn_above` must be >= 0 or None, got {warn_above!r}."
            )
        self.warn_above = warn_above
        self._warned = False

    def gap(self):
        """The current binarization gap of the model (a Python float)."""
        total, count = 0.0, 0
        for quantizer, latent in adaste_variables(self.model):
            theta = ops.convert_to_tensor(latent)
            w = quantizer.training_forward(theta)
            gap = ops.abs(w - ops.cast(ada_math.sign(theta), w.dtype))
            total += float(ops.convert_to_numpy(ops.sum(gap)))
            count += int(np.prod(theta.shape))
        return total / count if count else 0.0

    def on_epoch_end(self, epoch, logs=None):
        gap = self.gap()
        if logs is not None:
            logs["binarization_gap"] = gap
        if self.warn_above is not None and gap > self.warn_above and not self._warned:
            self._warned = True
            log.warning(
                "binarization_gap is %.3f at epoch %d: with relaxed_forward=True and "
                "small latent weights the network trained is not the binary network. "
                "Initialise latent weights far from 0 (e.g. +-10) or use "
                "relaxed_forward=False.",
                gap,
                epoch + 1,
            )

    def get_config(self):
        return {"warn_above": self.warn_above}


@keras.saving.register_keras_serializable(package="keras_bilevel")
class NonFiniteSteps(_Callback):
    """Logs the optimizer's count of steps skipped for non-finite gradients.

    Works with any optimizer that has a `skipped_steps` counter
    (`keras_bilevel.keras3.optimizers.LatentMomentum`). At the end of every epoch the
    total is written to the logs as `skipped_steps`, and a warning names the epoch and
    how many of its steps were skipped.

    !!! example
        ```python
        model.fit(x, y, callbacks=[keras_bilevel.keras3.callbacks.NonFiniteSteps()])
        ```
    """

    def on_train_begin(self, logs=None):
        self._seen = self._count()

    def _count(self):
        optimizer = self.model.optimizer
        counter = getattr(optimizer, "skipped_steps", None) if optimizer.built else None
        return None if counter is None else int(ops.convert_to_numpy(counter))

    def on_epoch_end(self, epoch, logs=None):
        count = self._count()
        if count is None:
            return
        if logs is not None:
            logs["skipped_steps"] = count
        new = count - (self._seen or 0)
        if new:
            log.warning(
                "Epoch %d: %d training step(s) skipped because a gradient was NaN or "
                "Inf (latent weights and moments left unchanged); %d in total.",
                epoch + 1, new, count,
            )
        self._seen = count
