"""One Keras 3 model trained by several worker processes: JAX's and TensorFlow's engines.

The Keras 3 twin of `keras_bilevel.keras2.multi_worker`, one call per worker, `connect()`:

- JAX: `jax.distributed.initialize` with the coordinator's address, the number of
  processes and this process's index (arguments, else `JAX_COORDINATOR_ADDRESS`,
  `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`), then `keras.distribution.DataParallel` over
  the devices of every process. The training step is one program over the global batch,
  which XLA partitions: the gradient, AdaSTE's sign test and BatchNorm's statistics are
  the global batch's. Each process feeds its rows of each global batch
  (`train_batches`), which `jax.make_array_from_process_local_data` assembles.
- TensorFlow: `tf.distribute.MultiWorkerMirroredStrategy` from `TF_CONFIG`, with
  synchronized BatchNorm (`prepare`) and the quantizer's and `LatentMomentum`'s sums
  over replicas (`keras_bilevel.keras3.distribution.replica_sum`). Keras 3.15's `fit`
  and `evaluate` fail under that strategy (tensorflow/tensorflow#72388: the trainer
  reduces its first batch and every step's logs across workers in ways the strategy
  cannot), so here each worker hands Keras its own batches as a distributed dataset
  of its own (nothing to reduce) and the logs are averaged over workers as scalars:
  both in `keras_bilevel.keras3.backends.tensorflow_workers`, used only in a multi-worker TensorFlow
  run.
- PyTorch: Keras 3 has no distribution API for it; refused in one line.

The batches follow `keras_bilevel.core.workers.replica_rows`: equal parts of each global
batch, or the whole of a last partial batch that does not split evenly on every
replica, so that training is the single-device algorithm. Evaluation is not sharded:
every worker evaluates the whole split (the metrics of copies are the metrics of the
split), in the time one machine takes. Every worker must call `model.save` (Keras'
saving creates variables, a collective operation under a distribution), the others into
a scratch directory (`writable`). Without settings, `connect()` gives a single process.

!!! example
    ```python
    cluster = keras_bilevel.keras3.multi_worker.connect()      # first thing
    with cluster.scope():
        model = keras_bilevel.keras3.models.binary_mlp((8, 8, 1), hidden_units=256)
        model.compile(optimizer, loss, metrics=["accuracy"])
    cluster.prepare(model)
    model.fit(cluster.train_batches(lambda: splits.train_epochs(0, 10), 10 * steps),
              epochs=10, steps_per_epoch=steps,
              validation_data=cluster.evaluation_data(splits.validation, batch_size=128))
    ```
"""

import contextlib

import keras
import numpy as np

from keras_bilevel.core import workers
from keras_bilevel.keras3 import data, streamed
from keras_bilevel.keras3.backends import current as backend

__all__ = ["MultiWorker", "connect"]

# In the text of an error JAX raises when another process is gone (gloo's TCP transport,
# NCCL on GPUs, the coordination service).
_JAX_LOST_WORKER = ("Gloo", "gloo", "NCCL", "Connection reset", "coordination service",
                    "UNAVAILABLE", "DEADLINE_EXCEEDED", "heartbeat")


def connect(setup=None, coordinator=None, num_processes=None, process_id=None):
    """This worker's `MultiWorker` for the running Keras backend; call it first.

    # Arguments
        setup: a `keras_bilevel.core.workers.WorkerSetup`; None reads the engine's settings
            (TF_CONFIG, or for JAX the arguments and the `JAX_*` variables).
        coordinator, num_processes, process_id: JAX's settings, when `setup` is None.

    # Raises
        ValueError: settings that are malformed, or several workers on PyTorch.
    """
    if setup is None:
        setup = workers.worker_setup(backend.NAME, coordinator, num_processes, process_id)
    if setup is None:
        return MultiWorker(None)
    if backend.NAME not in _ENGINES:
        raise ValueError(workers.no_engine_message(backend.NAME))
    return _ENGINES[backend.NAME](setup)


class MultiWorker(workers.WorkerFiles):
    """This process's part in a training run: on its own, a single process.

    # Attributes
        count, index, is_chief, replicas: as in `keras_bilevel.keras2.multi_worker.MultiWorker`;
            `writable`, `close`, `lost_worker`: `keras_bilevel.core.workers.WorkerFiles`.
    """

    count, index, replicas = 1, 0, 1
    _first, _local = 0, 1  # this process's replicas: _first, ..., _first + _local - 1

    def __init__(self, setup):
        self.setup = setup
        if setup is not None:
            self.count, self.index = setup.count, setup.index

    def scope(self):
        """Build and compile the model inside this scope."""
        return contextlib.nullcontext()

    def check_batch_size(self, batch_size):
        """ValueError in one line unless the global batch splits over the replicas."""
        workers.check_batch_size(batch_size, self.replicas)

    def prepare(self, model):
        """Make `model`'s BatchNorm statistics the global batch's (where the engine
        does not already)."""

    @contextlib.contextmanager
    def portable(self, model):
        """Within the block `model` saves as a single-device model does."""
        yield

    def train_batches(self, batches, steps):
        """What `fit` takes for the global batches `batches()` (a function returning an
        iterable of `(images, labels)` batches, `steps` of them): this worker's rows."""
        return batches()

    def evaluation_data(self, split, batch_size):
        """`validation_data` for `fit`, evaluating every example of `split` once
        (`split`: the `validation` or `test` of `keras_bilevel.keras3.data.load`)."""
        return keras_data(split)

    def evaluate(self, model, split, batch_size):
        """`model.evaluate` on the whole split; returns Keras' results. On JAX every
        process passes the whole split: the global batch is copies of it."""
        if isinstance(split, tuple):
            return model.evaluate(*split, batch_size=batch_size, verbose=1)
        return model.evaluate(keras_data(split), verbose=1)

    def _rows(self, batches):
        """This process's rows of each global batch of `batches()`, its replicas' in
        order (`keras_bilevel.core.workers.replica_rows`)."""
        for images, labels in batches():
            bounds = [workers.replica_rows(len(labels), self.replicas, replica)
                      for replica in range(self._first, self._first + self._local)]
            (start, first_stop), (_, stop) = bounds[0], bounds[-1]
            if first_stop - start == len(labels):  # every replica takes the whole batch
                yield (np.concatenate([images] * self._local),
                       np.concatenate([labels] * self._local))
            else:
                yield images[start:stop], labels[start:stop]


class _JaxWorkers(MultiWorker):
    """JAX: `jax.distributed` and `DataParallel` over every process's devices."""

    def __init__(self, setup):
        super().__init__(setup)
        import jax

        jax.distributed.initialize(setup.coordinator, setup.count, setup.index)
        self.replicas = jax.device_count()
        self._local = jax.local_device_count()
        self._first = jax.process_index() * self._local
        keras.distribution.set_distribution(keras.distribution.DataParallel(
            devices=jax.devices(), auto_shard_dataset=False))

    def lost_worker(self, error):
        # XLA's runtime error, which JAX raises as such or as a ValueError, naming the
        # collectives' transport (gloo on CPUs) or the coordination service.
        import jax

        text = str(error)
        return isinstance(error, (jax.errors.JaxRuntimeError, ValueError)) and any(
            marker in text for marker in _JAX_LOST_WORKER)

    def train_batches(self, batches, steps):
        return self._rows(batches)


class _TensorFlowWorkers(MultiWorker):
    """TensorFlow: `MultiWorkerMirroredStrategy`, one replica per worker."""

    def __init__(self, setup):
        super().__init__(setup)
        import tensorflow as tf

        from keras_bilevel.keras3.backends import tensorflow_workers

        self._tf, self._tf_workers = tf, tensorflow_workers
        self.strategy = tf.distribute.MultiWorkerMirroredStrategy()
        self.replicas = self.strategy.num_replicas_in_sync
        self._first = self.index
        if self.replicas != self.count:
            raise ValueError(
                f"--backend tensorflow trains on several workers with one device each "
                f"(this worker has {self.replicas // self.count}): start one worker per "
                "GPU, each seeing one (CUDA_VISIBLE_DEVICES), or use --backend larq")
        tensorflow_workers.average_logs_over_workers()

    def scope(self):
        return self.strategy.scope()

    def lost_worker(self, error):
        return isinstance(error, self._tf_workers.LOST_WORKER_ERRORS)

    def prepare(self, model):
        _set_synchronized(model, True)

    @contextlib.contextmanager
    def portable(self, model):
        _set_synchronized(model, False)
        try:
            yield
        finally:
            _set_synchronized(model, True)

    def train_batches(self, batches, steps):
        return self._batches(lambda: self._rows(batches), steps)

    def evaluation_data(self, split, batch_size):
        return self._batches(data.batches_of(split, batch_size),
                             data.batch_count(split, batch_size))

    def evaluate(self, model, split, batch_size):
        return model.evaluate(self.evaluation_data(split, batch_size), verbose=1)

    def _batches(self, rows, steps):
        tf = self._tf
        first_images, first_labels = next(iter(rows()))
        signature = (tf.TensorSpec((None, *first_images.shape[1:]), tf.float32),
                     tf.TensorSpec((None,), tf.as_dtype(first_labels.dtype)))
        return self._tf_workers.WorkerBatches(
            lambda: tf.data.Dataset.from_generator(rows, output_signature=signature), steps)


def keras_data(split):
    """What Keras' `fit` (as `validation_data`) and `evaluate` take for a split of
    `keras_bilevel.keras3.data.load`: arrays as they are, `ImageBatches` as a
    `keras.utils.PyDataset` (a new pass each epoch), `tf.data` datasets as they are."""
    if isinstance(split, streamed.ImageBatches):
        return _PyBatches(split)
    return split


class _PyBatches(keras.utils.PyDataset):
    """An `ImageBatches` for Keras (which decodes its batches on its own threads)."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]


def _set_synchronized(model, synchronized):
    """Set `synchronized` on every BatchNorm layer of `model` (nested models included);
    it is read when the layer runs, so it can change after the model is built."""
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = synchronized
        _set_synchronized(layer, synchronized)


# The multi-worker engine of each backend that has one (PyTorch has none in Keras 3).
_ENGINES = {"jax": _JaxWorkers, "tensorflow": _TensorFlowWorkers}
