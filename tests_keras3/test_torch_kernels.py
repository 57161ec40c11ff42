"""PyTorch's fused AdaSTE kernels (`keras_bilevel.keras3.backends.torch_kernels`), on PyTorch only.

The fused kernels are what `keras_bilevel.keras3.formulas` runs on PyTorch; they must give
the values of the NumPy transcription of the specification (`tests/reference.py`) and
of the `keras.ops` binding, fall back to eager code in one warning when compiling fails,
and work inside a training step that is itself compiled (torch.compile).
"""

import warnings

import keras
import numpy as np
import pytest

from keras_bilevel.core import formulas as core_formulas
from keras_bilevel.keras3 import formulas as keras_formulas
from tests import reference
from tests_keras3.conftest import BACKEND

pytestmark = pytest.mark.skipif(BACKEND != "torch", reason="PyTorch's kernels")

if BACKEND == "torch":
    import torch

    from keras_bilevel.keras3.backends import torch_kernels

# The keras.ops binding, which the fused kernels replace on PyTorch.
OPS_SIGN, _, OPS_INNER, _, OPS_GRADIENT = core_formulas.bind(keras_formulas._OPS, "keras.ops binding")


def _cases(count=4000, seed=0):
    """Latent weights across every region (dead band, linear, saturated) and gradients of
    both signs, some inside the gradient dead band."""
    rng = np.random.default_rng(seed)
    theta = np.concatenate([rng.uniform(-1.5, 1.5, count), rng.normal(0, 10, count // 4),
                            [0.0, 1e-7, -1e-7, 0.989, -0.995, 1.0, -1.0]]).astype(np.float32)
    g = (rng.normal(0, 1e-2, theta.size) * rng.choice([1e-2, 1, 10], theta.size))
    return theta, g.astype(np.float32)


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def test_math_uses_the_fused_kernels_on_torch():
    for name in ("sign", "inner_solution", "adaste_gradient"):
        assert getattr(keras_formulas, name).__wrapped__ is getattr(torch_kernels, name)


@pytest.mark.parametrize("finite", [True, False])
def test_the_latent_momentum_step_is_the_update_of_the_specification(finite):
    rng = np.random.default_rng(1)
    theta, m, g = (rng.normal(0, s, (64, 32)).astype(np.float32) for s in (3.0, 1e-2, 1e-3))
    b, lr, t, scale, decay = 0.9, 1e-3, 7, 1e4, 0.5
    step_size = lr / (1 - b ** t)
    new_theta, new_m = torch_kernels.latent_momentum_step(
        *(torch.as_tensor(a) for a in (theta, m, g)), torch.tensor(b), torch.tensor(step_size),
        scale, decay, torch.tensor(finite))
    # Section 6 of docs/method.md, in float64.
    want_m = b * m.astype(np.float64) + (1 - b) * (scale * g + decay * theta)
    want_theta = theta - lr * want_m / (1 - b ** t)
    if not finite:  # the step is skipped
        want_theta, want_m = theta, m
    np.testing.assert_allclose(_numpy(new_m), want_m, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(_numpy(new_theta), want_theta, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", ["symmetric", "reference"])
@pytest.mark.parametrize("mu", [0.0, 0.01, 1.7, 100.0])
def test_the_gradient_is_the_specifications(variant, mu):
    theta, g = _cases()
    got = _numpy(keras_formulas.adaste_gradient(theta, g, mu, variant=variant))
    want = reference.scale_array(theta, g, mu, variant=variant) * g.astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-12)
    ops_binding = _numpy(OPS_GRADIENT(theta, g, mu, variant=variant))
    np.testing.assert_allclose(got, ops_binding, rtol=1e-6, atol=0)


@pytest.mark.parametrize("mu", [0.0, 0.01, 1.7, 100.0])
def test_the_forward_passes_are_the_specifications(mu):
    theta, _ = _cases()
    np.testing.assert_array_equal(_numpy(keras_formulas.sign(theta)), np.where(theta >= 0, 1, -1))
    np.testing.assert_allclose(_numpy(keras_formulas.inner_solution(theta, mu)),
                               reference.w_star_array(theta, mu), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(_numpy(keras_formulas.inner_solution(theta, mu)),
                                  _numpy(OPS_INNER(theta, mu)))


def test_shapes_and_half_precision_keep_their_dtype():
    theta = torch.linspace(-2, 2, 3 * 5 * 7).reshape(3, 5, 7)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        t = theta.to(dtype)
        out = keras_formulas.adaste_gradient(t, t * 1e-2, 0.01)
        assert out.dtype == dtype and tuple(out.shape) == (3, 5, 7)
        want = OPS_GRADIENT(t, t * 1e-2, 0.01)
        np.testing.assert_array_equal(_numpy(out.float()), _numpy(want.float()))


def test_a_failed_compilation_warns_once_and_runs_eagerly(monkeypatch):
    def broken_compile(function, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("no C++ compiler found")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(torch_kernels, "_failed", [])
    fused = torch_kernels._fused("adaste_gradient")
    theta, g = _cases(200)
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*no C\\+\\+ compiler.*eagerly"):
        first = fused(torch.as_tensor(theta), torch.as_tensor(g), torch.tensor(0.01))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        second = fused(torch.as_tensor(theta), torch.as_tensor(g), torch.tensor(0.01))
    want = _numpy(OPS_GRADIENT(theta, g, 0.01))
    np.testing.assert_allclose(_numpy(first), want, rtol=1e-6)
    np.testing.assert_array_equal(_numpy(first), _numpy(second))


def _trained_kernels(jit):
    from keras_bilevel.keras3 import AdaSTE, models, optimizers

    keras.utils.set_random_seed(0)
    model = models.binary_mlp((12,), 16, classes=3,
                              kernel_quantizer=lambda: AdaSTE(relaxed_forward=True))
    model.compile(optimizers.LatentMomentum(learning_rate=1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 12)).astype(np.float32), rng.integers(0, 3, 64)
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    return [np.array(w) for w in model.get_weights()]


def test_a_compiled_training_step_trains_as_the_eager_one():
    for compiled, eager in zip(_trained_kernels(True), _trained_kernels(False)):
        np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-5)


def test_many_kernel_shapes_stay_compiled_for_the_whole_run():
    """More distinct kernel shapes than Dynamo's recompile limit, trained for several
    epochs with mu changing each epoch and evaluated: the kernels stay compiled (no
    fallback, no warning), one graph per formula, and a new shape (of a rank seen)
    compiles nothing new."""
    from torch._dynamo.utils import counters

    from keras_bilevel.keras3 import AdaSTE, callbacks, initializers, layers, optimizers

    limit = torch._dynamo.config.recompile_limit
    widths = [9 + i for i in range(limit + 2)]  # limit + 3 distinct kernel shapes
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((7,))] + [
        layers.QuantDense(width, use_bias=False, kernel_quantizer=AdaSTE(relaxed_forward=True),
                          kernel_initializer=initializers.RandomSign())
        for width in widths] + [layers.QuantDense(3, kernel_quantizer="ada_ste")])
    model.compile(optimizers.LatentMomentum(learning_rate=1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((96, 7)).astype(np.float32), rng.integers(0, 3, 96)
    graphs_before = counters["stats"]["unique_graphs"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        model.fit(x, y, batch_size=32, epochs=3, verbose=0, validation_data=(x, y),
                  callbacks=[callbacks.AnnealMu(rate=2.0)])
    assert torch_kernels._failed == []
    graphs = counters["stats"]["unique_graphs"] - graphs_before
    assert graphs <= len(torch_kernels.FUSED) + 1, graphs  # per formula, not per shape
    theta = torch.randn(123, 45, requires_grad=True)  # a shape the model does not have
    with torch.no_grad():
        torch_kernels.adaste_gradient(theta, theta * 1e-2, torch.tensor(0.3), g_total=None,
                                      **model.layers[0].kernel_quantizer.backward_kwargs())
        torch_kernels.sign(theta)
    assert counters["stats"]["unique_graphs"] - graphs_before == graphs  # nothing new
