import csv
import glob
import logging

import larq
import numpy as np
import pytest
import tensorflow as tf

import keras_bilevel
from keras_bilevel import AdaSTE
from keras_bilevel.callbacks import AnnealMu, BinarizationGap, adaste_quantizers
from tests import reference


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)).astype(np.float32), rng.integers(0, 2, n)


def _model(mu=0.01, relaxed=False, initializer="glorot_uniform", alpha=0.01):
    model = tf.keras.Sequential(
        [
            tf.keras.Input((5,)),
            larq.layers.QuantDense(8, kernel_initializer=initializer,
                                   kernel_quantizer=AdaSTE(mu=mu, alpha=alpha,
                                                           relaxed_forward=relaxed)),
            larq.layers.QuantDense(2, kernel_initializer=initializer,
                                   kernel_quantizer=AdaSTE(mu=2 * mu, alpha=alpha,
                                                           relaxed_forward=relaxed)),
        ]
    )
    model.compile(tf.keras.optimizers.Adam(0.01),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _mus(model):
    return [float(q.mu.numpy()) for q in adaste_quantizers(model)]


class TestAnnealMu:
    def test_schedule_and_logs(self):
        model = _model()
        history = model.fit(*_data(), epochs=4, verbose=0, callbacks=[AnnealMu(1.05)])
        expected = [0.01 * 1.05 ** (e + 1) for e in range(4)]
        np.testing.assert_allclose(history.history["mu"], expected, rtol=1e-6)
        np.testing.assert_allclose(_mus(model), [0.01 * 1.05**4, 0.02 * 1.05**4], rtol=1e-6)

    def test_mu_reaches_the_compiled_step(self):
        # Record the mu the traced training step actually sees, per batch.
        seen = []

        class Spy(tf.keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                seen.append(_mus(self.model)[0])

        model = _model()
        model.fit(*_data(), epochs=3, batch_size=64, verbose=0, callbacks=[AnnealMu(2.0), Spy()])
        np.testing.assert_allclose(seen, [0.02, 0.04, 0.08], rtol=1e-6)

    @pytest.mark.parametrize("max_mu,cap", [(None, 1 / 0.5), (1.5, 1.5)])
    def test_capped(self, max_mu, cap):
        model = _model(mu=1.0, alpha=0.5)
        history = model.fit(*_data(), epochs=3, verbose=0,
                            callbacks=[AnnealMu(rate=1.3, max_mu=max_mu)])
        np.testing.assert_allclose(history.history["mu"], [1.3, min(1.69, cap), cap], rtol=1e-6)

    def test_nested_models_and_layers(self):
        inner = tf.keras.Sequential(
            [tf.keras.Input((5,)), larq.layers.QuantDense(4, kernel_quantizer="ada_ste")]
        )

        class Block(tf.keras.layers.Layer):
            def __init__(self):
                super().__init__()
                self.dense = larq.layers.QuantDense(2, kernel_quantizer="ada_ste")

            def call(self, x):
                return self.dense(x)

        inputs = tf.keras.Input((5,))
        model = tf.keras.Model(inputs, Block()(inner(inputs)))
        model.compile("adam", "mse")
        assert len(adaste_quantizers(model)) == 2
        model.fit(*_data(), epochs=2, verbose=0, callbacks=[AnnealMu(2.0)])
        np.testing.assert_allclose(_mus(model), [0.04, 0.04], rtol=1e-6)

    def test_csv_logger_and_tensorboard(self, tmp_path):
        model = _model()
        csv_path = str(tmp_path / "log.csv")
        model.fit(*_data(), epochs=2, verbose=0, callbacks=[
            AnnealMu(), BinarizationGap(),
            tf.keras.callbacks.CSVLogger(csv_path),
            tf.keras.callbacks.TensorBoard(str(tmp_path / "tb")),
        ])
        with open(csv_path) as f:
            rows = list(csv.DictReader(f))
        np.testing.assert_allclose([float(r["mu"]) for r in rows],
                                   [0.0105, 0.011025], rtol=1e-6)
        assert [float(r["binarization_gap"]) for r in rows] == [0.0, 0.0]
        tags = set()
        for path in glob.glob(str(tmp_path / "tb" / "train" / "*")):
            for record in tf.data.TFRecordDataset(path):
                event = tf.compat.v1.Event.FromString(record.numpy())
                tags.update(v.tag for v in event.summary.value)
        assert {"epoch_mu", "epoch_binarization_gap"} <= tags

    def test_resume_with_load_model(self, tmp_path):
        x, y = _data()
        straight = _model()
        tf.keras.utils.set_random_seed(1)
        straight.fit(x, y, epochs=4, verbose=0, callbacks=[AnnealMu()])

        first = _model()
        first.fit(x, y, epochs=2, verbose=0, callbacks=[AnnealMu()])
        first.save(str(tmp_path / "m.keras"))
        resumed = tf.keras.models.load_model(str(tmp_path / "m.keras"))
        history = resumed.fit(x, y, epochs=4, initial_epoch=2, verbose=0,
                              callbacks=[AnnealMu()])
        np.testing.assert_allclose(history.history["mu"], [0.01 * 1.05**3, 0.01 * 1.05**4],
                                   rtol=1e-6)
        np.testing.assert_allclose(_mus(resumed), _mus(straight), rtol=1e-6)

    @pytest.mark.parametrize("save_freq", ["epoch", 3])
    def test_resume_with_backup_and_restore(self, tmp_path, save_freq):
        x, y = _data()
        seen = []

        class Crash(tf.keras.callbacks.Callback):
            def __init__(self, at_epoch):
                super().__init__()
                self.at_epoch = at_epoch

            def on_epoch_begin(self, epoch, logs=None):
                seen.append(round(_mus(self.model)[0], 8))

            def on_train_batch_end(self, batch, logs=None):
                if self.at_epoch is not None and len(seen) - 1 == self.at_epoch and batch == 1:
                    raise RuntimeError("interrupted")

        backup = tf.keras.callbacks.BackupAndRestore(str(tmp_path / "backup"),
                                                     save_freq=save_freq)
        model = _model()
        with pytest.raises(RuntimeError, match="interrupted"):
            model.fit(x, y, epochs=4, batch_size=16, verbose=0,
                      callbacks=[AnnealMu(), Crash(2), backup])
        model = _model()
        model.fit(x, y, epochs=4, batch_size=16, verbose=0,
                  callbacks=[AnnealMu(), Crash(None), backup])
        assert float(_mus(model)[0]) == pytest.approx(0.01 * 1.05**4, rel=1e-6)
        # Every epoch that ran, before and after the interruption, saw its own mu.
        expected = {round(0.01 * 1.05 ** (e + 1), 8) for e in range(4)}
        assert set(seen) == expected

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="`rate`.*-1"):
            AnnealMu(rate=-1)
        with pytest.raises(ValueError, match="`max_mu`.*0"):
            AnnealMu(max_mu=0)

    def test_warns_without_quantizers(self, caplog):
        model = tf.keras.Sequential([tf.keras.Input((5,)), tf.keras.layers.Dense(2)])
        model.compile("adam", "mse")
        with caplog.at_level(logging.WARNING):
            model.fit(*_data(), epochs=1, verbose=0, callbacks=[AnnealMu()])
        assert "no AdaSTE quantizer" in caplog.text


class TestBinarizationGap:
    def test_relaxed_with_small_weights_is_reported_and_warned(self, caplog):
        model = _model(relaxed=True)
        x, y = _data()
        with caplog.at_level(logging.WARNING):
            history = model.fit(x, y, epochs=1, verbose=0, callbacks=[BinarizationGap()])
        thetas = [layer.get_weights()[0] for layer in model.layers]
        mus = _mus(model)
        total = sum(np.abs(reference.w_star_array(t, mu) - np.where(t >= 0, 1, -1)).sum()
                    for t, mu in zip(thetas, mus))
        expected = total / sum(t.size for t in thetas)
        assert history.history["binarization_gap"][0] == pytest.approx(expected, rel=1e-5)
        assert expected > 0.5
        assert "binarization_gap" in caplog.text

    @pytest.mark.parametrize("relaxed,initializer", [(True, tf.keras.initializers.Constant(10.0)),
                                                     (False, "glorot_uniform")])
    def test_zero_gap(self, relaxed, initializer, caplog):
        model = _model(relaxed=relaxed, initializer=initializer)
        with caplog.at_level(logging.WARNING):
            history = model.fit(*_data(), epochs=1, verbose=0, callbacks=[BinarizationGap()])
        assert history.history["binarization_gap"] == [0.0]
        assert "binarization_gap" not in caplog.text

    def test_config(self):
        assert BinarizationGap(0.2).get_config() == {"warn_above": 0.2}
        assert AnnealMu(1.1, 5.0).get_config() == {"rate": 1.1, "max_mu": 5.0}
        with pytest.raises(ValueError, match="warn_above"):
            BinarizationGap(-1.0)


class TestAnnealMuToBinary:
    def test_geometric_schedule_reaches_one_over_alpha(self):
        seen = []

        class Spy(tf.keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                seen.append(_mus(self.model)[0])

        model = _model(mu=0.01)
        # 64 examples, batch 16: 4 steps per epoch, 3 epochs = 12 steps; reach at 6.
        history = model.fit(*_data(), epochs=3, batch_size=16, verbose=0, callbacks=[
            keras_bilevel.callbacks.AnnealMuToBinary(total_steps=12, reach=0.5), Spy()])
        expected = [0.01 * (100 / 0.01) ** min(s / 6, 1.0) for s in range(12)]
        np.testing.assert_allclose(seen, expected, rtol=1e-5)
        assert history.history["mu"][-1] == pytest.approx(100.0, rel=1e-6)

    def test_resume_follows_the_optimizer_step(self):
        callback = keras_bilevel.callbacks.AnnealMuToBinary(total_steps=100, reach=1.0)
        model = _model(mu=0.01)
        model.optimizer.iterations.assign(50)
        model.fit(*_data(16), epochs=1, batch_size=16, verbose=0, callbacks=[callback])
        assert _mus(model)[0] == pytest.approx(0.01 * (1e4) ** 0.5, rel=1e-5)

    @pytest.mark.parametrize("kwargs,name", [({"total_steps": 0}, "total_steps"),
                                             ({"total_steps": 10, "reach": 0.0}, "reach"),
                                             ({"total_steps": 10, "max_mu": -1.0}, "max_mu")])
    def test_bad_arguments(self, kwargs, name):
        with pytest.raises(ValueError, match=name):
            keras_bilevel.callbacks.AnnealMuToBinary(**kwargs)
