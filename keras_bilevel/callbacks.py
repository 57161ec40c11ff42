"""Keras callbacks for AdaSTE training: the mu schedule and the binarization gap.

They find every AdaSTE quantizer in a model (nested models and layers included) and act
on it once per epoch; they must not hold any training state of their own that a resumed
run would need (the schedule is a function of the epoch index).
"""

import logging

import numpy as np
import tensorflow as tf

from keras_bilevel import math as ada_math
from keras_bilevel.quantizers import AdaSTE

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


class _MuSchedule(tf.keras.callbacks.Callback):
    """Finds the model's AdaSTE quantizers and writes the current mu to the epoch logs."""

    def on_train_begin(self, logs=None):
        self._quantizers = adaste_quantizers(self.model)
        if not self._quantizers:
            log.warning("%s: the model has no AdaSTE quantizer; nothing to anneal.",
                        type(self).__name__)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._quantizers:
            logs["mu"] = float(self._quantizers[0].mu.numpy())


@tf.keras.utils.register_keras_serializable(package="keras_bilevel")
class AnnealMu(_MuSchedule):
    r"""Raises AdaSTE's relaxation parameter at the start of every epoch.

    At the start of epoch \\(e\\) (0-based), for every AdaSTE quantizer of the model:
    \\[ \mu_e = \min(\mu_0 \cdot \text{rate}^{e+1}, \mu_{\max}) \\]
    which is `mu <- min(mu * rate, max_mu)` applied once per epoch, computed from the
    epoch index and the quantizer's initial `mu` (\\(\mu_0\\)), so that a resumed run
    (`BackupAndRestore`, or `load_model` + `fit(initial_epoch=...)`) continues the
    schedule exactly. `max_mu` defaults to each quantizer's `1 / alpha`, where the
    relaxation becomes an exact binariser.

    The current mu is written to the epoch logs as `mu` (the first quantizer's value),
    so History, CSVLogger and TensorBoard record it: list AnnealMu before them.

    !!! example
        ```python
        model.fit(x, y, epochs=10, callbacks=[keras_bilevel.callbacks.AnnealMu(1.05)])
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

    def on_epoch_begin(self, epoch, logs=None):
        for quantizer in self._quantizers:
            quantizer.mu.assign(self.mu_at_epoch(quantizer, epoch))

    def get_config(self):
        return {"rate": self.rate, "max_mu": self.max_mu}


@tf.keras.utils.register_keras_serializable(package="keras_bilevel")
class AnnealMuToBinary(_MuSchedule):
    r"""A budget-aware mu schedule: reaches the exact binariser at a chosen point of the run.

    Before every training step \(s\) (the optimizer's `iterations`, so resumed runs
    continue exactly), for every AdaSTE quantizer:
    \[ \mu_s = \mu_0 \left(rac{\mu_{\max}}{\mu_0}
ight)^{\min(s / (r T), 1)} \]
    geometric growth from the quantizer's initial \(\mu_0\) to \(\mu_{\max}\)
    (default `1 / alpha`, where w*(theta) = sign(theta)) at step \(rT\), with \(T\) =
    `total_steps` and \(r\) = `reach`. Unlike `AnnealMu` (x1.05 per epoch, made for
    500-epoch runs), it takes short runs all the way to the binary network. `mu` is
    written to the epoch logs.

    !!! example
        ```python
        AnnealMuToBinary(total_steps=epochs * steps_per_epoch, reach=0.8)
        ```

    # Arguments
        total_steps: training steps in the run (>= 1).
        reach: fraction of the run at which mu reaches `max_mu` (in (0, 1]).
        max_mu: final mu (> 0), or None for each quantizer's 1 / alpha.
    """

    def __init__(self, total_steps, reach=0.8, max_mu=None):
        super().__init__()
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(
                f"AnnealMuToBinary: `total_steps` must be an int >= 1, got {total_steps!r}.")
        if not 0 < reach <= 1:
            raise ValueError(f"AnnealMuToBinary: `reach` must be in (0, 1], got {reach!r}.")
        if max_mu is not None and not max_mu > 0:
            raise ValueError(
                f"AnnealMuToBinary: `max_mu` must be > 0 or None, got {max_mu!r}.")
        self.total_steps = total_steps
        self.reach = float(reach)
        self.max_mu = None if max_mu is None else float(max_mu)

    def mu_at_step(self, quantizer, step):
        """The mu that `quantizer` trains with at training step `step` (0-based)."""
        target = quantizer.max_mu if self.max_mu is None else self.max_mu
        start = max(quantizer.initial_mu, 1e-12)
        progress = min(step / (self.reach * self.total_steps), 1.0)
        return start * (target / start) ** progress

    def on_train_batch_begin(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        for quantizer in self._quantizers:
            quantizer.mu.assign(self.mu_at_step(quantizer, step))

    def get_config(self):
        return {"total_steps": self.total_steps, "reach": self.reach, "max_mu": self.max_mu}


@tf.keras.utils.register_keras_serializable(package="keras_bilevel")
class BinarizationGap(tf.keras.callbacks.Callback):
    r"""Logs how far the trained network is from the binary network, once per epoch.

    \\[ \text{binarization\_gap} = \operatorname{mean} |q_{\text{train}}(\theta) - \mathrm{sgn}(\theta)| \\]
    over all AdaSTE-quantized latent weights, where \\(q_{\text{train}}\\) is the
    forward pass used in training (w*(theta; mu) with `relaxed_forward=True`, else the
    sign, whose gap is 0). A large gap means the network being fitted is not the binary
    network evaluated at inference; a warning is logged once when it exceeds `warn_above`.

    !!! example
        ```python
        model.fit(x, y, callbacks=[keras_bilevel.callbacks.BinarizationGap()])
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
            theta = tf.convert_to_tensor(latent)
            w = quantizer.training_forward(theta)
            total += float(tf.reduce_sum(tf.abs(w - ada_math.sign(theta))))
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


@tf.keras.utils.register_keras_serializable(package="keras_bilevel")
class NonFiniteSteps(tf.keras.callbacks.Callback):
    """Logs the optimizer's count of steps skipped for non-finite gradients.

    Works with any optimizer that has a `skipped_steps` counter
    (`keras_bilevel.optimizers.LatentMomentum`). At the end of every epoch the total is
    written to the logs as `skipped_steps`, and a warning names the epoch and how many
    of its steps were skipped.

    !!! example
        ```python
        model.fit(x, y, callbacks=[keras_bilevel.callbacks.NonFiniteSteps()])
        ```
    """

    def on_train_begin(self, logs=None):
        self._seen = self._count()

    def _count(self):
        counter = getattr(self.model.optimizer, "skipped_steps", None)
        return None if counter is None else int(counter.numpy())

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

    def get_config(self):
        return {}


@tf.keras.utils.register_keras_serializable(package="keras_bilevel")
class LinkLossScale(tf.keras.callbacks.Callback):
    """Links every AdaSTE quantizer of the model to the optimizer's loss scale.

    Under mixed precision (`mixed_float16`) Keras wraps the optimizer in a
    `LossScaleOptimizer`, and the gradient reaching the quantizer's backward pass is
    the true one times the loss scale; linked, the dead band `grad_eps` keeps its float32
    meaning (see `AdaSTE.link_loss_scale`). Without a loss-scale optimizer it unlinks.
    Put it in the callbacks of the first `fit` (it acts before the step is traced).

    !!! example
        ```python
        tf.keras.mixed_precision.set_global_policy("mixed_float16")
        model.fit(x, y, callbacks=[keras_bilevel.callbacks.LinkLossScale()])
        ```
    """

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        # tf.keras.mixed_precision.LossScaleOptimizer is the base of both loss-scale
        # optimizer generations in tf-keras.
        scaled = isinstance(optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
        for quantizer in adaste_quantizers(self.model):
            quantizer.link_loss_scale((lambda: optimizer.loss_scale) if scaled else None)

    def get_config(self):
        return {}
