"""Where an image is cropped: the reference's random-resized crop and centre crop, and
the per-epoch draws that place them, written once for NumPy and `tf.experimental.numpy`.

- training: a box of 8% to 100% of the image's area with aspect ratio between 3/4 and
  4/3, ten tries, else the whole image clamped to those ratios;
- evaluation: the centred square of side `crop_fraction * min(height, width)`.

The box formulas take as first argument `xp`, a NumPy-like namespace: NumPy (the Keras 3
front end's Pillow pipeline) or `tf.experimental.numpy` (the `tf.data` pipeline of
`keras_bilevel.pipelines.tf_images`), so both pipelines crop the same boxes.

!!! example
    ```python
    scale, ratio, position, flip = epoch_draws(seed=0, epoch=0, count=1)
    top, left, box_h, box_w = random_resized_box(np, 64.0, 64.0, scale, ratio, position)
    ```
"""

import math

import numpy as np

__all__ = ["ATTEMPTS", "LOG_RATIO", "SCALE", "centre_box", "epoch_draws",
           "random_resized_box", "split_seeds"]


SCALE = (0.08, 1.0)
LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))
ATTEMPTS = 10


def split_seeds(seed):
    """Independent int seeds for an epoch's order and its augmentation, from `seed`."""
    return tuple(int(s) for s in np.random.SeedSequence([seed, 0x5EED]).generate_state(2))


def epoch_draws(seed, epoch, count):
    """The uniform draws of the augmentation of one epoch's `count` images, in order,
    from `(seed, epoch)` alone: `(scale, log_ratio, position, flip)` of shapes
    (count, ATTEMPTS), (count, ATTEMPTS), (count, 2), (count,)."""
    rng = np.random.default_rng([seed, epoch, 2])
    return (rng.random((count, ATTEMPTS)), rng.random((count, ATTEMPTS)),
            rng.random((count, 2)), rng.random(count))


def random_resized_box(xp, height, width, scale_draws, ratio_draws, position_draws):
    """The random-resized crop box `(top, left, box_height, box_width)` of an image.

    Try `ATTEMPTS` boxes of area `u * height * width` (`u` uniform in `SCALE`) and aspect
    ratio `exp(r)` (`r` uniform in `LOG_RATIO`), sides rounded; the first that fits is
    placed at a uniform position. If none fits, the whole image, cut to the nearest
    ratio in [3/4, 4/3], centred.

    # Arguments
        xp: NumPy or `tf.experimental.numpy`.
        height, width: the image's size, arrays of shape S (S: any batch shape).
        scale_draws, ratio_draws: uniform [0, 1) draws of shape S + (ATTEMPTS,).
        position_draws: uniform [0, 1) draws of shape S + (2,), top then left.

    !!! example
        ```python
        random_resized_box(np, np.array(64.), np.array(64.), *epoch_draws(0, 0, 1)[:3])
        ```
    """
    height = xp.asarray(height, dtype=xp.float64)
    width = xp.asarray(width, dtype=xp.float64)
    area = (height * width)[..., None]
    target = area * (SCALE[0] + (SCALE[1] - SCALE[0]) * scale_draws)
    ratio = xp.exp(LOG_RATIO[0] + (LOG_RATIO[1] - LOG_RATIO[0]) * ratio_draws)
    box_w = xp.round(xp.sqrt(target * ratio))
    box_h = xp.round(xp.sqrt(target / ratio))
    fits = (box_w >= 1) & (box_w <= width[..., None]) & (box_h >= 1) & (
        box_h <= height[..., None])
    first = xp.argmax(fits, axis=-1)[..., None]
    found = xp.any(fits, axis=-1)
    tried_h = xp.take_along_axis(box_h, first, axis=-1)[..., 0]
    tried_w = xp.take_along_axis(box_w, first, axis=-1)[..., 0]
    # None fits: the whole image, cut to the nearest allowed ratio.
    low, high = math.exp(LOG_RATIO[0]), math.exp(LOG_RATIO[1])
    narrow, wide = width / height < low, width / height > high
    whole_w = xp.where(wide, xp.round(height * high), width)
    whole_h = xp.where(narrow, xp.round(width / low), height)
    box_h = xp.where(found, tried_h, whole_h)
    box_w = xp.where(found, tried_w, whole_w)
    top = xp.where(found, xp.floor(position_draws[..., 0] * (height - box_h + 1)),
                   xp.floor((height - box_h) / 2))
    left = xp.where(found, xp.floor(position_draws[..., 1] * (width - box_w + 1)),
                    xp.floor((width - box_w) / 2))
    return top, left, box_h, box_w


def centre_box(xp, height, width, crop_fraction):
    """The evaluation box `(top, left, side, side)`: the centred square of side
    `round(crop_fraction * min(height, width))` (at least 1)."""
    height = xp.asarray(height, dtype=xp.float64)
    width = xp.asarray(width, dtype=xp.float64)
    side = xp.maximum(xp.round(crop_fraction * xp.minimum(height, width)), 1.0)
    return xp.floor((height - side) / 2), xp.floor((width - side) / 2), side, side
