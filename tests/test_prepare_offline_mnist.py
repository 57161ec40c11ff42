"""scripts/prepare_offline_mnist.py on tiny generated IDX files, offline."""

import importlib.util
import pathlib
import struct

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_bilevel import data

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "prepare_offline_mnist.py"
SIZES = {"train": 30, "t10k": 12}


def _load_script():
    spec = importlib.util.spec_from_file_location("prepare_offline_mnist", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_idx(path, array):
    """IDX: 2 zero bytes, type 0x08 (uint8), ndim, big-endian uint32 dims, the bytes."""
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


@pytest.fixture(scope="module")
def script():
    return _load_script()


@pytest.fixture(scope="module")
def idx(tmp_path_factory):
    """Random images and labels (all ten classes) as the four IDX files."""
    directory = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in SIZES.items():
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        _write_idx(directory / f"{split}-images-idx3-ubyte", images)
        _write_idx(directory / f"{split}-labels-idx1-ubyte", labels)
        arrays[split] = images, labels
    return directory, arrays


def _args(data_dir, idx_dir, *extra, train=SIZES["train"], test=SIZES["t10k"], mean=None):
    return [str(data_dir), "--idx-dir", str(idx_dir), "--expect-train", str(train),
            "--expect-test", str(test), "--expect-mean", str(mean), *extra]


@pytest.fixture(scope="module")
def prepared(script, idx, tmp_path_factory):
    idx_dir, arrays = idx
    data_dir = tmp_path_factory.mktemp("tfds")
    mean = arrays["train"][0].mean() / 255
    assert script.main(_args(data_dir, idx_dir, mean=mean)) == 0
    return data_dir, mean


def _by_content(images, labels):
    """Examples keyed by their bytes, to compare data sets stored in different orders."""
    return sorted((image.tobytes(), int(label)) for image, label in zip(images, labels))


def test_written_dataset_round_trips(prepared, idx):
    data_dir, _ = prepared
    _, arrays = idx
    assert sorted(p.name for p in (data_dir / "mnist" / "3.0.1").iterdir()) == [
        "dataset_info.json", "features.json", "mnist-test.tfrecord-00000-of-00001",
        "mnist-train.tfrecord-00000-of-00001"]
    # Plain TFDS, offline: the usual features, splits and the exact examples.
    builder = tfds.builder("mnist", data_dir=str(data_dir))
    assert builder.info.features["image"].shape == (28, 28, 1)
    assert builder.info.features["label"].num_classes == 10
    assert builder.info.supervised_keys == ("image", "label")
    for split, stem in [("train", "train"), ("test", "t10k")]:
        dataset = tfds.load("mnist", split=split, data_dir=str(data_dir), download=False,
                            as_supervised=True)
        images, labels = (np.stack(a) for a in zip(*tfds.as_numpy(dataset)))
        assert images.dtype == np.uint8 and images.shape == (SIZES[stem], 28, 28, 1)
        assert _by_content(images[..., 0], labels) == _by_content(*arrays[stem])

    # keras_bilevel.data.load: the same examples, standardised, split 24/6/12.
    splits = data.load("mnist", data_dir=str(data_dir), batch_size=7,
                       validation_fraction=0.2)
    assert (splits.input_shape, splits.classes) == ((28, 28, 1), 10)
    assert (splits.num_train, splits.num_validation, splits.num_test) == (24, 6, 12)
    counts, everything = [], []
    for dataset in (splits.train, splits.validation):
        images, labels = (np.concatenate(a) for a in zip(*[(x.numpy(), y.numpy())
                                                           for x, y in dataset]))
        counts.append(len(labels))
        everything.append((images, labels))
    assert counts == [24, 6]

    def unstandardised(images):
        raw = (images * data.MNIST_STD + data.MNIST_MEAN) * 255
        np.testing.assert_allclose(raw, np.rint(raw), atol=1e-3)
        return np.rint(raw).astype(np.uint8)[..., 0]

    images = np.concatenate([everything[0][0], everything[1][0]])
    labels = np.concatenate([everything[0][1], everything[1][1]])
    assert _by_content(unstandardised(images), labels) == _by_content(*arrays["train"])
    # The validation examples are TFDS's `train[24:]`, in that order.
    tail = tfds.load("mnist", split="train[24:]", data_dir=str(data_dir), as_supervised=True)
    tail_images, tail_labels = (np.stack(a) for a in zip(*tfds.as_numpy(tail)))
    np.testing.assert_array_equal(unstandardised(everything[1][0]), tail_images[..., 0])
    np.testing.assert_array_equal(everything[1][1], tail_labels)


def test_report(script, prepared, idx, capsys):
    data_dir, mean = prepared
    assert script.main(_args(data_dir, idx[0], mean=mean)) == 0
    out = capsys.readouterr().out
    assert "already holds mnist; not rewriting it" in out
    assert "train: 30 images of shape (28, 28, 1) (expected 30)" in out
    assert "test: 12 images of shape (28, 28, 1) (expected 12)" in out
    assert "labels 0..9: 3 3 3 3 3 3 3 3 3 3" in out  # train: 30 = 3 per class
    assert "labels 0..9: 2 2 1 1 1 1 1 1 1 1" in out  # test: 0..9, 0, 1
    assert f"mean pixel on [0, 1]: {mean:.4f}" in out
    assert "All checks passed." in out


@pytest.mark.parametrize("extra, message", [
    (dict(train=31), "train has 30 examples, expected 31 (--expect-train)"),
    (dict(test=10000), "test has 12 examples, expected 10000 (--expect-test)"),
    (dict(mean=0.1307), "is not within 0.001 of 0.1307 (--expect-mean)"),
])
def test_failed_check_exits_non_zero(script, prepared, idx, capsys, extra, message):
    data_dir, mean = prepared
    kwargs = {"mean": mean, **extra}
    assert script.main(_args(data_dir, idx[0], **kwargs)) == 1
    err = capsys.readouterr().err
    assert "FAILED checks:" in err and message in err


def test_content_check_and_overwrite(script, idx, tmp_path, capsys):
    idx_dir, arrays = idx
    mean = arrays["train"][0].mean() / 255
    assert script.main(_args(tmp_path, idx_dir, mean=mean)) == 0
    # Other IDX files with the same sizes: the existing data set no longer matches them...
    other = tmp_path / "other_idx"
    other.mkdir()
    for split, (images, labels) in arrays.items():
        _write_idx(other / f"{split}-images-idx3-ubyte", 255 - images)
        _write_idx(other / f"{split}-labels-idx1-ubyte", labels)
    assert script.main(_args(tmp_path, other, mean=1 - mean)) == 1
    assert "differ from those of the IDX files" in capsys.readouterr().err
    # ... until --overwrite writes them.
    assert script.main(_args(tmp_path, other, "--overwrite", mean=1 - mean)) == 0
    assert "Removing the existing" in capsys.readouterr().out


def test_missing_idx_files(script, tmp_path, capsys):
    assert script.main([str(tmp_path / "tfds"), "--idx-dir", str(tmp_path)]) == 1
    assert "train-images-idx3-ubyte (or train-images-idx3-ubyte.gz) not found in" in (
        capsys.readouterr().err)


def test_help(script, capsys):
    with pytest.raises(SystemExit) as caught:
        script.main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "DATA_DIR" in out and "--idx-dir" in out and "--expect-train" in out
