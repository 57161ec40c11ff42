"""LatentMomentum for Keras 3: the latent-weight update of the AdaSTE reference recipe.

The Keras 3 twin of `keras_bilevel.keras2.optimizers.LatentMomentum` (same arguments, same
update), written once in `keras.ops` for every backend. It trains the latent weights of
binary quantizers with the momentum update of docs/method.md, section 6, and
hands every other variable to a default optimizer. It does not compute AdaSTE's
gradient (that is the quantizer's backward pass) and imports neither TensorFlow nor
Larq.
"""

import keras
from keras import ops

from keras_bilevel.core import formulas
from keras_bilevel.core.arguments import check_latent_momentum
from keras_bilevel.core.docs import LATENT_MOMENTUM_UPDATE, fill
from keras_bilevel.keras3 import formulas as keras_formulas
from keras_bilevel.keras3.backends import current as backend
from keras_bilevel.keras3.distribution import replica_sum
from keras_bilevel.keras3.quantizers import _tensor, is_binary_variable

__all__ = ["LatentMomentum", "is_binary_variable"]

# Keras' own optimizer arguments that this optimizer does not apply to the latent
# weights, with their defaults (a config from `get_config` carries them).
_UNSUPPORTED = {"weight_decay": None, "clipnorm": None, "clipvalue": None,
                "global_clipnorm": None, "use_ema": False,
                "gradient_accumulation_steps": None}


# The latent update as one pass where the backend's steps would run it op by op
# (PyTorch's fused kernel, TensorFlow's XLA); None where the step is compiled whole (JAX).
_FUSED_LATENT_MOMENTUM_STEP = backend.latent_momentum_step(keras_formulas._OPS)


@keras.saving.register_keras_serializable(package="keras_bilevel")
@fill(update=LATENT_MOMENTUM_UPDATE)
class LatentMomentum(keras.optimizers.Optimizer):
    r"""Momentum with latent decay for binary latent weights; a default optimizer for the rest.

    For every binary variable \\(\theta\\) (`is_binary_variable`: the latent kernel of a
    binary quantizer), with step \\(t = 1, 2, \dots\\) counting the updates applied:
    {update}
    A schedule sees the step index, skipped steps included. Every other variable
    (BatchNorm, biases, real-valued layers) is updated by `default_optimizer`, whose state
    lives inside this optimizer (`variables` lists it), so JAX's stateless training step
    and `.keras` files carry it.

    A step whose gradients are not all finite (NaN or Inf) changes nothing: no latent
    weight, moment, variable or state of the default optimizer. It is counted in
    `skipped_steps`. This holds with `jit_compile=True` and under JAX's
    `stateless_apply`: the update is computed and then selected away, with no branch.

    Under data parallelism (JAX `keras.distribution.DataParallel`, TensorFlow
    `tf.distribute`) this is the single-device update: on TensorFlow the latent
    gradients and the finite test are summed over replicas.

    !!! example
        ```python
        optimizer = keras_bilevel.keras3.optimizers.LatentMomentum(
            learning_rate=keras.optimizers.schedules.CosineDecay(3e-4, 10_000),
            momentum=0.9, gradient_scale=(10 * 60_000) ** 2, latent_decay=1.0,
        )
        model.compile(optimizer, loss)
        ```

    # Arguments
        learning_rate: a float > 0 or a `keras.optimizers.schedules.LearningRateSchedule`.
        momentum: b in [0, 1).
        gradient_scale: s > 0; the recipe uses (10 N)^2 for N training examples.
        latent_decay: lambda >= 0, pulls latent weights toward 0.
        default_optimizer: name, config or instance of a Keras 3 optimizer for the
            variables that are not binary.
        loss_scale_factor: as for every Keras optimizer. Clipping, weight decay, EMA
            and gradient accumulation are not applied to latent weights: set them on
            `default_optimizer` for the other variables.
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
        schedule = isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule)
        numbers = check_latent_momentum(learning_rate, momentum, gradient_scale,
                                        latent_decay, schedule=schedule)
        if not schedule:
            learning_rate = float(learning_rate)
        for key, default in _UNSUPPORTED.items():
            if kwargs.get(key, default) != default:
                raise ValueError(
                    f"LatentMomentum: `{key}`={kwargs[key]!r} is not applied to latent "
                    f"weights; set it on `default_optimizer` for the other variables.")
            kwargs.pop(key, None)
        kwargs.pop("ema_momentum", None)
        kwargs.pop("ema_overwrite_frequency", None)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum, self.gradient_scale, self.latent_decay = numbers
        try:
            self.default_optimizer = keras.optimizers.get(default_optimizer)
        except (ValueError, TypeError) as error:
            raise ValueError(
                "LatentMomentum: `default_optimizer` must be the name, config or "
                f"instance of a Keras 3 optimizer, got {default_optimizer!r}.") from error
        if self.default_optimizer is None:
            raise ValueError("LatentMomentum: `default_optimizer` must not be None.")

    @property
    def variables(self):
        """This optimizer's variables, then the default optimizer's."""
        return self._variables[:] + self.default_optimizer.variables

    @property
    def skipped_steps(self):
        """How many steps were skipped for non-finite gradients (an int variable)."""
        return self._skipped_steps

    def build(self, var_list):
        """Moments for the binary variables; the default optimizer for the others."""
        if self.built:
            return
        super().build(var_list)
        self._momentums = {
            self._var_key(v): self.add_variable_from_reference(v, "m")
            for v in var_list if is_binary_variable(v)
        }
        self._skipped_steps = self.add_variable((), dtype="int", name="skipped_steps")
        self.default_optimizer.build(
            [v for v in var_list if self._var_key(v) not in self._momentums])

    def apply(self, grads, trainable_variables=None):
        """One step: the latent update, the default optimizer, both undone if not finite."""
        if trainable_variables is None:
            if not self.built:
                raise ValueError("LatentMomentum.apply: pass `trainable_variables` on the "
                                 "first call, or call `build(variables)` first.")
            trainable_variables = self._trainable_variables
        trainable_variables = list(trainable_variables)
        if not self.built:
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
        self._check_variables_are_known(trainable_variables)
        pairs = [(ops.convert_to_tensor(g), v)
                 for g, v in zip(grads, trainable_variables) if g is not None]
        if not pairs:
            raise ValueError("LatentMomentum.apply: no gradient was given for any variable.")
        if self.loss_scale_factor is not None:
            pairs = [(g / self.loss_scale_factor, v) for g, v in pairs]
        # Under a tf.distribute strategy each replica holds its share of the gradient: the
        # latent update and the finite test use the sum over replicas (the default
        # optimizer sums its own gradients).
        totals = replica_sum([g for g, _ in pairs])
        summed = pairs if totals is None else [(t, v) for t, (_, v) in zip(totals, pairs)]
        finite = ops.all(ops.stack([ops.all(ops.isfinite(g)) for g, _ in summed]))
        with keras.name_scope(self.name, caller=self):
            binary = [(g, v) for g, v in summed if self._var_key(v) in self._momentums]
            other = [(g, v) for g, v in pairs if self._var_key(v) not in self._momentums]
            if binary:
                learning_rate = self.learning_rate
                for g, v in binary:
                    self._latent_update(g, v, learning_rate, finite)
            if other:
                self._default_update(other, finite)
        self._skipped_steps.assign_add(
            ops.cast(ops.logical_not(finite), self._skipped_steps.dtype))
        self._iterations.assign_add(1)

    def _latent_update(self, gradient, variable, learning_rate, finite):
        dtype = variable.dtype
        moment = self._momentums[self._var_key(variable)]
        m = ops.convert_to_tensor(moment)
        b = ops.cast(self.momentum, dtype)
        # t counts the updates applied so far, this one included (skipped steps excluded).
        applied = ops.subtract(ops.convert_to_tensor(self._iterations),
                               ops.convert_to_tensor(self._skipped_steps))
        t = ops.cast(applied + 1, dtype)
        theta = ops.convert_to_tensor(variable)
        step_size = ops.cast(learning_rate, dtype) / (1.0 - ops.power(b, t))
        arguments = (theta, m, ops.cast(gradient, dtype), b, step_size,
                     self.gradient_scale, self.latent_decay)
        fused = _FUSED_LATENT_MOMENTUM_STEP if variable.constraint is None else None
        if fused is not None:  # one pass, the finite test included
            new_theta, new_m = fused(*(_tensor(a) for a in arguments[:2]), *arguments[2:],
                                     finite)
            self.assign(moment, new_m)
            self.assign(variable, new_theta)
            return
        new_theta, new_m = formulas.latent_momentum_update(*arguments)
        if variable.constraint is not None:
            new_theta = variable.constraint(new_theta)
        self.assign(moment, ops.where(finite, new_m, m))
        self.assign(variable, ops.where(finite, new_theta, theta))

    def _default_update(self, pairs, finite):
        watched = [v for _, v in pairs] + self.default_optimizer.variables
        before = [ops.copy(ops.convert_to_tensor(v)) for v in watched]
        self.default_optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        for variable, old in zip(watched, before):
            self.assign(variable, ops.where(finite, ops.convert_to_tensor(variable), old))

    def get_config(self):
        config = super().get_config()
        for key in (*_UNSUPPORTED, "ema_momentum", "ema_overwrite_frequency"):
            config.pop(key, None)
        return {
            **config,
            "momentum": self.momentum,
            "gradient_scale": self.gradient_scale,
            "latent_decay": self.latent_decay,
            "default_optimizer": keras.optimizers.serialize(self.default_optimizer),
        }
