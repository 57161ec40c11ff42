"""The Keras 3 quantizers on the current backend, against the spec's independent transcription."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_bilevel.keras3 import AdaSTE, constraints, formulas, quantizers, SteSign
from tests import reference
from tests.golden import GOLDEN, MUS, SCALE_KWARGS, SCALE_KWARGS_IDS, grid
from tests_keras3.autodiff import gradient

VARIANTS = ["symmetric", "reference"]


def quantizer_gradient(quantizer, theta, g):
    """d/d theta of sum(q(theta) * g) through the quantizer's training call: scale * g."""
    g = ops.convert_to_tensor(np.asarray(g, np.float32))
    return gradient(lambda t: ops.sum(quantizer(t, training=True) * g),
                    np.asarray(theta, np.float32))


def numpy(x):
    return keras.ops.convert_to_numpy(x)


class TestKerasOpsBinding:
    """`keras_bilevel.keras3.formulas` (the formulas bound to keras.ops) on this backend."""

    @pytest.mark.parametrize("mu,theta,g,w,sym,ref", GOLDEN)
    def test_golden_table(self, mu, theta, g, w, sym, ref):
        np.testing.assert_allclose(numpy(formulas.inner_solution([theta], mu)), [w],
                                   atol=1e-6)
        for variant, expected in [("symmetric", sym), ("reference", ref)]:
            got = formulas.backward_scale([theta], [g], mu, variant=variant)
            np.testing.assert_allclose(numpy(got), [expected], atol=1e-6)

    @pytest.mark.parametrize("mu", MUS + [0.0, 0.5])
    @pytest.mark.parametrize("variant", VARIANTS)
    @pytest.mark.parametrize("kw", SCALE_KWARGS, ids=SCALE_KWARGS_IDS)
    def test_grid(self, mu, variant, kw):
        theta, g = grid()
        got = numpy(formulas.backward_scale(theta, g, mu, variant=variant, **kw))
        want = reference.scale_array(theta, g, mu, variant=variant, **kw)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
        alpha = kw.get("alpha", reference.ALPHA)
        np.testing.assert_allclose(numpy(formulas.inner_solution(theta, mu, alpha)),
                                   reference.w_star_array(theta, mu, alpha=alpha), atol=1e-6)

    @pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
    def test_low_precision_inputs_computed_in_float32(self, dtype):
        theta, g = grid()
        keep = np.abs(theta) < 1e3  # representable in float16
        t_low = ops.cast(theta[keep], dtype)
        g_low = ops.cast(g[keep], dtype)
        grad = formulas.adaste_gradient(t_low, g_low, 0.01)
        assert keras.backend.standardize_dtype(grad.dtype) == dtype
        t_in, g_in = numpy(ops.cast(t_low, "float32")), numpy(ops.cast(g_low, "float32"))
        np.testing.assert_allclose(numpy(formulas.backward_scale(t_low, g_low, 0.01)),
                                   reference.scale_array(t_in, g_in, 0.01), rtol=1e-5,
                                   atol=1e-7)

    def test_no_nan_or_inf_at_extremes(self):
        theta = np.array([0.0, -0.0, 1e-30, -1e-30, 1e-45, 1e30, -1e30, 3e38], np.float32)
        for g_value in [0.0, -0.0, 1e-30, 1.0, -1.0, 1e30, -1e30]:
            g = np.full_like(theta, g_value)
            for variant in VARIANTS:
                got = numpy(formulas.backward_scale(theta, g, 0.01, variant=variant))
                np.testing.assert_allclose(
                    got, reference.scale_array(theta, g, 0.01, variant=variant),
                    rtol=1e-5, atol=1e-12)

    def test_sign_of_zero_is_plus_one(self):
        np.testing.assert_array_equal(numpy(formulas.sign([-0.0, 0.0, -1e-30])),
                                      [1.0, 1.0, -1.0])


class TestAdaSTEGradient:
    """The public quantizer's backward pass, through the backend's autodiff."""

    @pytest.mark.parametrize("mu,theta,g,w,sym,ref", GOLDEN)
    @pytest.mark.parametrize("variant", VARIANTS)
    def test_golden_table(self, mu, theta, g, w, sym, ref, variant):
        quantizer = AdaSTE(mu=mu, variant=variant)
        expected = sym if variant == "symmetric" else ref
        got = quantizer_gradient(quantizer, [theta], [g])
        np.testing.assert_allclose(got / g, [expected], atol=1e-6)

    @pytest.mark.parametrize("mu", MUS + [0.0, 0.5])
    @pytest.mark.parametrize("variant", VARIANTS)
    @pytest.mark.parametrize("kw", SCALE_KWARGS, ids=SCALE_KWARGS_IDS)
    def test_grid(self, mu, variant, kw):
        theta, g = grid()
        got = quantizer_gradient(AdaSTE(mu=mu, variant=variant, **kw), theta, g)
        want = reference.scale_array(theta, g, mu, variant=variant, **kw) * g
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    @pytest.mark.parametrize("relaxed_forward", [False, True])
    def test_forward_does_not_change_the_backward(self, relaxed_forward):
        theta, g = grid()
        got = quantizer_gradient(AdaSTE(mu=1.0, relaxed_forward=relaxed_forward), theta, g)
        np.testing.assert_allclose(got, reference.scale_array(theta, g, 1.0) * g,
                                   rtol=1e-5, atol=1e-6)

    def test_assigning_mu_changes_the_gradient(self):
        quantizer = AdaSTE(mu=0.01)
        theta, g = [0.3], [-0.01]  # linear region, outward: scale = 1 / (1 + mu)
        before = quantizer_gradient(quantizer, theta, g)
        quantizer.mu.assign(1.0)
        after = quantizer_gradient(quantizer, theta, g)
        np.testing.assert_allclose(before, [-0.01 / 1.01], atol=1e-7)
        np.testing.assert_allclose(after, [-0.01 / 2.0], atol=1e-7)


class TestAdaSTEForward:
    def test_inference_is_sign(self):
        theta = np.array([-2.0, -0.3, 0.0, 0.3, 2.0], np.float32)
        quantizer = AdaSTE(relaxed_forward=True)
        for training in [False, None]:
            np.testing.assert_array_equal(numpy(quantizer(theta, training=training)),
                                          [-1, -1, 1, 1, 1])

    def test_training_forward_is_sign_by_default(self):
        theta = np.array([-0.3, 0.0, 0.3], np.float32)
        np.testing.assert_array_equal(numpy(AdaSTE()(theta, training=True)), [-1, 1, 1])
        np.testing.assert_array_equal(numpy(AdaSTE().training_forward(theta)), [-1, 1, 1])

    @pytest.mark.parametrize("mu", MUS + [0.5])
    def test_relaxed_training_forward_is_w_star(self, mu):
        theta, _ = grid()
        quantizer = AdaSTE(mu=mu, relaxed_forward=True)
        want = reference.w_star_array(theta, mu)
        np.testing.assert_allclose(numpy(quantizer(theta, training=True)), want, atol=1e-6)
        np.testing.assert_allclose(numpy(quantizer.training_forward(theta)), want, atol=1e-6)

    def test_low_precision_kernel_keeps_its_dtype(self):
        theta = ops.cast(np.array([-0.3, 0.3], np.float32), "float16")
        out = AdaSTE(relaxed_forward=True)(theta, training=True)
        assert keras.backend.standardize_dtype(out.dtype) == "float16"


class TestAdaSTEObject:
    def test_contract_attributes(self):
        quantizer = AdaSTE(alpha=0.02, mu=0.05, relaxed_forward=True, variant="reference")
        assert quantizer.precision == 1 and AdaSTE.precision == 1
        assert quantizer.initial_mu == 0.05 and quantizer.alpha == 0.02
        assert quantizer.max_mu == pytest.approx(50.0)
        assert quantizer.relaxed_forward and quantizer.variant == "reference"
        assert isinstance(quantizer.mu, keras.Variable)
        assert quantizer.mu.shape == () and quantizer.mu.dtype == "float32"
        assert not quantizer.mu.trainable
        assert quantizer.weights == [] and quantizer.count_params() == 0
        assert quantizer.variables == [quantizer.mu]

    def test_config_round_trip(self):
        quantizer = AdaSTE(alpha=0.02, mu=0.05, max_scale=1.0, grad_eps=0.0,
                           theta_eps=1e-5, variant="reference", relaxed_forward=True,
                           sum_over_replicas=False)
        clone = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(quantizer))
        assert type(clone) is AdaSTE and clone is not quantizer
        assert clone.get_config() == quantizer.get_config()
        assert float(numpy(clone.mu)) == pytest.approx(0.05)

    @pytest.mark.parametrize("kwargs,match", [
        ({"alpha": 0}, "`alpha` must be > 0"),
        ({"mu": -1.0}, "`mu` must be >= 0"),
        ({"max_scale": "big"}, "`max_scale` must be > 0"),
        ({"grad_eps": -1e-3}, "`grad_eps` must be >= 0"),
        ({"theta_eps": True}, "`theta_eps` must be >= 0"),
        ({"variant": "fancy"}, "`variant` must be one of"),
        ({"relaxed_forward": 1}, "`relaxed_forward` must be True or False"),
    ])
    def test_invalid_arguments_are_named(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            AdaSTE(**kwargs)


class TestSteSign:
    @pytest.mark.parametrize("clip_value", [1.0, 0.5])
    def test_forward_and_gradient(self, clip_value):
        x = np.array([-2.0, -1.0, -0.3, 0.0, 0.3, 0.5, 1.0, 1.5], np.float32)
        g = np.linspace(-1.0, 1.0, x.size).astype(np.float32)
        quantizer = SteSign(clip_value=clip_value)
        np.testing.assert_array_equal(numpy(quantizer(x)), np.where(x >= 0, 1.0, -1.0))
        got = quantizer_gradient(quantizer, x, g)
        np.testing.assert_allclose(got, np.where(np.abs(x) <= clip_value, g, 0.0), atol=0)

    def test_config_round_trip(self):
        clone = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(SteSign(clip_value=0.5)))
        assert type(clone) is SteSign and clone.clip_value == 0.5 and clone.precision == 1


class TestGet:
    @pytest.mark.parametrize("alias,cls", [("ada_ste", AdaSTE), ("ste_sign", SteSign)])
    def test_string_gives_a_fresh_object(self, alias, cls):
        first, second = quantizers.get(alias), quantizers.get(alias)
        assert type(first) is cls and first is not second

    def test_objects_callables_configs_and_none(self):
        quantizer = AdaSTE(mu=0.5)
        assert quantizers.get(quantizer) is quantizer
        assert quantizers.get(ops.sign) is ops.sign
        assert quantizers.get(None) is None
        clone = quantizers.get(quantizers.serialize(quantizer))
        assert type(clone) is AdaSTE and clone.initial_mu == 0.5

    def test_unknown_name(self):
        with pytest.raises(ValueError, match="Unknown quantizer 'ste'"):
            quantizers.get("ste")

    def test_weight_clip(self):
        constraint = constraints.get("weight_clip")
        assert isinstance(constraint, constraints.WeightClip)
        np.testing.assert_array_equal(numpy(constraint(np.array([-3.0, 0.5, 2.0]))),
                                      [-1.0, 0.5, 1.0])
        clone = constraints.get(keras.constraints.serialize(constraints.WeightClip(0.5)))
        assert isinstance(clone, constraints.WeightClip) and clone.clip_value == 0.5
        with pytest.raises(ValueError, match="`clip_value` must be > 0"):
            constraints.WeightClip(0.0)
