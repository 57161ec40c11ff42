"""AnnealMu, BinarizationGap and NonFiniteSteps (Keras 3), under every backend."""

import csv
import logging

import keras
import numpy as np
import pytest

from keras_bilevel.keras3 import layers
from keras_bilevel.keras3.callbacks import (AnnealMu, BinarizationGap, NonFiniteSteps,
                                            adaste_quantizers)
from keras_bilevel.keras3.optimizers import LatentMomentum
from keras_bilevel.keras3.quantizers import AdaSTE
from tests import reference

JIT = keras.backend.backend() in ("jax", "tensorflow")


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)).astype(np.float32), rng.integers(0, 2, n)


def _model(mu=0.01, relaxed=False, initializer="glorot_uniform", alpha=0.01,
           optimizer=None):
    model = keras.Sequential([
        keras.Input((5,)),
        layers.QuantDense(8, kernel_initializer=initializer,
                          kernel_quantizer=AdaSTE(mu=mu, alpha=alpha,
                                                  relaxed_forward=relaxed)),
        layers.QuantDense(2, kernel_initializer=initializer,
                          kernel_quantizer=AdaSTE(mu=2 * mu, alpha=alpha,
                                                  relaxed_forward=relaxed)),
    ])
    model.compile(optimizer or keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=JIT)
    return model


def _mus(model):
    return [float(keras.ops.convert_to_numpy(q.mu)) for q in adaste_quantizers(model)]


class TestAnnealMu:
    def test_schedule_and_logs(self):
        model = _model()
        history = model.fit(*_data(), epochs=4, verbose=0, callbacks=[AnnealMu(1.05)])
        expected = [0.01 * 1.05 ** (e + 1) for e in range(4)]
        np.testing.assert_allclose(history.history["mu"], expected, rtol=1e-6)
        np.testing.assert_allclose(_mus(model), [0.01 * 1.05**4, 0.02 * 1.05**4], rtol=1e-6)

    def test_mu_reaches_the_compiled_step(self):
        # Weights frozen (learning rate 0), relaxed forward: each epoch's training loss is
        # the loss at w*(theta; mu_e), so it shows the mu the compiled step used.
        theta = np.array([[0.3, -0.6], [-0.05, 0.9], [0.5, -0.2]], np.float32)
        model = keras.Sequential([
            keras.Input((3,)),
            layers.QuantDense(2, use_bias=False,
                              kernel_initializer=keras.initializers.Constant(theta),
                              kernel_quantizer=AdaSTE(relaxed_forward=True)),
        ])
        model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=JIT)
        rng = np.random.default_rng(1)
        x = rng.standard_normal((16, 3)).astype(np.float32)
        y = np.zeros((16, 2), np.float32)
        history = model.fit(x, y, batch_size=16, epochs=3, verbose=0,
                            callbacks=[AnnealMu(3.0)])
        mus = [0.01 * 3.0 ** (e + 1) for e in range(3)]
        want = [np.mean((x @ reference.w_star_array(theta, mu)) ** 2) for mu in mus]
        np.testing.assert_allclose(history.history["loss"], want, rtol=1e-5)
        assert want[0] != pytest.approx(want[2], rel=1e-2)

    @pytest.mark.parametrize("max_mu,cap", [(None, 1 / 0.5), (1.5, 1.5)])
    def test_capped(self, max_mu, cap):
        model = _model(mu=1.0, alpha=0.5)
        history = model.fit(*_data(), epochs=3, verbose=0,
                            callbacks=[AnnealMu(rate=1.3, max_mu=max_mu)])
        np.testing.assert_allclose(history.history["mu"], [1.3, min(1.69, cap), cap],
                                   rtol=1e-6)

    def test_nested_models_and_layers(self):
        inner = keras.Sequential([keras.Input((5,)),
                                  layers.QuantDense(4, kernel_quantizer="ada_ste")])

        class Block(keras.layers.Layer):
            def __init__(self):
                super().__init__()
                self.dense = layers.QuantDense(2, kernel_quantizer="ada_ste")

            def call(self, x):
                return self.dense(x)

        inputs = keras.Input((5,))
        model = keras.Model(inputs, Block()(inner(inputs)))
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=JIT)
        assert len(adaste_quantizers(model)) == 2
        model.fit(*_data(), epochs=2, verbose=0, callbacks=[AnnealMu(2.0)])
        np.testing.assert_allclose(_mus(model), [0.04, 0.04], rtol=1e-6)

    def test_csv_logger(self, tmp_path):
        model = _model()
        csv_path = str(tmp_path / "log.csv")
        model.fit(*_data(), epochs=2, verbose=0, callbacks=[
            AnnealMu(), BinarizationGap(), keras.callbacks.CSVLogger(csv_path)])
        with open(csv_path) as f:
            rows = list(csv.DictReader(f))
        np.testing.assert_allclose([float(r["mu"]) for r in rows], [0.0105, 0.011025],
                                   rtol=1e-6)
        assert [float(r["binarization_gap"]) for r in rows] == [0.0, 0.0]

    def test_resume_with_load_model(self, tmp_path):
        x, y = _data()
        straight = _model()
        straight.fit(x, y, epochs=4, verbose=0, callbacks=[AnnealMu()])

        first = _model()
        first.fit(x, y, epochs=2, verbose=0, callbacks=[AnnealMu()])
        first.save(tmp_path / "m.keras")
        resumed = keras.saving.load_model(tmp_path / "m.keras")
        np.testing.assert_allclose(_mus(resumed), _mus(first), rtol=1e-7)  # mu is saved
        history = resumed.fit(x, y, epochs=4, initial_epoch=2, verbose=0,
                              callbacks=[AnnealMu()])
        np.testing.assert_allclose(history.history["mu"],
                                   [0.01 * 1.05**3, 0.01 * 1.05**4], rtol=1e-6)
        np.testing.assert_allclose(_mus(resumed), _mus(straight), rtol=1e-6)

    def test_resume_with_backup_and_restore(self, tmp_path):
        x, y = _data()
        seen = []

        class Crash(keras.callbacks.Callback):
            def __init__(self, at_epoch):
                super().__init__()
                self.at_epoch = at_epoch

            def on_epoch_begin(self, epoch, logs=None):
                seen.append(round(_mus(self.model)[0], 8))
                if epoch == self.at_epoch:
                    raise RuntimeError("interrupted")

        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        model = _model()
        with pytest.raises(RuntimeError, match="interrupted"):
            model.fit(x, y, epochs=4, batch_size=16, verbose=0,
                      callbacks=[AnnealMu(), Crash(2), backup])
        model = _model()
        history = model.fit(x, y, epochs=4, batch_size=16, verbose=0,
                            callbacks=[AnnealMu(), Crash(None), backup])
        # Epochs 0 and 1 ran before the interruption; the resumed run starts at epoch 2.
        np.testing.assert_allclose(history.history["mu"], [0.01 * 1.05**3, 0.01 * 1.05**4],
                                   rtol=1e-6)
        assert set(seen) == {round(0.01 * 1.05 ** (e + 1), 8) for e in range(4)}

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="`rate`.*-1"):
            AnnealMu(rate=-1)
        with pytest.raises(ValueError, match="`max_mu`.*0"):
            AnnealMu(max_mu=0)

    def test_warns_without_quantizers(self, caplog):
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
        model.compile("adam", "mse")
        with caplog.at_level(logging.WARNING):
            model.fit(*_data(), epochs=1, verbose=0, callbacks=[AnnealMu()])
        assert "no AdaSTE quantizer" in caplog.text


class TestBinarizationGap:
    def test_relaxed_with_small_weights_is_reported_and_warned(self, caplog):
        model = _model(relaxed=True)
        with caplog.at_level(logging.WARNING):
            history = model.fit(*_data(), epochs=1, verbose=0,
                                callbacks=[BinarizationGap()])
        thetas = [layer.get_weights()[0] for layer in model.layers]
        total = sum(np.abs(reference.w_star_array(t, mu) - np.where(t >= 0, 1, -1)).sum()
                    for t, mu in zip(thetas, _mus(model)))
        expected = total / sum(t.size for t in thetas)
        assert history.history["binarization_gap"][0] == pytest.approx(expected, rel=1e-5)
        assert expected > 0.5
        assert "binarization_gap" in caplog.text

    @pytest.mark.parametrize("relaxed,initializer", [
        (True, keras.initializers.Constant(10.0)), (False, "glorot_uniform")])
    def test_zero_gap(self, relaxed, initializer, caplog):
        model = _model(relaxed=relaxed, initializer=initializer)
        with caplog.at_level(logging.WARNING):
            history = model.fit(*_data(), epochs=1, verbose=0,
                                callbacks=[BinarizationGap()])
        assert history.history["binarization_gap"] == [0.0]
        assert "binarization_gap" not in caplog.text

    def test_config(self):
        assert BinarizationGap(0.2).get_config() == {"warn_above": 0.2}
        assert AnnealMu(1.1, 5.0).get_config() == {"rate": 1.1, "max_mu": 5.0}
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(AnnealMu(1.1, 5.0)))
        assert isinstance(restored, AnnealMu) and restored.rate == 1.1
        with pytest.raises(ValueError, match="warn_above"):
            BinarizationGap(-1.0)


class TestNonFiniteSteps:
    def test_logs_and_warns(self, caplog):
        x, y = _data(32)
        x[20, 0] = np.nan  # the second of two batches
        model = _model(optimizer=LatentMomentum(1e-3, gradient_scale=10.0))
        with caplog.at_level(logging.WARNING):
            history = model.fit(x, y, batch_size=16, epochs=2, verbose=0,
                                callbacks=[NonFiniteSteps()])
        assert history.history["skipped_steps"] == [1, 2]
        assert "Epoch 1: 1 training step(s) skipped" in caplog.text
        assert all(np.isfinite(w).all() for w in model.get_weights())
