"""Exact data parallelism on 2 virtual CPUs, and mixed precision."""

import larq
import numpy as np
import pytest
import tensorflow as tf

import keras_bilevel
from keras_bilevel import AdaSTE
from keras_bilevel.callbacks import AnnealMu, LinkLossScale
from keras_bilevel.optimizers import LatentMomentum
from tests import reference
from tests.conftest import TWO_CPUS

pytestmark = pytest.mark.skipif(not TWO_CPUS, reason="needs 2 logical CPU devices")
LOSS = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.fixture(scope="module")
def mirrored():
    # One strategy object for the module: several in one process can disagree on
    # collective instance keys.
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)).astype(np.float32), rng.integers(0, 3, n)


def _model(quantizer):
    tf.keras.utils.set_random_seed(0)
    return tf.keras.Sequential([
        tf.keras.Input((6,)),
        larq.layers.QuantDense(16, kernel_quantizer=quantizer(), use_bias=False),
        tf.keras.layers.ReLU(),
        larq.layers.QuantDense(3, kernel_quantizer=quantizer(), use_bias=False),
    ])


def _train(strategy, quantizer, optimizer, epochs=3, callbacks=()):
    x, y = _data()
    with strategy.scope():
        model = _model(quantizer)
        model.compile(optimizer(), LOSS)
    model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0,
              callbacks=list(callbacks))
    return model


def _max_diff(a, b):
    return max(float(np.abs(u - v).max()) for u, v in zip(a.get_weights(), b.get_weights()))


ONE = tf.distribute.OneDeviceStrategy("/cpu:0")


class TestExactDataParallelism:
    @pytest.mark.parametrize("variant,relaxed", [("symmetric", False), ("reference", True)])
    def test_two_replicas_equal_one_device(self, mirrored, variant, relaxed):
        def quantizer():
            return AdaSTE(variant=variant, relaxed_forward=relaxed)

        def sgd():
            return tf.keras.optimizers.SGD(0.1)

        one = _train(ONE, quantizer, sgd)
        two = _train(mirrored, quantizer, sgd)
        assert _max_diff(one, two) < 1e-5

    def test_control_per_replica_signs_differ(self, mirrored):
        def sgd():
            return tf.keras.optimizers.SGD(0.1)

        one = _train(ONE, AdaSTE, sgd)
        per_replica = _train(mirrored, lambda: AdaSTE(sum_over_replicas=False), sgd)
        assert _max_diff(one, per_replica) > 1e-3  # the rule is nonlinear in g

    def test_gradient_uses_the_summed_gradient(self, mirrored):
        theta = np.array([[10.0, -10.0, 0.3, -0.3]], np.float32)
        with mirrored.scope():
            v = tf.Variable(theta)
            q = AdaSTE()
        # Replica 0 pushes outward, replica 1 inward more strongly: the sum is inward.
        dys = [np.array([[0.01, -0.01, -0.01, 0.01]], np.float32),
               np.array([[-0.03, 0.03, 0.03, -0.03]], np.float32)]

        @tf.function
        def step():
            def replica_fn():
                ctx = tf.distribute.get_replica_context()
                dy = tf.gather(tf.constant(np.stack(dys)), ctx.replica_id_in_sync_group)
                with tf.GradientTape() as tape:
                    loss = tf.reduce_sum(q(v, training=True) * dy)
                return tape.gradient(loss, v)
            return mirrored.run(replica_fn)

        per_replica = [g.numpy() for g in mirrored.experimental_local_results(step())]
        total = dys[0] + dys[1]
        for dy, got in zip(dys, per_replica):
            np.testing.assert_allclose(got, reference.scale_array(theta, total, 0.01) * dy,
                                       rtol=1e-6)

    def test_latent_momentum_and_anneal_mu(self, mirrored):
        def optimizer():
            return LatentMomentum(0.01, gradient_scale=100.0)

        one = _train(ONE, AdaSTE, optimizer, callbacks=[AnnealMu(2.0)])
        two = _train(mirrored, AdaSTE, optimizer, callbacks=[AnnealMu(2.0)])
        assert _max_diff(one, two) < 1e-5
        mus = [float(q.mu.numpy()) for q in keras_bilevel.callbacks.adaste_quantizers(two)]
        assert mus == pytest.approx([0.08, 0.08])
        assert int(two.optimizer.iterations.numpy()) == 12

    def test_non_finite_step_skipped_on_every_replica(self, mirrored):
        x, y = _data()
        x[3] = np.nan  # first batch, first replica's half
        with mirrored.scope():
            model = _model(AdaSTE)
            model.compile(LatentMomentum(0.01), LOSS)
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        assert int(model.optimizer.skipped_steps.numpy()) == 1
        assert all(np.isfinite(w).all() for w in model.get_weights())

    def test_save_and_load_a_model_built_in_a_strategy_scope(self, mirrored, tmp_path):
        model = _train(mirrored, AdaSTE, lambda: LatentMomentum(0.01))
        x, _ = _data()
        model.save(str(tmp_path / "m.keras"))
        loaded = tf.keras.models.load_model(str(tmp_path / "m.keras"))
        np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                                   rtol=1e-6)
        with mirrored.scope():
            in_scope = tf.keras.models.load_model(str(tmp_path / "m.keras"))
        in_scope.fit(x, _data()[1], batch_size=16, epochs=1, verbose=0)


@pytest.fixture
def policy():
    def set_policy(name):
        tf.keras.mixed_precision.set_global_policy(name)
    yield set_policy
    tf.keras.mixed_precision.set_global_policy("float32")


def _latent_gradient(policy_name, link, loss_scale=2.0**15):
    """d loss / d theta of one AdaSTE layer, through a loss-scale optimizer if mixed."""
    rng = np.random.default_rng(1)
    # Saturated and linear latent weights; a tiny loss so that many |g| sit near grad_eps.
    theta = rng.choice([-1, 1], (8, 32)) * rng.choice([0.05, 0.5, 10.0], (8, 32))
    x = rng.standard_normal((16, 8)).astype(np.float32)
    c = (rng.standard_normal((16, 32)) * 0.02).astype(np.float32)
    layer = larq.layers.QuantDense(32, kernel_quantizer=AdaSTE(), use_bias=False,
                                   dtype=policy_name)
    layer.build((None, 8))
    layer.set_weights([theta.astype(np.float32)])
    optimizer = tf.keras.optimizers.SGD(1.0)
    if policy_name == "mixed_float16":
        optimizer = tf.keras.mixed_precision.LossScaleOptimizer(
            optimizer, dynamic=False, initial_scale=loss_scale)
        if link:
            layer.kernel_quantizer.link_loss_scale(lambda: optimizer.loss_scale)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.cast(layer(x, training=True), tf.float32) * c) / 16
        if policy_name == "mixed_float16":
            loss = optimizer.get_scaled_loss(loss)
    grad = tape.gradient(loss, layer.trainable_weights)
    if policy_name == "mixed_float16":
        grad = optimizer.get_unscaled_gradients(grad)
    return theta, tf.cast(grad[0], tf.float32).numpy()


class TestMixedPrecision:
    def test_float16_loss_scaled_dead_band_matches_float32(self, policy):
        theta, want = _latent_gradient("float32", link=False)
        _, linked = _latent_gradient("mixed_float16", link=True)
        _, unlinked = _latent_gradient("mixed_float16", link=False)
        # The scale pattern: which case each weight is in (0, dead band, ...).
        np.testing.assert_array_equal(linked == 0, want == 0)
        # float16 matmuls: absolute error up to ~0.1% of the largest gradient
        # (cancellation makes a few small gradients relatively noisy).
        atol = 3e-3 * np.abs(want).max()
        np.testing.assert_allclose(linked, want, rtol=2e-2, atol=atol)
        # Without the link, the loss scale pushes small gradients out of the dead band.
        assert not np.allclose(unlinked, want, rtol=2e-2, atol=atol)

    @pytest.mark.parametrize("name", ["mixed_float16", "mixed_bfloat16"])
    def test_fit_under_a_mixed_policy(self, policy, name, caplog):
        policy(name)
        model = _model(AdaSTE)
        model.compile(LatentMomentum(0.01), LOSS)
        q = keras_bilevel.callbacks.adaste_quantizers(model)[0]
        assert q.mu.dtype == tf.float32
        model.fit(*_data(), batch_size=16, epochs=1, verbose=0, callbacks=[LinkLossScale()])
        assert (q._loss_scale is not None) == (name == "mixed_float16")
        assert all(np.isfinite(w).all() for w in model.get_weights())
        assert model.layers[0].compute_dtype == name.split("_")[1]

    def test_unlinked_float16_warns(self, policy, caplog):
        import keras_bilevel.quantizers as quantizers

        policy("mixed_float16")
        quantizers._warned_unlinked.clear()
        q = AdaSTE()
        with caplog.at_level("WARNING"):
            q(tf.ones((2, 2), tf.float16), training=True)
        assert "LinkLossScale" in caplog.text
