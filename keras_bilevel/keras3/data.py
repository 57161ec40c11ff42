"""Data sets for Keras 3 on every backend: NumPy arrays and NumPy batches.

The Keras 3 twin of `keras_bilevel.keras2.data.load`: the same data sets, splits and
preprocessing (images to [0, 1], standardised per channel with the training-set
statistics; the last `validation_fraction` of the training split held out; for CIFAR
training batches a random crop of the 4-pixel zero-padded image and a random left-right
flip), as NumPy, which every Keras 3 backend takes. The training batches of epoch `e`
are drawn from `(seed, e)` alone, so a resumed run sees exactly what an uninterrupted run
sees. The digits need neither TensorFlow nor Keras; the TFDS sets are read once, whole,
through `tensorflow_datasets` (which imports TensorFlow, never `tf.keras`).
`tiny_imagenet`, `imagenette` and `folder` stream instead (`keras_bilevel.keras3.streamed`:
Pillow, or `tf.data` for Imagenette). This module does not import Keras or Larq.

!!! example
    ```python
    splits = keras_bilevel.keras3.data.load("digits", batch_size=64, seed=0)
    model.fit(splits.train_epochs(0, 10), epochs=10,
              steps_per_epoch=splits.steps_per_epoch, validation_data=splits.validation)
    model.evaluate(*splits.test, batch_size=64)
    ```
"""

import dataclasses
import math
from typing import Optional

import numpy as np

from keras_bilevel.core import datasets, registry
from keras_bilevel.core.datasets import DATASETS, DatasetNotFoundError  # noqa: F401  (public)
from keras_bilevel.core.splits import Splits
from keras_bilevel.keras3 import streamed

__all__ = ["ArraySplits", "DATASETS", "DatasetNotFoundError", "batch_count", "batches_of", "load"]


@dataclasses.dataclass(frozen=True)
class ArraySplits(Splits):
    """The splits `load` returns: images as stored (uint8, or float32 in [0, 1] for the
    digits), labels int64; `validation`, `test` and the batches are standardised float32.

    # Attributes
        name, input_shape, classes, batch_size, seed, mean, std, augment: see
            `keras_bilevel.core.splits.Splits`.
    """

    train_images: np.ndarray = dataclasses.field(repr=False)
    train_labels: np.ndarray = dataclasses.field(repr=False)
    validation_images: Optional[np.ndarray] = dataclasses.field(repr=False)
    validation_labels: Optional[np.ndarray] = dataclasses.field(repr=False)
    test_images: np.ndarray = dataclasses.field(repr=False)
    test_labels: np.ndarray = dataclasses.field(repr=False)

    @property
    def num_train(self):
        return len(self.train_labels)

    @property
    def num_validation(self):
        return 0 if self.validation_labels is None else len(self.validation_labels)

    @property
    def num_test(self):
        return len(self.test_labels)

    def standardise(self, images):
        """Stored images to float32, standardised per channel."""
        unit = images.astype(np.float32)
        if images.dtype == np.uint8:
            unit /= 255.0
        return (unit - np.float32(self.mean)) / np.float32(self.std)

    @property
    def validation(self):
        """`(images, labels)` of the validation split, or None."""
        if self.validation_labels is None:
            return None
        return self.standardise(self.validation_images), self.validation_labels

    @property
    def test(self):
        """`(images, labels)` of the test split."""
        return self.standardise(self.test_images), self.test_labels

    def epoch_batches(self, epoch):
        """The training batches of epoch `epoch` (0-based): shuffled, and for CIFAR with
        `augment` cropped and flipped, by `(seed, epoch)` alone."""
        order = np.random.default_rng([self.seed, epoch]).permutation(self.num_train)
        draws = np.random.default_rng([self.seed, epoch, 1])
        augmented = self.augment and self.name in datasets.AUGMENTED
        for start in range(0, self.num_train, self.batch_size):
            chosen = order[start:start + self.batch_size]
            images = self.train_images[chosen]
            if augmented:
                images = _crop_and_flip(images, draws)
            yield self.standardise(images), self.train_labels[chosen]


def load(name, batch_size=128, validation_fraction=0.1, seed=0, data_dir=None,
         download=False, augment=True, image_size=None):
    """The train / validation / test splits of a data set as NumPy (see the module).

    # Arguments
        name: one of `DATASETS`.
        batch_size: examples per training batch, >= 1.
        validation_fraction: share of the training split held out, in [0, 1).
        seed: non-negative int; the order and augmentation of epoch e come from (seed, e).
        data_dir: tensorflow-datasets data directory (None: TFDS's default); ignored
            for `digits`.
        download: let tensorflow-datasets download missing data; with False nothing
            touches the network and missing data raises `DatasetNotFoundError`.
        augment: random crop and flip of CIFAR training batches (random-resized crop
            and flip for the streamed sets).
        image_size: side of the square images of `tiny_imagenet`, `imagenette` and
            `folder` (None: their default, as in `keras_bilevel.keras2.data.load`).

    # Returns
        An `ArraySplits`; for `tiny_imagenet`, `imagenette` and `folder`, whose images
        stream from their files (`keras_bilevel.keras3.streamed`), a `StreamedSplits`.
    """
    datasets.check_load_arguments(name, batch_size, validation_fraction, seed)
    if name in datasets.STREAMED:
        tfds = registry.DATASETS[name].source == "tfds"
        builder = datasets.prepared_builder(name, data_dir, download) if tfds else None
        return streamed.load_streamed(name, batch_size, validation_fraction, seed, data_dir,
                                      augment, image_size, builder)
    datasets.check_image_size(name, image_size)
    if name == "digits":
        (x, y), test, shape, classes = _digits()
    else:
        (x, y), test, shape, classes = _tfds_arrays(name, data_dir, download)
    held_out = datasets.validation_size(name, len(x), validation_fraction)
    boundary = len(x) - held_out
    mean, std = datasets.CHANNEL_STATS[name]
    return ArraySplits(
        name=name, input_shape=shape, classes=classes, batch_size=batch_size, seed=seed,
        mean=tuple(mean), std=tuple(std), augment=augment,
        train_images=x[:boundary], train_labels=y[:boundary],
        validation_images=x[boundary:] if held_out else None,
        validation_labels=y[boundary:] if held_out else None,
        test_images=test[0], test_labels=test[1])


def _digits():
    (x, y), (x_test, y_test) = datasets.load_digits(
        test_fraction=datasets.DIGITS_TEST_FRACTION, seed=0)
    shape = (8, 8, 1)
    return (x.reshape((-1,) + shape), y), (x_test.reshape((-1,) + shape), y_test), shape, 10


def batches_of(split, batch_size):
    """A function returning an iterator over the `(images, labels)` batches of `split`:
    NumPy arrays `(images, labels)`, `ImageBatches`, or a `tf.data` dataset."""
    if isinstance(split, tuple):
        images, labels = split

        def sliced():
            for start in range(0, len(labels), batch_size):
                yield images[start:start + batch_size], labels[start:start + batch_size]

        return sliced
    if isinstance(split, streamed.ImageBatches):
        return lambda: iter(split)
    return split.as_numpy_iterator


def batch_count(split, batch_size):
    """How many batches `batches_of(split, batch_size)` gives."""
    if isinstance(split, tuple):
        return math.ceil(len(split[1]) / batch_size)
    if isinstance(split, streamed.ImageBatches):
        return len(split)
    return int(split.cardinality())


def _tfds_arrays(name, data_dir, download):
    builder = datasets.prepared_builder(name, data_dir, download)

    def split(spec):
        import tensorflow_datasets as tfds

        images, labels = tfds.as_numpy(builder.as_dataset(
            split=spec, as_supervised=True, shuffle_files=False, batch_size=-1))
        return np.asarray(images), np.asarray(labels, np.int64)

    info = builder.info
    shape = tuple(int(d) for d in info.features["image"].shape)
    return (split("train"), split("test"), shape,
            int(info.features["label"].num_classes))


def _crop_and_flip(images, draws):
    """Pad by 4 zero pixels, crop back to size at random, flip left-right at random."""
    count, height, width = images.shape[:3]
    pad = datasets.CROP_PADDING
    padded = np.pad(images, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    top = draws.integers(0, 2 * pad + 1, count)
    left = draws.integers(0, 2 * pad + 1, count)
    flip = draws.random(count) < 0.5
    rows = top[:, None] + np.arange(height)
    columns = left[:, None] + np.arange(width)
    columns = np.where(flip[:, None], columns[:, ::-1], columns)
    return padded[np.arange(count)[:, None, None], rows[:, :, None], columns[:, None, :]]
