"""to_tflite: a TFLite file of a Larq binary network, checked against the model.

The Larq front end of the TFLite export: `strip_latent`, then the file-level steps of
`tflite_file` (conversion, int8 storage) and the self-check of `check`. `prepare` and
`activation_probe` are the parts `to_lce` shares: the model checked, the sample inputs
and the model's outputs on them, the stripped model, and for networks with binary
activations the probe that compares them one by one (`flips`).
"""

import keras_bilevel.keras2.legacy_keras  # noqa: F401  (Keras 2 mode before TensorFlow)

import numpy as np

from keras_bilevel.export import check, tflite_file
from keras_bilevel.export.probe import build_probe
from keras_bilevel.export.report import ExportError
from keras_bilevel.export.strip import (
    check_exportable,
    has_binary_activations,
    strip_latent,
)

__all__ = ["activation_probe", "check_weights_argument", "prepare", "to_tflite"]

WEIGHT_STORAGE = ("float32", "int8")


def check_weights_argument(weights):
    """Raises unless `weights` is `"float32"` or `"int8"`."""
    if weights not in WEIGHT_STORAGE:
        raise ValueError(f'`weights` must be "float32" or "int8", got {weights!r}.')


def prepare(model, samples, num_samples, seed, one_padded=()):
    """`(x, reference, plain)`: samples, `model.predict` on them, and
    `strip_latent(model, one_padded)`."""
    check_exportable(model)
    x = check.sample_inputs(model.inputs[0].shape[1:], samples, num_samples, seed)
    reference = np.asarray(model.predict(x, batch_size=256, verbose=0), np.float32)
    return x, reference, strip_latent(model, one_padded)


def activation_probe(model, plain, x, reference, tolerance, convert):
    """The `flips.ActivationProbe` of a model with binary activations, else None.

    The probe is `plain` (the stripped model) converted by `convert` with its binary
    activations as outputs, and `plain` evaluated with the file's decisions forced in;
    so `plain` must first give `reference` (`model.predict` on `x`) within `tolerance`
    of the output scale, else `ExportError` (a bug of `strip_latent`, not of the file).
    """
    if not has_binary_activations(model):
        return None
    stripped = plain.predict(x, batch_size=256, verbose=0)
    scale = float(np.max(np.abs(reference))) or 1.0
    gap = float(np.max(np.abs(stripped - reference))) / scale
    if gap > tolerance:
        raise ExportError(
            f"strip_latent({model.name!r}) gives outputs {gap:.3g} of the output scale "
            f"away from model.predict (tolerance {tolerance:g}): the stripped model does "
            "not compute what the model computes, so no file was checked. This is a bug "
            "of keras_bilevel; please report it with the model's summary.",
            None,
        )
    return build_probe(plain, convert)


def to_tflite(
    model,
    path,
    weights="float32",
    *,
    samples=None,
    num_samples=None,
    seed=0,
    tolerance=check.DEFAULT_TOLERANCE,
    verbose=True,
    flip_margin=check.flips.FLIP_MARGIN,
):
    """Writes a TFLite file of the binary network and checks it against the model.

    The model is stripped (`strip_latent`) and converted with
    `tf.lite.TFLiteConverter.from_keras_model`, without optimisations; the converter
    folds BatchNorm into the kernels (each binary kernel becomes +-s per channel).
    `weights="int8"` then stores every binary weight tensor as int8 +-1 with that scale
    (zero point 0) and adds a `DEQUANTIZE` op that rebuilds the float kernel, so the file
    is about 4x smaller while every op computes in float32 as before: no hybrid op, no
    activation quantisation, the outputs of the float32 file. The file is written, run by
    the LiteRT interpreter on the samples and compared with `model.predict`.

    Binary activations (`input_quantizer="ste_sign"` and the like) are compared one by
    one, as in `to_lce`: a sign of the file that differs from the model's within
    `flip_margin` of the threshold is a flip (the converter folds BatchNorm, so the
    file rounds differently; counted in `report.flips`), one farther away a departure
    that names the layer; the outputs must match the model's computed with the file's
    binary decisions within `tolerance`.

    !!! example
        ```python
        model = keras_bilevel.keras2.models.binary_mlp()
        ...  # train
        report = keras_bilevel.export.to_tflite(model, "mlp.tflite", weights="int8")
        report.size_vs_float32  # about 0.25
        ```

    # Arguments
        model: a functional or Sequential float32 model with binary Larq layers and one
            fully known input shape.
        path: where to write the `.tflite` file.
        weights: `"float32"` or `"int8"` (storage of the binary weights).
        samples: inputs to compare on, shape `(N, *input_shape)`; default `num_samples`
            standard normal inputs drawn with `seed`.
        num_samples: default 1000 for inputs of at most 1024 values, else 64.
        seed: seed of the default samples.
        tolerance: largest accepted `max_abs_diff / output_scale` (with binary
            activations: of the difference given the file's binary decisions).
        verbose: print the report.
        flip_margin: the largest `|x| / max|x|` of a binary activation's input at which
            the file may take the other value (a flip).

    # Returns
        The `ExportReport`.

    # Raises
        ValueError: unknown `weights`, no binary layers, input shape not fully known,
            mixed precision, bad `samples`.
        TypeError: subclassed models or unsupported layers.
        ExportError: the file's outputs differ from the model's by more than `tolerance`,
            or a binary activation departs from the model (the message names it).
    """
    check_weights_argument(weights)

    def store(float_content):
        if weights == "int8":
            return tflite_file.store_binary_weights_int8(float_content)
        return float_content

    x, reference, plain = prepare(model, samples, num_samples, seed)
    float_content = tflite_file.convert_keras_model(plain)
    content = store(float_content)
    path = tflite_file.write(path, content)
    probe = activation_probe(
        model, plain, x, reference, tolerance,
        lambda keras_model: store(tflite_file.convert_keras_model(keras_model)),
    )
    return check.check_file(
        path, content, x, reference, format=f"tflite-{weights}",
        float32_size_bytes=len(float_content), tolerance=tolerance, verbose=verbose,
        probe=probe, flip_margin=flip_margin,
    )
