"""One worker of a two-process training run, for `tests/test_multi_worker.py`.

Started by `keras_bilevel.cli.local_workers.run_local_workers` (which gives each process its
engine's settings) as `python tests/multi_worker_script.py ENGINE RESULT_PATH`, ENGINE one
of "larq" (tf_keras and Larq under `MultiWorkerMirroredStrategy`), "tensorflow" and "jax"
(Keras 3, `KERAS_BACKEND` set by the test). Every worker trains, through the public helper
(`keras_bilevel.keras2.multi_worker` / `keras_bilevel.keras3.multi_worker`):

- `multi`: a small binary network (QuantDense-BatchNorm-ReLU-QuantDense, AdaSTE's relaxed
  forward, LatentMomentum, AnnealMu) on the global batches of 16 of 65 examples, so that
  the last batch of each epoch (1 example) is taken whole by both replicas;
- the controls, which a per-worker algorithm would train: AdaSTE's rule on each worker's
  own gradient (`AdaSTE(sum_over_replicas=False)` on TensorFlow; on JAX, whose step is
  one global program, emulated on one device as in `keras3_distribution_worker`), and
  BatchNorm statistics per worker (TensorFlow engines, BatchNorm not synchronized);

and, on its own, outside any distribution, `local`: the same network on one device on
the same batches. The chief writes the largest differences to RESULT_PATH as JSON.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import keras3_distribution_worker as shared  # noqa: E402

EXAMPLES, BATCH, EPOCHS = 65, 16, 3  # 65 = 4 x 16 + 1: an uneven last batch
STEPS = -(-EXAMPLES // BATCH)


def _max_diff(a, b):
    return max(float(np.abs(np.asarray(u) - np.asarray(v)).max())
               for u, v in zip(a.get_weights(), b.get_weights()))


def _small_network(keras, dense, adaste, optimizer, sum_over_replicas=True, **compile_args):
    """QuantDense-BatchNorm-ReLU-QuantDense from the shared initial weights, compiled with
    LatentMomentum, in the front end `keras` (tf.keras or Keras 3) with its `dense`
    layer, `adaste` quantizer and `optimizer` (LatentMomentum) classes."""

    def quantizer():
        return adaste(variant="reference", relaxed_forward=True,
                      sum_over_replicas=sum_over_replicas)

    model = keras.Sequential([
        keras.Input((shared.INPUTS,)),
        dense(shared.HIDDEN, kernel_quantizer=quantizer(), use_bias=False),
        keras.layers.BatchNormalization(center=False, scale=False),
        keras.layers.ReLU(),
        dense(shared.CLASSES, kernel_quantizer=quantizer()),
    ])
    w1, w2, b2 = shared.initial_weights()
    model.layers[0].set_weights([w1])
    model.layers[3].set_weights([w2, b2])
    model.compile(optimizer(0.01, momentum=0.9, gradient_scale=1.0, latent_decay=0.0),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  **compile_args)
    return model


def _fit(model, data, anneal_mu):
    model.fit(data, epochs=EPOCHS, steps_per_epoch=STEPS, verbose=0, shuffle=False,
              callbacks=[anneal_mu(2.0)])
    return model


def _distributed(cluster, model, batches, anneal_mu, prepare=True, **kwargs):
    """`model(**kwargs)` built in the cluster's scope (with synchronized BatchNorm unless
    `prepare` is False), trained on the cluster's `batches()`."""
    with cluster.scope():
        built = model(**kwargs)
        if prepare:
            cluster.prepare(built)
    return _fit(built, batches(), anneal_mu)


def _global_batches(x, y):
    """The global batches of every epoch, in order (no shuffling), as NumPy."""
    for _ in range(EPOCHS):
        for start in range(0, EXAMPLES, BATCH):
            yield x[start:start + BATCH], y[start:start + BATCH]


def _larq(result_path):
    import keras_bilevel  # noqa: F401  (Keras 2 mode before TensorFlow)
    from keras_bilevel.keras2 import multi_worker

    cluster = multi_worker.connect()  # before any TensorFlow operation
    import larq
    import tensorflow as tf

    from keras_bilevel import AdaSTE
    from keras_bilevel.callbacks import AnnealMu
    from keras_bilevel.optimizers import LatentMomentum

    tf.keras.utils.set_random_seed(0)  # the same initial kernels on every worker
    x, y = shared.data(EXAMPLES)
    batches = tf.data.Dataset.from_generator(
        lambda: _global_batches(x, y),
        output_signature=(tf.TensorSpec((None, shared.INPUTS), tf.float32),
                          tf.TensorSpec((None,), tf.int64)))

    def model(sum_over_replicas=True):
        return _small_network(tf.keras, larq.layers.QuantDense, AdaSTE, LatentMomentum,
                              sum_over_replicas)

    def distributed(**kwargs):
        return _distributed(cluster, model,
                            lambda: cluster.distribute(batches, BATCH, EXAMPLES), AnnealMu,
                            **kwargs)

    local = _fit(model(), batches, AnnealMu)
    multi = distributed()
    return {"replicas": cluster.replicas, "workers": cluster.count,
            "parallel": _max_diff(local, multi),
            "per_worker_rule": _max_diff(local, distributed(sum_over_replicas=False)),
            "per_worker_batch_norm": _max_diff(local, distributed(prepare=False)),
            "skipped_steps": int(multi.optimizer.skipped_steps.numpy())}


def _keras3(result_path):
    import keras

    from keras_bilevel.keras3 import multi_worker

    cluster = multi_worker.connect()  # before any JAX or TensorFlow computation
    from keras_bilevel.keras3.callbacks import AnnealMu
    from keras_bilevel.keras3.layers import QuantDense
    from keras_bilevel.keras3.optimizers import LatentMomentum
    from keras_bilevel.keras3.quantizers import AdaSTE

    backend = keras.backend.backend()
    keras.utils.set_random_seed(0)  # the same initial kernels on every worker (JAX checks)
    x, y = shared.data(EXAMPLES)

    def model(sum_over_replicas=True, per_shard=False):
        # per_shard: the rule on each half of the batch, what two workers' rules do.
        dense = shared.per_shard_dense(keras) if per_shard else QuantDense
        return _small_network(keras, dense, AdaSTE, LatentMomentum, sum_over_replicas,
                              jit_compile=backend == "jax")

    def distributed(**kwargs):
        return _distributed(
            cluster, model,
            lambda: cluster.train_batches(lambda: _global_batches(x, y), EPOCHS * STEPS),
            AnnealMu, **kwargs)

    def on_one_device(**kwargs):
        everywhere = keras.distribution.distribution()
        keras.distribution.set_distribution(None)  # JAX: this process's device only
        try:
            return _fit(model(**kwargs), _global_batches(x, y), AnnealMu)
        finally:
            keras.distribution.set_distribution(everywhere)

    local = on_one_device()
    multi = distributed()
    result = {"replicas": cluster.replicas, "workers": cluster.count,
              "parallel": _max_diff(local, multi),
              "skipped_steps": int(np.asarray(multi.optimizer.skipped_steps))}
    if backend == "jax":
        # One global program: no per-worker rule to switch on; what one would train, on
        # one device (its two halves are the two workers' batches but for the last).
        result["per_worker_rule"] = _max_diff(local, on_one_device(per_shard=True))
    else:
        result["per_worker_rule"] = _max_diff(
            local, distributed(sum_over_replicas=False))
        result["per_worker_batch_norm"] = _max_diff(local, distributed(prepare=False))
    return result


def main(engine, result_path):
    result = _larq(result_path) if engine == "larq" else _keras3(result_path)
    index = int(json.loads(os.environ["TF_CONFIG"])["task"]["index"]
                if "TF_CONFIG" in os.environ else os.environ["JAX_PROCESS_ID"])
    if index == 0:
        with open(result_path, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    try:
        main(*sys.argv[1:3])
    except BaseException:  # leave at once: JAX's exit would wait for the other worker
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
