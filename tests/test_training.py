"""AdaSTE inside Keras models: fit, predict, save and load."""

import larq
import numpy as np
import pytest
import tensorflow as tf

from keras_bilevel import AdaSTE
from tests import reference


def _sign(x):
    return np.where(x >= 0, 1.0, -1.0).astype(np.float32)


class TestFitStep:
    @pytest.mark.parametrize("jit", [False, True])
    @pytest.mark.parametrize("relaxed", [False, True])
    @pytest.mark.parametrize("variant,mu", [("symmetric", 0.01), ("reference", 0.5),
                                            ("symmetric", 100.0)])
    def test_one_sgd_step_matches_numpy(self, jit, relaxed, variant, mu):
        rng = np.random.default_rng(0)
        n, d, units, lr = 16, 6, 4, 0.1
        x = rng.standard_normal((n, d)).astype(np.float32)
        t = rng.standard_normal((n, units)).astype(np.float32)
        theta = (rng.choice([-1, 1], (d, units)) * 10 ** rng.uniform(-3, 1, (d, units)))
        theta = theta.astype(np.float32)
        q = AdaSTE(mu=mu, variant=variant, relaxed_forward=relaxed)
        model = tf.keras.Sequential(
            [tf.keras.Input((d,)), larq.layers.QuantDense(units, kernel_quantizer=q,
                                                          use_bias=False)]
        )
        model.layers[0].set_weights([theta])
        model.compile(tf.keras.optimizers.SGD(lr), "mse", jit_compile=jit)
        model.fit(x, t, batch_size=n, epochs=1, shuffle=False, verbose=0)

        # NumPy: the loss at w (w* or sign), its gradient g, then the AdaSTE step.
        w = reference.w_star_array(theta, mu) if relaxed else _sign(theta)
        y = x.astype(np.float64) @ w
        g = x.T @ (2.0 * (y - t) / (n * units))
        want = theta - lr * reference.scale_array(theta, g, mu, variant=variant) * g
        np.testing.assert_allclose(model.layers[0].get_weights()[0], want, rtol=1e-5,
                                   atol=1e-6)

    @pytest.mark.parametrize("jit", [False, True])
    def test_fit_learns(self, jit):
        model, (x, y) = _small_classifier(), _blobs()
        model.compile(tf.keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                      metrics=["accuracy"], jit_compile=jit)
        history = model.fit(x, y, epochs=8, batch_size=32, verbose=0)
        assert history.history["loss"][-1] < history.history["loss"][0]
        assert model.evaluate(x, y, verbose=0)[1] > 0.8


def _blobs(n=256, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = rng.standard_normal((3, 8)) * 3
    x = centers[y] + rng.standard_normal((n, 8))
    return x.astype(np.float32), y


def _small_classifier(quantizer="ada_ste"):
    """A 8-32-3 binary classifier; `quantizer` is an identifier or a factory."""
    if not callable(quantizer):
        quantizer = (lambda identifier: lambda: identifier)(quantizer)
    return tf.keras.Sequential(
        [
            tf.keras.Input((8,)),
            larq.layers.QuantDense(32, kernel_quantizer=quantizer()),
            tf.keras.layers.BatchNormalization(),
            tf.keras.layers.ReLU(),
            larq.layers.QuantDense(3, kernel_quantizer=quantizer(), use_bias=False),
            tf.keras.layers.BatchNormalization(center=False, scale=False),
            tf.keras.layers.Softmax(),
        ]
    )


def _trained(quantizer="ada_ste"):
    model, (x, y) = _small_classifier(quantizer), _blobs()
    model.compile(tf.keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    return model, x


class TestInference:
    def test_predict_equals_plain_keras_model_with_sign_kernels(self):
        model, x = _trained()
        plain = tf.keras.Sequential(
            [
                tf.keras.Input((8,)),
                tf.keras.layers.Dense(32),
                tf.keras.layers.BatchNormalization(),
                tf.keras.layers.ReLU(),
                tf.keras.layers.Dense(3, use_bias=False),
                tf.keras.layers.BatchNormalization(center=False, scale=False),
                tf.keras.layers.Softmax(),
            ]
        )
        for src, dst in zip(model.layers, plain.layers):
            weights = src.get_weights()
            if isinstance(src, larq.layers.QuantDense):
                weights = [_sign(weights[0])] + weights[1:]
            dst.set_weights(weights)
        np.testing.assert_allclose(model.predict(x, verbose=0), plain.predict(x, verbose=0),
                                   rtol=1e-5, atol=1e-6)

    def test_training_mode_differs_only_where_expected(self):
        q = AdaSTE(relaxed_forward=True)
        layer = larq.layers.QuantDense(3, kernel_quantizer=q, use_bias=False)
        model = tf.keras.Sequential([tf.keras.Input((4,)), layer])
        x = np.eye(4, dtype=np.float32)
        theta = layer.get_weights()[0]
        np.testing.assert_allclose(model(x, training=True).numpy(),
                                   reference.w_star_array(theta, 0.01), atol=1e-6)
        np.testing.assert_array_equal(model(x, training=False).numpy(), _sign(theta))


FORMATS = ["model.keras", "model.h5", "savedmodel"]


class TestSaveLoad:
    @pytest.mark.parametrize("path", FORMATS)
    @pytest.mark.parametrize("quantizer", ["alias", "instance"])
    def test_round_trip_keeps_predictions_and_mu(self, tmp_path, path, quantizer):
        if quantizer == "alias":
            model, x = _trained("ada_ste")
        else:
            model, x = _trained(lambda: AdaSTE(mu=0.02, variant="reference",
                                               relaxed_forward=True, max_scale=0.8))
        quantizers = _kernel_quantizers(model)
        for i, q in enumerate(quantizers):
            q.mu.assign(0.37 + i)
        expected = model.predict(x, verbose=0)
        target = str(tmp_path / path)
        model.save(target)
        loaded = tf.keras.models.load_model(target)
        np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-6)
        loaded_quantizers = _kernel_quantizers(loaded)
        assert [type(q) for q in loaded_quantizers] == [AdaSTE, AdaSTE]
        for i, (before, after) in enumerate(zip(quantizers, loaded_quantizers)):
            assert float(after.mu.numpy()) == pytest.approx(0.37 + i)
            assert after.get_config() == before.get_config()

    def test_checkpoint_keeps_mu(self, tmp_path):
        model, _ = _trained()
        q = model.layers[0].kernel_quantizer
        q.mu.assign(0.5)
        path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
        q.mu.assign(0.1)
        tf.train.Checkpoint(model=model).restore(path).assert_consumed()
        assert float(q.mu.numpy()) == pytest.approx(0.5)


def _kernel_quantizers(model):
    return [layer.kernel_quantizer for layer in model.layers
            if isinstance(layer, larq.layers.QuantDense)]
