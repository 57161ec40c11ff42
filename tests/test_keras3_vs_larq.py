"""The same AdaSTE training on JAX, TensorFlow, PyTorch (Keras 3) and the Larq path.

One small binary MLP (16-32-32-4, no bias, ReLU), the same initial latent weights and
the same batches, trained for 12 steps with AdaSTE and LatentMomentum (gradient_scale 1,
momentum 0.9, latent decay 1), with the sign forward and the relaxed forward. Each front
end runs in its own process (this file is also the worker: `python
tests/test_keras3_vs_larq.py BACKEND OUT.npz`); the latent weights must agree within 1e-5.
Perturbed runs (another max_scale, another grad_eps, a plain STE) show that the inward
and dead-band rules are exercised and that a mistake in them would be caught.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = [16, 32, 32, 4]
STEPS, BATCH = 12, 32
LR = 0.05
FRONT_ENDS = ["jax", "tensorflow", "torch", "larq"]
# Runs of the JAX worker with one thing changed, and by how much each must differ from the
# base run. Without the dead band (grad_eps 0) only the gradients below 1e-3 change,
# which moves a weight by at most 12 steps x LR x 1e-3: a few 1e-5, still over the
# tolerance of the comparison.
PERTURBED = {"max_scale": ({"max_scale": 0.4}, 1e-3), "grad_eps": ({"grad_eps": 0.0}, 2e-5),
             "ste": (None, 1e-3)}


def _problem():
    rng = np.random.default_rng(7)
    kernels = [rng.uniform(-1.5, 1.5, (a, b)).astype(np.float32)
               for a, b in zip(SIZES[:-1], SIZES[1:])]
    x = rng.standard_normal((STEPS, BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], (STEPS, BATCH)).astype(np.int32)
    return kernels, x, y


def _train(front_end, relaxed, quantizer_kwargs=None):
    """Latent kernels after the run (quantizer_kwargs None: a plain STE)."""
    kernels, x, y = _problem()
    if front_end == "larq":
        import keras_bilevel
        import larq
        import tensorflow as tf

        keras, Dense = tf.keras, larq.layers.QuantDense
        AdaSTE, SteSign = keras_bilevel.AdaSTE, larq.quantizers.SteSign
        LatentMomentum = keras_bilevel.optimizers.LatentMomentum
        jit = False
    else:
        import keras

        from keras_bilevel.keras3 import AdaSTE, SteSign
        from keras_bilevel.keras3.layers import QuantDense as Dense
        from keras_bilevel.keras3.optimizers import LatentMomentum
        jit = front_end in ("jax", "tensorflow")

    def quantizer():
        if quantizer_kwargs is None:
            return SteSign(clip_value=1e6)
        return AdaSTE(relaxed_forward=relaxed, **quantizer_kwargs)

    model = keras.Sequential([keras.Input((SIZES[0],))])
    for i, units in enumerate(SIZES[1:]):
        model.add(Dense(units, use_bias=False, kernel_quantizer=quantizer(),
                        activation="relu" if i < len(SIZES) - 2 else None))
    model.set_weights(kernels)
    model.compile(LatentMomentum(LR, momentum=0.9, gradient_scale=1.0, latent_decay=1.0),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit)
    for xb, yb in zip(x, y):
        model.train_on_batch(xb, yb)
    return [np.asarray(k) for k in model.get_weights()]


def _worker(front_end, out):
    results = {}
    for relaxed in (False, True):
        for i, k in enumerate(_train(front_end, relaxed, {})):
            results[f"relaxed{int(relaxed)}_{i}"] = k
        if front_end == "jax":
            for name, (kwargs, _) in PERTURBED.items():
                for i, k in enumerate(_train(front_end, relaxed, kwargs)):
                    results[f"{name}_relaxed{int(relaxed)}_{i}"] = k
    np.savez(out, **results)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras3_vs_larq")
    runs = {}
    for front_end in FRONT_ENDS:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
        if front_end != "larq":
            env["KERAS_BACKEND"] = front_end
        out = str(folder / f"{front_end}.npz")
        runs[front_end] = (out, subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), front_end, out], env=env,
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    results = {}
    for front_end, (out, process) in runs.items():
        log, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"{front_end} worker failed:\n{log[-4000:]}"
        results[front_end] = dict(np.load(out))
    return results


@pytest.mark.parametrize("relaxed", [0, 1])
@pytest.mark.parametrize("a,b", [(a, b) for i, a in enumerate(FRONT_ENDS)
                                 for b in FRONT_ENDS[i + 1:]])
def test_latent_weights_agree(trained, a, b, relaxed):
    for i in range(len(SIZES) - 1):
        key = f"relaxed{relaxed}_{i}"
        np.testing.assert_allclose(trained[a][key], trained[b][key], rtol=0, atol=1e-5,
                                   err_msg=f"{a} vs {b}, kernel {i}")


@pytest.mark.parametrize("relaxed", [0, 1])
def test_the_run_is_sensitive_to_each_rule(trained, relaxed):
    kernels, _, _ = _problem()
    base = [trained["jax"][f"relaxed{relaxed}_{i}"] for i in range(len(kernels))]
    moved = max(np.abs(b - k).max() for b, k in zip(base, kernels))
    assert moved > 0.1
    flipped = sum(int(np.sum(np.sign(b) != np.sign(k))) for b, k in zip(base, kernels))
    assert flipped > 0
    for name, (_, least) in PERTURBED.items():
        other = [trained["jax"][f"{name}_relaxed{relaxed}_{i}"] for i in range(len(kernels))]
        difference = max(np.abs(o - b).max() for o, b in zip(other, base))
        assert difference > least, f"{name}: {difference}"


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
