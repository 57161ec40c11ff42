"""What `keras-bilevel train/evaluate/export --backend jax|tensorflow|torch` do.

The Keras 3 twin of `keras_bilevel.cli.keras2_commands`: same arguments, same outputs (history.csv,
model.keras, metrics.json with the backend, curves.png), per-epoch checkpoints and exact
`--resume`, built from `keras_bilevel.keras3` (data, methods, models, runs, export).
`keras_bilevel.cli` imports it after setting `KERAS_BACKEND`; it loads no Larq and no
Keras 2 (Keras 3 itself imports TensorFlow, where installed, to seed it and to save
model files). A workflow on the public API; no training logic of its own.
"""

import keras

from keras_bilevel.core import workers as _workers
from keras_bilevel.core.run_files import (RUN_ARGUMENTS, announce, binary_width, build_model,
                                      data_arguments, run_metrics)
from keras_bilevel.keras3 import data, methods, models, multi_worker
from keras_bilevel.keras3.backends import current as backend
from keras_bilevel.keras3.runs import RunDirectory

__all__ = ["default_jit", "evaluate", "export", "train"]

def default_jit(requested=None, steps=None):
    """`jit_compile` for this backend: `requested` if given, else the backend's default
    for a run of `steps` training steps (`keras_bilevel.keras3.backends`: always on JAX,
    on a GPU only for TensorFlow, `torch.compile` for long runs on PyTorch). `train` falls
    back to eager steps if compiling fails."""
    return backend.default_jit(steps) if requested is None else requested


def _loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _load_data(args, batch_size, model=None):
    return data.load(args.dataset, **data_arguments(
        args, batch_size, None if model is None else model.input_shape))


def _build(args, splits, run, cluster, jit=None, restart=False):
    """The seeded model and recipe, compiled (`jit`, or the backend's default for this
    run) in the cluster's scope, restored from the run's last checkpoint when resuming
    (or, with `restart`, whenever there is one); returns
    `(model, recipe, jit, epochs done)`."""
    keras.utils.set_random_seed(args.seed)
    with cluster.scope():
        recipe = methods.make(args.method, splits.num_train, args.epochs,
                              splits.steps_per_epoch, batch_size=args.batch_size,
                              width=binary_width(args))
        model = build_model(models, args, splits, recipe)
        if jit is None:
            jit = default_jit(args.jit, steps=args.epochs * splits.steps_per_epoch)
        model.compile(recipe.optimizer, _loss(), metrics=["accuracy"], jit_compile=jit)
        cluster.prepare(model)
        done = run.restore(model, args.epochs, resume=None if restart else args.resume)
    return model, recipe, jit, done


def _fit(model, recipe, args, splits, run, done, cluster):
    callbacks = list(recipe.callbacks) + run.callbacks(done)
    if args.tensorboard and cluster.is_chief:
        callbacks.append(keras.callbacks.TensorBoard(f"{args.output}/tensorboard"))
    if done < args.epochs:
        steps = splits.steps_per_epoch
        validation = None
        if splits.validation is not None:
            validation = cluster.evaluation_data(splits.validation, args.batch_size)
        model.fit(cluster.train_batches(lambda: splits.train_epochs(done, args.epochs),
                                        (args.epochs - done) * steps),
                  initial_epoch=done, epochs=args.epochs, steps_per_epoch=steps,
                  validation_data=validation, validation_batch_size=args.batch_size,
                  callbacks=callbacks, shuffle=False, verbose=1)  # shuffled by epoch


def train(args):
    """Train, checkpointing every epoch into `args.output`; with `args.resume`, continue
    the interrupted run there. Writes history.csv, model.keras, metrics.json, curves.png.

    With `args.worker_setup` this process is one worker of a multi-worker run on JAX or
    TensorFlow (`keras_bilevel.keras3.multi_worker`): the same training on the global
    batch; only the chief writes `args.output`.

    On PyTorch with the default `--jit`, a step that torch.compile cannot compile is
    reported in one line and the run starts again from its last checkpoint (or from the
    start), eagerly: the same model, weights and batches as a run with `--no-jit`."""
    cluster = multi_worker.connect(getattr(args, "worker_setup", None))
    return _workers.train_as(cluster, _train, args)


def _train(args, cluster):
    keras.utils.set_random_seed(args.seed)
    splits = _load_data(args, args.batch_size)
    cluster.check_batch_size(args.batch_size)
    # Written from here on (by the chief), once the data is there.
    run = RunDirectory(args.output, worker=cluster)
    run.prepare({name: getattr(args, name) for name in RUN_ARGUMENTS}, resume=args.resume)
    model, recipe, jit, done = _build(args, splits, run, cluster)
    announce(args, done, jit, cluster)
    note = backend.slow_convolutions_note(args.model)
    if note:
        print(note)
    try:
        _fit(model, recipe, args, splits, run, done, cluster)
    except Exception as error:
        fallback = args.jit is None and jit and backend.is_compile_error(error)
        if not fallback:
            raise
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        print(f"torch.compile could not compile the training step ({type(error).__name__}: "
              f"{first}); training eagerly instead (--no-jit)")
        model, recipe, jit, done = _build(args, splits, run, cluster, jit=False,
                                          restart=True)
        _fit(model, recipe, args, splits, run, done, cluster)
    print("Evaluating the binary network on the test set")
    test_loss, test_accuracy = cluster.evaluate(model, splits.test, args.batch_size)
    with cluster.portable(model):
        model.save(cluster.writable(f"{args.output}/model.keras"))
    if not cluster.is_chief:
        return None
    return run_metrics(args, run, splits, recipe, jit, test_loss, test_accuracy,
                       workers=cluster.count)


def _load_model(path):
    # Without the training configuration: it may name another backend's compilation
    # (jit_compile on JAX is torch.compile on PyTorch).
    return keras.saving.load_model(path, compile=False)


def evaluate(args):
    """Test accuracy and loss of the saved Keras 3 model `args.model_path`."""
    model = _load_model(args.model_path)
    model.compile(loss=_loss(), metrics=["accuracy"], jit_compile=default_jit())
    splits = _load_data(args, args.batch_size, model)
    loss, accuracy = multi_worker.MultiWorker(None).evaluate(model, splits.test,
                                                             args.batch_size)
    print(f"{args.model_path} on {args.dataset} test set: accuracy {accuracy:.4f}, "
          f"loss {loss:.4f} ({backend.NAME})")
    return {"test_accuracy": float(accuracy), "test_loss": float(loss)}


def export(args):
    """The saved Keras 3 model `args.model_path` as a TFLite flatbuffer at `args.output`:
    `keras_bilevel.keras3.export.to_tflite` (checked with LiteRT's interpreter), or for
    `--format lce` `to_lce` (rebuilt from Larq layers, checked with LCE's)."""
    from keras_bilevel.keras3.export import to_lce, to_tflite

    model = _load_model(args.model_path)
    if args.format == "lce":
        return to_lce(model, args.output)
    return to_tflite(model, args.output,
                     weights="int8" if args.format == "tflite-int8" else "float32")


COMMANDS = {"train": train, "evaluate": evaluate, "export": export}
