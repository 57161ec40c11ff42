"""What `keras-bilevel` does once its arguments are parsed, on every front end.

`main` parses the arguments (`keras_bilevel.cli.parser`), then sets TensorFlow's logging
and, for a Keras 3 backend, `KERAS_BACKEND` up before TensorFlow or Keras is imported (so
it imports neither itself); `keras_bilevel.cli.keras2_commands` (`--backend larq`, the
default: Larq on Keras 2) or `keras_bilevel.cli.keras3_commands` (Keras 3) does the work.
`evaluate` and `export` read which Keras wrote a `.keras` file from its metadata and take
the matching path. By default the output is our own lines and Keras' progress bars;
`--verbose` lets TensorFlow's log through. Bad arguments and missing data end with one
line on stderr and exit status 2, not a traceback; Ctrl-C ends with one line and exit
status 130; a lost or failed worker of a multi-worker run ends the whole run with one line
naming it and exit status 1.

Several workers: on a cluster each worker runs the same `train` command with its engine's
settings (`TF_CONFIG` for larq and tensorflow; for jax `--coordinator`,
`--num-processes`, `--process-id` or `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`,
`JAX_PROCESS_ID`); `--workers N` starts N such workers on this machine
(`keras_bilevel.cli.local_workers`) and waits for them.
"""

import contextlib
import importlib
import logging
import os
import sys
import tempfile
import warnings

from keras_bilevel.cli import local_workers
from keras_bilevel.cli.parser import (  # noqa: F401  (read by callers and tests)
    BACKENDS, DATASETS, KERAS3_DEFAULT_BACKEND, LARQ_ONLY_METHODS, METHODS, MODELS,
    UsageError, build_parser, check_model_path, keras_major_version)
from keras_bilevel.core import cpu_defaults, stacks, workers
from keras_bilevel.core.datasets import STREAMED as STREAMED_DATASETS
from keras_bilevel.core.run_files import default_output

__all__ = ["RunFailed", "entry_point", "main"]


class RunFailed(Exception):
    """The run ended without finishing (a worker lost or failed); one line, and the exit
    status to end with."""

    def __init__(self, line, status=1):
        super().__init__(line)
        self.status = status


_PYTHON_STDERR = []  # the real stderr for Python, while file descriptor 2 is held back
_WORKER_OF_A_RUN = []  # [True] once this process is known to be one of several workers


@contextlib.contextmanager
def _native_stderr_held_back():
    """What C/C++ libraries write to file descriptor 2 goes to a temporary file, shown
    only if the block fails with something other than a UsageError, RunFailed or
    Ctrl-C; Python's own writes to sys.stderr (our messages, warnings, logging) still
    get through.

    For the lines TensorFlow writes while it loads, before TF_CPP_MIN_LOG_LEVEL applies,
    and LiteRT's, which no setting silences.
    """
    sys.stderr.flush()
    if not _PYTHON_STDERR:  # kept open: loggers made inside the block may hold it
        _PYTHON_STDERR.append(open(os.dup(2), "w", buffering=1, errors="backslashreplace"))
    python_stderr = sys.stderr
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        if sys.stderr is sys.__stderr__:  # else someone (pytest) captures Python's writes
            sys.stderr = _PYTHON_STDERR[0]
        try:
            yield
        except (UsageError, RunFailed, KeyboardInterrupt):
            raise
        except BaseException:
            caught.seek(0)
            _PYTHON_STDERR[0].write(caught.read().decode(errors="replace"))
            raise
        finally:
            sys.stderr.flush()
            sys.stderr = python_stderr
            os.dup2(saved, 2)
            os.close(saved)


def _import_commands(backend, verbose):
    """The commands of `backend`'s front end, imported with TensorFlow's C++ log level
    set (quiet) and, for Keras 3, `KERAS_BACKEND`."""
    cpu_defaults.prefer_onednn()  # TensorFlow reads it when it loads
    if backend == "larq":
        name = "keras_bilevel.cli.keras2_commands"
    else:
        _select_keras_backend(backend)
        name = "keras_bilevel.cli.keras3_commands"
    if verbose or "tensorflow" in sys.modules:
        return importlib.import_module(name)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # C++: FATAL only; read when TF loads
    with _native_stderr_held_back():
        return importlib.import_module(name)


def _select_keras_backend(backend):
    """Set KERAS_BACKEND, or refuse if Keras 3 already runs on another in this process."""
    if "keras" in sys.modules:
        import keras

        running = keras.backend.backend()
        if running != backend:
            raise UsageError(f"--backend {backend}: Keras already runs on {running} in this "
                             "process, and Keras fixes its backend per process; run "
                             "keras-bilevel in a new process")
    os.environ["KERAS_BACKEND"] = backend


@contextlib.contextmanager
def _python_logs_quiet(verbose):
    """TensorFlow's and absl's Python loggers at ERROR and other libraries' warnings off
    (ours stay), for the duration of the command."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("tensorflow", "absl", "h5py", "jax")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        warnings.filterwarnings("default", module="keras_bilevel")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


_NOTHING_INSTALLED = (
    "no front end is installed (neither the Larq stack nor Keras 3 with JAX, PyTorch or "
    "TensorFlow): " + " or ".join(stacks.install_hint(extra)
                                  for extra in ("larq", "jax", "torch", "tensorflow")))


def _default_train_backend(args):
    """The backend `train` uses without --backend; says why in `args.backend_note`."""
    backend = stacks.default_backend()
    if backend is None:
        raise UsageError(_NOTHING_INSTALLED)
    if backend != "larq":
        args.backend_note = "the Larq stack is not installed"
    return backend


def _default_keras3_backend(command):
    """The backend a Keras 3 file is evaluated or exported on without --backend: the
    command's usual one where it is installed, else an installed Keras 3 backend."""
    preferred = KERAS3_DEFAULT_BACKEND[command]
    installed = stacks.installed_backends()
    if preferred in installed:
        return preferred
    return next((b for b in stacks.KERAS3_BACKENDS if b in installed), preferred)


def _check_backend(args):
    """Fill in `args.backend` (for train: the installed stack; for evaluate/export: from
    the file) and refuse what a backend cannot do or what is not installed; one line
    each."""
    if args.command == "train":
        if args.backend is None:
            args.backend = _default_train_backend(args)
        if args.backend != "larq" and args.method in LARQ_ONLY_METHODS:
            raise UsageError(f"--method {args.method} is Larq-only (Larq's Bop optimizer): "
                             f"use --backend larq, or another method with --backend "
                             f"{args.backend} ({', '.join(m for m in METHODS if m != 'bop')})")
    elif keras_major_version(args.model_path) == 3:
        if args.backend == "larq":
            raise UsageError(f"{args.model_path} is a Keras 3 file: use --backend jax, "
                             "tensorflow or torch (or leave --backend out)")
        args.backend = args.backend or _default_keras3_backend(args.command)
        if args.command == "export" and args.format == "lce":
            message = stacks.missing_lce_message(
                f"--format lce of a Keras 3 file ({args.model_path})")
            if message:
                raise UsageError(message)
    elif args.backend not in (None, "larq"):
        raise UsageError(f"{args.model_path} is a Keras 2 (Larq) model: use --backend larq "
                         "(or leave --backend out)")
    else:
        args.backend = "larq"
    if stacks.missing_modules(args.backend):
        raise UsageError(stacks.missing_message(args.backend))


def _check_workers(args):
    """For `train`: `args.worker_setup`, this process's place in a multi-worker run (None
    for a single process); refuses what cannot run on several workers."""
    args.worker_setup = None
    jax_flags = [f"--{name.replace('_', '-')}" for name in
                 ("coordinator", "num_processes", "process_id") if getattr(args, name)]
    if args.workers is not None:
        if args.backend not in workers.ENGINES:
            raise UsageError(workers.no_engine_message(args.backend))
        given = [name for name in ("TF_CONFIG", "JAX_COORDINATOR_ADDRESS")
                 if os.environ.get(name)] + jax_flags
        if given:
            raise UsageError(f"--workers starts its own cluster on this machine, but "
                             f"{', '.join(given)} describe{'s' if len(given) == 1 else ''} "
                             "another: leave out --workers (this process is then one "
                             "worker of that cluster), or unset them")
        workers.check_batch_size(args.batch_size, args.workers)
        return
    if jax_flags and args.backend != "jax" and args.backend in workers.ENGINES:
        raise UsageError(f"{', '.join(jax_flags)} configure jax.distributed, for --backend "
                         f"jax; --backend {args.backend} reads its cluster from TF_CONFIG")
    args.worker_setup = workers.worker_setup(args.backend, args.coordinator,
                                              args.num_processes, args.process_id)
    _WORKER_OF_A_RUN[:] = [args.worker_setup is not None]


def _worker_argv(argv, args):
    """The arguments each local worker runs: `argv` without --workers, with the backend
    and output directory this launcher chose (so that every worker writes the same run)."""
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == "--workers":
            skip = True
        elif not token.startswith("--workers="):
            kept.append(token)
    return kept + ["--backend", args.backend, "--output", args.output]


def _run_local_workers(args, argv):
    status, line = local_workers.run_local_workers(
        args.backend, args.workers, _worker_argv(argv or ["train"], args))
    if status == 130:
        raise KeyboardInterrupt
    if status:
        raise RunFailed(line, status)


def _export_path(args):
    stem = os.path.splitext(args.model_path.rstrip(os.sep))[0]
    suffix = {"tflite": ".tflite", "tflite-int8": ".int8.tflite", "lce": ".lce.tflite"}
    return stem + suffix[args.format]


def _run(args, argv=()):
    if args.command in ("evaluate", "export"):
        check_model_path(args.model_path)
    if args.command == "train" and args.resume and args.output is None:
        raise UsageError("--resume needs --output DIR, the directory of the run to continue")
    if args.command == "train" and args.image_size is not None and (
            args.dataset not in STREAMED_DATASETS):
        raise UsageError(f"--image-size is for --dataset {', '.join(STREAMED_DATASETS)}; "
                         f"{args.dataset} images keep their size")
    _check_backend(args)
    if args.command == "train" and args.output is None:
        args.output = default_output(args)
    if args.command == "export" and args.output is None:
        args.output = _export_path(args)
    if args.command == "train":
        try:
            _check_workers(args)
        except ValueError as error:
            raise UsageError(str(error)) from error
        if args.workers is not None:
            return _run_local_workers(args, argv)
    with _python_logs_quiet(args.verbose):
        commands = _import_commands(args.backend, args.verbose)
        # Exporting runs LiteRT's interpreter, which logs to stderr whatever the settings;
        # on Keras 3, TensorFlow may load late (TFDS data, export) and log as it does.
        quiet = not args.verbose and (args.command == "export" or args.backend != "larq")
        with _native_stderr_held_back() if quiet else contextlib.nullcontext():
            try:
                commands.COMMANDS[args.command](args)
            except workers.WorkerLost as error:
                raise RunFailed(str(error)) from error
            except (ValueError, ImportError, OSError) as error:  # data, arguments, files
                raise UsageError(str(error).strip().splitlines()[0]) from error


def main(argv=None):
    """Run the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = None
    try:
        args = build_parser().parse_args(argv or ["train"])
        if args.command is None:
            raise UsageError("choose a command: train, evaluate or export")
        _run(args, argv)
    except UsageError as error:
        print(f"keras-bilevel: error: {error}", file=sys.stderr)
        return 2
    except RunFailed as error:
        hint = _resume_hint(args, argv) if error.status != 2 else ""
        print(f"\nkeras-bilevel: error: {error}{hint}", file=sys.stderr)
        return error.status
    except KeyboardInterrupt:
        print(f"\nkeras-bilevel: interrupted{_resume_hint(args, argv)}", file=sys.stderr)
        return 130
    return 0


def _resume_hint(args, argv):
    """How to continue an interrupted `train` run, or '' for other commands."""
    if args is None or args.command != "train" or args.output is None:
        return ""
    named = "" if "--output" in argv else f" --output {args.output}"
    return (f"; every finished epoch is saved in {args.output}: add --resume{named} to the "
            "same command to continue")


def entry_point():
    status = main()
    if status and any(_WORKER_OF_A_RUN):
        # A worker that failed leaves at once: exit hooks would wait for its peers (JAX's
        # shutdown barrier, up to 5 minutes), which wait in the step it left.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    entry_point()
