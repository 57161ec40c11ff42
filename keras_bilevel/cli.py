"""The `keras-bilevel` command: train, evaluate and export binary networks.

    keras-bilevel train                      # offline default: digits, binary MLP, AdaSTE
    keras-bilevel train --dataset mnist --data-dir ~/tfds --model mlp --method ste
    keras-bilevel evaluate runs/.../model.keras --dataset digits
    keras-bilevel export runs/.../model.keras --format tflite-int8

A workflow on top of the public API (data, models, recipes); it holds no training logic
of its own. Bad arguments and missing data end with one line on stderr and a non-zero
exit status, not a traceback.
"""

import argparse
import json
import os
import sys
import time

import tensorflow as tf

from keras_bilevel import data, export as exporting, models, recipes

__all__ = ["main"]

MODELS = ("mlp", "vgg_small", "vgg16", "resnet18")
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100")


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

    train = commands.add_parser("train", help="train a binary network and save it")
    train.add_argument("--dataset", default="digits", choices=DATASETS)
    train.add_argument("--model", default="mlp", choices=MODELS)
    train.add_argument("--method", default="adaste", choices=sorted(recipes.METHODS))
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
                       help="output directory (default: runs/DATASET-MODEL-METHOD-...)")
    train.add_argument("--tensorboard", action="store_true",
                       help="also write TensorBoard logs to OUTPUT/tensorboard")

    evaluate = commands.add_parser("evaluate", help="evaluate a saved model")
    evaluate.add_argument("model_path", metavar="MODEL")
    evaluate.add_argument("--dataset", default="digits", choices=DATASETS)
    evaluate.add_argument("--batch-size", type=_positive_int, default=256)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--data-dir", default=None)
    evaluate.add_argument("--download", action="store_true")

    export = commands.add_parser("export", help="export a saved model to TFLite or LCE")
    export.add_argument("model_path", metavar="MODEL")
    export.add_argument("--format", default="tflite-int8",
                        choices=("tflite", "tflite-int8", "lce"))
    export.add_argument("--output", default=None,
                        help="output file (default: next to MODEL, with .tflite)")
    return parser


def _load_data(args, batch_size):
    return data.load(args.dataset, batch_size=batch_size, seed=args.seed,
                     data_dir=args.data_dir, download=args.download)


def _build_model(args, splits, recipe):
    kwargs = dict(input_shape=tuple(splits.input_shape), classes=splits.classes,
                  kernel_quantizer=recipe.kernel_quantizer,
                  kernel_initializer=recipe.kernel_initializer,
                  kernel_constraint=recipe.kernel_constraint)
    if args.model == "mlp":
        return models.binary_mlp(hidden_units=args.hidden_units, **kwargs)
    return getattr(models, args.model)(**kwargs)


class _EpochTimer(tf.keras.callbacks.Callback):
    """Seconds per epoch."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


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


def train(args):
    tf.keras.utils.set_random_seed(args.seed)
    splits = _load_data(args, args.batch_size)
    steps_per_epoch = -(-splits.num_train // args.batch_size)
    recipe = recipes.make(args.method, splits.num_train, args.epochs, steps_per_epoch,
                          batch_size=args.batch_size)
    model = _build_model(args, splits, recipe)
    jit = args.jit if args.jit is not None else bool(tf.config.list_physical_devices("GPU"))
    model.compile(recipe.optimizer,
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=jit)

    output = args.output or os.path.join(
        "runs", f"{args.dataset}-{args.model}-{args.method}-seed{args.seed}-"
                f"{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(output, exist_ok=True)
    timer = _EpochTimer()
    callbacks = list(recipe.callbacks) + [
        timer, tf.keras.callbacks.CSVLogger(os.path.join(output, "history.csv"))]
    if args.tensorboard:
        callbacks.append(tf.keras.callbacks.TensorBoard(os.path.join(output, "tensorboard")))

    print(f"Training {args.model} on {args.dataset} with {args.method} for {args.epochs} "
          f"epochs (batch {args.batch_size}, XLA {'on' if jit else 'off'}); output: {output}")
    history = model.fit(splits.train, validation_data=splits.validation,
                        epochs=args.epochs, callbacks=callbacks, verbose=1)
    print("Evaluating the binary network on the test set")
    test_loss, test_accuracy = model.evaluate(splits.test, verbose=1)

    model.save(os.path.join(output, "model.keras"))
    plot_curves(history.history, os.path.join(output, "curves.png"),
                f"{args.model} on {args.dataset}, {args.method}")
    config = {k: v for k, v in vars(args).items() if k != "func"}
    metrics = {
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "dataset": args.dataset,
        "model": args.model,
        "method": args.method,
        "config": {**config, "jit": jit, "steps_per_epoch": steps_per_epoch,
                   "num_train": splits.num_train,
                   "num_validation": splits.num_validation, "num_test": splits.num_test},
        "recipe_sources": recipe.sources,
        "seconds_per_epoch": [round(s, 3) for s in timer.seconds],
        "final": {k: float(v[-1]) for k, v in history.history.items()},
    }
    with open(os.path.join(output, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(f"Test accuracy of the binary network: {test_accuracy:.4f} "
          f"(test loss {test_loss:.4f}); saved model.keras, history.csv, metrics.json and "
          f"curves.png in {output}")
    return metrics


def evaluate(args):
    if not os.path.exists(args.model_path):
        raise UsageError(f"no model file at {args.model_path}")
    model = tf.keras.models.load_model(args.model_path)
    splits = _load_data(args, args.batch_size)
    loss, accuracy = model.evaluate(splits.test, verbose=1)[:2]
    print(f"{args.model_path} on {args.dataset} test set: accuracy {accuracy:.4f}, "
          f"loss {loss:.4f}")
    return {"test_accuracy": float(accuracy), "test_loss": float(loss)}


def export(args):
    if not os.path.exists(args.model_path):
        raise UsageError(f"no model file at {args.model_path}")
    model = tf.keras.models.load_model(args.model_path)
    stem = os.path.splitext(args.model_path)[0]
    suffix = {"tflite": ".tflite", "tflite-int8": ".int8.tflite", "lce": ".lce.tflite"}
    path = args.output or stem + suffix[args.format]
    if args.format == "lce":
        return exporting.to_lce(model, path)
    return exporting.to_tflite(model, path,
                               weights="int8" if args.format == "tflite-int8" else "float32")


COMMANDS = {"train": train, "evaluate": evaluate, "export": export}


def main(argv=None):
    """Run the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv or ["train"])
        if args.command is None:
            raise UsageError("choose a command: train, evaluate or export")
        try:
            COMMANDS[args.command](args)
        except (data.DatasetNotFoundError, ValueError, ImportError, OSError) as error:
            raise UsageError(str(error).strip().splitlines()[0]) from error
    except UsageError as error:
        print(f"keras-bilevel: error: {error}", file=sys.stderr)
        return 2
    return 0


def entry_point():
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
