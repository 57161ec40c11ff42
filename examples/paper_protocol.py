"""The AdaSTE paper's training protocol, shared by the mnist/cifar examples.

Batch 128, the reference recipe (`keras_bilevel.recipes.adaste_reference`: LatentMomentum
with cosine learning rate from 3e-4, gradient scale (10 N)^2, latent decay 1, +-10 latent
initialisation, relaxed forward, mu annealed by 1.05 per epoch), every weight binary,
500 epochs by default. Each example script calls `run` with its data set and model.
"""

import argparse
import time

import keras_bilevel  # first: puts TensorFlow in Keras 2 mode
import tensorflow as tf


def parse_args(description, argv=None, momentum=0.9):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--variant", default="symmetric", choices=["symmetric", "reference"])
    parser.add_argument("--momentum", type=float, default=momentum,
                        help="0.9 for CIFAR-10 in the paper, 0.0 for CIFAR-100")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data_dir")
    parser.add_argument("--download", action="store_true")
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                        help="XLA (default: on GPU only)")
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="limit each epoch (for smoke tests)")
    parser.add_argument("--output", default=None, help="where to save model.keras")
    return parser.parse_args(argv)


def run(dataset, build_model, args):
    """Train `build_model(input_shape, classes, recipe)` on `dataset`; returns test accuracy."""
    tf.keras.utils.set_random_seed(args.seed)
    splits = keras_bilevel.data.load(dataset, batch_size=args.batch_size, seed=args.seed,
                                     data_dir=args.data_dir, download=args.download)
    steps = args.steps_per_epoch or -(-splits.num_train // args.batch_size)
    recipe = keras_bilevel.recipes.adaste_reference(
        train_size=splits.num_train, epochs=args.epochs, steps_per_epoch=steps,
        momentum=args.momentum, variant=args.variant, batch_size=args.batch_size)
    model = build_model(tuple(splits.input_shape), splits.classes, recipe)
    jit = args.jit if args.jit is not None else bool(tf.config.list_physical_devices("GPU"))
    model.compile(recipe.optimizer,
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=jit)
    start = time.perf_counter()
    model.fit(splits.train, validation_data=splits.validation, epochs=recipe.epochs,
              steps_per_epoch=args.steps_per_epoch, callbacks=recipe.callbacks, verbose=2)
    _, accuracy = model.evaluate(splits.test, steps=args.steps_per_epoch, verbose=0)
    print(f"{model.name} on {dataset}: test accuracy of the binary network {accuracy:.4f} "
          f"after {recipe.epochs} epochs ({time.perf_counter() - start:.0f} s)")
    if args.output:
        model.save(args.output)
    return accuracy
