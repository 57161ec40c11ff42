import numpy as np
import pytest
import tensorflow as tf

from keras_bilevel.keras2 import formulas
from tests import reference
from tests.golden import GOLDEN, MUS, SCALE_KWARGS, SCALE_KWARGS_IDS
from tests.golden import grid as _grid


class TestGoldenTable:
    @pytest.mark.parametrize("mu,theta,g,w,sym,ref", GOLDEN)
    def test_forward(self, mu, theta, g, w, sym, ref):
        got = formulas.inner_solution(tf.constant([theta], tf.float32), mu)
        np.testing.assert_allclose(got.numpy(), [w], atol=1e-6)

    @pytest.mark.parametrize("mu,theta,g,w,sym,ref", GOLDEN)
    @pytest.mark.parametrize("variant", ["symmetric", "reference"])
    def test_scale(self, mu, theta, g, w, sym, ref, variant):
        expected = sym if variant == "symmetric" else ref
        got = formulas.backward_scale(
            tf.constant([theta], tf.float32), tf.constant([g], tf.float32), mu,
            variant=variant,
        )
        np.testing.assert_allclose(got.numpy(), [expected], atol=1e-6)

    @pytest.mark.parametrize("mu,theta,g,w,sym,ref", GOLDEN)
    def test_numpy_transcription_agrees_with_table(self, mu, theta, g, w, sym, ref):
        # The independent reference must itself reproduce the spec's numbers.
        assert reference.w_star(theta, mu) == pytest.approx(w, abs=1e-6)
        assert reference.scale(theta, g, mu) == pytest.approx(sym, abs=1e-6)
        assert reference.scale(theta, g, mu, variant="reference") == pytest.approx(
            ref, abs=1e-6
        )


class TestAgainstNumpyReference:
    @pytest.mark.parametrize("mu", MUS + [0.0, 0.5])
    def test_forward(self, mu):
        theta, _ = _grid()
        got = formulas.inner_solution(theta, mu).numpy()
        np.testing.assert_allclose(got, reference.w_star_array(theta, mu), atol=1e-6)

    @pytest.mark.parametrize("mu", MUS + [0.0, 0.5])
    @pytest.mark.parametrize("variant", ["symmetric", "reference"])
    @pytest.mark.parametrize("kw", SCALE_KWARGS, ids=SCALE_KWARGS_IDS)
    def test_scale(self, mu, variant, kw):
        theta, g = _grid()
        got = formulas.backward_scale(theta, g, mu, variant=variant, **kw).numpy()
        want = reference.scale_array(theta, g, mu, variant=variant, **kw)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)

    @pytest.mark.parametrize("variant", ["symmetric", "reference"])
    def test_gradient_is_scale_times_g(self, variant):
        theta, g = _grid()
        got = formulas.adaste_gradient(theta, g, 1.0, variant=variant).numpy()
        want = reference.scale_array(theta, g, 1.0, variant=variant) * g
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)

    def test_variants_differ_only_where_the_spec_says(self):
        theta, g = _grid()
        for mu in MUS:
            sym = formulas.backward_scale(theta, g, mu).numpy()
            ref = formulas.backward_scale(theta, g, mu, variant="reference").numpy()
            differ = ~np.isclose(sym, ref)
            exact = mu * 0.01 >= 1 - 1e-6
            inward = np.sign(g) == np.where(theta >= 0, 1, -1)
            if exact:
                allowed = inward | (np.abs(theta) <= 1e-3)
            else:
                allowed = inward & (theta > 0) & (np.abs(theta) < 1 - mu * 0.01)
            assert differ.any() or mu == 1.0
            assert not (differ & ~allowed).any()


class TestExactBinarizer:
    @pytest.mark.parametrize("mu,alpha", [(100.0, 0.01), (1.0 / 0.01, 0.01), (50.0, 0.02)])
    def test_float32_rounding_counts_as_exact(self, mu, alpha):
        assert bool(formulas.is_exact_binarizer(tf.constant(mu, tf.float32), alpha))
        theta = np.linspace(-2, 2, 41).astype(np.float32)
        np.testing.assert_array_equal(
            formulas.inner_solution(theta, mu, alpha).numpy(), np.where(theta >= 0, 1, -1)
        )

    def test_just_below_is_not_exact(self):
        assert not bool(formulas.is_exact_binarizer(99.9, 0.01))


class TestDtypesAndExtremes:
    @pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float32])
    def test_low_precision_inputs_computed_in_float32(self, dtype):
        theta, g = _grid()
        keep = np.abs(theta) < 1e3  # representable in float16
        theta, g = theta[keep], g[keep]
        t_low = tf.cast(theta, dtype)
        g_low = tf.cast(g, dtype)
        # The reference sees the same rounded inputs, in float64 arithmetic.
        t_in = tf.cast(t_low, tf.float32).numpy()
        g_in = tf.cast(g_low, tf.float32).numpy()
        w = formulas.inner_solution(t_low, 0.01)
        grad = formulas.adaste_gradient(t_low, g_low, 0.01)
        assert w.dtype == dtype and grad.dtype == dtype
        np.testing.assert_allclose(
            formulas.backward_scale(t_low, g_low, 0.01).numpy(),
            reference.scale_array(t_in, g_in, 0.01), rtol=1e-5, atol=1e-7,
        )
        tol = {tf.float16: 1e-3, tf.bfloat16: 1e-2, tf.float32: 1e-6}[dtype]
        np.testing.assert_allclose(
            tf.cast(w, tf.float32).numpy(), reference.w_star_array(t_in, 0.01),
            rtol=tol, atol=tol,
        )

    @pytest.mark.parametrize("mu", MUS + [0.0])
    @pytest.mark.parametrize("variant", ["symmetric", "reference"])
    def test_no_nan_or_inf(self, mu, variant):
        theta = np.array([0.0, -0.0, 1e-30, -1e-30, 1e-45, 1e30, -1e30, 3e38], np.float32)
        for g_value in [0.0, -0.0, 1e-30, 1.0, -1.0, 1e30, -1e30]:
            g = np.full_like(theta, g_value)
            s = formulas.backward_scale(theta, g, mu, variant=variant).numpy()
            d = formulas.adaste_gradient(theta, g, mu, variant=variant).numpy()
            w = formulas.inner_solution(theta, mu).numpy()
            assert np.isfinite(s).all() and np.isfinite(d).all() and np.isfinite(w).all()
            np.testing.assert_allclose(
                s, reference.scale_array(theta, g, mu, variant=variant), rtol=1e-5,
                atol=1e-12,
            )

    def test_sign_of_zero_is_plus_one(self):
        np.testing.assert_array_equal(
            formulas.sign(tf.constant([-0.0, 0.0, -1e-30])).numpy(), [1.0, 1.0, -1.0]
        )

    def test_unknown_variant(self):
        with pytest.raises(ValueError, match="variant"):
            formulas.backward_scale(1.0, 1.0, 0.01, variant="fancy")
