"""`keras_bilevel.keras3.data`: the NumPy splits and batches of the Keras 3 command line."""

import importlib.util

import numpy as np
import pytest

from keras_bilevel.core import datasets
from keras_bilevel.keras3 import data


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", batch_size=100, seed=3)


class TestDigits:
    def test_the_split_of_the_larq_path(self, digits):
        # load_digits(0.2, seed=0): 359 test images; the last 10% of the rest validates.
        assert (digits.num_train, digits.num_validation, digits.num_test) == (1294, 144, 359)
        assert digits.input_shape == (8, 8, 1) and digits.classes == 10
        (x, y), (x_test, y_test) = datasets.load_digits(test_fraction=0.2, seed=0)
        mean, std = datasets.CHANNEL_STATS["digits"]
        np.testing.assert_array_equal(digits.validation[1], y[1294:])
        np.testing.assert_allclose(digits.test[0].reshape(359, 64),
                                   (x_test - mean[0]) / std[0], rtol=1e-6)
        np.testing.assert_array_equal(digits.test[1], y_test)

    def test_an_epoch_is_a_permutation_in_batches(self, digits):
        batches = list(digits.epoch_batches(0))
        assert [len(b[1]) for b in batches] == [100] * 12 + [94]
        assert len(batches) == digits.steps_per_epoch
        labels = np.concatenate([b[1] for b in batches])
        assert np.array_equal(np.sort(labels), np.sort(digits.train_labels))
        assert batches[0][0].dtype == np.float32

    def test_epoch_e_depends_on_seed_and_e_only(self, digits):
        late = list(digits.train_epochs(2, 4))
        again = list(data.load("digits", batch_size=100, seed=3).epoch_batches(3))
        for (x, y), (x2, y2) in zip(late[13:], again):
            np.testing.assert_array_equal(x, x2)
            np.testing.assert_array_equal(y, y2)
        assert len(late) == 26
        assert not np.array_equal(late[0][1], late[13][1])  # epochs 2 and 3 differ
        other = next(data.load("digits", batch_size=100, seed=4).epoch_batches(2))
        assert not np.array_equal(other[1], late[0][1])

    @pytest.mark.parametrize("initial_epoch, epochs", [(-1, 3), (4, 3)])
    def test_bad_epochs(self, digits, initial_epoch, epochs):
        with pytest.raises(ValueError, match="initial_epoch"):
            list(digits.train_epochs(initial_epoch, epochs))

    def test_arguments(self):
        with pytest.raises(ValueError, match="`name`"):
            data.load("svhn")
        with pytest.raises(ValueError, match="`batch_size`"):
            data.load("digits", batch_size=0)

    def test_missing_tfds_data_is_one_clear_error(self, tmp_path):
        if importlib.util.find_spec("tensorflow_datasets") is None:  # a .[jax] install
            with pytest.raises(ImportError, match=r"keras-bilevel\[tfds\]"):
                data.load("mnist", data_dir=str(tmp_path))
            return
        with pytest.raises(data.DatasetNotFoundError, match="--download"):
            data.load("mnist", data_dir=str(tmp_path))


def test_crop_and_flip_is_a_window_of_the_padded_image():
    images = np.arange(6 * 32 * 32 * 3, dtype=np.uint8).reshape(6, 32, 32, 3) % 251 + 1
    out = data._crop_and_flip(images, np.random.default_rng(0))
    draws = np.random.default_rng(0)
    top, left = draws.integers(0, 9, 6), draws.integers(0, 9, 6)
    flip = draws.random(6) < 0.5
    padded = np.pad(images, [(0, 0), (4, 4), (4, 4), (0, 0)])
    for i in range(6):
        window = padded[i, top[i]:top[i] + 32, left[i]:left[i] + 32]
        np.testing.assert_array_equal(out[i], window[:, ::-1] if flip[i] else window)
