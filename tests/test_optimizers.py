import logging

import larq
import numpy as np
import pytest
import tensorflow as tf

import keras_bilevel
from keras_bilevel.callbacks import NonFiniteSteps
from keras_bilevel.optimizers import LatentMomentum, is_binary_variable


def numpy_latent_momentum(theta, grads, lrs, momentum, gradient_scale, latent_decay):
    """Section 6 of docs/method.md, transcribed step by step in float64."""
    theta = np.array(theta, np.float64)
    m = np.zeros_like(theta)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        m = momentum * m + (1 - momentum) * (gradient_scale * g + latent_decay * theta)
        theta = theta - lr * m / (1 - momentum**t)
    return theta, m


def _binary_variable(value):
    return larq.quantized_variable.QuantizedVariable.from_variable(
        tf.Variable(value), quantizer=larq.quantizers.NoOp(precision=1)
    )


def _grads(steps, shape=(3, 4), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) * 1e-3 for _ in range(steps)]


THETA0 = np.array([[-10.0, 10.0, 0.5, -0.25], [3.0, -3.0, 1e-3, 0.0],
                   [10.0, 10.0, -10.0, 7.0]], np.float32)


class TestUpdateRule:
    @pytest.mark.parametrize("steps", [1, 5])
    @pytest.mark.parametrize("momentum", [0.9, 0.0])
    @pytest.mark.parametrize("gradient_scale,latent_decay", [(1.0, 1.0), (1e4, 0.0),
                                                             (250.0, 0.5)])
    @pytest.mark.parametrize("jit", [False, True])
    def test_against_numpy(self, steps, momentum, gradient_scale, latent_decay, jit):
        opt = LatentMomentum(learning_rate=0.01, momentum=momentum,
                             gradient_scale=gradient_scale, latent_decay=latent_decay,
                             jit_compile=jit)
        theta = _binary_variable(THETA0)
        grads = _grads(steps)
        for g in grads:
            opt.apply_gradients([(tf.constant(g), theta)])
        want, want_m = numpy_latent_momentum(THETA0, grads, [0.01] * steps, momentum,
                                             gradient_scale, latent_decay)
        np.testing.assert_allclose(theta.numpy(), want, rtol=1e-5, atol=1e-6)
        m = opt._momentums[opt._var_key(theta)]
        np.testing.assert_allclose(m.numpy(), want_m, rtol=1e-5, atol=1e-6)
        assert int(opt.iterations.numpy()) == steps

    def test_first_step_by_hand(self):
        # m = 0.1 (2 * 0.5 + 1 * 4) = 0.5; bias correction 1 - 0.9 = 0.1; step 0.1 * 5 = 0.5
        opt = LatentMomentum(learning_rate=0.1, momentum=0.9, gradient_scale=2.0,
                             latent_decay=1.0)
        theta = _binary_variable(np.array([4.0], np.float32))
        opt.apply_gradients([(tf.constant([0.5]), theta)])
        np.testing.assert_allclose(theta.numpy(), [3.5], rtol=1e-6)

    def test_schedule(self):
        schedule = tf.keras.optimizers.schedules.CosineDecay(0.05, decay_steps=4)
        opt = LatentMomentum(learning_rate=schedule, momentum=0.9)
        theta = _binary_variable(THETA0)
        grads = _grads(4)
        for g in grads:
            opt.apply_gradients([(tf.constant(g), theta)])
        lrs = [float(schedule(step)) for step in range(4)]
        want, _ = numpy_latent_momentum(THETA0, grads, lrs, 0.9, 1.0, 1.0)
        np.testing.assert_allclose(theta.numpy(), want, rtol=1e-5, atol=1e-6)


def _mixed_model(binary_init="random_sign"):
    return tf.keras.Sequential([
        tf.keras.Input((6,)),
        larq.layers.QuantDense(8, kernel_quantizer="ada_ste",
                               kernel_initializer=binary_init, use_bias=False),
        tf.keras.layers.BatchNormalization(),
        tf.keras.layers.ReLU(),
        tf.keras.layers.Dense(3),  # real-valued: goes to the default optimizer
    ])


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)).astype(np.float32), rng.integers(0, 3, n)


LOSS = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class TestRouting:
    def test_binary_to_latent_rule_and_the_rest_to_default(self):
        tf.keras.utils.set_random_seed(0)
        model = _mixed_model()
        x, y = _data()
        opt = LatentMomentum(0.01, momentum=0.9, gradient_scale=10.0, latent_decay=1.0,
                             default_optimizer=tf.keras.optimizers.SGD(0.1))
        before = [v.numpy() for v in model.trainable_variables]
        with tf.GradientTape() as tape:
            loss = LOSS(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        binary = [is_binary_variable(v) for v in model.trainable_variables]
        assert binary == [True, False, False, False, False]
        for is_bin, v, b, g in zip(binary, model.trainable_variables, before, grads):
            if is_bin:
                want, _ = numpy_latent_momentum(b, [g.numpy()], [0.01], 0.9, 10.0, 1.0)
            else:
                want = b - 0.1 * g.numpy()
            np.testing.assert_allclose(v.numpy(), want, rtol=1e-5, atol=1e-6)
        assert int(opt.default_optimizer.iterations.numpy()) == 1

    def test_default_optimizer_by_name_instance_and_config(self):
        for spec in ["sgd", tf.keras.optimizers.SGD(0.2),
                     {"class_name": "SGD", "config": {"learning_rate": 0.2}}]:
            assert isinstance(LatentMomentum(default_optimizer=spec).default_optimizer,
                              tf.keras.optimizers.SGD)

    def test_legacy_default_optimizer_is_refused_clearly(self):
        with pytest.raises(ValueError, match="default_optimizer.*legacy"):
            LatentMomentum(default_optimizer=tf.keras.optimizers.legacy.Adam())

    @pytest.mark.parametrize("jit", [False, True])
    def test_fit_with_and_without_xla_agree(self, jit):
        x, y = _data()
        results = []
        for model_jit in (False, jit):
            tf.keras.utils.set_random_seed(0)
            model = _mixed_model()
            model.compile(LatentMomentum(1e-3, gradient_scale=100.0), LOSS,
                          jit_compile=model_jit)
            model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
            results.append(model.layers[0].get_weights()[0])
        np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-5)

    def test_learning_rate_callback(self):
        tf.keras.utils.set_random_seed(0)
        model = _mixed_model()
        model.compile(LatentMomentum(1e-2), LOSS)
        before = model.layers[0].get_weights()[0]
        model.fit(*_data(), epochs=1, verbose=0,
                  callbacks=[tf.keras.callbacks.LearningRateScheduler(lambda e, lr: 0.0)])
        np.testing.assert_array_equal(model.layers[0].get_weights()[0], before)
        assert float(model.optimizer.learning_rate.numpy()) == 0.0


class TestNonFinite:
    @pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
    @pytest.mark.parametrize("jit", [False, True])
    def test_step_is_skipped_and_counted(self, bad, jit):
        opt = LatentMomentum(0.01, default_optimizer=tf.keras.optimizers.SGD(0.1))
        theta = _binary_variable(THETA0)
        real = tf.Variable(np.ones(3, np.float32))
        g_real = tf.constant([0.1, 0.2, 0.3])

        @tf.function(jit_compile=jit)
        def step(g):
            opt.apply_gradients([(g, theta), (g_real, real)])

        grads = _grads(3)
        step(tf.constant(grads[0]))
        theta_1 = theta.numpy()
        m_1 = opt._momentums[opt._var_key(theta)].numpy()
        broken = grads[1].copy()
        broken[1, 2] = bad
        step(tf.constant(broken))
        np.testing.assert_array_equal(theta.numpy(), theta_1)
        np.testing.assert_array_equal(opt._momentums[opt._var_key(theta)].numpy(), m_1)
        np.testing.assert_allclose(real.numpy(), 1 - 0.1 * g_real.numpy())  # one step only
        assert int(opt.skipped_steps.numpy()) == 1
        step(tf.constant(grads[2]))
        # The skipped step is as if it never happened for the latent weights.
        want, _ = numpy_latent_momentum(THETA0, [grads[0], grads[2]], [0.01] * 2, 0.9,
                                        1.0, 1.0)
        np.testing.assert_allclose(theta.numpy(), want, rtol=1e-5, atol=1e-6)
        assert int(opt.iterations.numpy()) == 3

    @pytest.mark.parametrize("jit", [False, True])
    def test_in_fit_with_a_log_entry(self, jit, caplog):
        x, y = _data(64)
        x[20] = np.nan  # poisons the second batch of 16
        tf.keras.utils.set_random_seed(0)
        model = _mixed_model()
        model.compile(LatentMomentum(1e-3), LOSS, jit_compile=jit)
        with caplog.at_level(logging.WARNING):
            history = model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0,
                                callbacks=[NonFiniteSteps()])
        assert history.history["skipped_steps"] == [1, 2]
        assert "Epoch 1: 1 training step(s) skipped" in caplog.text
        assert np.isfinite(model.layers[0].get_weights()[0]).all()
        # Trainable variables are protected; BatchNorm's moving statistics are updated by
        # the forward pass, not by the optimizer, and do see the NaN batch.
        assert all(np.isfinite(w.numpy()).all() for w in model.trainable_variables)


class TestSerialization:
    def test_config_round_trip(self):
        schedule = tf.keras.optimizers.schedules.CosineDecay(3e-4, 100)
        opt = LatentMomentum(schedule, momentum=0.5, gradient_scale=7.0, latent_decay=0.25,
                             default_optimizer=tf.keras.optimizers.SGD(0.3))
        clone = LatentMomentum.from_config(opt.get_config())
        assert clone.get_config() == opt.get_config()
        again = tf.keras.optimizers.deserialize(tf.keras.optimizers.serialize(opt))
        assert isinstance(again, LatentMomentum)
        assert isinstance(again.default_optimizer, tf.keras.optimizers.SGD)

    def test_resume_from_keras_file_equals_uninterrupted(self, tmp_path):
        (x, y), _ = keras_bilevel.data.load_digits()
        x, y = x[:512], y[:512]

        def build():
            tf.keras.utils.set_random_seed(3)
            recipe = keras_bilevel.recipes.adaste_reference(
                train_size=len(x), epochs=4, steps_per_epoch=len(x) // 128)
            model = keras_bilevel.models.binary_mlp(
                (64,), 32, depth=1, kernel_quantizer=recipe.kernel_quantizer,
                kernel_initializer=recipe.kernel_initializer, batch_norm_affine=True)
            model.compile(recipe.optimizer, LOSS)
            return model, recipe

        def fit(model, recipe, epochs, initial_epoch=0):
            model.fit(x, y, batch_size=128, epochs=epochs, initial_epoch=initial_epoch,
                      shuffle=False, verbose=0, callbacks=recipe.callbacks)

        straight, recipe = build()
        fit(straight, recipe, 4)

        first, recipe = build()
        fit(first, recipe, 2)
        first.save(str(tmp_path / "half.keras"))
        resumed = tf.keras.models.load_model(str(tmp_path / "half.keras"))
        assert isinstance(resumed.optimizer, LatentMomentum)
        assert int(resumed.optimizer.iterations.numpy()) == 8
        fit(resumed, keras_bilevel.recipes.adaste_reference(
            train_size=len(x), epochs=4, steps_per_epoch=len(x) // 128), 4, initial_epoch=2)
        for a, b in zip(straight.get_weights(), resumed.get_weights()):
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
        for a, b in zip(straight.optimizer.variables, resumed.optimizer.variables):
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-6)
        inner_a = straight.optimizer.default_optimizer.variables
        inner_b = resumed.optimizer.default_optimizer.variables
        assert len(inner_a) == len(inner_b) > 1
        for a, b in zip(inner_a, inner_b):
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-6)

    @pytest.mark.parametrize("path", ["model.h5", "savedmodel"])
    def test_other_formats_keep_the_optimizer(self, tmp_path, path):
        model = _mixed_model()
        model.compile(LatentMomentum(2e-3, momentum=0.5), LOSS)
        model.fit(*_data(), epochs=1, verbose=0)
        model.save(str(tmp_path / path))
        loaded = tf.keras.models.load_model(str(tmp_path / path))
        assert isinstance(loaded.optimizer, LatentMomentum)
        assert loaded.optimizer.momentum == 0.5


class TestArguments:
    @pytest.mark.parametrize("kwargs,name", [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": -1e-3}, "learning_rate"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": -0.1}, "momentum"),
        ({"gradient_scale": 0.0}, "gradient_scale"),
        ({"latent_decay": -1.0}, "latent_decay"),
        ({"momentum": "0.9"}, "momentum"),
    ])
    def test_bad_arguments(self, kwargs, name):
        with pytest.raises(ValueError) as info:
            LatentMomentum(**kwargs)
        assert f"`{name}`" in str(info.value)
        assert repr(list(kwargs.values())[0]) in str(info.value)
