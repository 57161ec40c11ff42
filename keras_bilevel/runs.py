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

import keras_bilevel._keras2  # noqa: F401  (Keras 2 mode before TensorFlow)

import csv
import json
import os
import re
import shutil
import signal
import time

import tensorflow as tf

__all__ = ["RunDirectory", "RunDirectoryError"]

CHECKPOINT = "checkpoint"
CONFIG = "run.json"
HISTORY = "history.csv"
METRICS = "metrics.json"
# Test-only: "EPOCH,BATCH,SIGNAL" sends SIGNAL (KILL, INT) to this process when batch BATCH
# of epoch EPOCH (both 0-based) is about to run, to interrupt a run at a known point.
INTERRUPT_ENV = "_KERAS_BILEVEL_TEST_INTERRUPT"


class RunDirectoryError(ValueError):
    """The directory cannot hold this run as asked (a different or finished run)."""


def _flag(name, value):
    """How the command line spells argument `name` with `value`."""
    option = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return option if value else "--no-" + option[2:]
    if value is None:
        return f"no {option}"
    return f"{option} {value}"


class RunDirectory:
    """The output directory of one training run (see the module docstring).

    # Arguments
        path: the directory; created by `prepare` if missing.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self.checkpoint_dir = os.path.join(self.path, CHECKPOINT)
        self.history_path = os.path.join(self.path, HISTORY)
        self._config_path = os.path.join(self.checkpoint_dir, CONFIG)

    def _recorded(self):
        """run.json: the run's configuration under "config", and "finished"; or None."""
        if not os.path.exists(self._config_path):
            return None
        with open(self._config_path) as f:
            return json.load(f)

    def epochs_done(self):
        """Epochs finished and checkpointed (0 when there is no checkpoint)."""
        latest = tf.train.latest_checkpoint(self.checkpoint_dir)
        return int(re.search(r"-(\d+)$", latest).group(1)) if latest else 0

    def prepare(self, config, resume):
        """Check that the directory can take this run, and record `config` in it.

        A new run (`resume=False`) refuses a directory holding an unfinished run; a
        resumed one refuses a directory with no unfinished run or with one started with
        a different `config` (a dict of argument name to value). Raises
        `RunDirectoryError` with one line that says what to do.
        """
        recorded = self._recorded()
        interrupted = recorded is not None and not recorded["finished"]
        if not resume:
            if interrupted:
                raise RunDirectoryError(
                    f"{self.path} holds an interrupted run ({self.epochs_done()} of "
                    f"{recorded['config']['epochs']} epochs done): add --resume to "
                    "continue it, or choose another --output")
            shutil.rmtree(self.checkpoint_dir, ignore_errors=True)  # a finished run's
            os.makedirs(self.checkpoint_dir)
            self._record(config, finished=False)
            return
        if recorded is None:
            raise RunDirectoryError(f"--resume: {self.path} holds no interrupted run "
                                    f"(no {CHECKPOINT}/{CONFIG}); leave out --resume to "
                                    "start one")
        if recorded["finished"]:
            raise RunDirectoryError(f"--resume: {self.path} holds a finished run; nothing "
                                    "to resume")
        started = recorded["config"]
        for name in sorted(set(config) | set(started)):
            if config.get(name) != started.get(name):
                raise RunDirectoryError(
                    f"--resume: {self.path} was started with "
                    f"{_flag(name, started.get(name))}, not {_flag(name, config.get(name))}")

    def restore(self, model, epochs):
        """Load the last checkpoint into `model` and its optimizer; returns the number of
        finished epochs (0, and nothing loaded, when there is none yet).

        Call it after `compile`; the optimizer's variables are created here if needed.
        """
        self._seconds = tf.Variable(tf.zeros([epochs], tf.float64), trainable=False)
        self._done = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._state = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                          epochs_done=self._done, seconds=self._seconds)
        self._manager = tf.train.CheckpointManager(self._state, self.checkpoint_dir,
                                                   max_to_keep=1)
        latest = self._manager.latest_checkpoint
        if latest is not None:
            if hasattr(model.optimizer, "build"):  # Keras optimizers make their state in build
                model.optimizer.build(model.trainable_variables)
            self._state.restore(latest).assert_existing_objects_matched()
        done = int(self._done.numpy())
        self._truncate_history(done)
        return done

    def callbacks(self, initial_epoch):
        """The callbacks that write history.csv and the checkpoint, in that order; put
        them after any callback that adds to the epoch logs."""
        history = tf.keras.callbacks.CSVLogger(self.history_path, append=initial_epoch > 0)
        found = [history, _EpochCheckpoint(self._manager, self._done, self._seconds)]
        interrupt = os.environ.get(INTERRUPT_ENV)
        if interrupt:
            found.append(_InterruptForTests(*interrupt.split(",")))
        return found

    def seconds_per_epoch(self):
        """Wall-clock seconds of every finished epoch, resumed runs included."""
        return [float(s) for s in self._seconds.numpy()[:int(self._done.numpy())]]

    def history(self):
        """history.csv as `{column: [value per epoch]}` (without the `epoch` column)."""
        with open(self.history_path, newline="") as f:
            rows = list(csv.DictReader(f))
        columns = [c for c in (rows[0] if rows else {}) if c != "epoch"]
        return {c: [float(row[c]) for row in rows] for c in columns}

    def finish(self):
        """Mark the run complete (call it once its files are written)."""
        self._record(self._recorded()["config"], finished=True)

    def _record(self, config, finished):
        _write_atomically(self._config_path,
                          json.dumps({"config": config, "finished": finished}, indent=2))

    def _truncate_history(self, done):
        """Drop rows of epochs that finished after the last checkpoint (a kill between
        the row and the checkpoint), so the resumed run writes them once."""
        if not os.path.exists(self.history_path):
            return
        with open(self.history_path, newline="") as f:
            lines = f.read().splitlines(keepends=True)
        if len(lines) > done + 1:
            _write_atomically(self.history_path, "".join(lines[:done + 1]))


def _write_atomically(path, text):
    temporary = path + ".tmp"
    with open(temporary, "w", newline="") as f:
        f.write(text)
    os.replace(temporary, path)


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


class _InterruptForTests(tf.keras.callbacks.Callback):
    def __init__(self, epoch, batch, signal_name):
        super().__init__()
        self._at = (int(epoch), int(batch))
        self._signal = getattr(signal, "SIG" + signal_name)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self._epoch, batch) == self._at:
            os.kill(os.getpid(), self._signal)
