"""LatentMomentum: the latent-weight update of the AdaSTE reference recipe.

A Keras optimizer that trains binary latent weights (Larq variables of `precision == 1`)
with the momentum update of docs/method.md, section 6, and hands every other
variable to a default optimizer, so that one object passed to `compile` trains a mixed
model. It does not compute AdaSTE's gradient: that is the quantizer's backward pass, and
the gradient arriving here is already shaped by it.
"""

import keras_bilevel.keras2.legacy_keras  # noqa: F401  (Keras 2 mode before TensorFlow)

import logging

import tensorflow as tf

from keras_bilevel.core import formulas
from keras_bilevel.core.arguments import check_latent_momentum
from keras_bilevel.core.docs import LATENT_MOMENTUM_UPDATE, fill

__all__ = ["LatentMomentum", "is_binary_variable"]

log = logging.getLogger(__name__)


def is_binary_variable(variable):
    """Whether Larq marks `variable` as binary (its quantizer has `precision == 1`)."""
    return getattr(variable, "precision", None) == 1


@tf.keras.utils.register_keras_serializable(package="keras_bilevel")
@fill(update=LATENT_MOMENTUM_UPDATE)
class LatentMomentum(tf.keras.optimizers.Optimizer):
    r"""Momentum with latent decay for binary latent weights; a default optimizer for the rest.

    For every binary variable \\(\theta\\) (Larq's `precision == 1`), with step
    \\(t = 1, 2, \dots\\) counting the updates applied:
    {update}
    Every other variable (BatchNorm, biases, real-valued layers) is updated by
    `default_optimizer`.

    A step whose gradients are not all finite (NaN or Inf) changes nothing: no latent
    weight, moment, or variable of the default optimizer. It is counted in
    `skipped_steps`, and `keras_bilevel.keras2.callbacks.NonFiniteSteps` logs it. This holds
    under `jit_compile=True` as well. (State updated by the forward pass, such as
    BatchNorm's moving statistics, is outside an optimizer's reach.)

    The state (moments, step counts, the default optimizer's state) is saved with a
    `.keras` model and restored by `load_model`.

    !!! example
        ```python
        optimizer = keras_bilevel.keras2.optimizers.LatentMomentum(
            learning_rate=tf.keras.optimizers.schedules.CosineDecay(3e-4, 10_000),
            momentum=0.9, gradient_scale=(10 * 60_000) ** 2, latent_decay=1.0,
        )
        model.compile(optimizer, loss)
        ```

    # Arguments
        learning_rate: a float > 0 or a `LearningRateSchedule`.
        momentum: b in [0, 1).
        gradient_scale: s > 0; the recipe uses (10 N)^2 for N training examples.
        latent_decay: lambda >= 0, pulls latent weights toward 0.
        default_optimizer: name, config or instance of a Keras optimizer for the
            variables that are not binary.
    """

    def __init__(
        self,
        learning_rate=3e-4,
        momentum=0.9,
        gradient_scale=1.0,
        latent_decay=1.0,
        default_optimizer="adam",
        name="LatentMomentum",
        **kwargs,
    ):
        schedule = isinstance(learning_rate, tf.keras.optimizers.schedules.LearningRateSchedule)
        numbers = check_latent_momentum(learning_rate, momentum, gradient_scale,
                                        latent_decay, schedule=schedule)
        super().__init__(name=name, **kwargs)
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.momentum, self.gradient_scale, self.latent_decay = numbers
        self.default_optimizer = _get_optimizer(default_optimizer)
        if not isinstance(self.default_optimizer, tf.keras.optimizers.Optimizer):
            raise ValueError(
                "LatentMomentum: `default_optimizer` must be a Keras optimizer of the "
                "current API (tf.keras.optimizers.*, not .legacy), got "
                f"{default_optimizer!r}."
            )

    def build(self, var_list):
        """Moments for the binary variables; the default optimizer for the others."""
        super().build(var_list)
        if hasattr(self, "_momentums"):
            return
        binary = [v for v in var_list if is_binary_variable(v)]
        self._momentums = {
            self._var_key(v): self.add_variable_from_reference(v, "m") for v in binary
        }
        self._skipped_steps = self.add_variable((), tf.int64, name="skipped_steps")
        self.default_optimizer.build([v for v in var_list if not is_binary_variable(v)])
        self._built = True

    @property
    def skipped_steps(self):
        """How many steps were skipped for non-finite gradients (an int64 variable)."""
        return self._skipped_steps

    def apply_gradients(self, grads_and_vars, name=None, skip_gradients_aggregation=False,
                        **kwargs):
        grads_and_vars = list(grads_and_vars)
        with tf.init_scope():
            self.build([v for _, v in grads_and_vars])
        if not skip_gradients_aggregation and kwargs.pop(
            "experimental_aggregate_gradients", True
        ):
            grads_and_vars = self.aggregate_gradients(grads_and_vars)
        grads_and_vars = [(g, v) for g, v in grads_and_vars if g is not None]
        grads = [g for g, _ in grads_and_vars]
        variables = _Opaque([v for _, v in grads_and_vars])
        context = tf.distribute.get_replica_context()
        if not tf.distribute.has_strategy():
            tf.cond(_all_finite(grads), lambda: self._apply(grads, variables, name),
                    self._skip)
        else:
            # Under tf.distribute (one replica included: a one-worker
            # MultiWorkerMirroredStrategy merges too) the branch must be taken in a
            # cross-replica context (a branch may not hold the optimizers' merge_calls),
            # and each branch goes back to the replicas to apply (as Keras'
            # LossScaleOptimizer does).
            def cross_replica(distribution, grads, variables):
                finite = _all_finite([local for g in grads
                                      for local in distribution.experimental_local_results(g)])

                def apply():
                    distribution.extended.call_for_each_replica(
                        self._apply, args=(grads, variables, name))
                    return tf.constant(True)

                tf.cond(finite, apply, self._skip)

            context.merge_call(cross_replica, args=(grads, variables))
        return self.iterations

    def _apply(self, grads, variables, name):
        binary = [(g, v) for g, v in zip(grads, variables.value) if is_binary_variable(v)]
        other = [(g, v) for g, v in zip(grads, variables.value) if not is_binary_variable(v)]
        if other:
            self.default_optimizer.apply_gradients(other, skip_gradients_aggregation=True)
        if binary:
            super().apply_gradients(binary, name=name, skip_gradients_aggregation=True)
        else:
            self.iterations.assign_add(1)
        return tf.constant(True)

    def _skip(self):
        self._skipped_steps.assign_add(1)
        self.iterations.assign_add(1)
        return tf.constant(False)

    def update_step(self, gradient, variable):
        dtype = variable.dtype
        m = self._momentums[self._var_key(variable)]
        b = tf.cast(self.momentum, dtype)
        lr = tf.cast(self.learning_rate, dtype)
        # t counts the updates applied so far, this one included (skipped steps excluded).
        t = tf.cast(self.iterations - self._skipped_steps + 1, dtype)
        theta, moment = formulas.latent_momentum_update(
            tf.convert_to_tensor(variable), tf.convert_to_tensor(m),
            tf.convert_to_tensor(gradient, dtype), b, lr / (1.0 - tf.pow(b, t)),
            self.gradient_scale, self.latent_decay)
        m.assign(moment)
        variable.assign(theta)

    def get_config(self):
        return {
            **super().get_config(),
            "learning_rate": self._serialize_hyperparameter(self._learning_rate),
            "momentum": self.momentum,
            "gradient_scale": self.gradient_scale,
            "latent_decay": self.latent_decay,
            "default_optimizer": tf.keras.optimizers.serialize(self.default_optimizer),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["default_optimizer"] = _get_optimizer(config["default_optimizer"],
                                                     custom_objects)
        return super().from_config(config, custom_objects=custom_objects)


def _get_optimizer(spec, custom_objects=None):
    """A current-API optimizer from a name, instance or config.

    tf-keras reads a config dict without `is_legacy_optimizer` as a legacy optimizer;
    here a dict means the current API unless it says otherwise.
    """
    if isinstance(spec, dict):
        spec = {**spec, "config": {"is_legacy_optimizer": False, **spec.get("config", {})}}
        return tf.keras.optimizers.deserialize(spec, custom_objects=custom_objects,
                                               use_legacy_optimizer=False)
    return tf.keras.optimizers.get(spec)


class _Opaque:
    """Holds variables so that tf.distribute passes them through unchanged."""

    def __init__(self, value):
        self.value = value


def _all_finite(gradients):
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(_values(g))) for g in gradients]
                         or [True])


def _values(gradient):
    return gradient.values if isinstance(gradient, tf.IndexedSlices) else gradient
