"""The `keras-bilevel` command: train, evaluate and export binary networks.

    keras-bilevel train                      # offline default: digits, binary MLP, AdaSTE
    keras-bilevel train --dataset mnist --data-dir ~/tfds --model mlp --method ste
    keras-bilevel train --epochs 500 --output runs/a --resume   # continue a killed run
    keras-bilevel evaluate runs/.../model.keras --dataset digits
    keras-bilevel export runs/.../model.keras --format tflite-int8

This module parses the arguments and sets TensorFlow's logging up before TensorFlow is
imported (so it imports no TensorFlow itself); `keras_bilevel.commands` does the work.
By default the output is our own lines and Keras' progress bars; `--verbose` lets
TensorFlow's log through. Bad arguments and missing data end with one line on stderr
and exit status 2, not a traceback; Ctrl-C ends with one line and exit status 130.
"""

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import warnings
import zipfile

__all__ = ["main"]

# The names of keras_bilevel.models, keras_bilevel.data.DATASETS and
# keras_bilevel.recipes.METHODS, spelled out so that parsing imports no TensorFlow
# (tests/test_cli.py checks that they match).
MODELS = ("mlp", "vgg_small", "vgg16", "resnet18")
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100")
METHODS = ("adaste", "adaste-reference", "bop", "full-precision", "ste")
MODEL_FORMATS = "a .keras file, a .h5/.hdf5 file or a SavedModel directory"

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class UsageError(Exception):
    """A problem the user can fix; reported as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser():
    parser = _Parser(prog="keras-bilevel", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = _Parser(add_help=False)
    common.add_argument("--verbose", action="store_true",
                        help="also show TensorFlow's log lines and warnings")

    train = commands.add_parser("train", parents=[common],
                                help="train a binary network and save it")
    train.add_argument("--dataset", default="digits", choices=DATASETS)
    train.add_argument("--model", default="mlp", choices=MODELS)
    train.add_argument("--method", default="adaste", choices=METHODS)
    train.add_argument("--epochs", type=_positive_int, default=30)
    train.add_argument("--batch-size", type=_positive_int, default=128)
    train.add_argument("--hidden-units", type=_positive_int, default=1024,
                       help="width of the MLP's hidden layers (default 1024)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                       help="compile the training step with XLA (default: on GPU only)")
    train.add_argument("--data-dir", default=None, help="tensorflow-datasets data_dir")
    train.add_argument("--download", action="store_true",
                       help="let tensorflow-datasets download missing data")
    train.add_argument("--output", default=None,
                       help="output directory (default: runs/DATASET-MODEL-METHOD-...); "
                            "checkpointed every epoch")
    train.add_argument("--resume", action="store_true",
                       help="continue the interrupted run in --output (same arguments)")
    train.add_argument("--tensorboard", action="store_true",
                       help="also write TensorBoard logs to OUTPUT/tensorboard")

    evaluate = commands.add_parser("evaluate", parents=[common],
                                   help="evaluate a saved model")
    evaluate.add_argument("model_path", metavar="MODEL")
    evaluate.add_argument("--dataset", default="digits", choices=DATASETS)
    evaluate.add_argument("--batch-size", type=_positive_int, default=256)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--data-dir", default=None)
    evaluate.add_argument("--download", action="store_true")

    export = commands.add_parser("export", parents=[common],
                                 help="export a saved model to TFLite or LCE")
    export.add_argument("model_path", metavar="MODEL")
    export.add_argument("--format", default="tflite-int8",
                        choices=("tflite", "tflite-int8", "lce"))
    export.add_argument("--output", default=None,
                        help="output file (default: next to MODEL, with .tflite)")
    return parser


def check_model_path(path):
    """Raise UsageError unless `path` looks like a saved Keras model (read, not loaded)."""
    if not os.path.exists(path):
        raise UsageError(f"no model file at {path}")
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise UsageError(f"{path} is a directory without saved_model.pb; MODEL must be "
                             f"{MODEL_FORMATS}")
        return
    extension = os.path.splitext(path)[1].lower()
    if extension == ".keras" and zipfile.is_zipfile(path):
        return
    if extension in (".h5", ".hdf5") and _is_hdf5(path):
        return
    what = ("its contents are not that format" if extension in (".keras", ".h5", ".hdf5")
            else "not a model")
    raise UsageError(f"{path} is {what}; MODEL must be {MODEL_FORMATS}")


def _is_hdf5(path):
    # The signature is at offset 0, or after a user block of 512, 1024, 2048... bytes.
    with open(path, "rb") as f:
        for offset in (0, 512, 1024, 2048, 4096):
            f.seek(offset)
            if f.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
                return True
    return False


_PYTHON_STDERR = []  # the real stderr for Python, while file descriptor 2 is held back


@contextlib.contextmanager
def _native_stderr_held_back():
    """What C/C++ libraries write to file descriptor 2 goes to a temporary file, shown
    only if the block fails with something other than a UsageError or Ctrl-C; Python's
    own writes to sys.stderr (our messages, warnings, logging) still get through.

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
        except (UsageError, KeyboardInterrupt):
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


def _import_commands(verbose):
    """keras_bilevel.commands, imported with TensorFlow's C++ log level set (quiet)."""
    if verbose or "tensorflow" in sys.modules:
        from keras_bilevel import commands
        return commands
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # C++: FATAL only; read when TF loads
    with _native_stderr_held_back():
        from keras_bilevel import commands
    return commands


@contextlib.contextmanager
def _python_logs_quiet(verbose):
    """TensorFlow's and absl's Python loggers at ERROR and other libraries' warnings off
    (ours stay), for the duration of the command."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("tensorflow", "absl", "h5py")]
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


def _run(args):
    if args.command in ("evaluate", "export"):
        check_model_path(args.model_path)
    if args.command == "train" and args.resume and args.output is None:
        raise UsageError("--resume needs --output DIR, the directory of the run to continue")
    with _python_logs_quiet(args.verbose):
        commands = _import_commands(args.verbose)
        if args.command == "train" and args.output is None:
            args.output = commands.default_output(args)
        # Exporting runs LiteRT's interpreter, which logs to stderr whatever the settings.
        quiet_export = args.command == "export" and not args.verbose
        with _native_stderr_held_back() if quiet_export else contextlib.nullcontext():
            try:
                commands.COMMANDS[args.command](args)
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
        _run(args)
    except UsageError as error:
        print(f"keras-bilevel: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = ""
        if args is not None and args.command == "train" and args.output is not None:
            named = "" if "--output" in argv else f" --output {args.output}"
            hint = (f"; every finished epoch is saved in {args.output}: add --resume{named} "
                    "to the same command to continue")
        print(f"\nkeras-bilevel: interrupted{hint}", file=sys.stderr)
        return 130
    return 0


def entry_point():
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
