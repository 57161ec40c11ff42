"""A training run in its own directory, checkpointed every epoch and resumable exactly.

`OUTPUT/checkpoint/` holds `run.json` (the arguments that define the run, and whether it
finished) and the TensorFlow checkpoint of the last finished epoch: every model weight
(AdaSTE's mu included), the optimizer's state (its step count drives the learning-rate
schedule), and how many epochs are done and how long each took. It stays after the run
(`tf.train.load_checkpoint(OUTPUT + "/checkpoint")` reads it). Everything else a run
depends on is a function of the epoch index (the batches of `DataSplits.train_epochs`,
the mu of `AnnealMu`), so `fit(initial_epoch=done)` after `restore` trains exactly what an
uninterrupted run trains. `history.csv` gets one row per finished epoch as it happens.

This module keeps the directory; it trains nothing (`fit` does).

!!! example
    ```python
    run = RunDirectory("runs/mnist")
    run.prepare(config, resume=False)
    done = run.restore(model, epochs)          # 0 for a fresh run
    model.fit(splits.train_epochs(done, epochs), initial_epoch=done, epochs=epochs,
              steps_per_epoch=splits.steps_per_epoch, callbacks=run.callbacks(done))
    ```
"""

import keras_bilevel.keras2.legacy_keras  # noqa: F401  (Keras 2 mode before TensorFlow)

import re
import time

import tensorflow as tf

from keras_bilevel.core.run_files import (  # noqa: F401  (INTERRUPT_ENV, RunDirectoryError: API)
    INTERRUPT_ENV,
    InterruptForTests,
    RunDirectoryError,
    RunFiles,
    interrupt_point,
)

__all__ = ["INTERRUPT_ENV", "RunDirectory", "RunDirectoryError"]


class RunDirectory(RunFiles):
    """The output directory of one training run (see the module docstring); run.json,
    history.csv and the refusals are `keras_bilevel.core.run_files.RunFiles`'.

    # Arguments
        path: the directory; created by `prepare` if missing.
        worker: this process's place in a multi-worker run (`RunFiles`); another
            worker than the chief reads `path` and saves its checkpoints elsewhere.
    """

    def epochs_done(self):
        """Epochs finished and checkpointed (0 when there is no checkpoint)."""
        latest = tf.train.latest_checkpoint(self.checkpoint_dir)
        return int(re.search(r"-(\d+)$", latest).group(1)) if latest else 0

    def restore(self, model, epochs, resume=None):
        """Load the last checkpoint into `model` and its optimizer; returns the number of
        finished epochs (0, and nothing loaded, when there is none yet, or when `resume`
        is False).

        Call it after `compile`, outside any strategy's scope (this run's counters are
        plain variables); the optimizer's variables are created here if needed, in the
        model's strategy.
        """
        self._seconds = tf.Variable(tf.zeros([epochs], tf.float64), trainable=False)
        self._done = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._state = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                          epochs_done=self._done, seconds=self._seconds)
        self._manager = tf.train.CheckpointManager(self._state, self.save_dir,
                                                   max_to_keep=1)
        latest = None if resume is False else tf.train.latest_checkpoint(self.checkpoint_dir)
        if latest is not None:
            if hasattr(model.optimizer, "build"):  # Keras optimizers make their state in build
                with model.distribute_strategy.scope():  # the model's, as in training
                    model.optimizer.build(model.trainable_variables)
            self._state.restore(latest).assert_existing_objects_matched()
        done = int(self._done.numpy())
        self._truncate_history(done)
        return done

    def callbacks(self, initial_epoch):
        """The callbacks that write history.csv and the checkpoint, in that order; put
        them after any callback that adds to the epoch logs."""
        found = [_EpochCheckpoint(self._manager, self._done, self._seconds)]
        if self.writer:
            found.insert(0, tf.keras.callbacks.CSVLogger(self.history_path,
                                                         append=initial_epoch > 0))
        interrupt = interrupt_point(self.worker)
        if interrupt:
            found.append(_InterruptForTests(*interrupt))
        return found

    def seconds_per_epoch(self):
        """Wall-clock seconds of every finished epoch, resumed runs included."""
        return [float(s) for s in self._seconds.numpy()[:int(self._done.numpy())]]


class _EpochCheckpoint(tf.keras.callbacks.Callback):
    """Times every epoch and checkpoints the run at its end."""

    def __init__(self, manager, done, seconds):
        super().__init__()
        self._manager, self._done, self._seconds = manager, done, seconds

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self._seconds[epoch].assign(time.perf_counter() - self._start)
        self._done.assign(epoch + 1)
        self._manager.save(checkpoint_number=epoch + 1)


class _InterruptForTests(InterruptForTests, tf.keras.callbacks.Callback):
    """The test-only interruption (`INTERRUPT_ENV`) as a Keras 2 callback."""
