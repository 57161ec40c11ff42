"""Small image trees in the official layouts, written by tests and benchmarks.

Each class's images are noise around a colour of their own (so a network can learn the
classes), saved as JPEG (PNG where asked) with Pillow.
"""

import os

import numpy as np


def _image(rng, label, classes, height, width, grey=False):
    hue = np.array([(label * 97) % 256, (label * 57 + 80) % 256, (label * 31 + 160) % 256])
    pixels = hue + rng.normal(0, 40, (height, width, 3))
    pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    return pixels.mean(-1).astype(np.uint8) if grey else pixels


def _save(pixels, path):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path)


def write_tiny_imagenet(data_dir, classes=3, per_class=6, val_per_class=2, size=64,
                        grey_every=0, seed=0):
    """`data_dir/tiny-imagenet-200/` as the official zip unpacks, scaled down: wnids.txt,
    train/<wnid>/images/<wnid>_<i>.JPEG (and <wnid>_boxes.txt), val/images/val_<i>.JPEG
    with val/val_annotations.txt, test/images/ unlabelled. Every `grey_every`-th image is
    grey-scale (TinyImageNet has some). Returns the tree's root."""
    rng = np.random.default_rng(seed)
    root = os.path.join(data_dir, "tiny-imagenet-200")
    wnids = [f"n{1000 + label:08d}" for label in range(classes)]
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "wnids.txt"), "w") as f:
        f.write("".join(wnid + "\n" for wnid in wnids))
    count = 0
    for label, wnid in enumerate(wnids):
        lines = []
        for i in range(per_class):
            grey = bool(grey_every) and count % grey_every == 0
            name = f"{wnid}_{i}.JPEG"
            _save(_image(rng, label, classes, size, size, grey),
                  os.path.join(root, "train", wnid, "images", name))
            lines.append(f"{name}\t0\t0\t{size - 1}\t{size - 1}\n")
            count += 1
        with open(os.path.join(root, "train", wnid, f"{wnid}_boxes.txt"), "w") as f:
            f.write("".join(lines))
    annotations = []
    for i in range(classes * val_per_class):
        label = i % classes
        name = f"val_{i}.JPEG"
        _save(_image(rng, label, classes, size, size),
              os.path.join(root, "val", "images", name))
        annotations.append(f"{name}\t{wnids[label]}\t0\t0\t{size - 1}\t{size - 1}\n")
    with open(os.path.join(root, "val", "val_annotations.txt"), "w") as f:
        f.write("".join(annotations))
    _save(_image(rng, 0, classes, size, size), os.path.join(root, "test", "images",
                                                            "test_0.JPEG"))
    return root


def write_folder(data_dir, classes=3, per_class=6, test_per_class=2, sizes=((40, 56),),
                 png_every=0, grey_every=0, seed=0):
    """`data_dir/train/<class>/...` and, with `test_per_class`, `data_dir/test/<class>/...`:
    images of the `(height, width)` sizes taken in turn, every `png_every`-th a PNG and
    every `grey_every`-th grey-scale. Returns `data_dir`."""
    rng = np.random.default_rng(seed)
    count = 0
    for split, per in (("train", per_class), ("test", test_per_class)):
        for label in range(classes):
            for i in range(per):
                height, width = sizes[count % len(sizes)]
                grey = bool(grey_every) and count % grey_every == 0
                png = bool(png_every) and count % png_every == 0
                name = f"img{i}.{'png' if png else 'jpg'}"
                _save(_image(rng, label, classes, height, width, grey),
                      os.path.join(data_dir, split, f"class{label}", name))
                count += 1
    return data_dir
