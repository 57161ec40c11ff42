"""What the `keras-bilevel` commands do, once `keras_bilevel.cli` has parsed the arguments.

`cli` imports this module only after it has set TensorFlow's logging up, so this is where
TensorFlow is first imported. A workflow on the public API (data, models, recipes,
runs, export); no training logic of its own.
"""

import keras_bilevel.keras2.legacy_keras  # noqa: F401  (Keras 2 mode before TensorFlow)

import os

import tensorflow as tf

from keras_bilevel import export as exporting
from keras_bilevel.core import cpu_defaults, registry
from keras_bilevel.core import workers as _workers
from keras_bilevel.keras2 import data, models, multi_worker, recipes
from keras_bilevel.core.run_files import (RUN_ARGUMENTS, announce, binary_width, build_model,
                                      data_arguments, run_metrics)
from keras_bilevel.keras2.runs import RunDirectory

__all__ = ["default_jit", "evaluate", "export", "train"]


def default_jit(model_name, requested=None, steps=None, workers=1):
    """`jit_compile` for the Larq path: `requested` if given, else XLA on a GPU, and on a
    CPU for a one-worker run of at least `cpu_defaults.COMPILE_MIN_STEPS` steps of a model
    without convolutions (`registry.MODELS[model_name].convolutional`).

    XLA runs convolutions slowly on a CPU (VGG-16 several times slower than the graph
    step), while the MLP's whole step compiled is faster than the graph step around the
    XLA-compiled AdaSTE passes (BENCHMARKS.md, "Larq path on the MLP"); compiling costs
    about 5 s once, which a short run does not win back. With several workers on a CPU,
    TensorFlow aborts an XLA-compiled step, so `train` refuses `--jit` there.

    Raises:
        ValueError: `requested` for several workers on a CPU, in one line."""
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    if requested and workers > 1 and not on_gpu:
        raise ValueError(f"--jit with {workers} workers on a CPU: TensorFlow aborts "
                         "XLA-compiled steps under MultiWorkerMirroredStrategy there; "
                         "leave out --jit")
    if requested is not None:
        return requested
    if on_gpu:
        return True
    return (workers == 1 and not registry.MODELS[model_name].convolutional
            and cpu_defaults.compiles_by_default(steps))


def _load_data(args, batch_size, model=None):
    return data.load(args.dataset, **data_arguments(
        args, batch_size, None if model is None else model.input_shape))


def train(args):
    """Train, checkpointing every epoch into `args.output`; with `args.resume`, continue
    the interrupted run there. Writes history.csv, model.keras, metrics.json, curves.png.

    With `args.worker_setup` (a `keras_bilevel.core.workers.WorkerSetup`) this process is
    one worker of a multi-worker run (`keras_bilevel.keras2.multi_worker`): the same training on
    the global batch; only the chief writes `args.output`."""
    cluster = multi_worker.connect(getattr(args, "worker_setup", None))
    return _workers.train_as(cluster, _train, args)


def _train(args, cluster):
    tf.keras.utils.set_random_seed(args.seed)
    splits = _load_data(args, args.batch_size)
    cluster.check_batch_size(args.batch_size)
    steps_per_epoch = splits.steps_per_epoch
    jit = default_jit(args.model, args.jit, steps=args.epochs * steps_per_epoch,
                      workers=cluster.count)
    with cluster.scope():
        recipe = recipes.make(args.method, splits.num_train, args.epochs, steps_per_epoch,
                              batch_size=args.batch_size,
                              width=binary_width(args))
        model = build_model(models, args, splits, recipe)
        model.compile(recipe.optimizer,
                      tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], jit_compile=jit)
    cluster.prepare(model)
    # Written from here on (by the chief), once the data is there.
    run = RunDirectory(args.output, worker=cluster)
    run.prepare({name: getattr(args, name) for name in RUN_ARGUMENTS}, resume=args.resume)
    done = run.restore(model, args.epochs, resume=args.resume)

    callbacks = list(recipe.callbacks) + run.callbacks(done)
    if args.tensorboard and cluster.is_chief:
        callbacks.append(tf.keras.callbacks.TensorBoard(os.path.join(args.output,
                                                                     "tensorboard")))
    announce(args, done, jit, cluster)
    if done < args.epochs:
        model.fit(cluster.distribute(splits.train_epochs(done, args.epochs),
                                     args.batch_size, splits.num_train),
                  initial_epoch=done, epochs=args.epochs, steps_per_epoch=steps_per_epoch,
                  validation_data=splits.validation, callbacks=callbacks, verbose=1)
    print("Evaluating the binary network on the test set")
    test_loss, test_accuracy = model.evaluate(splits.test, verbose=1)

    with cluster.portable(model):
        model.save(cluster.writable(os.path.join(args.output, "model.keras")))
    if not cluster.is_chief:
        return None
    return run_metrics(args, run, splits, recipe, jit, test_loss, test_accuracy,
                       workers=cluster.count)


def evaluate(args):
    """Test accuracy and loss of the saved model `args.model_path`."""
    model = tf.keras.models.load_model(args.model_path)
    splits = _load_data(args, args.batch_size, model)
    loss, accuracy = model.evaluate(splits.test, verbose=1)[:2]
    print(f"{args.model_path} on {args.dataset} test set: accuracy {accuracy:.4f}, "
          f"loss {loss:.4f}")
    return {"test_accuracy": float(accuracy), "test_loss": float(loss)}


def export(args):
    """The saved model `args.model_path` as a TFLite or LCE flatbuffer at `args.output`
    (`cli` fills in the default)."""
    model = tf.keras.models.load_model(args.model_path)
    if args.format == "lce":
        return exporting.to_lce(model, args.output)
    return exporting.to_tflite(model, args.output,
                               weights="int8" if args.format == "tflite-int8" else "float32")


COMMANDS = {"train": train, "evaluate": evaluate, "export": export}
