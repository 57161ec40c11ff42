"""What the `keras-bilevel` commands do, once `keras_bilevel.cli` has parsed the arguments.

`cli` imports this module only after it has set TensorFlow's logging up, so this is where
TensorFlow is first imported. A workflow on the public API (data, models, recipes,
runs, export); no training logic of its own.
"""

import keras_bilevel._keras2  # noqa: F401  (Keras 2 mode before TensorFlow)

import json
import os
import time

import tensorflow as tf

from keras_bilevel import data, export as exporting, models, recipes
from keras_bilevel.runs import RunDirectory

__all__ = ["evaluate", "export", "plot_curves", "train"]

# The arguments that define a training run: `--resume` refuses to continue a run started
# with other values.
RUN_ARGUMENTS = ("dataset", "model", "method", "epochs", "batch_size", "hidden_units",
                 "seed", "jit")


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


def default_output(args):
    """runs/DATASET-MODEL-METHOD-seedS-TIME, the directory of a run without --output."""
    return os.path.join("runs", f"{args.dataset}-{args.model}-{args.method}-seed{args.seed}-"
                                f"{time.strftime('%Y%m%d-%H%M%S')}")


def train(args):
    """Train, checkpointing every epoch into `args.output`; with `args.resume`, continue
    the interrupted run there. Writes history.csv, model.keras, metrics.json, curves.png."""
    tf.keras.utils.set_random_seed(args.seed)
    splits = _load_data(args, args.batch_size)
    steps_per_epoch = splits.steps_per_epoch
    recipe = recipes.make(args.method, splits.num_train, args.epochs, steps_per_epoch,
                          batch_size=args.batch_size)
    model = _build_model(args, splits, recipe)
    jit = args.jit if args.jit is not None else bool(tf.config.list_physical_devices("GPU"))
    model.compile(recipe.optimizer,
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=jit)
    run = RunDirectory(args.output)  # written from here on, once the data is there
    run.prepare({name: getattr(args, name) for name in RUN_ARGUMENTS}, resume=args.resume)
    done = run.restore(model, args.epochs)

    callbacks = list(recipe.callbacks) + run.callbacks(done)
    if args.tensorboard:
        callbacks.append(tf.keras.callbacks.TensorBoard(os.path.join(args.output,
                                                                     "tensorboard")))
    start = f"Resuming at epoch {done + 1} of" if done else "Training for"
    print(f"{start} {args.epochs} epochs: {args.model} on {args.dataset} with "
          f"{args.method} (batch {args.batch_size}, XLA {'on' if jit else 'off'}); "
          f"output: {args.output}")
    if done < args.epochs:
        model.fit(splits.train_epochs(done, args.epochs), initial_epoch=done,
                  epochs=args.epochs, steps_per_epoch=steps_per_epoch,
                  validation_data=splits.validation, callbacks=callbacks, verbose=1)
    print("Evaluating the binary network on the test set")
    test_loss, test_accuracy = model.evaluate(splits.test, verbose=1)

    model.save(os.path.join(args.output, "model.keras"))
    history = run.history()
    plot_curves(history, os.path.join(args.output, "curves.png"),
                f"{args.model} on {args.dataset}, {args.method}")
    config = {k: v for k, v in vars(args).items() if k not in ("func", "verbose")}
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


def evaluate(args):
    """Test accuracy and loss of the saved model `args.model_path`."""
    model = tf.keras.models.load_model(args.model_path)
    splits = _load_data(args, args.batch_size)
    loss, accuracy = model.evaluate(splits.test, verbose=1)[:2]
    print(f"{args.model_path} on {args.dataset} test set: accuracy {accuracy:.4f}, "
          f"loss {loss:.4f}")
    return {"test_accuracy": float(accuracy), "test_loss": float(loss)}


def export(args):
    """The saved model `args.model_path` as a TFLite or LCE flatbuffer."""
    model = tf.keras.models.load_model(args.model_path)
    stem = os.path.splitext(args.model_path)[0]
    suffix = {"tflite": ".tflite", "tflite-int8": ".int8.tflite", "lce": ".lce.tflite"}
    path = args.output or stem + suffix[args.format]
    if args.format == "lce":
        return exporting.to_lce(model, path)
    return exporting.to_tflite(model, path,
                               weights="int8" if args.format == "tflite-int8" else "float32")


COMMANDS = {"train": train, "evaluate": evaluate, "export": export}
