"""The AdaSTE paper's training protocol, shared by the mnist/cifar/tinyimagenet examples.

Batch 128, the reference recipe (`recipes.adaste_reference`: LatentMomentum with cosine
learning rate from 3e-4, gradient scale (10 N)^2, latent decay 1, +-10 latent
initialisation, relaxed forward, mu annealed by 1.05 per epoch), every weight binary,
500 epochs by default. Each example script calls `run` with its data set and a function
that builds its model from a front end's `models` module.

`--backend larq` (the default) runs on Larq (Keras 2, `keras_bilevel`); `--backend jax`,
`tensorflow` or `torch` run the same protocol on Keras 3 (`keras_bilevel.keras3`: the
same recipe, models and data splits, NumPy batches). The front end is imported only
once the arguments are parsed, since Keras reads its backend once per process.
"""

import argparse
import os
import time

BACKENDS = ("larq", "jax", "tensorflow", "torch")


def parse_args(description, argv=None, momentum=0.9, epochs=500, mu_rate=1.05):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--backend", default="larq", choices=BACKENDS,
                        help="larq: Larq on Keras 2; jax, tensorflow, torch: Keras 3")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--mu-rate", type=float, default=mu_rate,
                        help="mu's growth per epoch (AnnealMu)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="tiny_imagenet, imagenette, folder: the images' side "
                             "(default: the data set's)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--variant", default="symmetric", choices=["symmetric", "reference"])
    parser.add_argument("--momentum", type=float, default=momentum,
                        help="0.9 for CIFAR-10 in the paper, 0.0 for CIFAR-100")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None,
                        help="tensorflow-datasets data_dir; for tiny_imagenet the folder "
                             "holding tiny-imagenet-200/")
    parser.add_argument("--download", action="store_true")
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                        help="XLA (default: on GPU only; always on JAX)")
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="limit each epoch (for smoke tests)")
    parser.add_argument("--output", default=None, help="where to save model.keras")
    return parser.parse_args(argv)


def _larq(dataset, args):
    """(keras, models, recipes, splits, jit, fit data, test data) on Larq."""
    import keras_bilevel  # first: puts TensorFlow in Keras 2 mode
    import tensorflow as tf

    tf.keras.utils.set_random_seed(args.seed)
    splits = keras_bilevel.data.load(dataset, **_data_arguments(dataset, args))
    jit = args.jit if args.jit is not None else bool(tf.config.list_physical_devices("GPU"))
    steps = args.steps_per_epoch
    return (tf.keras, keras_bilevel.models, keras_bilevel.recipes, splits, jit,
            dict(x=splits.train, steps_per_epoch=steps, validation_data=splits.validation),
            dict(x=splits.test, steps=steps))


def _keras3(dataset, args):
    """The same on Keras 3 with `args.backend`."""
    os.environ["KERAS_BACKEND"] = args.backend
    import keras

    from keras_bilevel.keras3 import data, models, multi_worker, recipes
    from keras_bilevel.cli import keras3_commands

    keras.utils.set_random_seed(args.seed)
    splits = data.load(dataset, **_data_arguments(dataset, args))
    train = dict(x=splits.train_epochs(0, args.epochs), shuffle=False,
                 steps_per_epoch=args.steps_per_epoch or splits.steps_per_epoch,
                 validation_batch_size=args.batch_size,
                 validation_data=multi_worker.keras_data(splits.validation))
    jit = keras3_commands.default_jit(args.jit, steps=args.epochs * train["steps_per_epoch"])
    if isinstance(splits.test, tuple):
        x_test, y_test = splits.test
        if args.steps_per_epoch:
            x_test, y_test = (a[:args.steps_per_epoch * args.batch_size]
                              for a in (x_test, y_test))
        test = dict(x=x_test, y=y_test, batch_size=args.batch_size)
    else:  # streamed: batches
        test = dict(x=multi_worker.keras_data(splits.test), steps=args.steps_per_epoch)
    return keras, models, recipes, splits, jit, train, test


def _data_arguments(dataset, args):
    arguments = dict(batch_size=args.batch_size, seed=args.seed, data_dir=args.data_dir,
                     download=args.download)
    if args.image_size is not None:
        arguments["image_size"] = args.image_size
    return arguments


def run(dataset, build_model, args):
    """Train `build_model(models, input_shape, classes, recipe)` on `dataset`; returns the
    test accuracy of the binary network."""
    front = _larq if args.backend == "larq" else _keras3
    keras, models, recipes, splits, jit, train, test = front(dataset, args)
    steps = args.steps_per_epoch or splits.steps_per_epoch
    recipe = recipes.adaste_reference(
        train_size=splits.num_train, epochs=args.epochs, steps_per_epoch=steps,
        momentum=args.momentum, variant=args.variant, batch_size=args.batch_size,
        mu_rate=args.mu_rate)
    model = build_model(models, tuple(splits.input_shape), splits.classes, recipe)
    model.compile(recipe.optimizer,
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=jit)
    start = time.perf_counter()
    model.fit(epochs=recipe.epochs, callbacks=recipe.callbacks, verbose=2, **train)
    _, accuracy = model.evaluate(verbose=0, **test)
    print(f"{model.name} on {dataset} ({args.backend}): test accuracy of the binary network "
          f"{accuracy:.4f} after {recipe.epochs} epochs ({time.perf_counter() - start:.0f} s)")
    if args.output:
        model.save(args.output)
    return accuracy
