"""The files of a training run that do not depend on the tensor library, for both front ends.

A run directory holds `checkpoint/run.json` (the arguments that define the run, and
whether it finished), the checkpoint of the last finished epoch (its format is the front
end's: `keras_bilevel.keras2.runs` for Larq, `keras_bilevel.keras3.runs` for Keras 3),
`history.csv` (a row per finished epoch), and at the end `model.keras`, `metrics.json`
and `curves.png`. This module keeps run.json and history.csv, refuses a directory that
cannot take a run, and writes the final report; it imports no TensorFlow, Keras or Larq
(`plot_curves` imports matplotlib when called).

!!! example
    ```python
    class MyRun(RunFiles):          # a front end adds its checkpoint format
        ...
    run = MyRun("runs/a")
    run.prepare({"epochs": 3, "seed": 0}, resume=False)
    ```
"""

import csv
import json
import os
import shutil
import signal
import time

__all__ = ["CHECKPOINT", "CONFIG", "HISTORY", "INTERRUPT_ENV", "InterruptForTests",
           "RUN_ARGUMENTS", "RunDirectoryError", "RunFiles", "announce", "build_model",
           "data_arguments",
           "default_output", "interrupt_point", "plot_curves", "run_metrics",
           "write_atomically"]

CHECKPOINT = "checkpoint"
"""The folder of a run directory that holds the per-epoch checkpoints."""
CONFIG = "run.json"
"""The file of a run directory that records its arguments."""
HISTORY = "history.csv"
"""The file of a run directory with one row of metrics per finished epoch."""
RUN_ARGUMENTS = ("backend", "dataset", "model", "method", "epochs", "batch_size",
                 "hidden_units", "seed", "jit", "image_size")
"""The arguments that define a training run: `--resume` refuses to continue a run
started with other values."""
INTERRUPT_ENV = "_KERAS_BILEVEL_TEST_INTERRUPT"
"""Test-only: "EPOCH,BATCH,SIGNAL[,WORKER]" sends SIGNAL (KILL, INT) to this process
when batch BATCH of epoch EPOCH (both 0-based) is about to run, to interrupt a run at a
known point; with WORKER, only in that worker of a multi-worker run."""


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


def write_atomically(path, text):
    """Write `text` to `path` so that a reader sees the old file or the new one, whole."""
    temporary = path + ".tmp"
    with open(temporary, "w", newline="") as f:
        f.write(text)
    os.replace(temporary, path)


def interrupt_point(worker=0):
    """`(epoch, batch, signal)` of the test-only interruption (`INTERRUPT_ENV`) for
    worker `worker`, or None."""
    value = os.environ.get(INTERRUPT_ENV)
    if not value:
        return None
    epoch, batch, name, *only = value.split(",")
    if only and int(only[0]) != worker:
        return None
    return int(epoch), int(batch), getattr(signal, "SIG" + name)


class InterruptForTests:
    """Mixed into a front end's Keras callback: sends `signal` to this process when
    batch `batch` of epoch `epoch` is about to run (the test-only `INTERRUPT_ENV`)."""

    def __init__(self, epoch, batch, signal_number):
        super().__init__()
        self._at = (epoch, batch)
        self._signal = signal_number

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self._epoch, batch) == self._at:
            os.kill(os.getpid(), self._signal)


class RunFiles:
    """run.json and history.csv of one run's directory; subclasses add the checkpoint.

    A subclass implements `epochs_done()`. In a multi-worker run only the chief writes
    the directory; another worker reads it (`writer` is False): `prepare` checks without
    writing, and the checkpoints it must save go to `save_dir`, a directory of its own.

    # Arguments
        path: the directory; created by `prepare` if missing.
        worker: this process's `keras_bilevel.core.workers.WorkerFiles` in a multi-worker
            run (its `is_chief`, `index` and `writable`); None for a single process.
    """

    def __init__(self, path, worker=None):
        self.path = os.fspath(path)
        self.checkpoint_dir = os.path.join(self.path, CHECKPOINT)
        self.history_path = os.path.join(self.path, HISTORY)
        self._config_path = os.path.join(self.checkpoint_dir, CONFIG)
        self.writer = worker is None or worker.is_chief
        self.worker = 0 if worker is None else worker.index
        self.save_dir = (self.checkpoint_dir if worker is None
                         else worker.writable(self.checkpoint_dir))

    def epochs_done(self):
        """Epochs finished and checkpointed (0 when there is no checkpoint)."""
        raise NotImplementedError

    def _recorded(self):
        """run.json: the run's configuration under "config", and "finished"; or None."""
        if not os.path.exists(self._config_path):
            return None
        with open(self._config_path) as f:
            return json.load(f)

    def prepare(self, config, resume):
        """Check that the directory can take this run, and record `config` in it.

        A new run (`resume=False`) refuses a directory holding an unfinished run; a
        resumed one refuses a directory with no unfinished run or with one started with
        a different `config` (a dict of argument name to value). Raises
        `RunDirectoryError` with one line that says what to do. A reader (`writer=False`)
        checks a resumed run the same way and writes nothing.
        """
        if not resume and not self.writer:
            # The chief checks a new run (and may already have started it, so that a
            # reader here would see its run.json as an interrupted run).
            os.makedirs(self.save_dir, exist_ok=True)
            return
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
        os.makedirs(self.save_dir, exist_ok=True)

    def history(self):
        """history.csv as `{column: [value per epoch]}` (without the `epoch` column)."""
        with open(self.history_path, newline="") as f:
            rows = list(csv.DictReader(f))
        columns = [c for c in (rows[0] if rows else {}) if c != "epoch"]
        return {c: [float(row[c]) for row in rows] for c in columns}

    def finish(self):
        """Mark the run complete (call it once its files are written)."""
        if self.writer:
            self._record(self._recorded()["config"], finished=True)

    def _record(self, config, finished):
        write_atomically(self._config_path,
                         json.dumps({"config": config, "finished": finished}, indent=2))

    def _truncate_history(self, done):
        """Drop rows of epochs that finished after the last checkpoint (a kill between
        the row and the checkpoint), so the resumed run writes them once."""
        if not self.writer or not os.path.exists(self.history_path):
            return
        with open(self.history_path, newline="") as f:
            lines = f.read().splitlines(keepends=True)
        if len(lines) > done + 1:
            write_atomically(self.history_path, "".join(lines[:done + 1]))


def default_output(args):
    """runs/DATASET-MODEL-METHOD-seedS-TIME (with the backend unless Larq), the directory
    of a run without --output."""
    backend = getattr(args, "backend", "larq")
    prefix = "" if backend == "larq" else f"{backend}-"
    return os.path.join("runs", f"{prefix}{args.dataset}-{args.model}-{args.method}-"
                                f"seed{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}")


def data_arguments(args, batch_size, model_input_shape=None):
    """The keyword arguments of a front end's `data.load` for the command's `args`; the
    image size of a streamed data set is `args.image_size`, or the saved model's
    (`model_input_shape`) when evaluating one."""
    from keras_bilevel.core.datasets import STREAMED as STREAMED_DATASETS

    image_size = getattr(args, "image_size", None)
    if model_input_shape is not None and args.dataset in STREAMED_DATASETS:
        image_size = int(model_input_shape[1])
    return dict(batch_size=batch_size, seed=args.seed, data_dir=args.data_dir,
                download=args.download, image_size=image_size)


def binary_width(args):
    """The width that sets `--method adaste`'s learning rate: the MLP's hidden units;
    None for the convolutional models (`keras_bilevel.core.recipes.adaste_learning_rate`)."""
    return args.hidden_units if args.model == "mlp" else None


def build_model(models, args, splits, recipe):
    """The `--model` network of a front end's `models` module, for `splits`' images."""
    kwargs = dict(input_shape=tuple(splits.input_shape), classes=splits.classes,
                  kernel_quantizer=recipe.kernel_quantizer,
                  kernel_initializer=recipe.kernel_initializer,
                  kernel_constraint=recipe.kernel_constraint)
    if args.model == "mlp":
        return models.binary_mlp(hidden_units=args.hidden_units, **kwargs)
    return getattr(models, args.model)(**kwargs)


def announce(args, done, jit, cluster=None):
    """The line that starts a run (`cluster`: this process's place in a multi-worker
    run, with `count`, `index` and `replicas`)."""
    start = f"Resuming at epoch {done + 1} of" if done else "Training for"
    backend = "" if args.backend == "larq" else f" on {args.backend}"
    note = getattr(args, "backend_note", None)
    if note:
        backend += f" ({note})"
    workers = ""
    if cluster is not None and getattr(args, "worker_setup", None) is not None:
        workers = (f", worker {cluster.index} of {cluster.count}, {cluster.replicas} "
                   f"replica{'s' if cluster.replicas > 1 else ''}")
    print(f"{start} {args.epochs} epochs: {args.model} on {args.dataset} with "
          f"{args.method}{backend} (batch {args.batch_size}, XLA {'on' if jit else 'off'}"
          f"{workers}); output: {args.output}")


def plot_curves(history, path, title):
    """Loss and accuracy per epoch, train and validation, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = range(1, len(history["loss"]) + 1)
    for ax, key, label in [(axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")]:
        ax.plot(epochs, history[key], label="train")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_metrics(args, run, splits, recipe, jit, test_loss, test_accuracy, workers=1):
    """Write the run's curves.png and metrics.json, mark it finished, print the summary;
    returns the metrics (test accuracy and loss, configuration, where each setting comes
    from, the number of workers, seconds per epoch, last history row)."""
    history = run.history()
    plot_curves(history, os.path.join(args.output, "curves.png"),
                f"{args.model} on {args.dataset}, {args.method} ({args.backend})")
    config = {k: v for k, v in vars(args).items()
              if k not in ("func", "verbose", "worker_setup")}
    metrics = {
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "backend": args.backend,
        "dataset": args.dataset,
        "model": args.model,
        "method": args.method,
        "workers": workers,
        "config": {**config, "jit": jit, "steps_per_epoch": splits.steps_per_epoch,
                   "num_train": splits.num_train,
                   "num_validation": splits.num_validation, "num_test": splits.num_test},
        "recipe_sources": recipe.sources,
        "seconds_per_epoch": [round(s, 3) for s in run.seconds_per_epoch()],
        "final": {k: v[-1] for k, v in history.items()},
    }
    with open(os.path.join(args.output, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    run.finish()
    print(f"Test accuracy of the binary network: {test_accuracy:.4f} "
          f"(test loss {test_loss:.4f}); saved model.keras, history.csv, metrics.json and "
          f"curves.png in {args.output}")
    return metrics
