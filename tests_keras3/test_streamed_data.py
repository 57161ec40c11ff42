"""Streamed image data sets on Keras 3 (Pillow on threads): every backend, no TensorFlow.

The trees are generated per test in the official layouts (`tests/image_trees.py`).
"""

import keras
import numpy as np
import pytest
from PIL import Image

# keras_bilevel.keras3 first: imported so, the package loads no Larq front end.
from keras_bilevel.keras3 import data, methods, models, multi_worker, streamed
from keras_bilevel.core import image_files  # noqa: I001
from tests.image_trees import write_folder, write_tiny_imagenet


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    write_tiny_imagenet(root, classes=3, per_class=6, val_per_class=2, grey_every=5)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    write_folder(root, classes=3, per_class=4, test_per_class=2,
                 sizes=((40, 56), (70, 30)), png_every=3, grey_every=4)
    return root


def test_tiny_imagenet_splits(tiny):
    splits = data.load("tiny_imagenet", batch_size=4, data_dir=tiny, seed=3)
    assert isinstance(splits, streamed.StreamedSplits)
    assert splits.input_shape == (64, 64, 3) and splits.classes == 3
    assert (splits.num_train, splits.num_validation, splits.num_test) == (16, 2, 6)
    assert splits.steps_per_epoch == 4 and len(splits.test) == 2
    batches = list(splits.epoch_batches(0))
    assert [len(labels) for _, labels in batches] == [4, 4, 4, 4]
    assert all(images.shape == (4, 64, 64, 3) and images.dtype == np.float32
               for images, _ in batches)
    assert sorted(np.concatenate([labels for _, labels in batches]).tolist()) == sorted(
        image_files.tiny_imagenet_index(tiny).train.labels[:16].tolist())


def test_an_epoch_depends_on_seed_and_epoch_alone(folder):
    def epoch(seed, number):
        splits = data.load("folder", batch_size=5, data_dir=folder, seed=seed,
                           image_size=24)
        return list(splits.epoch_batches(number))

    first, again = epoch(0, 1), epoch(0, 1)
    for (x, y), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(first[0][0], epoch(0, 2)[0][0])
    assert not np.array_equal(first[0][0], epoch(1, 1)[0][0])
    # train_epochs(1, 3) is epoch 1 then epoch 2.
    splits = data.load("folder", batch_size=5, data_dir=folder, seed=0, image_size=24)
    chained = list(splits.train_epochs(1, 3))
    assert len(chained) == 2 * splits.steps_per_epoch
    np.testing.assert_array_equal(chained[0][0], first[0][0])


def test_mixed_sizes_and_channels_and_the_default_size(folder):
    splits = data.load("folder", batch_size=5, data_dir=folder)
    assert splits.input_shape == (35, 35, 3)  # the median shorter side
    for images, labels in splits.test:
        assert images.shape[1:] == (35, 35, 3) and len(images) == len(labels)
    np.testing.assert_array_equal(splits.test[1][1], list(splits.test)[1][1])
    with pytest.raises(IndexError):
        splits.test[len(splits.test)]


def test_test_images_are_decoded_whole_at_their_size(tiny):
    """TinyImageNet's 64x64 test images at image size 64: the whole image, standardised
    (checked against Pillow's decoding, then the ImageNet statistics by hand)."""
    splits = data.load("tiny_imagenet", batch_size=4, data_dir=tiny)
    path = image_files.tiny_imagenet_index(tiny).test.paths[0]
    pixels = np.asarray(Image.open(path).convert("RGB"), np.float64) / 255.0
    expected = (pixels - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(splits.test[0][0][0], expected, atol=1e-5)


def test_without_augment_every_epoch_has_the_same_images(folder):
    splits = data.load("folder", batch_size=8, data_dir=folder, image_size=16,
                       augment=False, validation_fraction=0)

    def images(epoch):
        return np.sort(np.concatenate([x for x, _ in splits.epoch_batches(epoch)])
                       .reshape(12, -1), axis=0)

    np.testing.assert_array_equal(images(0), images(1))


def test_bad_input_is_one_line(tmp_path):
    write_folder(tmp_path, classes=2, per_class=2, test_per_class=1)
    (tmp_path / "train" / "class0" / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.jpg is not an image that can be read"):
        data.load("folder", data_dir=tmp_path)
    with pytest.raises(ValueError, match="`image_size` is for tiny_imagenet"):
        data.load("digits", image_size=32)


def test_train_one_epoch_and_evaluate(tiny):
    """A binary ResNet-18 (TinyImageNet form at 64x64, a sixteenth of the width) trains
    an epoch on the stream, validating and evaluating on `ImageBatches`."""
    splits = data.load("tiny_imagenet", batch_size=8, data_dir=tiny)
    model = models.resnet18(input_shape=splits.input_shape, classes=splits.classes,
                            width=1 / 16)
    assert model.layers[1].strides == (2, 2)  # the stem of the TinyImageNet form
    recipe = methods.make("adaste", splits.num_train, 1, splits.steps_per_epoch)
    model.compile(recipe.optimizer,
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    cluster = multi_worker.connect()
    history = model.fit(splits.train_epochs(0, 1), epochs=1,
                        steps_per_epoch=splits.steps_per_epoch,
                        validation_data=cluster.evaluation_data(splits.validation, 8),
                        callbacks=list(recipe.callbacks), shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert "val_accuracy" in history.history
    loss, accuracy = cluster.evaluate(model, splits.test, 8)
    assert np.isfinite(loss) and 0 <= accuracy <= 1


def test_imagenette_through_tfds_and_tf_data(tmp_path):
    """Imagenette streams through the `tf.data` pipeline (TensorFlow comes with TFDS),
    as NumPy training batches and `tf.data` evaluation splits, which every backend's
    `fit` takes."""
    tfds = pytest.importorskip("tensorflow_datasets")
    import tensorflow as tf

    builder = tfds.builder("imagenette", data_dir=str(tmp_path))
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=split, shard_lengths=[n], num_bytes=0,
                            filename_template=tfds.core.ShardedFileTemplate(
                                data_dir=builder.data_path, dataset_name="imagenette",
                                split=split, filetype_suffix="tfrecord"))
        for split, n in {"train": 40, "validation": 10}.items()]))
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_dir)
    with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path)):
        splits = data.load("imagenette", batch_size=4, data_dir=tmp_path, image_size=16)
        assert splits.input_shape == (16, 16, 3) and splits.classes == 10
        images, labels = next(splits.epoch_batches(0))
        assert isinstance(images, np.ndarray) and images.shape == (4, 16, 16, 3)
        assert isinstance(splits.test, tf.data.Dataset)
        assert data.batch_count(splits.test, 4) == 3
        assert sum(len(y) for _, y in data.batches_of(splits.test, 4)()) == 12
