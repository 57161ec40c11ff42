"""Exact data parallelism in the Keras 3 front end: two devices train as one.

AdaSTE's backward rule is nonlinear in the gradient (docs/method.md, section 7):
under data parallelism the single-device algorithm needs the sign test on the gradient of
the whole global batch. Each case trains the same binary network from the same NumPy
weights on one device and on two host CPUs (JAX `keras.distribution.DataParallel`,
TensorFlow `tf.distribute.MirroredStrategy`), in a subprocess
(`tests/keras3_distribution_worker.py`: `XLA_FLAGS`, `KERAS_BACKEND` and logical devices
must be set before import), and compares the trained weights. Controls on the same data
show what a rule that sees only its replica's gradient would train instead.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import keras3_distribution_worker as worker
from tests import reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "keras3_distribution_worker.py")
EXACT = 1e-5  # two devices vs one: float32 rounding only
APART = 1e-3  # a per-replica rule: far from the single-device weights
BACKENDS = ["jax", "tensorflow"]  # PyTorch: Keras 3 has no data parallelism for it


def _run(backend, case):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_USE_LEGACY_KERAS", "XLA_FLAGS")}
    env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT,
               JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    if backend == "jax":
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    result = subprocess.run([sys.executable, WORKER, case], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=600)
    output = result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, f"{backend} {case} failed:\n{output[-6000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def _kernel_gradients(x, y, kernels, scale):
    """d loss / d w of both binary kernels (sign forward, ReLU, softmax cross-entropy).

    The loss is the mean over the global batch, times `scale`.
    """
    w1, w2 = (np.where(k >= 0, 1.0, -1.0) for k in kernels)  # sgn(0) = +1
    pre = x @ w1
    hidden = np.maximum(pre, 0.0)
    logits = hidden @ w2
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    d_logits = (p - np.eye(worker.CLASSES)[y]) * scale
    d_hidden = (d_logits @ w2.T) * (pre > 0)
    return [x.T @ d_hidden, hidden.T @ d_logits]


def test_data_make_the_replicas_disagree_with_the_global_gradient():
    """The first step already separates the exact rule from a per-replica rule."""
    x, y = worker.data()
    x, y = x[:worker.BATCH], y[:worker.BATCH]
    kernels = worker.initial_weights()[:2]
    scale = 1.0 / worker.BATCH  # each replica's part of the mean over the global batch
    half = worker.BATCH // 2
    total = _kernel_gradients(x, y, kernels, scale)
    parts = [_kernel_gradients(x[s], y[s], kernels, scale)
             for s in (slice(0, half), slice(half, None))]
    disagreeing = differently_scaled = 0
    for k, (theta, g) in enumerate(zip(kernels, total)):
        np.testing.assert_allclose(parts[0][k] + parts[1][k], g, atol=1e-6)
        for part in (parts[0][k], parts[1][k]):
            live = (np.abs(g) > 1e-3) & (np.abs(part) > 1e-3)  # outside the dead band
            disagreeing += int((live & (np.sign(part) != np.sign(g))).sum())
            rule_total = reference.scale_array(theta, g, 0.01)
            rule_part = reference.scale_array(theta, part, 0.01)
            differently_scaled += int((np.abs(rule_total - rule_part) > 0.05).sum())
    assert disagreeing >= 10, disagreeing
    assert differently_scaled >= 10, differently_scaled


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["sign_forward_adam", "relaxed_forward_latent_momentum"])
def test_two_devices_train_as_one(backend, case):
    result = _run(backend, case)
    assert result["backend"] == backend
    if backend == "jax":  # the kernels are on both devices and the batch is split
        assert result["devices_holding_a_kernel"] == 2
        assert result["batch_sharded"] == "batch"
    else:
        assert result["replicas"] == 2
        assert result["replica_copies_agree"]
    assert result["parallel"] < EXACT, result
    # Controls, same data and weights: two replicas with their own rule each, emulated
    # on one device (and, on TensorFlow, AdaSTE(sum_over_replicas=False) on two).
    assert result["per_shard_emulated"] > APART, result
    if backend == "tensorflow":
        assert result["per_replica"] > APART, result
        # The emulation is that per-replica rule: both train the same weights.
        assert abs(result["per_replica"] - result["per_shard_emulated"]) < EXACT, result


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_non_finite_step_is_skipped_on_every_replica(backend):
    result = _run(backend, "non_finite_latent_momentum")
    assert result["skipped_steps"] == worker.EPOCHS  # the first batch of every epoch
    assert result["all_finite"]
    if backend == "tensorflow":
        assert result["replica_copies_agree"]
    assert result["parallel"] < EXACT, result


@pytest.mark.parametrize("backend", BACKENDS)
def test_replica_sum(backend):
    result = _run(backend, "replica_sum")
    if backend == "jax":  # the sharded step differentiates the global batch already
        assert result["replica_sum"] is None
        return
    # Replica r holds r + 1: both replicas get 1 + 2, as a tensor and in a list.
    assert result["replica_sum"] == [[3.0, 3.0], [3.0, 3.0]]
    assert result["replica_sum_list"] == [[3.0, 3.0], [3.0, 3.0]]
    assert result["replica_sum_outside"] is None  # no step running: nothing to sum
    assert result["replica_sum_one_device"] is True


@pytest.mark.parametrize("backend", BACKENDS)
def test_inference_under_a_strategy_uses_each_layers_own_kernel(backend):
    """Two binary kernels of one shape, evaluated under the strategy: each layer's signs
    are its own and the outputs are NumPy's (on TensorFlow, the compiled sign once read
    the first mirrored kernel for every kernel of its shape)."""
    result = _run(backend, "inference_under_strategy")
    assert result["kernels_quantized_as_their_own"] == [True, True], result
    assert result["outputs_max_error"] < 1e-4, result
