"""Binary kernel quantizers for Keras 3: AdaSTE and the straight-through baseline.

Each quantizer is a small Keras layer (as in Larq) that chooses the forward pass from the
training flag and attaches its backward pass with `keras.ops.custom_gradient`, so one
definition runs under JAX, TensorFlow and PyTorch. The AdaSTE formulas live in
`keras_bilevel.core.formulas` (bound to `keras.ops` by `keras_bilevel.keras3.formulas`); this
module must not re-implement them, and imports neither TensorFlow nor Larq.

`mu` is state, not a parameter: a non-trainable variable that compiled training steps
receive (and `.keras` files save) but that `weights`, `count_params()` and `summary()`
leave out, as Keras does with seeds and metric accumulators.
"""

import keras
from keras import ops

from keras_bilevel.core.arguments import check_adaste_arguments
from keras_bilevel.keras3 import formulas
from keras_bilevel.keras3.distribution import replica_sum
from keras_bilevel.keras3 import larq_quantizers
from keras_bilevel.keras3.larq_quantizers import (  # noqa: F401  (exported, as in Larq)
    ApproxSign, DoReFa, DoReFaQuantizer, MagnitudeAwareSign, NoOp, NoOpQuantizer,
    SteHeaviside, SteTern, SwishSign)
from keras_bilevel.keras3.quantizer_base import Quantizer, quantizer_input as _tensor

__all__ = ["AdaSTE", "SteSign", "ApproxSign", "SwishSign", "SteHeaviside",
           "MagnitudeAwareSign", "SteTern", "DoReFa", "NoOp", "DoReFaQuantizer",
           "NoOpQuantizer", "Quantizer", "get", "serialize", "is_binary_variable",
           "mark_binary"]

_PACKAGE = "keras_bilevel"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AdaSTE(Quantizer):
    r"""Binary kernel quantizer trained with AdaSTE, the adaptive straight-through estimator.

    The Keras 3 twin of `keras_bilevel.AdaSTE` (the Larq quantizer): same arguments, same
    forward and backward passes, on every Keras 3 backend.

    Forward, at inference and with `training=False`: \\( q(\theta) = \mathrm{sgn}(\theta) \\).
    In training, `sgn(theta)` as well, or, with `relaxed_forward=True`, the minimiser of the
    relaxed inner problem
    \\[ w^*(\theta) = \mathrm{clip}\left(\frac{\theta + \mu(1+\alpha)\,\mathrm{sgn}(\theta)}{1+\mu}, -1, 1\right). \\]

    Backward (pseudo-gradient), with \\(g = \partial L / \partial w\\):
    \\[ \frac{\partial L}{\partial \theta} \approx \mathrm{scale}(\theta, g)\, g, \\]
    where the scale is \\(1/(1+\mu)\\) in the linear region when the step moves
    \\(\theta\\) away from 0, 0 when a saturated weight is pushed further out, and
    \\(\min(\mathrm{jump}(\theta)/|\theta|, \text{max\_scale})\\) when the step pushes
    \\(\theta\\) toward a flip (see `keras_bilevel.keras3.formulas.backward_scale`).

    `mu` (`quantizer.mu`) is a scalar float32 variable: assign to it to change mu
    (`keras_bilevel.keras3.callbacks.AnnealMu` does, every epoch); compiled training steps
    see the new value on every backend and `.keras` files keep it, but it is not counted
    as a model parameter. The latent weights are unbounded by design (the method
    initialises them to +-10), so no `kernel_constraint` is needed.

    `relaxed_forward=False` is the default for the reason given in `keras_bilevel.AdaSTE`:
    with small latent weights the relaxed forward trains an effectively real-valued
    network; the sign forward with the adaptive backward is a safe drop-in for
    `"ste_sign"`.

    !!! example
        ```python
        from keras_bilevel.keras3 import AdaSTE, layers
        layer = layers.QuantDense(512, kernel_quantizer="ada_ste")
        layer = layers.QuantDense(512, kernel_quantizer=AdaSTE(mu=0.01, variant="reference"))
        w = AdaSTE()(theta, training=True)  # forward sign(theta), AdaSTE backward
        ```

    # Arguments
        alpha: offset of the double-well minima beyond +-1 (> 0).
        mu: initial relaxation parameter (>= 0); annealed upward during training.
        max_scale: cap on the backward scale where a weight is pushed toward a flip (> 0).
        grad_eps: dead band in |g| where a plain straight-through step is taken (>= 0).
        theta_eps: dead band in |theta| (>= 0).
        variant: `"symmetric"` (the derivation) or `"reference"` (the public code).
        relaxed_forward: train on w*(theta; mu) instead of sign(theta).
        sum_over_replicas: under data parallelism, take the sign test and the dead band
            on the gradient of the whole global batch
            (`keras_bilevel.keras3.distribution`): on JAX the step already sees it; under
            a `tf.distribute` strategy on the TensorFlow backend this is one all-reduce
            of the kernel's gradient per step. False applies the rule per replica.

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
        **kwargs,
    ):
        check_adaste_arguments(alpha, mu, max_scale, grad_eps, theta_eps, variant,
                               relaxed_forward=relaxed_forward,
                               sum_over_replicas=sum_over_replicas)
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.initial_mu = float(mu)
        self.max_scale = float(max_scale)
        self.grad_eps = float(grad_eps)
        self.theta_eps = float(theta_eps)
        self.variant = variant
        self.relaxed_forward = relaxed_forward
        self.sum_over_replicas = sum_over_replicas
        self.mu = self.add_weight(
            name="mu",
            shape=(),
            dtype="float32",
            initializer=keras.initializers.Constant(self.initial_mu),
            trainable=False,
            autocast=False,
        )

    @property
    def max_mu(self):
        """The value at which the relaxation becomes an exact binariser: 1 / alpha."""
        return 1.0 / self.alpha

    def backward_kwargs(self):
        """The static hyperparameters of `keras_bilevel.keras3.formulas.backward_scale`."""
        return dict(
            alpha=self.alpha,
            max_scale=self.max_scale,
            grad_eps=self.grad_eps,
            theta_eps=self.theta_eps,
            variant=self.variant,
        )

    def _forward(self, theta, mu):
        if self.relaxed_forward:
            return formulas.inner_solution(theta, mu, self.alpha)
        return formulas.sign(theta)

    def training_forward(self, theta):
        """The forward pass used in training: w*(theta; mu) or sign(theta); no custom gradient."""
        return self._forward(_tensor(theta), _tensor(self.mu))

    def _quantize_for_training(self, theta):
        # mu enters as an argument with a zero gradient: read here, it is the value of
        # the step's state on every backend (a JAX trace argument, not a constant).
        kwargs = self.backward_kwargs()
        sum_over_replicas = self.sum_over_replicas

        @ops.custom_gradient
        def _adaste(theta, mu):
            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                # theta's shape, statically: TensorFlow's gradient of a product with a
                # sparse input arrives with its shape unknown.
                if None not in tuple(theta.shape):
                    upstream = ops.reshape(upstream, theta.shape)
                g_total = replica_sum(upstream) if sum_over_replicas else None
                d_theta = formulas.adaste_gradient(theta, upstream, mu, g_total=g_total,
                                                   **kwargs)
                return d_theta, ops.zeros_like(mu)

            return self._forward(theta, mu), grad

        return _adaste(_tensor(theta), _tensor(self.mu))

    def call(self, inputs, training=None):
        if training:
            return self._quantize_for_training(inputs)
        return formulas.sign(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

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
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SteSign(Quantizer):
    r"""Sign with the straight-through estimator, as `larq.quantizers.SteSign`.

    \\[ q(x) = \mathrm{sgn}(x), \qquad
        \frac{\partial q}{\partial x} = \begin{cases} 1 & |x| \leq \texttt{clip\_value}
        \\\ 0 & |x| > \texttt{clip\_value} \end{cases} \\]

    with `sgn(0) = +1`, in training and inference alike. String alias `"ste_sign"`; the
    baseline AdaSTE is compared with, usually with the `"weight_clip"` constraint.

    !!! example
        ```python
        layers.QuantDense(64, kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
        ```

    # Arguments
        clip_value: the gradient is passed where |x| <= clip_value (> 0), or
            everywhere with None.
    """

    precision = 1

    def __init__(self, clip_value=1.0, **kwargs):
        super().__init__(**kwargs)
        self.clip_value = larq_quantizers.checked_clip_value("SteSign", clip_value)

    def call(self, inputs, training=None):
        return larq_quantizers.ste_sign(inputs, self.clip_value)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "clip_value": self.clip_value}


_ALIASES = {"ada_ste": AdaSTE, "ste_sign": SteSign, **larq_quantizers.ALIASES}


def get(identifier):
    """The quantizer for `identifier`: None, a string alias, a config dict or a callable.

    Strings give a fresh object each time: `"ada_ste"` (AdaSTE) or `"ste_sign"` (SteSign),
    or a registered name such as `"keras_bilevel>AdaSTE"`.
    """
    if identifier is None:
        return None
    if isinstance(identifier, str):
        if identifier in _ALIASES:
            return _ALIASES[identifier]()
        found = keras.saving.get_registered_object(identifier)
        if found is None:
            raise ValueError(
                f"Unknown quantizer {identifier!r}: use one of {sorted(_ALIASES)}, a "
                "quantizer object, or a callable."
            )
        return found()
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    if callable(identifier):
        return identifier
    raise ValueError(
        f"Could not interpret quantizer {identifier!r}: expected None, one of "
        f"{sorted(_ALIASES)}, a config dict, or a callable."
    )


def serialize(quantizer):
    """The config of a quantizer (None stays None), for a layer's `get_config`."""
    if quantizer is None:
        return None
    return keras.saving.serialize_keras_object(quantizer)


_PRECISION = "_keras_bilevel_precision"


def mark_binary(variable, quantizer):
    """Record on `variable` the precision of the quantizer applied to it (layers call this).

    Set when a layer builds its kernel, so a loaded or cloned model is marked again.
    """
    precision = getattr(quantizer, "precision", None)
    if precision is not None:
        setattr(variable, _PRECISION, precision)


def is_binary_variable(variable):
    """Whether `variable` is the latent kernel of a binary quantizer (`precision == 1`).

    True for the kernels of `keras_bilevel.keras3.layers` whose kernel (or depthwise)
    quantizer is AdaSTE or SteSign.
    """
    return getattr(variable, _PRECISION, None) == 1
