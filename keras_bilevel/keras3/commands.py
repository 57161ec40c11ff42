"""What `keras-bilevel train/evaluate/export --backend jax|tensorflow|torch` do.

The Keras 3 twin of `keras_bilevel.commands`: same arguments, same outputs (history.csv,
model.keras, metrics.json with the backend, curves.png), per-epoch checkpoints and exact
`--resume`, built from `keras_bilevel.keras3` (data, methods, models, runs, export).
`keras_bilevel.cli` imports it after setting `KERAS_BACKEND`; it loads no Larq and no
Keras 2 (Keras 3 itself imports TensorFlow, where installed, to seed it and to save
model files). A workflow on the public API; no training logic of its own.
"""

import keras

from keras_bilevel import _workers
from keras_bilevel._run_files import (RUN_ARGUMENTS, announce, binary_width, build_model,
                                      data_arguments, run_metrics)
from keras_bilevel.keras3 import data, methods, models, multi_worker
from keras_bilevel.keras3.runs import RunDirectory

__all__ = ["CPU_CONVOLUTION_NOTE", "TORCH_COMPILE_MIN_STEPS", "default_jit", "evaluate",
           "export", "train"]

# PyTorch runs at least this long are compiled by default (see `default_jit`).
TORCH_COMPILE_MIN_STEPS = 10_000
# What `benchmarks/reference_speed.py` measured for VGG-16 on JAX on a CPU (BENCHMARKS.md,
# "Against the public PyTorch code").
CPU_CONVOLUTION_NOTE = ("a VGG-16 step measured 6.4x as long as on --backend larq and 4.5x "
                        "as long as on --backend torch, on a 2-core Intel Xeon")


def default_jit(requested=None, steps=None):
    """`jit_compile` for this backend: `requested` if given, else on for JAX (its way of
    running a step), on a GPU only for TensorFlow (XLA on a CPU is slow for
    convolutions; for dense models its graph, with the AdaSTE math XLA-compiled, is as
    fast), and on PyTorch (`torch.compile`) for runs of at least `TORCH_COMPILE_MIN_STEPS`
    training `steps`: compiling costs 20 to 60 s once per process, and with the fused
    AdaSTE kernels an eager step is within 10% of a compiled one on the 1024-wide MLP
    with Adam. `train` falls back to eager if compiling fails."""
    if requested is not None:
        return requested
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "torch":
        return steps is not None and steps >= TORCH_COMPILE_MIN_STEPS
    return True  # jax


def _is_torch_compile_error(error):
    """Whether `error` (or what caused it) was raised by torch.compile's Dynamo/Inductor."""
    while error is not None:
        if type(error).__module__.startswith(("torch._dynamo", "torch._inductor")):
            return True
        error = error.__cause__ or error.__context__
    return False


def _slow_convolutions_note(args):
    """One line for JAX on a CPU with a convolutional model, else None."""
    if keras.backend.backend() != "jax" or args.model == "mlp":
        return None
    import jax

    if jax.default_backend() != "cpu":
        return None
    return (f"Note: JAX runs convolutions slowly on a CPU ({args.model}: "
            f"{CPU_CONVOLUTION_NOTE}); --backend larq or --backend torch is faster here")


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
    note = _slow_convolutions_note(args)
    if note:
        print(note)
    try:
        _fit(model, recipe, args, splits, run, done, cluster)
    except Exception as error:
        fallback = (args.jit is None and jit and keras.backend.backend() == "torch"
                    and _is_torch_compile_error(error))
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
          f"loss {loss:.4f} ({keras.backend.backend()})")
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
