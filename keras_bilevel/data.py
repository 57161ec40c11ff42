"""Data sets for examples and tests that need no network.

`digits` is scikit-learn's copy of the UCI handwritten digits (8x8 images, 10 classes,
1797 examples), shipped inside the package, so it is always available offline.
"""

import numpy as np

__all__ = ["load_digits"]


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
