"""Trains one small binary network on one device and on two, for `test_keras3_distribution`.

Run as a script in a fresh interpreter, under the backend named by `KERAS_BACKEND`, with
the name of a case (`CASES`):

    XLA_FLAGS=--xla_force_host_platform_device_count=2 KERAS_BACKEND=jax \\
        python tests/keras3_distribution_worker.py sign_forward_adam
    KERAS_BACKEND=tensorflow python tests/keras3_distribution_worker.py sign_forward_adam

Two devices are two host CPUs: for JAX by `XLA_FLAGS` (set before JAX loads), for
TensorFlow by two logical CPU devices (set here, before any TensorFlow op). Data
parallelism is `keras.distribution.DataParallel` on JAX and `tf.distribute.MirroredStrategy`
on TensorFlow. Prints one line `RESULT {json}` with the largest differences between
trained weights: two devices vs one (`parallel`), and controls that apply the rule per
replica (`per_shard_emulated`, and on TensorFlow `per_replica`); with details of the
placement (JAX) or of the replicas' copies (TensorFlow).

The data and the initial weights come from NumPy alone (`data`, `initial_weights`), so
that the test process can check them without importing Keras.
"""

import json
import os
import sys

import numpy as np

BATCH = 16  # the global batch; each of the 2 replicas gets 8 examples
EPOCHS = 3
INPUTS, HIDDEN, CLASSES = 6, 16, 3

# What each case trains: the quantizers' forward and variant, the optimizer, AnnealMu's
# rate (None: no AnnealMu), and whether the second kernel's layer has a bias (trained by
# LatentMomentum's default optimizer).
CASES = {
    "sign_forward_adam": dict(relaxed_forward=False, variant="symmetric", optimizer="adam",
                              anneal=None),
    "relaxed_forward_latent_momentum": dict(relaxed_forward=True, variant="reference",
                                            optimizer="latent_momentum", anneal=2.0),
    # A NaN in the first batch of every epoch, in the first replica's half: every
    # replica must skip that step (LatentMomentum's finite test).
    "non_finite_latent_momentum": dict(relaxed_forward=False, variant="symmetric",
                                       optimizer="latent_momentum", anneal=None,
                                       nan_at=3),
}


def data(n=64, seed=0):
    """Inputs (n, 6) and labels in {0, 1, 2}; fixed, and fed in order (no shuffle)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, INPUTS)).astype(np.float32), rng.integers(0, CLASSES, n)


def initial_weights(seed=1):
    """[latent kernel 1, latent kernel 2, bias 2]: latent weights in every region of the rule.

    Signs times magnitudes 0.05 (linear, flips within a few steps), 0.5 (linear) and 10
    (saturated).
    """
    rng = np.random.default_rng(seed)

    def latent(shape):
        magnitude = rng.choice([0.05, 0.5, 10.0], shape)
        return (rng.choice([-1.0, 1.0], shape) * magnitude).astype(np.float32)

    bias = (0.1 * rng.standard_normal(CLASSES)).astype(np.float32)
    return [latent((INPUTS, HIDDEN)), latent((HIDDEN, CLASSES)), bias]


def per_shard_dense(keras):
    """`QuantDense` that quantizes its kernel once per half-batch: two replicas, each with
    its own rule (a batch of odd size, which both replicas take whole, in one piece)."""
    from keras import ops

    from keras_bilevel.keras3.layers import QuantDense

    class PerShardQuantDense(QuantDense):
        """With a mean loss over the whole batch, the gradient reaching the latent kernel is
        scale(theta, g_1) g_1 + scale(theta, g_2) g_2, g_r being half r's part of the
        gradient of w: what a rule that sees only its replica's gradient computes.
        """

        def call(self, inputs, training=None):
            rows = inputs.shape[0]
            halves = [inputs] if rows is None or rows % 2 else ops.split(inputs, 2, axis=0)
            outputs = [ops.matmul(x, self._quantized_kernel(self.kernel, training))
                       for x in halves]
            return self._bias_and_activation(ops.concatenate(outputs, axis=0))

    return PerShardQuantDense


def _build(keras, case, per_shard=False, sum_over_replicas=True):
    from keras_bilevel.keras3.layers import QuantDense
    from keras_bilevel.keras3.quantizers import AdaSTE

    dense = per_shard_dense(keras) if per_shard else QuantDense

    def quantizer():
        return AdaSTE(relaxed_forward=case["relaxed_forward"], variant=case["variant"],
                      sum_over_replicas=sum_over_replicas)

    model = keras.Sequential([
        keras.Input((INPUTS,), batch_size=BATCH if per_shard else None),
        dense(HIDDEN, kernel_quantizer=quantizer(), use_bias=False),
        keras.layers.ReLU(),
        dense(CLASSES, kernel_quantizer=quantizer()),
    ])
    model.set_weights(initial_weights())
    return model


def _optimizer(keras, name):
    from keras_bilevel.keras3.optimizers import LatentMomentum

    if name == "adam":
        # epsilon: some latent gradients are 0 in exact arithmetic (a hidden unit whose
        # outgoing binary weights all have one sign: the softmax gradient sums to 0) and
        # rounding noise (~1e-9) in float32. Adam's default epsilon (1e-7) would turn that
        # noise into steps of up to 1e-3, which depend on the order of the summation
        # (one device or two), not on the algorithm.
        return keras.optimizers.Adam(0.01, epsilon=1e-3)
    return LatentMomentum(0.01, momentum=0.9, gradient_scale=1.0, latent_decay=0.0)


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _fit(keras, case, scope=None, x=None, **build):
    from keras_bilevel.keras3.callbacks import AnnealMu

    # XLA: JAX compiles the sharded step. Keras 3 on TensorFlow cannot compile a
    # MirroredStrategy step over logical CPUs with XLA (a replica's variables live on
    # another device), so there both runs use TensorFlow graphs without XLA.
    jit_compile = keras.backend.backend() == "jax"
    data_x, y = data()
    x = data_x if x is None else x
    with scope or _Nothing():
        model = _build(keras, case, **build)
        model.compile(_optimizer(keras, case["optimizer"]),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=jit_compile)
    callbacks = [] if case["anneal"] is None else [AnnealMu(case["anneal"])]
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=callbacks)
    return model


def _weights(model):
    return [np.asarray(w) for w in model.get_weights()]


def _max_diff(a, b):
    return max(float(np.abs(u - v).max()) for u, v in zip(_weights(a), _weights(b)))


def _replica_copies_agree(model):
    """TensorFlow: whether every replica holds the same value of every model variable."""
    import tensorflow as tf

    for variable in model.variables:
        copies = [np.asarray(c) for c in getattr(variable.value, "values", [variable.value])]
        if not all(np.array_equal(copies[0], c) for c in copies[1:]):
            return False
    return isinstance(model.variables[0].value, tf.distribute.DistributedValues)


def _replica_sums(strategy):
    """`replica_sum` of replica r's value r + 1 (a tensor and a list), per replica; outside."""
    import tensorflow as tf

    from keras_bilevel.keras3.distribution import replica_sum

    def per_replica():
        r = tf.distribute.get_replica_context().replica_id_in_sync_group
        value = tf.cast(r + 1, tf.float32) * tf.ones((2,))
        tensor, (listed,) = replica_sum(value), replica_sum([value])
        return tensor, listed

    tensors, listed = strategy.run(tf.function(per_replica))
    local = strategy.experimental_local_results
    return {
        "replica_sum": [np.asarray(t).tolist() for t in local(tensors)],
        "replica_sum_list": [np.asarray(t).tolist() for t in local(listed)],
        "replica_sum_outside": replica_sum(tf.ones((2,))),
        "replica_sum_one_device": tf.distribute.OneDeviceStrategy("/cpu:0").run(
            lambda: replica_sum(tf.ones((2,))) is None),
    }


def _inference_under_strategy(keras, backend):
    """Inference of a model whose two binary kernels have one shape, built under the
    strategy: each layer must use its own kernel (a compiled sign once read the first
    mirrored kernel for both). Compared with NumPy's forward pass."""
    from keras_bilevel.keras3.layers import QuantDense

    if backend == "jax":
        import jax

        scope = keras.distribution.DataParallel(devices=jax.devices()[:2]).scope()
    else:
        import tensorflow as tf

        scope = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope()
    rng = np.random.default_rng(3)
    kernels = [rng.standard_normal((INPUTS, INPUTS)).astype(np.float32) for _ in range(2)]
    x = rng.standard_normal((BATCH, INPUTS)).astype(np.float32)
    with scope:
        model = keras.Sequential([
            keras.Input((INPUTS,)),
            QuantDense(INPUTS, kernel_quantizer="ada_ste", use_bias=False),
            QuantDense(INPUTS, kernel_quantizer="ada_ste", use_bias=False)])
        model.set_weights(kernels)
        quantized = [np.asarray(layer.kernel_quantizer(layer.kernel, training=False))
                     for layer in model.layers]
        outputs = np.asarray(model(x, training=False))
    signs = [np.where(k >= 0, 1.0, -1.0) for k in kernels]
    expected = (x @ signs[0]) @ signs[1]
    return {"kernels_quantized_as_their_own": [bool(np.array_equal(q, s))
                                               for q, s in zip(quantized, signs)],
            "outputs_max_error": float(np.abs(outputs - expected).max())}


def main(case_name):
    backend = os.environ.get("KERAS_BACKEND")
    if backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    result = {"backend": keras.backend.backend()}
    if case_name == "replica_sum":
        from keras_bilevel.keras3.distribution import replica_sum

        if backend == "tensorflow":
            result.update(_replica_sums(tf.distribute.MirroredStrategy(
                ["/cpu:0", "/cpu:1"])))
        else:
            result["replica_sum"] = replica_sum(np.ones(2, np.float32))
        print("RESULT " + json.dumps(result))
        return
    if case_name == "inference_under_strategy":
        result.update(_inference_under_strategy(keras, backend))
        print("RESULT " + json.dumps(result))
        return
    case = CASES[case_name]
    if backend == "jax":
        import jax

        parallel = keras.distribution.DataParallel(devices=jax.devices()[:2])

        def two(**kwargs):
            keras.distribution.set_distribution(parallel)
            try:
                model = _fit(keras, case, **kwargs)
            finally:
                keras.distribution.set_distribution(None)
            kernel = model.layers[0].kernel.value
            result["devices_holding_a_kernel"] = len(kernel.sharding.device_set)
            result["batch_sharded"] = parallel.get_data_layout((BATCH, INPUTS)).axes[0]
            return model
    elif backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        result["replicas"] = strategy.num_replicas_in_sync

        def two(**kwargs):
            model = _fit(keras, case, scope=strategy.scope(), **kwargs)
            result["replica_copies_agree"] = result.get("replica_copies_agree", True) and (
                _replica_copies_agree(model))
            return model
    else:
        raise SystemExit(f"KERAS_BACKEND must be jax or tensorflow, got {backend!r}")

    if "nan_at" in case:
        x, _ = data()
        x[case["nan_at"]] = np.nan
        model = two(x=x)
        result["skipped_steps"] = int(np.asarray(model.optimizer.skipped_steps))
        result["all_finite"] = all(bool(np.isfinite(w).all()) for w in _weights(model))
        result["parallel"] = _max_diff(_fit(keras, case, x=x), model)
    else:
        one = _fit(keras, case)
        result["parallel"] = _max_diff(one, two())
        # Controls on the same data: the rule applied per half-batch is not the algorithm.
        result["per_shard_emulated"] = _max_diff(one, _fit(keras, case, per_shard=True))
        if backend == "tensorflow":  # the quantizer without its all-reduce, on 2 replicas
            result["per_replica"] = _max_diff(one, two(sum_over_replicas=False))
    print("RESULT " + json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
