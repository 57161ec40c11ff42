"""One model trained by several workers with TensorFlow's `MultiWorkerMirroredStrategy`.

The Larq front end's multi-worker helper: one call per worker, `connect()`, reads
`TF_CONFIG` (as TensorFlow documents it) and returns a `MultiWorker` with the strategy
and what training needs of it. The training is the single-device algorithm on the global
batch (docs/method.md, section 7):

- every step's global batch is split into equal per-replica parts, or, for the last
  partial batch of an epoch when it does not split evenly, every replica takes all of
  it (`keras_bilevel.core.workers.replica_rows`);
- AdaSTE and `LatentMomentum` take their nonlinear tests on the gradient summed over the
  replicas (as under `MirroredStrategy`);
- BatchNorm computes its statistics over the global batch (synchronized BatchNorm,
  switched on by `prepare`, switched off by `portable` for the saved file).

Only the chief (worker 0) writes files that others read; every worker still calls
`save` (reading mirrored variables can be a collective operation), the others into a
scratch directory (`writable`). With `TF_CONFIG` unset, `connect()` gives a single
process with TensorFlow's default strategy, so the same code trains on one machine.

!!! example
    ```python
    cluster = keras_bilevel.keras2.multi_worker.connect()    # first, before any TensorFlow op
    splits = keras_bilevel.keras2.data.load("mnist", batch_size=256)   # the global batch
    with cluster.scope():
        model = keras_bilevel.keras2.models.binary_mlp((28, 28, 1))
        model.compile("adam", loss, metrics=["accuracy"])
    cluster.prepare(model)
    model.fit(cluster.distribute(splits.train_epochs(0, 10), splits.batch_size,
                                 splits.num_train),
              epochs=10, steps_per_epoch=splits.steps_per_epoch)
    with cluster.portable(model):
        model.save(cluster.writable("model.keras"))
    ```
"""

import keras_bilevel.keras2.legacy_keras  # noqa: F401  (Keras 2 mode before TensorFlow)

import contextlib

import tensorflow as tf

from keras_bilevel.core import workers

__all__ = ["MultiWorker", "connect"]

_LOST_WORKER_ERRORS = tuple(getattr(tf.errors, name)
                            for name in workers.TENSORFLOW_LOST_WORKER_ERRORS)


def connect(setup=None):
    """This worker's `MultiWorker`; call it first, before any TensorFlow operation.

    # Arguments
        setup: a `keras_bilevel.core.workers.WorkerSetup`; None reads `TF_CONFIG` (unset:
            a single process).

    # Raises
        ValueError: a malformed `TF_CONFIG`, in one line.
    """
    if setup is None:
        setup = workers.worker_setup("larq")
    return MultiWorker(setup)


class MultiWorker(workers.WorkerFiles):
    """This process's part in a (possibly one-process) training run; see the module.

    # Attributes
        strategy: `MultiWorkerMirroredStrategy`, or the default strategy for one process.
        count: the number of workers; index: this worker's, 0 for the chief.
        is_chief: whether this worker writes the run's files (`writable`, `close`:
            `keras_bilevel.core.workers.WorkerFiles`).
        replicas: replicas in sync over all workers (one per worker on CPUs).
    """

    def __init__(self, setup):
        self.setup = setup
        if setup is None:
            self.strategy = tf.distribute.get_strategy()
            self.count, self.index = 1, 0
        else:
            self.strategy = tf.distribute.MultiWorkerMirroredStrategy()
            self.count, self.index = setup.count, setup.index

    @property
    def replicas(self):
        return self.strategy.num_replicas_in_sync

    @property
    def multi_worker(self):
        return self.setup is not None

    def lost_worker(self, error):
        return self.multi_worker and isinstance(error, _LOST_WORKER_ERRORS)

    def scope(self):
        """Build and compile the model (and its optimizer) inside this scope."""
        return self.strategy.scope()

    def check_batch_size(self, batch_size):
        """ValueError in one line unless the global batch splits over the replicas."""
        workers.check_batch_size(batch_size, self.replicas)

    def prepare(self, model):
        """Give every BatchNorm layer of `model` the global batch's statistics, and show
        each step's metrics once (a no-op on one process).

        tf_keras sums each step's logs over the workers under this strategy, but every
        worker's metrics are already those of the whole run, so the progress bar showed
        them times the number of workers; the first replica's are the run's."""
        if self.multi_worker:
            self._single_device = _set_batch_norm(model, synchronized=True, fused=False)
            model.distribute_reduction_method = "first"

    @contextlib.contextmanager
    def portable(self, model):
        """Within the block, `model`'s BatchNorm layers are as they were built for one
        device, so that the file saved there loads and runs anywhere."""
        if not self.multi_worker:
            yield
            return
        for layer, (synchronized, fused) in self._single_device:
            layer.synchronized, layer.fused = synchronized, fused
        try:
            yield
        finally:
            _set_batch_norm(model, synchronized=True, fused=False)

    def distribute(self, batches, batch_size, num_examples):
        """The global batches of `batches` (a `tf.data.Dataset` of `(images, labels)`
        batches of `batch_size`, the last one of each epoch holding the remainder of
        `num_examples`) as each replica's rows (`keras_bilevel.core.workers.replica_rows`),
        for `fit`; `batches` itself on one process."""
        if not self.multi_worker:
            return batches
        last = num_examples % batch_size or batch_size  # the rows of an epoch's last batch

        def per_worker(context):
            replicas = context.num_replicas_in_sync
            local = replicas // context.num_input_pipelines
            mine = range(context.input_pipeline_id * local,
                         (context.input_pipeline_id + 1) * local)
            bounds = [(workers.replica_rows(batch_size, replicas, r),
                       workers.replica_rows(last, replicas, r)) for r in mine]

            def split(images, labels):
                full = tf.equal(tf.shape(labels)[0], batch_size)
                parts = []
                for (full_start, full_stop), (last_start, last_stop) in bounds:
                    start = tf.where(full, full_start, last_start)
                    stop = tf.where(full, full_stop, last_stop)
                    parts.append((images[start:stop], labels[start:stop]))
                return tf.data.Dataset.from_tensor_slices(
                    tuple(tf.stack(column) for column in zip(*parts)))

            return batches.flat_map(split)

        return self.strategy.distribute_datasets_from_function(per_worker)


def _set_batch_norm(model, synchronized, fused):
    """Set every BatchNorm layer's `synchronized` and `fused` (fused kernels do not
    synchronize); returns `[(layer, (synchronized, fused) before)]`."""
    changed = []
    for layer in model.submodules:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            changed.append((layer, (layer.synchronized, layer.fused)))
            layer.synchronized, layer.fused = synchronized, fused
    return changed
