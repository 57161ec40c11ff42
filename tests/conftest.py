import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_bilevel  # noqa: E402,F401  (Keras 2 mode before anything else)
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

# Two logical CPU devices, for the tf.distribute tests; must happen before any TF op.
try:
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
    TWO_CPUS = True
except RuntimeError:  # TensorFlow was initialised before this conftest
    TWO_CPUS = False

# Mocked TFDS data (tfds.testing.mock_data): every split yields MOCK_EXAMPLES examples.
MOCK_EXAMPLES = 12
METADATA_SPLITS = {"train": 60, "test": 20}
TFDS_SETS = {  # name: (input_shape, classes)
    "mnist": ((28, 28, 1), 10),
    "fashion_mnist": ((28, 28, 1), 10),
    "cifar10": ((32, 32, 3), 10),
    "cifar100": ((32, 32, 3), 100),
}


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    tf.keras.backend.clear_session()
    yield


def tfds_metadata(root, name, sizes=METADATA_SPLITS):
    """Write `name`'s dataset_info.json and features.json under `root`, with `sizes`."""
    builder = tfds.builder(name, data_dir=str(root))
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(
            name=split, shard_lengths=[n], num_bytes=0,
            filename_template=tfds.core.ShardedFileTemplate(
                data_dir=builder.data_path, dataset_name=name, split=split,
                filetype_suffix="tfrecord"))
        for split, n in sizes.items()
    ]))
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_dir)
    return str(root)


@pytest.fixture(scope="session")
def metadata_dir(tmp_path_factory):
    """A data_dir with the real builders' metadata for every TFDS set (no examples)."""
    root = tmp_path_factory.mktemp("tfds_metadata")
    for name in TFDS_SETS:
        tfds_metadata(root, name)
    return str(root)


@pytest.fixture
def mocked(metadata_dir):
    """TFDS mocked offline; yields the data_dir to pass to `keras_bilevel.data.load`."""
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, data_dir=metadata_dir):
        yield metadata_dir


@pytest.fixture(scope="session")
def built_site(tmp_path_factory):
    """The documentation site, built once per test process with `mkdocs build --strict`."""
    import pathlib
    import subprocess
    import sys

    pytest.importorskip("mkdocs", reason="the [docs] extra is not installed")
    root = pathlib.Path(__file__).resolve().parent.parent
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=root, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-4000:]}"
    return site
