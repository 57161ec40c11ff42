r"""What the AdaSTE callbacks do, written once for both front ends.

The mu schedules, the binarization gap's report and the count of skipped steps behave
the same on the Larq path (`keras_bilevel.keras2.callbacks`) and on Keras 3
(`keras_bilevel.keras3.callbacks`). Each class here holds that behaviour (argument
checks, schedule arithmetic, logs, warnings, `get_config`) and the user documentation;
a front end's callback inherits from it and from its own Keras `Callback`, and supplies
what touches tensors (the table below). Nothing here imports a tensor library, Keras or
Larq.

What a front end's callback provides:

    _log                        the front end module's logger
    _find_quantizers(model)     every AdaSTE quantizer of the model
    _find_variables(model)      pairs (quantizer, latent variable) of its quantized weights
    _number(value)              a scalar tensor or variable as a NumPy/Python number
    _gap_sum(quantizer, latent) sum |q_train(theta) - sign(theta)| over one variable
"""

import math

__all__ = ["AnnealMu", "AnnealMuToBinary", "BinarizationGap", "NonFiniteSteps",
           "anneal_mu", "mu_toward_binary"]


def anneal_mu(initial_mu, rate, epoch, cap):
    """mu during epoch `epoch` (0-based): `min(initial_mu * rate ** (epoch + 1), cap)`."""
    return min(initial_mu * rate ** (epoch + 1), cap)


def mu_toward_binary(initial_mu, target, step, reach, total_steps):
    """mu at step `step`: geometric from `initial_mu` to `target`, reached at step
    `reach * total_steps` and held after it."""
    start = max(initial_mu, 1e-12)
    progress = min(step / (reach * total_steps), 1.0)
    return start * (target / start) ** progress


def _check_max_mu(owner, max_mu):
    if max_mu is not None and not max_mu > 0:
        raise ValueError(f"{owner}: `max_mu` must be > 0 or None, got {max_mu!r}.")
    return None if max_mu is None else float(max_mu)


class Configurable:
    """A callback that is rebuilt from its `get_config`, as Keras objects are: its
    configuration is its constructor's arguments, so `cls(**config)` restores it."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class _MuSchedule(Configurable):
    """Finds the model's AdaSTE quantizers and writes the current mu to the epoch logs."""

    def on_train_begin(self, logs=None):
        self._quantizers = self._find_quantizers(self.model)
        if not self._quantizers:
            self._log.warning("%s: the model has no AdaSTE quantizer; nothing to anneal.",
                              type(self).__name__)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._quantizers:
            logs["mu"] = float(self._number(self._quantizers[0].mu))


class AnnealMu(_MuSchedule):
    r"""Raises AdaSTE's relaxation parameter at the start of every epoch.

    At the start of epoch \\(e\\) (0-based), for every AdaSTE quantizer of the model:
    \\[ \mu_e = \min(\mu_0 \cdot \text{rate}^{e+1}, \mu_{\max}) \\]
    which is `mu <- min(mu * rate, max_mu)` applied once per epoch, computed from the
    epoch index and the quantizer's `initial_mu` (\\(\mu_0\\)), so that a resumed run
    (`BackupAndRestore`, or `load_model` + `fit(initial_epoch=...)`) continues the
    schedule exactly. `max_mu` defaults to each quantizer's `1 / alpha`, where the
    relaxation becomes an exact binariser.

    The current mu is written to the epoch logs as `mu` (the first quantizer's value),
    so the callbacks listed after AnnealMu (History, CSVLogger, TensorBoard) record it.

    !!! example
        ```python
        model.fit(x, y, epochs=10, callbacks=[AnnealMu(1.05)])
        ```

    # Arguments
        rate: factor applied per epoch (> 0).
        max_mu: cap on mu (> 0), or None for 1 / alpha.
    """

    def __init__(self, rate=1.05, max_mu=None):
        super().__init__()
        if not rate > 0:
            raise ValueError(f"AnnealMu: `rate` must be > 0, got {rate!r}.")
        self.max_mu = _check_max_mu("AnnealMu", max_mu)
        self.rate = float(rate)

    def mu_at_epoch(self, quantizer, epoch):
        """The mu that `quantizer` trains with during epoch `epoch` (0-based)."""
        cap = quantizer.max_mu if self.max_mu is None else self.max_mu
        return anneal_mu(quantizer.initial_mu, self.rate, epoch, cap)

    def on_epoch_begin(self, epoch, logs=None):
        for quantizer in self._quantizers:
            quantizer.mu.assign(self.mu_at_epoch(quantizer, epoch))

    def get_config(self):
        return {"rate": self.rate, "max_mu": self.max_mu}


class AnnealMuToBinary(_MuSchedule):
    r"""A budget-aware mu schedule: reaches the exact binariser at a chosen point of the run.

    Before every training step \\(s\\) (the optimizer's `iterations`, so resumed runs
    continue exactly), for every AdaSTE quantizer:
    \\[ \mu_s = \mu_0 \left(\frac{\mu_{\max}}{\mu_0}\right)^{\min(s / (r T), 1)} \\]
    geometric growth from the quantizer's initial \\(\mu_0\\) to \\(\mu_{\max}\\)
    (default `1 / alpha`, where w*(theta) = sign(theta)) at step \\(rT\\), with \\(T\\) =
    `total_steps` and \\(r\\) = `reach`. Unlike `AnnealMu` (x1.05 per epoch, made for
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
        self.max_mu = _check_max_mu("AnnealMuToBinary", max_mu)
        self.total_steps = total_steps
        self.reach = float(reach)

    def mu_at_step(self, quantizer, step):
        """The mu that `quantizer` trains with at training step `step` (0-based)."""
        target = quantizer.max_mu if self.max_mu is None else self.max_mu
        return mu_toward_binary(quantizer.initial_mu, target, step, self.reach,
                                self.total_steps)

    def on_train_batch_begin(self, batch, logs=None):
        step = int(self._number(self.model.optimizer.iterations))
        for quantizer in self._quantizers:
            quantizer.mu.assign(self.mu_at_step(quantizer, step))

    def get_config(self):
        return {"total_steps": self.total_steps, "reach": self.reach, "max_mu": self.max_mu}


class BinarizationGap(Configurable):
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
        for quantizer, latent in self._find_variables(self.model):
            total += float(self._number(self._gap_sum(quantizer, latent)))
            count += int(math.prod(latent.shape))
        return total / count if count else 0.0

    def on_epoch_end(self, epoch, logs=None):
        gap = self.gap()
        if logs is not None:
            logs["binarization_gap"] = gap
        if self.warn_above is not None and gap > self.warn_above and not self._warned:
            self._warned = True
            self._log.warning(
                "binarization_gap is %.3f at epoch %d: with relaxed_forward=True and "
                "small latent weights the network trained is not the binary network. "
                "Initialise latent weights far from 0 (e.g. +-10) or use "
                "relaxed_forward=False.",
                gap,
                epoch + 1,
            )

    def get_config(self):
        return {"warn_above": self.warn_above}


class NonFiniteSteps(Configurable):
    """Logs the optimizer's count of steps skipped for non-finite gradients.

    Works with any optimizer that has a `skipped_steps` counter (`LatentMomentum`, of
    either front end). At the end of every epoch the total is written to the logs as
    `skipped_steps`, and a warning names the epoch and how many of its steps were
    skipped.

    !!! example
        ```python
        model.fit(x, y, callbacks=[NonFiniteSteps()])
        ```
    """

    def on_train_begin(self, logs=None):
        self._seen = self._count()

    def _counter(self, optimizer):
        """The optimizer's `skipped_steps` variable, or None if it has none (yet)."""
        return getattr(optimizer, "skipped_steps", None)

    def _count(self):
        counter = self._counter(self.model.optimizer)
        return None if counter is None else int(self._number(counter))

    def on_epoch_end(self, epoch, logs=None):
        count = self._count()
        if count is None:
            return
        if logs is not None:
            logs["skipped_steps"] = count
        new = count - (self._seen or 0)
        if new:
            self._log.warning(
                "Epoch %d: %d training step(s) skipped because a gradient was NaN or "
                "Inf (latent weights and moments left unchanged); %d in total.",
                epoch + 1, new, count,
            )
        self._seen = count

    def get_config(self):
        return {}
