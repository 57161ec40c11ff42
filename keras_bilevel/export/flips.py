"""The check of binary activations: flips within rounding, or a file that departs.

A binary activation (`sign(x)`, or the step `x > 0`) of a converted file may take the
other value than in Keras where its input `x` lies within float rounding of the
threshold: the converter folds BatchNorm into the kernels and LCE compares integer
accumulators with a threshold, so both round differently. Such a *flip* is no error of
the file, but it propagates through the following layers and can move the outputs far
beyond any output tolerance. This module tells flips from errors, layer by layer, with
the file's own decisions:

1. A *probe* file (the same model converted with its binary activations as extra
   outputs, all concatenated into one output) gives the file's decision at every binary
   activation; its model output must equal the written file's.
2. The model is evaluated with each binary activation *forced* to the file's decision
   (`ActivationProbe.forced`), which gives the input `x` of every binary activation as
   the model computes it from the same binary inputs as the file.
3. At every binary activation, a decision that differs from the model's where
   `|x| <= margin * max|x|` (the largest over the layer and the samples) is a flip; one
   that differs farther from the threshold is a *departure*: the file computes that
   layer's input differently, and the check names the layer.
4. The model's output with the forced decisions must match the file's output within the
   output tolerance.

It works on arrays only (no TensorFlow, Larq or Keras): the front end that knows the
model builds the `ActivationProbe`.

!!! example
    ```python
    checks = compare_activations(probe, decisions, pre_activations)
    sum(c.flips for c in checks), [c.name for c in checks if c.departures]
    ```
"""

import dataclasses

import numpy as np

from keras_bilevel.export.report import ActivationCheck

__all__ = [
    "FLIP_MARGIN",
    "ActivationProbe",
    "compare_activations",
    "first_departure",
    "split_probe_outputs",
]

# A flip is accepted where |x| <= FLIP_MARGIN * max|x| of its layer. Float rounding of a
# layer's input is a few float32 epsilons (1.2e-7) of its scale; a wrong weight sign,
# BatchNorm or padding moves it by about 1/sqrt(fan_in) of its scale (1e-2 and more).
FLIP_MARGIN = 1e-4


@dataclasses.dataclass
class ActivationProbe:
    """A probe file and the model evaluated with the file's binary decisions.

    # Attributes
        content: the probe flatbuffer. Its single output is, per sample, the model's
            output flattened, then each binary activation flattened, in `names` order.
        names: the binary activations (layer names), in the order of the model's graph.
        sources: for each, the layer that computes its input (named in errors).
        shapes: for each, its shape without the batch axis.
        steps: for each, `True` for a step (`x > 0` gives 1, else 0), `False` for a sign
            (`x >= 0` gives 1, else -1).
        output_shape: the model output's shape without the batch axis.
        forced: `forced(x, decisions) -> (pre_activations, outputs)`: the model on `x`
            with binary activation `i` replaced by `decisions[i]`; `pre_activations[i]`
            is the input it would have taken its decision from.
    """

    content: bytes
    names: list
    sources: list
    shapes: list
    steps: list
    output_shape: tuple
    forced: object


def split_probe_outputs(probe, flat):
    """`(outputs, decisions)` from the probe file's single output `flat`, shape (N, K)."""
    flat = np.asarray(flat).reshape(len(flat), -1)
    sizes = [int(np.prod(probe.output_shape))] + [int(np.prod(s)) for s in probe.shapes]
    if flat.shape[1] != sum(sizes):
        raise ValueError(
            f"The probe file gives {flat.shape[1]} values per sample, expected "
            f"{sum(sizes)} (the output and {len(probe.names)} binary activations)."
        )
    parts = np.split(flat, np.cumsum(sizes)[:-1], axis=1)
    outputs = parts[0].reshape(len(flat), *probe.output_shape)
    decisions = [p.reshape(len(flat), *s) for p, s in zip(parts[1:], probe.shapes)]
    return outputs, decisions


def compare_activations(probe, decisions, pre_activations, margin=FLIP_MARGIN):
    """One `ActivationCheck` per binary activation: its flips and departures.

    # Arguments
        probe: the `ActivationProbe` (names, sources, step or sign).
        decisions: the file's binary activations, one array per layer.
        pre_activations: their inputs in the model with the file's decisions forced.
        margin: a differing decision with `|x| <= margin * max|x|` is a flip.
    """
    checks = []
    for name, source, step, decided, x in zip(
        probe.names, probe.sources, probe.steps, decisions, pre_activations
    ):
        x = np.asarray(x, np.float64)
        model = np.where(x > 0, 1.0, 0.0) if step else np.where(x >= 0, 1.0, -1.0)
        differs = np.asarray(decided).reshape(x.shape) != model
        scale = float(np.max(np.abs(x))) if x.size else 0.0
        distance = np.abs(x[differs]) / (scale or 1.0)
        near = distance <= margin
        checks.append(
            ActivationCheck(
                name=name,
                source=source,
                values=int(x.size),
                flips=int(np.sum(near)),
                departures=int(np.sum(~near)),
                largest_flip=float(np.max(distance[near], initial=0.0)),
                largest_departure=float(np.max(distance[~near], initial=0.0)),
                scale=scale,
                margin=margin,
            )
        )
    return checks


def first_departure(checks):
    """The first `ActivationCheck` with departures, or None."""
    return next((check for check in checks if check.departures), None)
