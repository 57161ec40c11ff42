"""The gradient of a scalar function of one array, on the current Keras backend.

Keras 3 has no backend-neutral `grad`; the tests differentiate through the backend's
own autodiff (which is what `fit` uses), so a quantizer's backward pass is checked on
the path training takes.
"""

import keras
import numpy as np


def gradient(fn, x):
    """d fn(x) / d x as a NumPy array, for a float array `x` and a scalar-valued `fn`."""
    backend = keras.backend.backend()
    x = np.asarray(x)
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(fn)(jax.numpy.asarray(x)))
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return tape.gradient(y, x).numpy()
    if backend == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        fn(x).backward()
        return x.grad.detach().cpu().numpy()
    raise NotImplementedError(f"no gradient helper for the {backend!r} backend")
