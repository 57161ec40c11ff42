"""to_tflite: a TFLite file of a Larq binary network, checked against the model.

The Larq front end of the TFLite export: `strip_latent`, then the file-level steps of
`tflite_file` (conversion, int8 storage) and the self-check of `check`. `prepare` is the
part `to_lce` shares: the model checked, the sample inputs and the model's outputs on
them, and the stripped model.
"""

import keras_bilevel._keras2  # noqa: F401  (Keras 2 mode before TensorFlow)

import numpy as np

from keras_bilevel.export import check, tflite_file
from keras_bilevel.export.strip import check_exportable, strip_latent

__all__ = ["check_weights_argument", "prepare", "to_tflite"]

WEIGHT_STORAGE = ("float32", "int8")


def check_weights_argument(weights):
    """Raises unless `weights` is `"float32"` or `"int8"`."""
    if weights not in WEIGHT_STORAGE:
        raise ValueError(f'`weights` must be "float32" or "int8", got {weights!r}.')


def prepare(model, samples, num_samples, seed):
    """`(x, reference, plain)`: samples, `model.predict` on them, `strip_latent(model)`."""
    check_exportable(model)
    x = check.sample_inputs(model.inputs[0].shape[1:], samples, num_samples, seed)
    reference = np.asarray(model.predict(x, batch_size=256, verbose=0), np.float32)
    return x, reference, strip_latent(model)


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

    !!! example
        ```python
        model = keras_bilevel.models.binary_mlp()
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
        tolerance: largest accepted `max_abs_diff / output_scale`.
        verbose: print the report.

    # Returns
        The `ExportReport`.

    # Raises
        ValueError: unknown `weights`, no binary layers, input shape not fully known,
            mixed precision, bad `samples`.
        TypeError: subclassed models or unsupported layers.
        ExportError: the file's outputs differ from the model's by more than `tolerance`.
    """
    check_weights_argument(weights)
    x, reference, plain = prepare(model, samples, num_samples, seed)
    float_content = tflite_file.convert_keras_model(plain)
    content = float_content
    if weights == "int8":
        content = tflite_file.store_binary_weights_int8(float_content)
    path = tflite_file.write(path, content)
    return check.check_file(
        path, content, x, reference, format=f"tflite-{weights}",
        float32_size_bytes=len(float_content), tolerance=tolerance, verbose=verbose,
    )
