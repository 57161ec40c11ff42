"""Keras 3.15's TensorFlow trainer under `MultiWorkerMirroredStrategy`: two changes.

`fit` and `evaluate` fail under that strategy (tensorflow/tensorflow#72388): before the
first step the trainer reduces one batch across replicas, and after every step it
reduces the logs with `strategy.reduce("MEAN", value, axis=0)`, which the strategy
cannot do for a tuple, nor for a scalar along axis 0. `keras_bilevel.keras3.multi_worker`
therefore hands Keras each worker's own batches (`WorkerBatches`: a data adapter whose
dataset is already "distributed", so Keras neither reduces nor re-shards it, and
`strategy.run` gives the worker's one replica its batch), and averages the scalar logs
over the workers (`average_logs_over_workers`). Nothing else in Keras changes; other
strategies are untouched. Imports TensorFlow: used only on the TensorFlow backend.
"""

import keras
import tensorflow as tf
from keras.src.backend.tensorflow import trainer
from keras.src.trainers.data_adapters.data_adapter import DataAdapter

from keras_bilevel.core.workers import TENSORFLOW_LOST_WORKER_ERRORS

__all__ = ["LOST_WORKER_ERRORS", "WorkerBatches", "average_logs_over_workers"]

LOST_WORKER_ERRORS = tuple(getattr(tf.errors, name)
                           for name in TENSORFLOW_LOST_WORKER_ERRORS)


class _OwnBatches(tf.distribute.DistributedDataset):
    """A worker's own batches, as a distributed dataset Keras iterates as it is."""

    def __init__(self, dataset):
        self._dataset = dataset

    def __iter__(self):
        return iter(self._dataset)

    @property
    def element_spec(self):
        return self._dataset.element_spec


class WorkerBatches(DataAdapter):
    """What `fit`/`evaluate` take: the batches `make_dataset()` (a `tf.data.Dataset` of
    this worker's batches, made anew for each pass), `steps` of them."""

    def __init__(self, make_dataset, steps):
        self._make_dataset, self._steps = make_dataset, steps

    def get_tf_dataset(self):
        return _OwnBatches(self._make_dataset())

    @property
    def num_batches(self):
        return self._steps

    @property
    def batch_size(self):
        return None

    @property
    def has_partial_batch(self):
        return None

    @property
    def partial_batch_size(self):
        return None


def average_logs_over_workers():
    """Make the trainer average each step's scalar logs over the workers under a
    multi-worker `MultiWorkerMirroredStrategy` (installed once)."""
    if getattr(trainer.reduce_per_replica, "_keras_bilevel", False):
        return
    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction == "auto" and trainer._collective_all_reduce_multi_worker(strategy):
            return keras.tree.map_structure(
                lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica._keras_bilevel = True
    trainer.reduce_per_replica = reduce_per_replica
