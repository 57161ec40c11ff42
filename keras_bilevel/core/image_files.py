"""Image data sets read from files, for both front ends: layouts, the scan, image sizes.

TinyImageNet (the unpacked `tiny-imagenet-200` folder) and any tree of one folder per
class are listed here, every file checked once before training (a missing or
half-unpacked folder, a class without images, a file that is not an image: one line
naming it). The reference preprocessing streams them:

- training: a random-resized crop resized to `image_size` x `image_size`, flipped
  left-right with probability 1/2 (`keras_bilevel.core.image_geometry` places the box);
- evaluation: the resize-and-centre-crop of ImageNet evaluation, the centred square of
  side `EVAL_CROP_FRACTION * min(height, width)` resized to `image_size`;
- every split standardised with the ImageNet mean and std.

Pure Python, NumPy and Pillow: no TensorFlow, Keras or Larq.

!!! example
    ```python
    index = tiny_imagenet_index("/data")          # /data/tiny-imagenet-200/...
    index.train.paths[:2], index.classes[:2], index.channels
    ```
"""

import concurrent.futures
import dataclasses
import os
import sys
import time
from typing import Tuple

import numpy as np

from keras_bilevel.core import registry

__all__ = ["DataLayoutError", "DEFAULT_IMAGE_SIZE", "EVAL_CROP_FRACTION", "FOLDER_DATASETS",
           "FOLDER_TEST_FRACTION", "Files", "IMAGENET_MEAN", "IMAGENET_STD",
           "IMAGE_EXTENSIONS", "ImageIndex", "STREAMED_DATASETS", "TINY_IMAGENET_FOLDER",
           "allowed_bad_files", "channel_stats", "check_image_size", "default_image_size",
           "folder_index", "image_size_for", "index_of", "tiny_imagenet_index"]

# The per-channel statistics of the ImageNet training images on [0, 1] that the public
# AdaSTE code normalises TinyImageNet and Imagenette with (torchvision's values).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# The data sets read and decoded as they stream (never held in memory), and those of them
# read from a folder of image files.
STREAMED_DATASETS = registry.names(registry.DATASETS, streamed=True)
FOLDER_DATASETS = registry.names(registry.DATASETS, source="files")
# `--image-size` when none is given (the registry's `image_size`); for a set without
# one (`folder`), the median shorter side of its training images, at most 224.
DEFAULT_IMAGE_SIZE = {name: registry.DATASETS[name].image_size for name in STREAMED_DATASETS
                      if registry.DATASETS[name].image_size is not None}
FOLDER_MAX_DEFAULT_SIZE = 224
# The share of each side the evaluation crop keeps (the registry's `eval_crop`).
EVAL_CROP_FRACTION = {name: registry.DATASETS[name].eval_crop for name in STREAMED_DATASETS}
# A `folder` tree without DIR/test: this share of each class is the test split, chosen
# with a fixed seed (0) so that it is the same for every --seed.
FOLDER_TEST_FRACTION = 0.2
TINY_IMAGENET_FOLDER = "tiny-imagenet-200"
# What both decoders (Pillow, tf.io.decode_image) read.
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".gif")

# Scans of more files than this say so while they run.
_SCAN_PROGRESS_MIN = 2000


class DataLayoutError(ValueError):
    """A data folder is not in the expected layout, or holds a file that is not an image."""


@dataclasses.dataclass(frozen=True, eq=False)
class Files:
    """Image files and their labels (int64 class indices), in a fixed order."""

    paths: Tuple[str, ...]
    labels: np.ndarray

    def __eq__(self, other):
        return (isinstance(other, Files) and self.paths == other.paths
                and np.array_equal(self.labels, other.labels))

    def __len__(self):
        return len(self.paths)

    def take(self, rows):
        return Files(tuple(self.paths[i] for i in rows), self.labels[np.asarray(rows, int)])


@dataclasses.dataclass(frozen=True)
class ImageIndex:
    """The checked files of an image data set.

    # Attributes
        name: `tiny_imagenet` or `folder`.
        root: the folder the files were found in.
        classes: class names (WordNet ids for TinyImageNet), label `i` is `classes[i]`.
        train, test: `Files`; the training files in a fixed shuffled order, so that the
            last `validation_fraction` of them is a fair validation split.
        channels: 3 if any image has colour (grey images are then read as RGB), else 1.
        median_side: median shorter side of the training images.
        skipped: `(path, reason)` of the unreadable files skipped (at most one in a
            thousand, see `allowed_bad_files`).
    """

    name: str
    root: str
    classes: Tuple[str, ...]
    train: Files
    test: Files
    channels: int
    median_side: int
    skipped: Tuple[Tuple[str, str], ...] = ()


def allowed_bad_files(count):
    """How many unreadable files among `count` may be skipped (with a count): one in a
    thousand, none in a folder of fewer than 1000 files."""
    return count // 1000


def channel_stats(channels):
    """`(mean, std)` per channel: ImageNet's, or for grey images their averages."""
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)


def check_image_size(image_size):
    """`image_size` as an int >= 8 (the smallest the image models take), else ValueError."""
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or (
            image_size < 8):
        raise ValueError(f"`image_size` must be an integer >= 8, got {image_size!r}.")
    return int(image_size)


def tiny_imagenet_index(data_dir):
    """The files of TinyImageNet in `data_dir` (which holds `tiny-imagenet-200/` as it
    unpacks from its official zip, or is that folder): `wnids.txt`,
    `train/<wnid>/images/*.JPEG`, and `val/images/*.JPEG` labelled by
    `val/val_annotations.txt`; its val split is the test split. Raises
    `DataLayoutError` naming the first missing file or folder."""
    base = _existing_folder(data_dir, "tiny_imagenet")
    root = os.path.join(base, TINY_IMAGENET_FOLDER)
    if not os.path.isdir(root):
        if not os.path.exists(os.path.join(base, "wnids.txt")):
            raise DataLayoutError(
                f"{base} holds no {TINY_IMAGENET_FOLDER}/ folder: --data-dir must be the "
                f"folder that tiny-imagenet-200.zip was unpacked in (or "
                f"{TINY_IMAGENET_FOLDER}/ itself)")
        root = base
    wnids_file = _required(root, "wnids.txt")
    with open(wnids_file) as f:
        wnids = [line.strip() for line in f if line.strip()]
    if not wnids:
        raise DataLayoutError(f"{wnids_file} lists no classes (half-unpacked?)")
    train = []
    for label, wnid in enumerate(wnids):
        folder = _required(root, "train", wnid, "images", what="folder")
        train += [(path, label) for path in _images_in(folder)]
    annotations = _required(root, "val", "val_annotations.txt")
    val_images = _required(root, "val", "images", what="folder")
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    test = []
    with open(annotations) as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2 or fields[1] not in label_of:
                raise DataLayoutError(
                    f"{annotations}, line {number}: expected a file name and one of the "
                    f"wnids of wnids.txt, got {line.strip()!r}")
            path = os.path.join(val_images, fields[0])
            if not os.path.isfile(path):
                raise DataLayoutError(f"{path} is missing (listed on line {number} of "
                                      f"{annotations}; half-unpacked?)")
            test.append((path, label_of[fields[1]]))
    if not test:
        raise DataLayoutError(f"{annotations} lists no images")
    return _checked_index("tiny_imagenet", root, tuple(wnids), train, test)


def folder_index(data_dir):
    """The files of a tree of one folder per class: `DIR/train/<class>/...` and, if it
    exists, `DIR/test/<class>/...` (the same classes); without `DIR/test`, a fixed
    `FOLDER_TEST_FRACTION` of each class (seed 0) is the test split. Files whose names
    start with '.' are not read. Any image size and channel count."""
    root = _existing_folder(data_dir, "folder")
    train_dir = _required(root, "train", what="folder")
    classes = sorted(entry.name for entry in os.scandir(train_dir)
                     if entry.is_dir() and not entry.name.startswith("."))
    if len(classes) < 2:
        raise DataLayoutError(
            f"{train_dir} must hold one folder per class (at least 2), found "
            f"{len(classes)}: the layout is DIR/train/<class>/<image>, optionally "
            "DIR/test/<class>/<image>")
    train = [(path, label) for label, name in enumerate(classes)
             for path in _images_in(os.path.join(train_dir, name))]
    test_dir = os.path.join(root, "test")
    if os.path.isdir(test_dir):
        extra = sorted(set(entry.name for entry in os.scandir(test_dir)
                           if entry.is_dir() and not entry.name.startswith("."))
                       - set(classes))
        if extra:
            raise DataLayoutError(f"{test_dir} has class folder(s) not in {train_dir}: "
                                  f"{', '.join(extra)}")
        test = []
        for label, name in enumerate(classes):
            if os.path.isdir(os.path.join(test_dir, name)):
                test += [(path, label) for path in _images_in(os.path.join(test_dir, name))]
        if not test:
            raise DataLayoutError(f"{test_dir} holds no images")
    else:
        train, test = _held_out_per_class(train, len(classes))
    return _checked_index("folder", root, tuple(classes), train, test)


def _existing_folder(data_dir, name):
    if data_dir is None:
        raise DataLayoutError(f"--dataset {name} reads files: give their folder with "
                              "--data-dir DIR (data_dir=...)")
    path = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    if not os.path.isdir(path):
        raise DataLayoutError(f"{path} is not a folder (--data-dir of --dataset {name})")
    return path


def _required(root, *parts, what="file"):
    path = os.path.join(root, *parts)
    exists = os.path.isdir(path) if what == "folder" else os.path.isfile(path)
    if not exists:
        raise DataLayoutError(f"{path} is missing: {root} is not a complete "
                              f"{os.path.basename(root)} tree (half-unpacked?)")
    return path


def _images_in(folder):
    """The files of `folder` (sorted, hidden ones left out); DataLayoutError if none."""
    paths = sorted(entry.path for entry in os.scandir(folder)
                   if entry.is_file() and not entry.name.startswith("."))
    if not paths:
        raise DataLayoutError(f"the class folder {folder} holds no images")
    return paths


def _held_out_per_class(files, classes):
    rng = np.random.default_rng(0)
    train, test = [], []
    for label in range(classes):
        mine = [item for item in files if item[1] == label]
        order = rng.permutation(len(mine))
        count = min(len(mine) - 1, round(FOLDER_TEST_FRACTION * len(mine)))
        if count < 1:
            raise DataLayoutError(
                f"class {label} has {len(mine)} image(s): too few to hold out a test split; "
                "add images or a DIR/test/<class>/ tree")
        test += [mine[i] for i in sorted(order[:count])]
        train += [mine[i] for i in sorted(order[count:])]
    return train, test


def _checked_index(name, root, classes, train, test):
    """Scan every file; skip unreadable ones within `allowed_bad_files`, else raise."""
    pairs = train + test
    results = _scan([path for path, _ in pairs], root)
    bad = [(path, result) for (path, _), result in zip(pairs, results)
           if isinstance(result, str)]
    if len(bad) > allowed_bad_files(len(pairs)):
        path, reason = bad[0]
        more = f" ({len(bad)} such files of {len(pairs)})" if len(bad) > 1 else ""
        raise DataLayoutError(f"{path} is not an image that can be read ({reason}){more}: "
                              "remove or replace it")
    if bad:
        print(f"Skipping {len(bad)} unreadable file(s) of {len(pairs)} in {root}, first "
              f"{bad[0][0]} ({bad[0][1]})", file=sys.stderr)
    readable = {path: result for (path, _), result in zip(pairs, results)
                if not isinstance(result, str)}

    def files(items):
        kept = [(path, label) for path, label in items if path in readable]
        return Files(tuple(path for path, _ in kept),
                     np.array([label for _, label in kept], np.int64))

    train_files, test_files = files(train), files(test)
    for label, class_name in enumerate(classes):
        if not np.any(train_files.labels == label):
            raise DataLayoutError(f"class {class_name} has no readable training image")
    # A fixed shuffled order, so that the last share of it is a fair validation split.
    train_files = train_files.take(np.random.default_rng(0).permutation(len(train_files)))
    sides = [min(readable[path][:2]) for path in train_files.paths]
    colour = any(readable[path][2] == 3 for path in readable)
    return ImageIndex(name=name, root=root, classes=classes, train=train_files,
                      test=test_files, channels=3 if colour else 1,
                      median_side=int(np.median(sides)), skipped=tuple(bad))


def _scan(paths, root):
    """`(height, width, channels)` of every file, or a string saying why it cannot be
    read; every image is decoded (JPEGs at 1/8 scale, enough to find a truncation)."""
    started = time.monotonic()
    announce = len(paths) > _SCAN_PROGRESS_MIN
    if announce:
        print(f"Checking {len(paths)} image files in {root} ...", flush=True)
    with concurrent.futures.ThreadPoolExecutor(min(8, (os.cpu_count() or 1) + 2)) as pool:
        results = list(pool.map(_probe, paths, chunksize=64))
    if announce:
        print(f"Checked {len(paths)} image files in {time.monotonic() - started:.0f} s",
              flush=True)
    return results


def _probe(path):
    from PIL import Image

    if not path.lower().endswith(IMAGE_EXTENSIONS):
        return f"not one of {', '.join(IMAGE_EXTENSIONS)}"
    try:
        with Image.open(path) as image:
            width, height = image.size
            channels = _channels(image)
            if image.format == "JPEG":
                image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
            image.load()
    except Exception as error:  # Pillow raises many kinds for a bad file
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return height, width, channels


def _channels(image):
    """1 for grey images (with or without alpha), else 3."""
    return 1 if image.mode in ("1", "L", "LA", "I", "I;16", "F") else 3


def default_image_size(name, index=None):
    """`--image-size` when none is given (see `DEFAULT_IMAGE_SIZE`)."""
    if name in DEFAULT_IMAGE_SIZE:
        return DEFAULT_IMAGE_SIZE[name]
    return max(8, min(FOLDER_MAX_DEFAULT_SIZE, index.median_side))


def image_size_for(name, image_size, index=None):
    """The image size of a run: `image_size` (checked), else the data set's default."""
    return check_image_size(image_size or default_image_size(name, index))


def index_of(name, data_dir):
    """The checked `ImageIndex` of `tiny_imagenet` or `folder` in `data_dir`."""
    if name == "tiny_imagenet":
        return tiny_imagenet_index(data_dir)
    return folder_index(data_dir)

