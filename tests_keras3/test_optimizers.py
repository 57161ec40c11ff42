"""LatentMomentum (Keras 3) against a NumPy transcription of docs/method.md, section 6.

Runs under every backend (KERAS_BACKEND=jax|tensorflow|torch); the trained steps go
through `fit` (compiled where the backend compiles), the single steps through `apply`.
"""

import math
import warnings

import keras
import numpy as np
import pytest

from keras_bilevel.keras3 import layers
from keras_bilevel.keras3.optimizers import LatentMomentum
from keras_bilevel.keras3.quantizers import SteSign, is_binary_variable, mark_binary

BACKEND = keras.backend.backend()
# fit's compile modes to test: JAX always compiles; PyTorch's torch.compile takes
# ~20 s per model on CPU, so it has its own slow test.
JIT = {"jax": [True], "tensorflow": [False, True], "torch": [False]}[BACKEND]


def numpy_momentum_steps(theta, grads, lrs, b, s, lam):
    """theta and m after len(grads) updates; every quantity in float64."""
    theta = np.asarray(theta, np.float64).copy()
    m = np.zeros_like(theta)
    t = 0
    for g, lr in zip(grads, lrs):
        t += 1
        m = b * m + (1.0 - b) * (s * np.asarray(g, np.float64) + lam * theta)
        theta -= lr * m / (1.0 - b ** t)
    return theta, m


THETA0 = np.array([[-10.0, 10.0, 0.5, -0.25], [3.0, -3.0, 1e-3, 0.0],
                   [10.0, 10.0, -10.0, 7.0]], np.float32)


def _binary_variable(value):
    variable = keras.Variable(value, name="latent")
    mark_binary(variable, SteSign())
    return variable


class TestApply:
    @pytest.mark.parametrize("steps", [1, 5])
    @pytest.mark.parametrize("momentum", [0.9, 0.0])
    @pytest.mark.parametrize("gradient_scale,latent_decay", [(1.0, 1.0), (1e4, 0.0),
                                                             (250.0, 0.5)])
    def test_against_numpy(self, steps, momentum, gradient_scale, latent_decay):
        opt = LatentMomentum(learning_rate=0.01, momentum=momentum,
                             gradient_scale=gradient_scale, latent_decay=latent_decay)
        theta = _binary_variable(THETA0)
        rng = np.random.default_rng(steps)
        grads = [rng.standard_normal(THETA0.shape).astype(np.float32) * 1e-3
                 for _ in range(steps)]
        for g in grads:
            opt.apply([g], [theta])
        want, want_m = numpy_momentum_steps(THETA0, grads, [0.01] * steps, momentum,
                                            gradient_scale, latent_decay)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(theta), want,
                                   rtol=1e-5, atol=1e-6)
        (m,) = [v for v in opt.variables if v.path.endswith("latent_m")]
        np.testing.assert_allclose(keras.ops.convert_to_numpy(m), want_m,
                                   rtol=1e-5, atol=1e-6)
        assert int(opt.iterations) == steps

    def test_first_step_by_hand(self):
        # m = 0.1 (2 * 0.5 + 1 * 4) = 0.5; bias correction 1 - 0.9 = 0.1; step 0.1 * 5 = 0.5
        opt = LatentMomentum(learning_rate=0.1, momentum=0.9, gradient_scale=2.0,
                             latent_decay=1.0)
        theta = _binary_variable(np.array([4.0], np.float32))
        opt.apply([np.array([0.5], np.float32)], [theta])
        np.testing.assert_allclose(keras.ops.convert_to_numpy(theta), [3.5], rtol=1e-6)

    def test_non_finite_step_changes_nothing_and_is_not_counted_in_t(self):
        opt = LatentMomentum(learning_rate=0.1, momentum=0.9,
                             default_optimizer=keras.optimizers.Adam(0.1))
        theta = _binary_variable(np.array([4.0, -2.0], np.float32))
        real = keras.Variable(np.array([1.0, 2.0], np.float32), name="real")
        good = [np.array([0.5, -0.5], np.float32), np.array([1.0, 1.0], np.float32)]
        bad = [np.array([np.nan, 0.0], np.float32), np.array([0.0, np.inf], np.float32)]
        opt.apply(good, [theta, real])
        state = [keras.ops.convert_to_numpy(v) for v in [theta, real, *opt.variables]]
        opt.apply(bad, [theta, real])
        after = [keras.ops.convert_to_numpy(v) for v in [theta, real, *opt.variables]]
        names = ["theta", "real", *(v.path for v in opt.variables)]
        for name, b, a in zip(names, state, after):
            if name.endswith(("iteration", "skipped_steps")) and "adam" not in name:
                assert a == b + 1, name
            else:
                np.testing.assert_array_equal(a, b, err_msg=name)
        assert int(opt.skipped_steps) == 1
        opt.apply(good, [theta, real])
        # The second applied update uses bias correction 1 - b^2 (t = 2, not 3).
        want, _ = numpy_momentum_steps([4.0, -2.0], [good[0]] * 2, [0.1, 0.1], 0.9, 1.0, 1.0)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(theta), want, rtol=1e-6)
        assert int(opt.default_optimizer.iterations) == 2

    def test_routing(self):
        theta = _binary_variable(THETA0)
        real = keras.Variable(np.ones(3, np.float32))
        opt = LatentMomentum(default_optimizer=keras.optimizers.SGD(0.5))
        opt.build([theta, real])
        assert is_binary_variable(theta) and not is_binary_variable(real)
        opt.apply([np.zeros_like(THETA0), np.full(3, 2.0, np.float32)], [theta, real])
        np.testing.assert_allclose(keras.ops.convert_to_numpy(real), [0.0, 0.0, 0.0])
        paths = [v.path for v in opt.variables]
        assert sum(p.endswith("_m") for p in paths) == 1
        assert int(opt.default_optimizer.iterations) == 1


def _linear_problem(n=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    t = rng.standard_normal((n, 3)).astype(np.float32)
    theta0 = rng.uniform(-0.5, 0.5, (5, 3)).astype(np.float32)
    return x, t, theta0


def _numpy_fit(x, t, theta0, batch, lrs, b, s, lam, default_lr, skip=()):
    """fit with SteSign (identity gradient) + bias on the default SGD, by hand."""
    theta = theta0.astype(np.float64)
    bias = np.zeros(t.shape[1])
    m = np.zeros_like(theta)
    applied = 0
    for step, start in enumerate(range(0, len(x), batch)):
        if step in skip:
            continue
        xb, tb = x[start:start + batch].astype(np.float64), t[start:start + batch]
        y = xb @ np.where(theta >= 0, 1.0, -1.0) + bias
        dy = 2.0 * (y - tb) / y.size  # mean squared error over batch and units
        g_theta, g_bias = xb.T @ dy, dy.sum(axis=0)
        applied += 1
        m = b * m + (1 - b) * (s * g_theta + lam * theta)
        theta = theta - lrs[step] * m / (1 - b**applied)
        bias = bias - default_lr * g_bias
    return theta, bias


def _fit_model(theta0, optimizer, jit):
    model = keras.Sequential([
        keras.Input((5,)),
        layers.QuantDense(3, kernel_quantizer=SteSign(clip_value=1e6),
                          kernel_initializer=keras.initializers.Constant(theta0)),
    ])
    model.compile(optimizer, "mse", jit_compile=jit)
    return model


class TestFit:
    @pytest.mark.parametrize("jit", JIT)
    @pytest.mark.parametrize("schedule", [False, True])
    @pytest.mark.parametrize("momentum", [0.9, 0.0])
    def test_fit_against_numpy(self, jit, schedule, momentum):
        x, t, theta0 = _linear_problem()
        steps, batch = 6, 4
        if schedule:
            lr = keras.optimizers.schedules.CosineDecay(0.05, decay_steps=steps)
            lrs = [0.05 * 0.5 * (1 + math.cos(math.pi * k / steps)) for k in range(steps)]
        else:
            lr, lrs = 0.05, [0.05] * steps
        opt = LatentMomentum(lr, momentum=momentum, gradient_scale=3.0, latent_decay=0.5,
                             default_optimizer=keras.optimizers.SGD(0.1))
        model = _fit_model(theta0, opt, jit)
        model.fit(x, t, batch_size=batch, epochs=1, shuffle=False, verbose=0)
        want_theta, want_bias = _numpy_fit(x, t, theta0, batch, lrs, momentum, 3.0, 0.5, 0.1)
        kernel, bias = model.get_weights()
        assert np.abs(want_theta - theta0).max() > 0.01  # it moved
        np.testing.assert_allclose(kernel, want_theta, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bias, want_bias, rtol=1e-4, atol=1e-5)
        assert int(opt.iterations) == steps and int(opt.skipped_steps) == 0

    @pytest.mark.parametrize("jit", JIT)
    def test_nan_batch_is_skipped(self, jit):
        x, t, theta0 = _linear_problem()
        x[9, 2] = np.nan  # batch 2 of 6
        opt = LatentMomentum(0.05, momentum=0.9, gradient_scale=3.0,
                             default_optimizer=keras.optimizers.SGD(0.1))
        model = _fit_model(theta0, opt, jit)
        model.fit(x, t, batch_size=4, epochs=1, shuffle=False, verbose=0)
        want_theta, want_bias = _numpy_fit(x, t, theta0, 4, [0.05] * 6, 0.9, 3.0, 1.0, 0.1,
                                           skip={2})
        kernel, bias = model.get_weights()
        np.testing.assert_allclose(kernel, want_theta, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bias, want_bias, rtol=1e-4, atol=1e-5)
        assert (int(opt.iterations), int(opt.skipped_steps)) == (6, 1)
        assert int(opt.default_optimizer.iterations) == 5

    @pytest.mark.slow
    @pytest.mark.skipif(BACKEND != "torch", reason="the torch.compile run")
    def test_torch_compile(self):
        self.test_fit_against_numpy(True, True, 0.9)


class TestSerialisation:
    def test_config_round_trip(self):
        schedule = keras.optimizers.schedules.CosineDecay(3e-4, decay_steps=100)
        opt = LatentMomentum(schedule, momentum=0.5, gradient_scale=7.0, latent_decay=0.25,
                             default_optimizer=keras.optimizers.SGD(0.2))
        restored = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
        assert isinstance(restored, LatentMomentum)
        assert (restored.momentum, restored.gradient_scale, restored.latent_decay) == (
            0.5, 7.0, 0.25)
        assert isinstance(restored.default_optimizer, keras.optimizers.SGD)
        assert float(restored.default_optimizer.learning_rate) == pytest.approx(0.2)
        assert restored._learning_rate.get_config() == schedule.get_config()

    def test_keras_file_keeps_the_state_and_resumes_exactly(self, tmp_path):
        x, t, theta0 = _linear_problem()

        def model():
            return _fit_model(theta0, LatentMomentum(0.05, default_optimizer="adam"),
                              JIT[0])

        straight = model()
        straight.fit(x, t, batch_size=4, epochs=2, shuffle=False, verbose=0)
        first = model()
        first.fit(x, t, batch_size=4, epochs=1, shuffle=False, verbose=0)
        first.save(tmp_path / "m.keras")
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # "Skipping variable loading"
            resumed = keras.saving.load_model(tmp_path / "m.keras")
        assert isinstance(resumed.optimizer, LatentMomentum)
        for a, b in zip(first.optimizer.variables, resumed.optimizer.variables):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                          keras.ops.convert_to_numpy(b))
        resumed.fit(x, t, batch_size=4, epochs=1, shuffle=False, verbose=0)
        for a, b in zip(straight.get_weights(), resumed.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class TestArguments:
    @pytest.mark.parametrize("kwargs,name", [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"momentum": 1.0}, "momentum"),
        ({"gradient_scale": -1.0}, "gradient_scale"),
        ({"latent_decay": -0.1}, "latent_decay"),
        ({"default_optimizer": "no_such_optimizer"}, "default_optimizer"),
        ({"clipnorm": 1.0}, "clipnorm"),
        ({"weight_decay": 0.1}, "weight_decay"),
    ])
    def test_bad_arguments_name_the_argument(self, kwargs, name):
        with pytest.raises(ValueError, match=f"`{name}`"):
            LatentMomentum(**kwargs)

    def test_default_optimizer_by_name_instance_and_config(self):
        for spec in ["sgd", keras.optimizers.SGD(0.2),
                     {"class_name": "SGD", "config": {"learning_rate": 0.2}}]:
            assert isinstance(LatentMomentum(default_optimizer=spec).default_optimizer,
                              keras.optimizers.SGD)
