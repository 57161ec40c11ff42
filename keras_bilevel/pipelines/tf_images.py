"""`tf.data` pipelines of the streamed image data sets (TinyImageNet, folders, Imagenette).

Files (or TFDS records) are read, decoded, cropped and resized in parallel as they
stream, batched and prefetched; nothing is held in memory but the list of files (and, for
TFDS, a shuffle buffer of encoded records). The geometry is `keras_bilevel.core.image_files`'
(random-resized crop and flip for training, resize and centre crop for evaluation), bound
here to `tf.experimental.numpy`. Epoch `e`'s order and crops come from `(seed, e)` alone.
Imports TensorFlow (and tensorflow_datasets for Imagenette), never Keras: the Larq front
end builds every streamed data set with it, the Keras 3 front end Imagenette.
"""

import dataclasses
import types
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from keras_bilevel.core import image_files
from keras_bilevel.core import image_geometry
from keras_bilevel.core.datasets import validation_size

__all__ = ["EncodedSource", "Pipelines", "derived_seed", "folder_source", "pipelines",
           "tfds_source"]

# Records of a TFDS data set kept in the training shuffle buffer (encoded images).
TFDS_SHUFFLE_BUFFER = 1024


@dataclasses.dataclass(frozen=True)
class EncodedSource:
    """Unbatched `(encoded image, label)` datasets of a streamed data set, in fixed order.

    `train(seed)` gives the training examples of one epoch shuffled by `seed` (an int64
    tensor); `validation()` (or None) and `test()` unshuffled."""

    train: Callable[[tf.Tensor], tf.data.Dataset]
    validation: Optional[Callable[[], tf.data.Dataset]]
    test: Callable[[], tf.data.Dataset]
    num_train: int
    num_validation: int
    num_test: int
    classes: int
    channels: int


@dataclasses.dataclass(frozen=True)
class Pipelines:
    """Batches of standardised float32 images and int64 labels."""

    epoch_batches: Callable[[tf.Tensor], tf.data.Dataset]
    validation: Optional[tf.data.Dataset]
    test: tf.data.Dataset


def folder_source(index, validation_fraction):
    """The `EncodedSource` of an `image_files.ImageIndex` (files read as they stream);
    the last `validation_fraction` of its training files is the validation split."""
    held_out = validation_size(index.name, len(index.train), validation_fraction)
    boundary = len(index.train) - held_out

    def files(subset):
        return tf.data.Dataset.from_tensor_slices(
            (np.array(subset.paths, dtype=object), subset.labels))

    def read(dataset):
        return dataset.map(lambda path, label: (tf.io.read_file(path), label),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    train_files = index.train.take(range(boundary))
    validation_files = index.train.take(range(boundary, len(index.train)))
    return EncodedSource(
        train=lambda seed: read(files(train_files).shuffle(
            boundary, seed=seed, reshuffle_each_iteration=False)),
        validation=(lambda: read(files(validation_files))) if held_out else None,
        test=lambda: read(files(index.test)),
        num_train=boundary, num_validation=held_out, num_test=len(index.test),
        classes=len(index.classes), channels=index.channels)


def tfds_source(builder, validation_fraction, shuffle_buffer=None):
    """The `EncodedSource` of a prepared TFDS image data set with `train` and
    `validation` (used as our test split) splits, images left encoded."""
    import tensorflow_datasets as tfds

    info = builder.info
    total = info.splits["train"].num_examples
    held_out = validation_size(info.name, total, validation_fraction)
    boundary = total - held_out

    def split(spec):
        return builder.as_dataset(split=spec, as_supervised=True, shuffle_files=False,
                                  decoders={"image": tfds.decode.SkipDecoding()})

    test_split = "validation" if "validation" in info.splits else "test"
    return EncodedSource(
        train=lambda seed: split(f"train[:{boundary}]").shuffle(
            shuffle_buffer or TFDS_SHUFFLE_BUFFER, seed=seed,
            reshuffle_each_iteration=False),
        validation=(lambda: split(f"train[{boundary}:]")) if held_out else None,
        test=lambda: split(test_split),
        num_train=boundary, num_validation=held_out,
        num_test=info.splits[test_split].num_examples,
        classes=int(info.features["label"].num_classes),
        channels=int(info.features["image"].shape[-1]))


def pipelines(source, batch_size, image_size, crop_fraction, seed, augment=True):
    """The training batches of each epoch, and the validation and test batches, images
    standardised with `image_files.channel_stats(source.channels)`; without `augment`
    the training images are cropped as for evaluation."""
    size = image_files.check_image_size(image_size)
    channels = source.channels
    mean, std = (tf.constant(values, tf.float32)
                 for values in image_files.channel_stats(channels))
    order_seed, augment_seed = image_geometry.split_seeds(seed)

    def standardised(image):
        return (image / 255.0 - mean) / std

    def training_example(index, example, epoch_seed):
        encoded, label = example
        image = _decode(encoded, channels)
        draws = tf.random.stateless_uniform(
            [2 * image_geometry.ATTEMPTS + 3], seed=tf.stack([epoch_seed, index]),
            dtype=tf.float64)
        attempts = image_geometry.ATTEMPTS
        box = image_geometry.random_resized_box(
            _xp(), *_height_width(image), draws[:attempts], draws[attempts:2 * attempts],
            draws[2 * attempts:2 * attempts + 2])
        image = _crop_resized(image, box, size)
        image = tf.cond(draws[-1] < 0.5, lambda: tf.reverse(image, [1]), lambda: image)
        return standardised(image), label

    def evaluation_example(encoded, label):
        image = _decode(encoded, channels)
        box = image_geometry.centre_box(_xp(), *_height_width(image), crop_fraction)
        return standardised(_crop_resized(image, box, size)), label

    def batched(examples):
        return examples.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def evaluation(examples):
        if examples is None:
            return None
        return batched(examples().map(evaluation_example,
                                      num_parallel_calls=tf.data.AUTOTUNE,
                                      deterministic=True))

    def epoch_batches(epoch):
        tf.compat.v1.set_random_seed(None)  # the epoch's seeds alone decide (as in data)
        epoch_seed = derived_seed(augment_seed, epoch)
        examples = source.train(derived_seed(order_seed, epoch))
        if augment:
            examples = examples.enumerate().map(
                lambda index, example: training_example(index, example, epoch_seed),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        else:
            examples = examples.map(evaluation_example, num_parallel_calls=tf.data.AUTOTUNE,
                                    deterministic=True)
        return examples.batch(batch_size)

    return Pipelines(epoch_batches=epoch_batches, validation=evaluation(source.validation),
                     test=evaluation(source.test))


def _xp():
    """The NumPy functions `image_files`' box formulas use, in TensorFlow."""
    return types.SimpleNamespace(
        asarray=tf.cast, float64=tf.float64, exp=tf.exp, sqrt=tf.sqrt, round=tf.round,
        floor=tf.floor, where=tf.where, maximum=tf.maximum, minimum=tf.minimum,
        argmax=lambda a, axis: tf.argmax(a, axis=axis),
        any=lambda a, axis: tf.reduce_any(a, axis=axis),
        take_along_axis=lambda a, indices, axis: tf.gather(
            a, indices, axis=axis, batch_dims=len(a.shape) - 1))


def derived_seed(seed, index):
    """An int64 that depends on the two int64s `seed` and `index` only (stateless)."""
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
    return tf.random.stateless_uniform([], seed=key, minval=None, maxval=None,
                                       dtype=tf.int64)


def _decode(encoded, channels):
    """JPEG, PNG, BMP or GIF (first frame) bytes to uint8 `(height, width, channels)`;
    grey images become RGB when `channels` is 3, colour ones grey when it is 1."""
    image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
    image.set_shape([None, None, channels])
    return image


def _height_width(image):
    shape = tf.shape(image)
    return tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)


def _crop_resized(image, box, size):
    """The `box` of `image` resized (bilinear, antialiased) to `size` x `size`, float32
    on [0, 255]."""
    top, left, height, width = (tf.cast(value, tf.int32) for value in box)
    crop = image[top:top + height, left:left + width]
    return tf.image.resize(crop, (size, size), method="bilinear", antialias=True)

