"""`keras_bilevel.data.load`: the tf.data pipelines, on real digits and on mocked TFDS data.

The TFDS data sets are mocked with `tfds.testing.mock_data`, offline. Its default
metadata directory is not shipped in the tensorflow-datasets wheel, and `load` refuses
a data set whose `dataset_info.json` is missing before asking TFDS for it, so
`tests.conftest.tfds_metadata` writes the real builders' metadata (features from the installed
builder code, made-up split sizes) into a tmp data_dir that both `mock_data` and `load`
use. Under the mock every split (and every slice of one) yields the same `num_examples`
deterministic random examples.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_bilevel import data

from tests.conftest import MOCK_EXAMPLES, TFDS_SETS, tfds_metadata  # noqa: F401


def _arrays(dataset):
    """All batches of `dataset` concatenated: (images, labels) NumPy arrays."""
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(images), np.concatenate(labels)


def _standardised(images, name):
    mean, std = (np.asarray(v, np.float32) for v in data.CHANNEL_STATS[name])
    return (images.astype(np.float32) / np.float32(255.0) - mean) / std


class TestArguments:
    @pytest.mark.parametrize("kwargs, message", [
        (dict(name="imagenet"), r"`name` must be one of 'digits', 'mnist', 'fashion_mnist', "
                                r"'cifar10', 'cifar100', 'tiny_imagenet', 'imagenette', "
                                r"'folder'; got 'imagenet'"),
        (dict(name="MNIST"), r"got 'MNIST'"),
        (dict(name="digits", batch_size=0), r"`batch_size` must be an integer >= 1, got 0"),
        (dict(name="digits", batch_size=2.5), r"`batch_size` .* got 2.5"),
        (dict(name="digits", batch_size=True), r"`batch_size` .* got True"),
        (dict(name="digits", validation_fraction=1), r"`validation_fraction` must be a "
                                                     r"number in \[0, 1\) .* got 1\."),
        (dict(name="digits", validation_fraction=-0.1), r"`validation_fraction` .* got -0.1"),
        (dict(name="digits", seed=-1), r"`seed` must be a non-negative integer, got -1"),
        (dict(name="digits", shuffle_buffer=0), r"`shuffle_buffer` .* got 0"),
    ])
    def test_invalid(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            data.load(**kwargs)

    def test_known_names(self):
        assert data.DATASETS == ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100",
                                 "tiny_imagenet", "imagenette", "folder")
        # The streamed sets are standardised with the ImageNet statistics.
        assert set(data.CHANNEL_STATS) == set(data.DATASETS) - {"tiny_imagenet",
                                                                 "imagenette", "folder"}
        for mean, std in data.CHANNEL_STATS.values():
            assert len(mean) == len(std) in (1, 3)


class TestDigits:
    """The real scikit-learn digits: 1797 = 1438 train + 359 test (20%, seed 0)."""

    def test_splits_shapes_and_dtypes(self):
        splits = data.load("digits", batch_size=32)
        assert (splits.name, splits.input_shape, splits.classes) == ("digits", (8, 8, 1), 10)
        assert (splits.num_train, splits.num_validation, splits.num_test) == (1294, 144, 359)
        assert splits.batch_size == 32 and splits.steps_per_epoch == 41
        sizes = []
        for images, labels in splits.train:
            assert images.dtype == tf.float32 and labels.dtype == tf.int64
            assert images.shape[1:] == (8, 8, 1) and labels.shape == images.shape[:1]
            sizes.append(int(labels.shape[0]))
        assert sizes == [32] * 40 + [14]
        assert sum(int(y.shape[0]) for _, y in splits.validation) == 144
        assert sum(int(y.shape[0]) for _, y in splits.test) == 359

    def test_statistics_come_from_the_training_split(self):
        (x, _), _ = data.load_digits(test_fraction=0.2, seed=0)
        (mean,), (std,) = data.CHANNEL_STATS["digits"]
        assert mean == pytest.approx(x.mean(dtype=np.float64), abs=1e-4)
        assert std == pytest.approx(x.std(dtype=np.float64), abs=1e-4)

    def test_normalised(self):
        splits = data.load("digits", validation_fraction=0)
        images, _ = _arrays(splits.train)
        assert abs(images.mean()) < 1e-3 and abs(images.std() - 1) < 1e-3

    def test_exact_values_and_fixed_splits(self):
        (x, y), (x_test, y_test) = data.load_digits(test_fraction=0.2, seed=0)
        (mean,), (std,) = data.CHANNEL_STATS["digits"]
        expected = ((x.reshape(-1, 8, 8, 1) - np.float32(mean)) / np.float32(std))
        for seed in (0, 5):
            splits = data.load("digits", batch_size=50, seed=seed)
            images, labels = _arrays(splits.validation)  # the last 144 training examples
            np.testing.assert_allclose(images, expected[1294:], rtol=0, atol=1e-6)
            np.testing.assert_array_equal(labels, y[1294:])
            images, labels = _arrays(splits.test)
            np.testing.assert_allclose(
                images, (x_test.reshape(-1, 8, 8, 1) - np.float32(mean)) / np.float32(std),
                rtol=0, atol=1e-6)
            np.testing.assert_array_equal(labels, y_test)
            # Training: the first 1294 examples, shuffled.
            images, labels = _arrays(splits.train)
            order = np.lexsort(images.reshape(len(images), -1).T)
            reference = np.lexsort(expected[:1294].reshape(1294, -1).T)
            np.testing.assert_allclose(images[order], expected[:1294][reference], atol=1e-6)
            np.testing.assert_array_equal(labels[order], y[:1294][reference])

    @pytest.mark.parametrize("fraction, sizes", [(0, (1438, 0)), (0.5, (719, 719)),
                                                 (0.001, (1437, 1)), (0.9999, (1, 1437))])
    def test_validation_fraction(self, fraction, sizes):
        splits = data.load("digits", validation_fraction=fraction, batch_size=500)
        assert (splits.num_train, splits.num_validation) == sizes
        assert sum(int(y.shape[0]) for _, y in splits.train) == sizes[0]
        if fraction == 0:
            assert splits.validation is None
        else:
            assert sum(int(y.shape[0]) for _, y in splits.validation) == sizes[1]

    def test_shuffling_is_seeded_and_reshuffles_every_epoch(self):
        def epochs(seed):
            train = data.load("digits", batch_size=1438, validation_fraction=0, seed=seed).train
            return [labels.numpy() for _, labels in train.repeat(2)]

        first, second = epochs(3)
        again = epochs(3)
        np.testing.assert_array_equal(first, again[0])
        np.testing.assert_array_equal(second, again[1])
        assert not np.array_equal(first, second)
        np.testing.assert_array_equal(np.sort(first), np.sort(second))
        assert not np.array_equal(first, epochs(4)[0])

    def test_validation_and_test_order_is_fixed(self):
        splits = data.load("digits", batch_size=64, seed=1)
        for dataset in (splits.validation, splits.test):
            a, b = _arrays(dataset), _arrays(dataset)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])


class TestMockedTfds:
    @pytest.mark.parametrize("name", sorted(TFDS_SETS))
    def test_metadata_shapes_and_values(self, mocked, name):
        input_shape, classes = TFDS_SETS[name]
        splits = data.load(name, batch_size=5, data_dir=mocked, augment=False)
        assert (splits.name, splits.input_shape, splits.classes) == (name, input_shape, classes)
        # Every (slice of a) mocked split yields the MOCK_EXAMPLES examples.
        assert (splits.num_train, splits.num_validation, splits.num_test) == (12, 12, 12)
        assert splits.mean == data.CHANNEL_STATS[name][0]
        images, labels = next(iter(splits.train))
        assert images.shape == (5,) + input_shape and images.dtype == tf.float32
        assert labels.shape == (5,) and labels.dtype == tf.int64
        # The test split is the raw uint8 images, scaled and standardised, in order.
        raw = tfds.load(name, split="test", data_dir=mocked, as_supervised=True)
        raw_images, raw_labels = (np.stack(a) for a in zip(*tfds.as_numpy(raw)))
        images, labels = _arrays(splits.test)
        assert [int(y.shape[0]) for _, y in splits.test] == [5, 5, 2]
        np.testing.assert_allclose(images, _standardised(raw_images, name), rtol=0, atol=1e-5)
        np.testing.assert_array_equal(labels, raw_labels)
        assert 0 <= labels.min() and labels.max() < classes

    @pytest.mark.parametrize("name", ["cifar10", "cifar100"])
    def test_cifar_training_batches_are_cropped_and_flipped(self, mocked, name):
        plain = data.load(name, batch_size=MOCK_EXAMPLES, data_dir=mocked, augment=False,
                          shuffle_buffer=1)  # a buffer of 1: no shuffling, files' order
        augmented = data.load(name, batch_size=MOCK_EXAMPLES, data_dir=mocked,
                              shuffle_buffer=1)
        originals, labels = _arrays(plain.train)
        epochs = [_arrays(augmented.train) for _ in range(4)]
        for _, epoch_labels in epochs:
            np.testing.assert_array_equal(epoch_labels, labels)
        assert not np.array_equal(epochs[0][0], epochs[1][0])  # new crops every epoch
        # Each augmented image is one of the 81 crops of the image padded by 4 zero
        # pixels (before standardisation), flipped or not.
        (mean, std) = (np.asarray(v, np.float32) for v in data.CHANNEL_STATS[name])
        zero = (0 - mean) / std  # a padding pixel, standardised
        padded = np.broadcast_to(zero, (MOCK_EXAMPLES, 40, 40, 3)).copy()
        padded[:, 4:36, 4:36] = originals
        seen = set()
        for epoch, _ in epochs:
            for image, source in zip(epoch, padded):
                matches = [(dy, dx, flip) for dy in range(9) for dx in range(9)
                           for flip in (False, True)
                           if np.allclose(image, (lambda c: c[:, ::-1] if flip else c)(
                               source[dy:dy + 32, dx:dx + 32]), atol=1e-5)]
                assert matches, "an augmented image is no crop/flip of its original"
                seen.update(matches)
        # 96 offsets drawn from 0..8: both extremes show up (a 4-pixel padding) and the
        # flip goes both ways.
        offsets = {dy for dy, _, _ in seen} | {dx for _, dx, _ in seen}
        assert min(offsets) == 0 and max(offsets) == 8
        assert {flip for _, _, flip in seen} == {False, True}
        # Validation and test batches are never augmented, and the same every time.
        for split in ("validation", "test"):
            reference = _arrays(getattr(plain, split))[0]
            for _ in range(2):
                np.testing.assert_array_equal(_arrays(getattr(augmented, split))[0], reference)

    @pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
    def test_no_augmentation_for_grey_scale_sets(self, mocked, name):
        on = data.load(name, batch_size=4, data_dir=mocked, augment=True, seed=2)
        off = data.load(name, batch_size=4, data_dir=mocked, augment=False, seed=2)
        for _ in range(2):
            np.testing.assert_array_equal(_arrays(on.train)[0], _arrays(off.train)[0])

    def test_same_seed_same_batches(self, mocked):
        def two_epochs(seed):
            train = data.load("cifar10", batch_size=4, data_dir=mocked, seed=seed).train
            return [_arrays(train) for _ in range(2)]

        first, again, other = two_epochs(7), two_epochs(7), two_epochs(8)
        for (x, y), (x_again, y_again) in zip(first, again):
            np.testing.assert_array_equal(x, x_again)
            np.testing.assert_array_equal(y, y_again)
        assert not np.array_equal(first[0][0], first[1][0])
        assert not np.array_equal(first[0][0], other[0][0])

    def test_no_validation_split(self, mocked):
        splits = data.load("cifar100", data_dir=mocked, validation_fraction=0)
        assert splits.validation is None and splits.num_validation == 0


class TestMissingData:
    @pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100"])
    def test_raises_before_tfds_and_says_how_to_fix(self, tmp_path, name):
        with pytest.raises(data.DatasetNotFoundError) as caught:
            data.load(name, data_dir=str(tmp_path))
        error = caught.value
        assert isinstance(error, FileNotFoundError) and error.__cause__ is None
        assert caught.traceback[-1].path.name == "datasets.py"  # ours (core), not TFDS's
        message = str(error)
        version = tfds.builder(name, data_dir=str(tmp_path)).version
        assert f"The {name} data set was not found in data_dir={str(tmp_path)!r}" in message
        assert f"{tmp_path}/{name}/{version}/dataset_info.json" in message
        assert "download=False" in message and f"load({name!r}, download=True)" in message
        assert "name='digits'" in message
        assert ("scripts/prepare_offline_mnist.py " + str(tmp_path) in message) == (
            name == "mnist")
        assert list(tmp_path.iterdir()) == []  # nothing written, nothing downloaded

    def test_default_data_dir_is_named(self, tmp_path, monkeypatch):
        monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(tmp_path))
        with pytest.raises(data.DatasetNotFoundError,
                           match=r"TFDS's default data directory .*\$TFDS_DATA_DIR, else "
                                 r"~/tensorflow_datasets") as caught:
            data.load("cifar10")
        assert str(tmp_path / "cifar10") in str(caught.value)

    def test_a_download_failure_is_reported_the_same_way(self, tmp_path, monkeypatch):
        def offline(self, *args, **kwargs):
            raise ConnectionError("no route to host")

        monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
        with pytest.raises(data.DatasetNotFoundError,
                           match=r"could not download and prepare it: ConnectionError: no "
                                 r"route to host") as caught:
            data.load("mnist", data_dir=str(tmp_path), download=True)
        assert isinstance(caught.value.__cause__, ConnectionError)
        assert "prepare_offline_mnist.py" in str(caught.value)


def test_steps_per_epoch():
    splits = data.load("digits", batch_size=100, validation_fraction=0)
    assert splits.steps_per_epoch == math.ceil(1438 / 100) == 15
