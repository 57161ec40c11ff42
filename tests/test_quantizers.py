import logging

import larq
import numpy as np
import pytest
import tensorflow as tf

import keras_bilevel
from keras_bilevel import AdaSTE
from tests import reference

MUS = [0.01, 1.0, 100.0]
VARIANTS = ["symmetric", "reference"]


def _theta_and_dy(shape=(6, 40), seed=0):
    rng = np.random.default_rng(seed)
    theta = rng.choice([-1, 1], shape) * 10 ** rng.uniform(-4, 1.3, shape)
    dy = rng.choice([-1, 1], shape) * 10 ** rng.uniform(-4.5, -1, shape)
    return theta.astype(np.float32), dy.astype(np.float32)


def _quantizer_grad(quantizer, theta, dy, training=True):
    theta = tf.Variable(theta)
    with tf.GradientTape() as tape:
        out = quantizer(theta, training=training)
        loss = tf.reduce_sum(out * dy)
    return out.numpy(), tape.gradient(loss, theta).numpy()


class TestForward:
    @pytest.mark.parametrize("relaxed", [True, False])
    @pytest.mark.parametrize("mu", MUS)
    def test_inference_is_sign(self, relaxed, mu):
        theta, _ = _theta_and_dy()
        theta[0, :3] = [0.0, -0.0, 1e-30]
        q = AdaSTE(mu=mu, relaxed_forward=relaxed)
        for out in (q(theta, training=False), q(theta)):
            np.testing.assert_array_equal(out.numpy(), np.where(theta >= 0, 1.0, -1.0))

    @pytest.mark.parametrize("mu", MUS + [0.3])
    def test_relaxed_training_forward_is_inner_solution(self, mu):
        theta, _ = _theta_and_dy()
        out = AdaSTE(mu=mu, relaxed_forward=True)(theta, training=True)
        np.testing.assert_allclose(out.numpy(), reference.w_star_array(theta, mu), atol=1e-6)

    def test_sign_training_forward(self):
        theta, _ = _theta_and_dy()
        out = AdaSTE(relaxed_forward=False)(theta, training=True)
        np.testing.assert_array_equal(out.numpy(), np.where(theta >= 0, 1.0, -1.0))

    def test_inference_graph_uses_larq_sign(self):
        # Larq Compute Engine matches larq.math.sign: Sign(AddV2(Sign(x), 0.1)).
        q = AdaSTE()
        fn = tf.function(lambda t: q(t, training=False))
        graph = fn.get_concrete_function(tf.TensorSpec((3, 3))).graph
        ops = [op.type for op in graph.get_operations()]
        assert ops.count("Sign") == 2 and "AddV2" in ops

    def test_training_flag_from_a_tensor(self):
        theta, _ = _theta_and_dy()
        q = AdaSTE(mu=0.5, relaxed_forward=True)
        fn = tf.function(lambda t, flag: q(t, training=flag))
        np.testing.assert_allclose(
            fn(theta, tf.constant(True)).numpy(), reference.w_star_array(theta, 0.5), atol=1e-6
        )
        np.testing.assert_array_equal(
            fn(theta, tf.constant(False)).numpy(), np.where(theta >= 0, 1.0, -1.0)
        )


class TestGradients:
    @pytest.mark.parametrize("relaxed", [True, False])
    @pytest.mark.parametrize("variant", VARIANTS)
    @pytest.mark.parametrize("mu", MUS)
    def test_against_numpy(self, relaxed, variant, mu):
        theta, dy = _theta_and_dy()
        q = AdaSTE(mu=mu, variant=variant, relaxed_forward=relaxed)
        _, grad = _quantizer_grad(q, theta, dy)
        want = reference.scale_array(theta, dy, mu, variant=variant) * dy
        np.testing.assert_allclose(grad, want, rtol=2e-6, atol=1e-12)

    @pytest.mark.parametrize("variant", VARIANTS)
    def test_golden_table(self, variant):
        from tests.test_math import GOLDEN

        for mu, theta, g, _, sym, ref in GOLDEN:
            _, grad = _quantizer_grad(
                AdaSTE(mu=mu, variant=variant), np.array([theta], np.float32),
                np.array([g], np.float32),
            )
            expected = sym if variant == "symmetric" else ref
            np.testing.assert_allclose(grad / g, [expected], atol=1e-6)

    def test_custom_hyperparameters(self):
        theta, dy = _theta_and_dy()
        kw = dict(alpha=0.05, max_scale=2.0, grad_eps=1e-2, theta_eps=1e-3)
        _, grad = _quantizer_grad(AdaSTE(mu=0.2, **kw), theta, dy)
        np.testing.assert_allclose(
            grad, reference.scale_array(theta, dy, 0.2, **kw) * dy, rtol=2e-6, atol=1e-12
        )

    def test_mu_change_reaches_a_traced_step(self):
        theta, dy = _theta_and_dy()
        q = AdaSTE(mu=0.01)
        var = tf.Variable(theta)

        @tf.function
        def grad():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(q(var, training=True) * dy)
            return tape.gradient(loss, var)

        grad()
        q.mu.assign(100.0)
        np.testing.assert_allclose(
            grad().numpy(), reference.scale_array(theta, dy, 100.0) * dy, rtol=2e-6
        )

    @pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
    def test_low_precision_dtype(self, dtype):
        theta, dy = _theta_and_dy()
        theta16 = tf.cast(theta, dtype)
        dy16 = tf.cast(dy, dtype)
        _, grad = _quantizer_grad(AdaSTE(), theta16, dy16)
        t32 = tf.cast(theta16, tf.float32).numpy()
        d32 = tf.cast(dy16, tf.float32).numpy()
        want = tf.cast(reference.scale_array(t32, d32, 0.01) * d32, dtype)
        np.testing.assert_array_equal(tf.cast(grad, tf.float32), tf.cast(want, tf.float32))


LAYERS = {
    "QuantDense": (lambda **q: larq.layers.QuantDense(5, **q), (4, 7), ["kernel"]),
    "QuantConv1D": (lambda **q: larq.layers.QuantConv1D(3, 3, **q), (2, 8, 3), ["kernel"]),
    "QuantConv2D": (lambda **q: larq.layers.QuantConv2D(3, 3, **q), (2, 6, 6, 2), ["kernel"]),
    "QuantConv3D": (
        lambda **q: larq.layers.QuantConv3D(2, 2, **q), (2, 4, 4, 4, 2), ["kernel"]
    ),
    "QuantDepthwiseConv2D": (
        lambda **q: larq.layers.QuantDepthwiseConv2D(3, **q), (2, 6, 6, 3), ["depthwise"]
    ),
    "QuantSeparableConv2D": (
        lambda **q: larq.layers.QuantSeparableConv2D(4, 3, **q),
        (2, 6, 6, 3),
        ["depthwise", "pointwise"],
    ),
}


def _layer(name, quantizer):
    build, shape, kernels = LAYERS[name]
    kwargs = {f"{k}_quantizer": quantizer for k in kernels}
    layer = build(**kwargs)
    layer.build(shape)
    return layer, shape, kernels


class TestLayers:
    @pytest.mark.parametrize("name", list(LAYERS))
    def test_alias_in_every_quantized_layer(self, name):
        """Inference equals the same layer with ste_sign; the gradient is AdaSTE's."""
        layer, shape, kernels = _layer(name, "ada_ste")
        twin, _, _ = _layer(name, "ste_sign")
        for k in kernels:
            assert isinstance(getattr(layer, f"{k}_quantizer"), AdaSTE)
        rng = np.random.default_rng(1)
        # |theta| <= 1, where ste_sign's gradient is exactly the incoming one (g).
        weights = [rng.uniform(-1, 1, w.shape).astype(np.float32) for w in twin.get_weights()]
        twin.set_weights(weights)
        layer.set_weights(weights)  # the same weights: mu is not one of them
        x = rng.standard_normal(shape).astype(np.float32)
        c = rng.standard_normal(twin(x).shape).astype(np.float32)

        def grads(model_layer):
            with tf.GradientTape() as tape:
                y = model_layer(x, training=True)
                loss = tf.reduce_sum(y * c)
            return y.numpy(), tape.gradient(loss, model_layer.trainable_weights)

        y_ada, g_ada = grads(layer)
        y_ste, g_ste = grads(twin)
        np.testing.assert_allclose(y_ada, y_ste, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(layer(x).numpy(), twin(x).numpy(), rtol=1e-5, atol=1e-5)
        for var, ga, gs in zip(layer.trainable_weights, g_ada, g_ste):
            if "kernel" in var.name:
                theta = var.numpy()
                want = reference.scale_array(theta, gs.numpy(), 0.01) * gs.numpy()
                np.testing.assert_allclose(ga.numpy(), want, rtol=1e-4, atol=1e-6)
            else:
                np.testing.assert_allclose(ga.numpy(), gs.numpy(), rtol=1e-5)

    @pytest.mark.parametrize("name", list(LAYERS))
    def test_no_starved_weights_warning_for_ada_ste(self, name, caplog):
        with caplog.at_level(logging.WARNING, logger="larq"):
            _layer(name, "ada_ste")
        assert "starved" not in caplog.text
        with caplog.at_level(logging.WARNING, logger="larq"):
            _layer(name, "ste_sign")
        assert "starved" in caplog.text  # Larq's warning still reaches other quantizers

    def test_precision_and_summary(self):
        assert AdaSTE.precision == 1
        model = tf.keras.Sequential(
            [tf.keras.Input((4,)), larq.layers.QuantDense(3, kernel_quantizer="ada_ste")]
        )
        larq.models.summary(model)  # reads precision; must not fail

    @pytest.mark.parametrize("metric_source", ["argument", "scope"])
    def test_flip_ratio_metric(self, metric_source):
        if metric_source == "argument":
            quantizer = AdaSTE(metrics=["flip_ratio"], relaxed_forward=True)
            layer = larq.layers.QuantDense(3, kernel_quantizer=quantizer)
        else:
            with larq.context.metrics_scope(["flip_ratio"]):
                layer = larq.layers.QuantDense(3, kernel_quantizer="ada_ste")
        model = tf.keras.Sequential([tf.keras.Input((4,)), layer])
        model.compile(tf.keras.optimizers.SGD(1.0), "mse")
        x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
        history = model.fit(x, np.zeros((32, 3)), epochs=2, verbose=0)
        keys = [k for k in history.history if k.startswith("flip_ratio")]
        assert keys, history.history
        assert all(0.0 <= v <= 1.0 for v in history.history[keys[0]])

    def test_mu_is_tracked_state_not_a_weight(self, tmp_path):
        layer = larq.layers.QuantDense(3, kernel_quantizer="ada_ste")
        model = tf.keras.Sequential([tf.keras.Input((4,)), layer])
        q = layer.kernel_quantizer
        assert isinstance(q.mu, tf.Variable) and not q.mu.trainable
        assert q.mu.dtype == tf.float32
        assert not any(w is q.mu for w in model.weights)
        assert len(model.get_weights()) == 2
        # still reachable by the checkpoint graph, under the quantizer
        path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
        names = [name for name, _ in tf.train.list_variables(path)]
        assert any("kernel_quantizer/mu" in name for name in names), names


class TestArguments:
    @pytest.mark.parametrize(
        "kwargs,name",
        [
            ({"alpha": 0.0}, "alpha"),
            ({"alpha": -1.0}, "alpha"),
            ({"mu": -0.1}, "mu"),
            ({"max_scale": 0.0}, "max_scale"),
            ({"grad_eps": -1e-3}, "grad_eps"),
            ({"theta_eps": -1.0}, "theta_eps"),
            ({"variant": "pytorch"}, "variant"),
            ({"relaxed_forward": "yes"}, "relaxed_forward"),
            ({"mu": "0.1"}, "mu"),
            ({"alpha": float("nan")}, "alpha"),
        ],
    )
    def test_bad_arguments(self, kwargs, name):
        with pytest.raises(ValueError) as info:
            AdaSTE(**kwargs)
        message = str(info.value)
        assert f"`{name}`" in message and repr(list(kwargs.values())[0]) in message

    def test_zero_eps_and_zero_mu_are_allowed(self):
        AdaSTE(mu=0.0, grad_eps=0.0, theta_eps=0.0)

    def test_config_round_trip(self):
        q = AdaSTE(alpha=0.02, mu=0.3, max_scale=0.7, grad_eps=1e-4, theta_eps=1e-5,
                   variant="reference", relaxed_forward=True, metrics=["flip_ratio"])
        config = q.get_config()
        clone = AdaSTE.from_config(config)
        assert clone.get_config() == config
        assert float(clone.mu.numpy()) == pytest.approx(0.3)
        again = larq.quantizers.get(larq.quantizers.serialize(q))
        assert isinstance(again, AdaSTE) and again.get_config() == config

    def test_config_carries_the_current_mu(self):
        q = AdaSTE(mu=0.02)
        q.mu.assign(0.7)
        config = q.get_config()
        assert config["mu"] == 0.02  # the initial mu, where the schedules start
        assert config["current_mu"] == pytest.approx(0.7)
        clone = AdaSTE.from_config(config)
        assert clone.initial_mu == 0.02 and float(clone.mu.numpy()) == pytest.approx(0.7)
        older = {k: v for k, v in config.items() if k != "current_mu"}
        assert float(AdaSTE.from_config(older).mu.numpy()) == pytest.approx(0.02)
        with pytest.raises(ValueError, match="`current_mu` must be >= 0, got -1.0"):
            AdaSTE.from_config({**config, "current_mu": -1.0})

    def test_exported_names(self):
        assert keras_bilevel.AdaSTE is keras_bilevel.quantizers.AdaSTE
        assert isinstance(larq.quantizers.get("ada_ste"), AdaSTE)
        assert tf.keras.utils.get_registered_object("keras_bilevel>AdaSTE") is AdaSTE
