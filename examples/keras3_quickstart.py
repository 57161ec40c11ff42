"""Quickstart on Keras 3: a binary-weight MLP trained with AdaSTE on the UCI digits, offline.

    KERAS_BACKEND=jax python examples/keras3_quickstart.py [EPOCHS]   # or tensorflow, torch

The Keras 3 twin of `quickstart.py`, with no Larq: a 64-256-256-256-10 network whose
every weight is +-1 (`keras_bilevel.keras3.layers.QuantDense` with
`kernel_quantizer="ada_ste"`), trained on JAX, TensorFlow or PyTorch, then evaluated as
the binary network it is at inference (sign of the latent weights).
"""

import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported

import keras  # noqa: E402

from keras_bilevel.keras3 import callbacks, data, models  # noqa: E402


def main(epochs=30, batch_size=64, seed=0):
    """Train for `epochs` and return the binary network's test accuracy."""
    keras.utils.set_random_seed(seed)
    splits = data.load("digits", batch_size=batch_size, seed=seed)
    model = models.binary_mlp(splits.input_shape, hidden_units=256, kernel_quantizer="ada_ste")
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    start = time.perf_counter()
    # The batches of epoch e depend on (seed, e) alone, whatever the backend.
    model.fit(splits.train_epochs(0, epochs), steps_per_epoch=splits.steps_per_epoch,
              epochs=epochs, validation_data=splits.validation, verbose=2,
              callbacks=[callbacks.AnnealMu(), callbacks.BinarizationGap()])
    x_test, y_test = splits.test
    accuracy = model.evaluate(x_test, y_test, verbose=0)[1]  # training=False: sign weights
    print(f"Binary network (every weight +-1) on {keras.backend.backend()}: test accuracy "
          f"{accuracy:.4f} on {len(x_test)} digits, trained in "
          f"{time.perf_counter() - start:.0f} s")
    return accuracy


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:2]))
