"""The `keras-bilevel` command: train, evaluate and export binary networks.

    keras-bilevel train                      # offline default: digits, binary MLP, AdaSTE
    keras-bilevel train --dataset mnist --data-dir ~/tfds --model mlp --method ste
    keras-bilevel train --epochs 500 --output runs/a --resume   # continue a killed run
    keras-bilevel train --dataset tiny_imagenet --data-dir ~/data --model resnet18
    keras-bilevel train --dataset folder --data-dir photos --image-size 96  # your images
    keras-bilevel train --backend jax        # Keras 3 on JAX (or tensorflow, torch); no Larq
    keras-bilevel train --workers 2          # two local worker processes (multi-worker)
    keras-bilevel evaluate runs/.../model.keras --dataset digits
    keras-bilevel export runs/.../model.keras --format tflite-int8

This module parses the arguments, then sets TensorFlow's logging and, for a Keras 3
backend, `KERAS_BACKEND` up before TensorFlow or Keras is imported (so it imports neither
itself); `keras_bilevel.cli.keras2_commands` (`--backend larq`, the default: Larq on Keras 2) or
`keras_bilevel.cli.keras3_commands` (Keras 3) does the work. `evaluate` and `export` read
which Keras wrote a `.keras` file from its metadata and take the matching path.
By default the output is our own lines and Keras' progress bars; `--verbose` lets
TensorFlow's log through. Bad arguments and missing data end with one line on stderr
and exit status 2, not a traceback; Ctrl-C ends with one line and exit status 130; a
lost or failed worker of a multi-worker run ends the whole run with one line naming it
and exit status 1.

Several workers: on a cluster each worker runs the same `train` command with its engine's
settings (`TF_CONFIG` for larq and tensorflow; for jax `--coordinator`,
`--num-processes`, `--process-id` or `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`,
`JAX_PROCESS_ID`); `--workers N` starts N such workers on this machine
(`keras_bilevel.cli.local_workers`) and waits for them.
"""

import argparse
import json
import os
import zipfile

from keras_bilevel.core import registry, stacks

__all__ = ["BACKENDS", "DATASETS", "METHODS", "MODELS", "UsageError", "build_parser",
           "check_model_path", "keras_major_version"]

# The registries' names: parsing imports no TensorFlow or Keras.
MODELS = tuple(registry.MODELS)
DATASETS = tuple(registry.DATASETS)
METHODS = tuple(registry.METHODS)
# "larq": Larq on Keras 2 (keras_bilevel.cli.keras2_commands); the others: Keras 3 on that
# backend (keras_bilevel.cli.keras3_commands).
BACKENDS = stacks.BACKENDS
# Methods the Keras 3 front end lacks (Larq's Bop).
LARQ_ONLY_METHODS = tuple(name for name in METHODS
                          if not registry.supports(registry.METHODS, name, "keras3"))
# The backend a Keras 3 file is evaluated / exported on when --backend is not given.
KERAS3_DEFAULT_BACKEND = {"evaluate": "jax", "export": "tensorflow"}
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
    train.add_argument("--backend", default=None, choices=BACKENDS,
                       help="larq: Larq on Keras 2; jax, tensorflow, torch: Keras 3 on "
                            "that backend (default: larq where it is installed, else the "
                            "installed Keras 3 backend)")
    train.add_argument("--dataset", default="digits", choices=DATASETS,
                       help="the data set (digits: offline, from scikit-learn)")
    train.add_argument("--model", default="mlp", choices=MODELS,
                       help="the binary network; every weight +-1, first and last layer "
                            "included")
    train.add_argument("--method", default="adaste", choices=METHODS,
                       help="how the binary weights are trained: " + "; ".join(
                           f"{name}: {entry.summary}" for name, entry in
                           registry.METHODS.items()))
    train.add_argument("--epochs", type=_positive_int, default=30,
                       help="number of epochs (default 30)")
    train.add_argument("--batch-size", type=_positive_int, default=128,
                       help="the global batch size (default 128)")
    train.add_argument("--hidden-units", type=_positive_int, default=1024,
                       help="width of the MLP's hidden layers (default 1024)")
    train.add_argument("--seed", type=int, default=0,
                       help="seed of the initialisation, the data order and the "
                            "validation split (default 0)")
    train.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                       help="compile the training step (default: always on JAX; XLA on a "
                            "GPU on larq and tensorflow, and on larq also on a CPU for "
                            "mlp runs of 10,000 steps or more; torch.compile on torch for "
                            "runs of 10,000 steps or more, falling back to eager if it "
                            "fails)")
    train.add_argument("--data-dir", default=None,
                       help="tensorflow-datasets data_dir; for tiny_imagenet the folder "
                            "holding tiny-imagenet-200/, for folder the folder holding "
                            "train/<class>/ (and test/<class>/)")
    train.add_argument("--image-size", type=_positive_int, default=None,
                       help="tiny_imagenet, imagenette, folder: side of the square "
                            "training images (default 64, 224, the images' median "
                            "shorter side up to 224); the model's stem follows it")
    train.add_argument("--download", action="store_true",
                       help="let tensorflow-datasets download missing data")
    train.add_argument("--output", default=None,
                       help="output directory (default: runs/DATASET-MODEL-METHOD-...); "
                            "checkpointed every epoch")
    train.add_argument("--resume", action="store_true",
                       help="continue the interrupted run in --output (same arguments)")
    train.add_argument("--tensorboard", action="store_true",
                       help="also write TensorBoard logs to OUTPUT/tensorboard")
    workers = train.add_argument_group(
        "several workers", "one run on several processes or machines, data-parallel and "
        "exact: the global batch is --batch-size")
    workers.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                         help="start N worker processes on this machine (larq, tensorflow, "
                              "jax), on free loopback ports, and wait for them")
    workers.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                         help="jax: the coordinator's address (process 0); else "
                              "JAX_COORDINATOR_ADDRESS. larq/tensorflow read TF_CONFIG")
    workers.add_argument("--num-processes", default=None, metavar="N",
                         help="jax: the number of worker processes; else JAX_NUM_PROCESSES")
    workers.add_argument("--process-id", default=None, metavar="I",
                         help="jax: this process's index, 0 for the chief; else "
                              "JAX_PROCESS_ID")

    evaluate = commands.add_parser("evaluate", parents=[common],
                                   help="evaluate a saved model")
    evaluate.add_argument("model_path", metavar="MODEL", help=f"the model: {MODEL_FORMATS}")
    evaluate.add_argument("--dataset", default="digits", choices=DATASETS,
                          help="the data set whose test split is evaluated")
    evaluate.add_argument("--batch-size", type=_positive_int, default=256,
                          help="batch size (default 256)")
    evaluate.add_argument("--seed", type=int, default=0,
                          help="the seed the model was trained with: it fixes the "
                               "validation split (default 0)")
    evaluate.add_argument("--data-dir", default=None,
                          help="as for train; the image size is the model's")
    evaluate.add_argument("--download", action="store_true",
                          help="let tensorflow-datasets download missing data")
    evaluate.add_argument("--backend", default=None, choices=BACKENDS,
                          help="larq for a Keras 2 (Larq) file, the default for it; for a "
                               "Keras 3 file the backend to evaluate on (default jax)")

    export = commands.add_parser("export", parents=[common],
                                 help="export a saved model to TFLite or LCE")
    export.add_argument("model_path", metavar="MODEL", help=f"the model: {MODEL_FORMATS}")
    export.add_argument("--format", default="tflite-int8",
                        choices=("tflite", "tflite-int8", "lce"),
                        help="tflite: float32 weights; tflite-int8: binary weights stored "
                             "as int8, 4x smaller, same outputs; lce: Larq Compute "
                             "Engine, bit-packed binary convolutions (default "
                             "tflite-int8)")
    export.add_argument("--output", default=None,
                        help="output file (default: next to MODEL, with .tflite)")
    export.add_argument("--backend", default=None, choices=BACKENDS,
                        help="larq for a Keras 2 (Larq) file, the default for it; for a "
                             "Keras 3 file the backend that loads it (default tensorflow)")
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


def keras_major_version(path):
    """3 for a `.keras` file written by Keras 3, 2 for any other model (a `.keras` file of
    Keras 2's tf_keras, `.h5`, SavedModel): the `keras_version` of the file's
    metadata.json. Reads the file, imports nothing."""
    if os.path.isdir(path) or not zipfile.is_zipfile(path):
        return 2
    try:
        with zipfile.ZipFile(path) as archive:
            version = json.loads(archive.read("metadata.json"))["keras_version"]
    except (KeyError, ValueError) as error:
        raise UsageError(f"{path} is a zip file without Keras' metadata.json; MODEL must "
                         f"be {MODEL_FORMATS}") from error
    return 3 if str(version).startswith("3.") else 2


def _is_hdf5(path):
    # The signature is at offset 0, or after a user block of 512, 1024, 2048... bytes.
    with open(path, "rb") as f:
        for offset in (0, 512, 1024, 2048, 4096):
            f.seek(offset)
            if f.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
                return True
    return False
