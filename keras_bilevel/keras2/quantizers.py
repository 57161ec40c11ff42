"""The AdaSTE kernel quantizer: a thin Keras/Larq layer around `keras_bilevel.keras2.formulas`.

It owns the relaxation parameter `mu` (a variable, so schedules reach the traced training
step and checkpoints keep it), chooses the forward pass from the training flag, and
attaches the AdaSTE backward pass with `tf.custom_gradient`. The formulas themselves live
in `keras_bilevel.keras2.formulas`; this module must not re-implement them.
"""

import keras_bilevel.keras2.legacy_keras  # noqa: F401  (Keras 2 mode before TensorFlow)

import logging
import sys

import larq
import tensorflow as tf

from keras_bilevel.keras2 import formulas
from keras_bilevel.core.arguments import check_adaste_arguments, check_number

__all__ = ["AdaSTE"]


def _fused_forward(theta, mu, alpha, relaxed):
    if relaxed:
        return formulas.inner_solution(theta, mu, alpha)
    return formulas.sign(theta)


# Compiled with XLA even when the model is not: each becomes one pass over the weights
# instead of a dozen elementwise kernels (see BENCHMARKS.md).
_fused_forward = tf.function(_fused_forward, jit_compile=True)
_fused_gradient = tf.function(formulas.adaste_gradient, jit_compile=True)


@larq.utils.register_alias("ada_ste")
@larq.utils.register_keras_custom_object
@tf.keras.utils.register_keras_serializable(package="keras_bilevel")
class AdaSTE(larq.quantizers._BaseQuantizer):
    r"""Binary kernel quantizer trained with AdaSTE, the adaptive straight-through estimator.

    Forward, at inference and with `training=False`:
    \\[ q(\theta) = \mathrm{sgn}(\theta) \\]
    (computed as `larq.math.sign`, which Larq Compute Engine recognises). In training,
    `q(theta) = sgn(theta)` as well, or, with `relaxed_forward=True`, the minimiser of the
    relaxed inner problem
    \\[ w^*(\theta) = \mathrm{clip}\left(\frac{\theta + \mu(1+\alpha)\,\mathrm{sgn}(\theta)}{1+\mu}, -1, 1\right). \\]

    Backward (pseudo-gradient), with \\(g = \partial L / \partial w\\):
    \\[ \frac{\partial L}{\partial \theta} \approx \mathrm{scale}(\theta, g)\, g, \\]
    where the scale is \\(1/(1+\mu)\\) in the linear region when the step moves
    \\(\theta\\) away from 0, 0 when a saturated weight is pushed further out, and
    \\(\min(\mathrm{jump}(\theta)/|\theta|, \text{max\_scale})\\) when the step pushes
    \\(\theta\\) toward a flip (see `keras_bilevel.keras2.formulas.backward_scale` for every case).

    `mu` is a float32 variable owned by the quantizer (`quantizer.mu`):
    `keras_bilevel.keras2.callbacks.AnnealMu` raises it each epoch. It is training state, not a
    parameter: it is not in `layer.weights`, so `count_params()`, `model.summary()` and
    `larq.models.summary()` count the same weights as with `"ste_sign"`, but it is saved
    and restored by `.keras`, SavedModel, `tf.train.Checkpoint` and `BackupAndRestore`
    (as a tracked variable) and by `.h5` model files (its value at save time is the
    config's `current_mu`; `mu` in the config stays the initial value the schedules
    start from). Weights-only `.h5` files (`save_weights("w.h5")`) do not keep it.
    The latent weights are unbounded by design (the method initialises them to
    +-10 and lets them grow), so no `kernel_constraint` is needed and Larq's warning about
    starved weights is not shown for AdaSTE layers.

    **Why `relaxed_forward=False` is the default.** With the relaxed forward, the network
    trained is the binary one only where |theta| >= 1 - mu * alpha. With small latent
    weights (Glorot initialisation, as when `"ada_ste"` replaces `"ste_sign"` in an
    existing model) every weight sits in the linear region, the trained network is
    effectively real-valued, and its sign network can be far worse (measured: about 70%
    against 98.6% on MNIST). The default forward is therefore the sign itself, with the
    adaptive backward pass: a safe drop-in for `ste_sign`. The paper's relaxed forward is
    for latent weights initialised far from 0 (`relaxed_forward=True` with +-10
    initialisation, as the reference recipe does); `keras_bilevel.keras2.callbacks.BinarizationGap`
    logs and warns about the gap.

    !!! example
        ```python
        layer = larq.layers.QuantDense(512, kernel_quantizer="ada_ste")
        layer = larq.layers.QuantDense(
            512, kernel_quantizer=keras_bilevel.AdaSTE(mu=0.01, variant="reference")
        )
        ```

    # Arguments
        alpha: offset of the double-well minima beyond +-1 (> 0).
        mu: initial relaxation parameter (>= 0); annealed upward during training.
        max_scale: cap on the backward scale where a weight is pushed toward a flip (> 0).
        grad_eps: dead band in |g| where a plain straight-through step is taken (>= 0).
        theta_eps: dead band in |theta| (>= 0).
        variant: `"symmetric"` (the derivation) or `"reference"` (the public code).
        relaxed_forward: train on w*(theta; mu) instead of sign(theta).
        sum_over_replicas: under `tf.distribute` with several replicas in sync, take the
            sign test and the dead band on the gradient summed over replicas (one
            all-reduce of the kernel's gradient per step), so that data-parallel
            training is the single-device algorithm; False applies the rule per replica.
        metrics: Larq quantizer metrics, e.g. `["flip_ratio"]`; `None` uses
            `larq.context.metrics_scope`.

    # References
        - Le, Høier, Lin, Zach. AdaSTE: An Adaptive Straight-Through Estimator to Train
          Binary Neural Networks. CVPR 2022.
    """

    precision = 1

    def __init__(
        self,
        alpha=0.01,
        mu=0.01,
        max_scale=0.5,
        grad_eps=1e-3,
        theta_eps=1e-6,
        variant="symmetric",
        relaxed_forward=False,
        sum_over_replicas=True,
        metrics=None,
        **kwargs,
    ):
        check_adaste_arguments(alpha, mu, max_scale, grad_eps, theta_eps, variant,
                               relaxed_forward=relaxed_forward,
                               sum_over_replicas=sum_over_replicas)
        # Keep the dtype of the latent weights as they are read (float16 inside a
        # mixed_float16 layer): the math runs in float32 and casts back to it.
        kwargs.setdefault("autocast", False)
        super().__init__(metrics=metrics, **kwargs)
        self.alpha = float(alpha)
        self.initial_mu = float(mu)
        self.max_scale = float(max_scale)
        self.grad_eps = float(grad_eps)
        self.theta_eps = float(theta_eps)
        self.variant = variant
        self.relaxed_forward = relaxed_forward
        self.sum_over_replicas = sum_over_replicas
        self._loss_scale = None
        # A tracked variable (checkpoints, SavedModel and `.keras` keep it) that
        # `weights` leaves out: see `non_trainable_weights`.
        self._mu = self.add_weight(
            name="mu",
            shape=(),
            dtype="float32",
            initializer=tf.keras.initializers.Constant(self.initial_mu),
            trainable=False,
            autocast=False,
        )

    @property
    def mu(self):
        """The relaxation parameter: a float32 `tf.Variable`, assign to change it."""
        return self._mu

    @property
    def max_mu(self):
        """The value at which the relaxation becomes an exact binariser: 1 / alpha."""
        return 1.0 / self.alpha

    @property
    def non_trainable_weights(self):
        """None: mu is state, not a parameter, and Larq's metric variables are hidden.

        So a layer with AdaSTE counts, summarises and profiles the weights it would
        have with `"ste_sign"`.
        """
        return []

    def backward_kwargs(self):
        """The static hyperparameters of `keras_bilevel.keras2.formulas.backward_scale`."""
        return dict(
            alpha=self.alpha,
            max_scale=self.max_scale,
            grad_eps=self.grad_eps,
            theta_eps=self.theta_eps,
            variant=self.variant,
        )

    def link_loss_scale(self, loss_scale):
        """Tell the backward pass the current loss scale (mixed precision).

        Under loss scaling the incoming gradient is the true one times the loss scale,
        so the dead band |g| <= grad_eps is tested as |dy| <= grad_eps * loss_scale.
        `loss_scale` is a zero-argument callable returning the current scale (e.g.
        `lambda: optimizer.loss_scale`), or None to unlink.
        `keras_bilevel.keras2.callbacks.LinkLossScale` does this for a compiled model.
        """
        self._loss_scale = loss_scale

    def _replica_sum(self, dy):
        """dy summed over the replicas in sync, or None on a single replica."""
        if not self.sum_over_replicas:
            return None
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return None
        return context.all_reduce(tf.distribute.ReduceOp.SUM, dy)

    def training_forward(self, theta):
        """The forward pass used in training: w*(theta; mu) or sign(theta)."""
        return _fused_forward(theta, tf.convert_to_tensor(self._mu), self.alpha,
                              self.relaxed_forward)

    def _quantize_for_training(self, theta):
        mu = tf.convert_to_tensor(self._mu)  # read outside: no variable in the gradient
        kwargs = self.backward_kwargs()
        if self._loss_scale is None:
            _warn_if_unlinked_mixed_float16(self)

        @tf.custom_gradient
        def _adaste(theta):
            def grad(dy):
                grad_eps = self.grad_eps
                if self._loss_scale is not None:
                    grad_eps *= tf.cast(self._loss_scale(), tf.float32)
                return _fused_gradient(theta, dy, mu, g_total=self._replica_sum(dy),
                                       **{**kwargs, "grad_eps": grad_eps})

            return _fused_forward(theta, mu, self.alpha, self.relaxed_forward), grad

        return _adaste(theta)

    def call(self, inputs, training=None):
        if training is None:
            training = tf.keras.backend.learning_phase()
        static_training = tf.get_static_value(training)
        if static_training is None:
            outputs = tf.cond(
                tf.cast(training, tf.bool),
                lambda: self._quantize_for_training(inputs),
                lambda: larq.math.sign(inputs),
            )
        elif static_training:
            outputs = self._quantize_for_training(inputs)
        else:
            outputs = larq.math.sign(inputs)
        if hasattr(self, "flip_ratio"):  # Larq's metric counts flips of the binary weights
            binary = larq.math.sign(inputs) if self.relaxed_forward else outputs
            super().call(binary)
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "mu": self.initial_mu,
            "max_scale": self.max_scale,
            "grad_eps": self.grad_eps,
            "theta_eps": self.theta_eps,
            "variant": self.variant,
            "relaxed_forward": self.relaxed_forward,
            "sum_over_replicas": self.sum_over_replicas,
            "metrics": self._custom_metrics,
            "current_mu": float(tf.keras.backend.get_value(self._mu)),
        }

    @classmethod
    def from_config(cls, config):
        """Builds the quantizer from `get_config()`, with mu set to `current_mu`."""
        config = dict(config)
        current_mu = config.pop("current_mu", None)
        if current_mu is not None:
            check_number("AdaSTE", "current_mu", current_mu, lambda v: v >= 0, ">= 0")
        quantizer = cls(**config)
        if current_mu is not None:
            quantizer.mu.assign(current_mu)
        return quantizer


_warned_unlinked = []


def _warn_if_unlinked_mixed_float16(quantizer):
    if quantizer.compute_dtype == "float16" and not _warned_unlinked:
        _warned_unlinked.append(True)
        logging.getLogger(__name__).warning(
            "AdaSTE under mixed_float16: if the loss is scaled, link the loss scale "
            "(callbacks=[keras_bilevel.keras2.callbacks.LinkLossScale()], or "
            "quantizer.link_loss_scale(...)) so that the dead band grad_eps means the same "
            "as in float32.")


class _UnboundedLatentWeightsFilter(logging.Filter):
    """Drops Larq's 'starved weights' warning for layers whose binary quantizer is AdaSTE.

    Larq warns when a binary quantizer has no weight constraint; AdaSTE's latent weights
    are meant to be unbounded. The warning is logged from the layer's `__init__`, so the
    layer is found on the call stack.
    """

    def filter(self, record):
        message = record.getMessage()
        if "starved weights" not in message:
            return True
        if "pointwise" in message:
            attribute = "pointwise_quantizer"
        elif "depthwise" in message:
            attribute = "depthwise_quantizer"
        else:
            attribute = "kernel_quantizer"
        frame = sys._getframe(1)
        while frame is not None:
            layer = frame.f_locals.get("self")
            if isinstance(layer, larq.layers_base.BaseLayer):
                return not isinstance(getattr(layer, attribute, None), AdaSTE)
            frame = frame.f_back
        return True


logging.getLogger(larq.layers_base.__name__).addFilter(_UnboundedLatentWeightsFilter())
