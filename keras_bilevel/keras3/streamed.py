"""Streamed image data sets for Keras 3: TinyImageNet, image folders, Imagenette.

The Keras 3 twin of the streamed sets of `keras_bilevel.keras2.data.load`: the same files, splits
and preprocessing (`keras_bilevel.core.image_files`: random-resized crop and flip for
training, resize and centre crop for evaluation, ImageNet statistics), as NumPy batches,
which every backend takes. Files are decoded with Pillow on a pool of threads, a few
batches ahead of the one being trained on, never all held in memory; epoch `e`'s order
and crops come from `(seed, e)` alone, so a resumed run sees the batches an uninterrupted
one sees. Imagenette comes from tensorflow-datasets and streams through the `tf.data`
pipeline of `keras_bilevel.pipelines.tf_images` (TensorFlow is installed with TFDS). No Keras.

!!! example
    ```python
    splits = keras_bilevel.keras3.data.load("folder", data_dir="photos", image_size=64)
    model.fit(splits.train_epochs(0, 10), epochs=10,
              steps_per_epoch=splits.steps_per_epoch, validation_data=splits.validation)
    ```
"""

import collections
import concurrent.futures
import dataclasses
import math
import os
from typing import Any, Callable, Optional

import numpy as np

from keras_bilevel.core import image_files
from keras_bilevel.core import image_geometry
from keras_bilevel.core.datasets import validation_size
from keras_bilevel.core.splits import Splits

__all__ = ["ImageBatches", "StreamedSplits", "load_streamed"]

# Batches decoded ahead of the one being consumed.
PREFETCH_BATCHES = 2


def _decoded(path, size, channels, box, flip=False):
    """The image at `path` as uint8 `(size, size, channels)`: `box(height, width)` of it
    (top, left, height, width) resized, bilinear (antialiased), flipped if `flip`."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB" if channels == 3 else "L")
        top, left, height, width = (float(v) for v in box(image.height, image.width))
        image = image.resize((size, size), Image.BILINEAR,
                             box=(left, top, left + width, top + height))
        array = np.asarray(image, np.uint8)
    if channels == 1:
        array = array[..., None]
    return array[:, ::-1] if flip else array


class _Decoder:
    """Decodes batches of files on a pool of threads, standardised float32."""

    def __init__(self, size, channels):
        self.size, self.channels = size, channels
        mean, std = image_files.channel_stats(channels)
        self.mean, self.std = np.float32(mean), np.float32(std)
        self._pool = None

    @property
    def pool(self):
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1))
        return self._pool

    def submit(self, jobs):
        """Futures of the images of `jobs`, `(path, box, flip)` each."""
        return [self.pool.submit(_decoded, path, self.size, self.channels, box, flip)
                for path, box, flip in jobs]

    def batch(self, futures, labels):
        images = np.stack([future.result() for future in futures]).astype(np.float32)
        return (images / np.float32(255.0) - self.mean) / self.std, labels

    def stream(self, batches):
        """`(images, labels)` of each `(jobs, labels)` of `batches`, `PREFETCH_BATCHES`
        decoded ahead."""
        pending = collections.deque()
        for jobs, labels in batches:
            pending.append((self.submit(jobs), labels))
            if len(pending) > PREFETCH_BATCHES:
                yield self.batch(*pending.popleft())
        while pending:
            yield self.batch(*pending.popleft())


class ImageBatches:
    """The batches of an evaluation split, decoded as they are asked for: `len()`,
    `batches[i]` and iteration (prefetching)."""

    def __init__(self, files, batch_size, crop_fraction, decoder):
        self.files, self.batch_size = files, batch_size
        self.crop_fraction, self._decoder = crop_fraction, decoder

    def __len__(self):
        return math.ceil(len(self.files) / self.batch_size)

    def _jobs(self, index):
        rows = range(index * self.batch_size,
                     min(len(self.files), (index + 1) * self.batch_size))
        jobs = [(self.files.paths[row], self._box, False) for row in rows]
        return jobs, self.files.labels[rows.start:rows.stop]

    def _box(self, height, width):
        return image_geometry.centre_box(np, height, width, self.crop_fraction)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        jobs, labels = self._jobs(index)
        return self._decoder.batch(self._decoder.submit(jobs), labels)

    def __iter__(self):
        return self._decoder.stream(self._jobs(i) for i in range(len(self)))


@dataclasses.dataclass(frozen=True)
class StreamedSplits(Splits):
    """What `keras_bilevel.keras3.data.load` returns for a streamed data set: the
    attributes of `ArraySplits`, with `validation` and `test` as `ImageBatches` (or,
    for Imagenette, `tf.data` datasets), which `fit` and `evaluate` take, and
    `epoch_batches(epoch)` a function giving epoch `epoch`'s batches."""

    num_train: int
    num_validation: int
    num_test: int
    validation: Optional[Any] = dataclasses.field(repr=False)
    test: Any = dataclasses.field(repr=False)
    epoch_batches: Callable[[int], Any] = dataclasses.field(repr=False)


def load_streamed(name, batch_size, validation_fraction, seed, data_dir, augment,
                  image_size, builder=None):
    """The `StreamedSplits` of `tiny_imagenet` or `folder` (files in `data_dir`), or of
    `imagenette` (the prepared TFDS `builder`)."""
    if name == "imagenette":
        return _tfds_streamed(builder, batch_size, validation_fraction, seed, augment,
                              image_size)
    index = image_files.index_of(name, data_dir)
    size = image_files.image_size_for(name, image_size, index)
    held_out = validation_size(name, len(index.train), validation_fraction)
    boundary = len(index.train) - held_out
    train = index.train.take(range(boundary))
    crop_fraction = image_files.EVAL_CROP_FRACTION[name]
    decoder = _Decoder(size, index.channels)
    order_seed, augment_seed = image_geometry.split_seeds(seed)

    def epoch_batches(epoch):
        order = np.random.default_rng([order_seed, epoch]).permutation(boundary)
        scale, ratio, position, flip = image_geometry.epoch_draws(augment_seed, epoch,
                                                                boundary)

        def job(row):
            image = order[row]
            if not augment:
                return (train.paths[image], evaluation_box, False)

            def box(height, width):
                return image_geometry.random_resized_box(np, height, width, scale[row],
                                                       ratio[row], position[row])

            return train.paths[image], box, bool(flip[row] < 0.5)

        def batches():
            for start in range(0, boundary, batch_size):
                rows = range(start, min(boundary, start + batch_size))
                yield [job(row) for row in rows], train.labels[order[rows.start:rows.stop]]

        return decoder.stream(batches())

    def evaluation_box(height, width):
        return image_geometry.centre_box(np, height, width, crop_fraction)

    def evaluation(files):
        return ImageBatches(files, batch_size, crop_fraction, decoder)

    mean, std = image_files.channel_stats(index.channels)
    return StreamedSplits(
        name=name, input_shape=(size, size, index.channels), classes=len(index.classes),
        batch_size=batch_size, seed=seed, mean=tuple(mean), std=tuple(std),
        augment=augment, num_train=boundary, num_validation=held_out,
        num_test=len(index.test),
        validation=evaluation(index.train.take(range(boundary, len(index.train))))
        if held_out else None,
        test=evaluation(index.test), epoch_batches=epoch_batches)


def _tfds_streamed(builder, batch_size, validation_fraction, seed, augment, image_size):
    from keras_bilevel.pipelines import tf_images

    name = "imagenette"
    source = tf_images.tfds_source(builder, validation_fraction)
    size = image_files.image_size_for(name, image_size)
    pipelines = tf_images.pipelines(source, batch_size, size,
                                     image_files.EVAL_CROP_FRACTION[name], seed,
                                     augment=augment)
    mean, std = image_files.channel_stats(source.channels)

    def epoch_batches(epoch):
        return pipelines.epoch_batches(epoch).prefetch(2).as_numpy_iterator()

    return StreamedSplits(
        name=name, input_shape=(size, size, source.channels), classes=source.classes,
        batch_size=batch_size, seed=seed, mean=tuple(mean), std=tuple(std),
        augment=augment, num_train=source.num_train, num_validation=source.num_validation,
        num_test=source.num_test, validation=pipelines.validation, test=pipelines.test,
        epoch_batches=epoch_batches)
