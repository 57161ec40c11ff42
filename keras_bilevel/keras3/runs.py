"""A Keras 3 training run in its own directory, checkpointed every epoch, resumable exactly.

The Keras 3 twin of `keras_bilevel.keras2.runs` (same directory layout, same run.json, same
refusals: `keras_bilevel.core.run_files.RunFiles`). The checkpoint of the last finished epoch
is `OUTPUT/checkpoint/epoch-NNNN.keras`: a Keras 3 model file, which holds every model
variable (AdaSTE's mu included) and the optimizer's state (its step count drives the
learning-rate schedule); `checkpoint/progress.json` holds the seconds each epoch took. A
checkpoint file appears whole (written under another name, then renamed), and its name is
what says how many epochs are done. Everything else is a function of the epoch index
(the batches of `ArraySplits.train_epochs`, the mu of `AnnealMu`), so
`fit(initial_epoch=done)` after `restore` trains what an uninterrupted run trains.

This module keeps the directory; it trains nothing (`fit` does). Works on every backend.

!!! example
    ```python
    run = RunDirectory("runs/jax-mnist")
    run.prepare(config, resume=False)
    done = run.restore(model, epochs)          # 0 for a fresh run
    model.fit(splits.train_epochs(done, epochs), initial_epoch=done, epochs=epochs,
              steps_per_epoch=splits.steps_per_epoch, callbacks=run.callbacks(done))
    ```
"""

import glob
import json
import os
import re
import time

import keras

from keras_bilevel.core.run_files import (
    InterruptForTests,
    RunFiles,
    interrupt_point,
    write_atomically,
)

__all__ = ["RunDirectory"]

_PROGRESS = "progress.json"
_NAME = re.compile(r"epoch-(\d+)\.keras$")


class RunDirectory(RunFiles):
    """The output directory of one Keras 3 training run (see the module docstring).

    # Arguments
        path: the directory; created by `prepare` if missing.
        worker: this process's place in a multi-worker run (`RunFiles`); another
            worker than the chief reads `path` and saves its checkpoints elsewhere.
    """

    def _checkpoints(self):
        """`{epochs done: path}` of the checkpoint files present."""
        found = {}
        for path in glob.glob(os.path.join(self.checkpoint_dir, "epoch-*.keras")):
            match = _NAME.search(os.path.basename(path))
            if match:
                found[int(match.group(1))] = path
        return found

    def epochs_done(self):
        """Epochs finished and checkpointed (0 when there is no checkpoint)."""
        return max(self._checkpoints(), default=0)

    def restore(self, model, epochs, resume=None):
        """Load the last checkpoint into `model` and its optimizer; returns the number of
        finished epochs (0, and nothing loaded, when there is none yet, or when `resume`
        is False).

        Call it after `compile`; the optimizer's variables are created here if needed.
        """
        done = 0 if resume is False else self.epochs_done()
        self._seconds = []
        if done:
            model.optimizer.build(model.trainable_variables)
            model.load_weights(self._checkpoints()[done])
            progress = os.path.join(self.checkpoint_dir, _PROGRESS)
            with open(progress) as f:
                self._seconds = json.load(f)["seconds"][:done]
        self._truncate_history(done)
        return done

    def save(self, model, epoch, seconds):
        """Checkpoint `model` after epoch `epoch` (0-based), which took `seconds`."""
        self._seconds = self._seconds[:epoch] + [seconds]
        partial = os.path.join(self.save_dir, "partial.keras")
        model.save(partial)  # on every worker: saving may be a collective operation
        if not self.writer:
            return
        write_atomically(os.path.join(self.checkpoint_dir, _PROGRESS),
                         json.dumps({"seconds": self._seconds}))
        os.replace(partial, os.path.join(self.checkpoint_dir, f"epoch-{epoch + 1:04d}.keras"))
        for done, path in self._checkpoints().items():
            if done != epoch + 1:
                os.remove(path)

    def callbacks(self, initial_epoch):
        """The callbacks that write history.csv and the checkpoint, in that order; put
        them after any callback that adds to the epoch logs."""
        found = [_EpochCheckpoint(self)]
        if self.writer:
            found.insert(0, keras.callbacks.CSVLogger(self.history_path,
                                                      append=initial_epoch > 0))
        interrupt = interrupt_point(self.worker)
        if interrupt:
            found.append(_InterruptForTests(*interrupt))
        return found

    def seconds_per_epoch(self):
        """Wall-clock seconds of every finished epoch, resumed runs included."""
        return list(self._seconds)


class _EpochCheckpoint(keras.callbacks.Callback):
    """Times every epoch and checkpoints the run at its end."""

    def __init__(self, run):
        super().__init__()
        self._run = run

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self._run.save(self.model, epoch, time.perf_counter() - self._start)


class _InterruptForTests(InterruptForTests, keras.callbacks.Callback):
    """The test-only interruption (`keras_bilevel.core.run_files.INTERRUPT_ENV`), Keras 3."""
