"""What `keras-bilevel train/evaluate/export --backend jax|tensorflow|torch` do.

The Keras 3 twin of `keras_bilevel.commands`: same arguments, same outputs (history.csv,
model.keras, metrics.json with the backend, curves.png), per-epoch checkpoints and exact
`--resume`, built from `keras_bilevel.keras3` (data, methods, models, runs, export).
`keras_bilevel.cli` imports it after setting `KERAS_BACKEND`; it loads no Larq and no
Keras 2 (Keras 3 itself imports TensorFlow, where installed, to seed it and to save
model files). A workflow on the public API; no training logic of its own.
"""

import keras

from keras_bilevel._run_files import RUN_ARGUMENTS, announce, build_model, run_metrics
from keras_bilevel.keras3 import data, methods, models
from keras_bilevel.keras3.runs import RunDirectory

__all__ = ["default_jit", "evaluate", "export", "train"]


def default_jit(requested=None):
    """`jit_compile` for this backend: `requested` if given, else on for JAX (its way of
    running a step), on a GPU only for TensorFlow (XLA on CPU is slow for convolutions),
    off for PyTorch (where it means `torch.compile`)."""
    if requested is not None:
        return requested
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return backend == "jax"


def _loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _load_data(args, batch_size):
    return data.load(args.dataset, batch_size=batch_size, seed=args.seed,
                     data_dir=args.data_dir, download=args.download)


def train(args):
    """Train, checkpointing every epoch into `args.output`; with `args.resume`, continue
    the interrupted run there. Writes history.csv, model.keras, metrics.json, curves.png."""
    keras.utils.set_random_seed(args.seed)
    splits = _load_data(args, args.batch_size)
    recipe = methods.make(args.method, splits.num_train, args.epochs, splits.steps_per_epoch,
                          batch_size=args.batch_size)
    model = build_model(models, args, splits, recipe)
    jit = default_jit(args.jit)
    model.compile(recipe.optimizer, _loss(), metrics=["accuracy"], jit_compile=jit)
    run = RunDirectory(args.output)  # written from here on, once the data is there
    run.prepare({name: getattr(args, name) for name in RUN_ARGUMENTS}, resume=args.resume)
    done = run.restore(model, args.epochs)

    callbacks = list(recipe.callbacks) + run.callbacks(done)
    if args.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(f"{args.output}/tensorboard"))
    announce(args, done, jit)
    if done < args.epochs:
        model.fit(splits.train_epochs(done, args.epochs), initial_epoch=done,
                  epochs=args.epochs, steps_per_epoch=splits.steps_per_epoch,
                  validation_data=splits.validation, validation_batch_size=args.batch_size,
                  callbacks=callbacks, shuffle=False, verbose=1)  # shuffled by epoch
    print("Evaluating the binary network on the test set")
    test_loss, test_accuracy = model.evaluate(*splits.test, batch_size=args.batch_size,
                                              verbose=1)
    model.save(f"{args.output}/model.keras")
    return run_metrics(args, run, splits, recipe, jit, test_loss, test_accuracy)


def _load_model(path):
    # Without the training configuration: it may name another backend's compilation
    # (jit_compile on JAX is torch.compile on PyTorch).
    return keras.saving.load_model(path, compile=False)


def evaluate(args):
    """Test accuracy and loss of the saved Keras 3 model `args.model_path`."""
    model = _load_model(args.model_path)
    model.compile(loss=_loss(), metrics=["accuracy"], jit_compile=default_jit())
    splits = _load_data(args, args.batch_size)
    loss, accuracy = model.evaluate(*splits.test, batch_size=args.batch_size, verbose=1)
    print(f"{args.model_path} on {args.dataset} test set: accuracy {accuracy:.4f}, "
          f"loss {loss:.4f} ({keras.backend.backend()})")
    return {"test_accuracy": float(accuracy), "test_loss": float(loss)}


def export(args):
    """The saved Keras 3 model `args.model_path` as a TFLite flatbuffer at `args.output`
    (`keras_bilevel.keras3.export.to_tflite`, checked with LiteRT's interpreter)."""
    from keras_bilevel.keras3.export import to_tflite

    return to_tflite(_load_model(args.model_path), args.output,
                     weights="int8" if args.format == "tflite-int8" else "float32")


COMMANDS = {"train": train, "evaluate": evaluate, "export": export}
