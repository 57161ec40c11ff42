"""Quickstart: a binary-weight MLP trained with AdaSTE on the UCI digits, offline.

    python examples/quickstart.py

Trains a 64-256-256-256-10 network whose every weight is +-1 (Larq `QuantDense` with
`kernel_quantizer="ada_ste"`), then evaluates it as the binary network it is at
inference (sign of the latent weights) and prints the test accuracy.
"""

import argparse
import time

import keras_bilevel  # first: puts TensorFlow in Keras 2 mode
import tensorflow as tf


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden-units", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    tf.keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = keras_bilevel.data.load_digits(seed=args.seed)
    model = keras_bilevel.models.binary_mlp(
        input_shape=(64,), hidden_units=args.hidden_units, kernel_quantizer="ada_ste"
    )
    model.compile(
        optimizer=tf.keras.optimizers.Adam(1e-3),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(
        x_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_split=0.1,
        callbacks=[keras_bilevel.callbacks.AnnealMu(), keras_bilevel.callbacks.BinarizationGap()],
        verbose=2,
    )
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)  # training=False: sign weights
    print(
        f"Binary network (every weight +-1): test accuracy {accuracy:.4f} on "
        f"{len(x_test)} digits, trained in {seconds:.0f} s"
    )
    return accuracy


if __name__ == "__main__":
    main()
