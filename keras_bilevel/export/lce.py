"""to_lce: a Larq Compute Engine file of a Larq binary network, checked against it.

LCE (the optional `larq-compute-engine` package) converts the stripped model itself and
bit-packs the convolutions whose inputs and weights are both binary; the other binary
weights go through `tflite_file.store_binary_weights_int8` with `weights="int8"`. The
file is checked in LCE's own interpreter (the LiteRT one does not know the `Lce*` ops).
"""

import keras_bilevel.keras2.legacy_keras  # noqa: F401  (Keras 2 mode before TensorFlow)

import warnings

from keras_bilevel.export import check, tflite_file
from keras_bilevel.export.strip import (
    has_binary_activations,
    zero_padded_binary_convolutions_smaller_than_kernel,
)
from keras_bilevel.export.tflite import activation_probe, check_weights_argument, prepare

__all__ = ["to_lce"]

_LCE_INSTALL = "pip install 'larq-compute-engine==0.16.*'"


def to_lce(
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
    """Writes a Larq Compute Engine file of the binary network and checks it.

    The stripped model (`strip_latent`) is converted with
    `larq_compute_engine.convert_keras_model`: a convolution whose input comes from a
    binary activation (`input_quantizer="ste_sign"`, which strip_latent writes as
    `tf.sign(tf.sign(x) + 0.1)`) and whose kernel is +-1 becomes an `LceBconv2d` op with
    bit-packed weights (32 per int32 word), max pooling of binary activations an
    `LceBMaxPool2d`. Binary weights LCE does not bit-pack (layers with real-valued
    inputs, and dense layers) stay float32, or become int8 with `weights="int8"` as in
    `to_tflite`. The file is run by LCE's interpreter (reference kernels on x86) on the
    samples and compared with `model.predict`.

    **Binary weights alone give no binary ops.** LCE needs binary inputs as well; for a
    weight-only binary network (AdaSTE's setting: ReLU activations in full precision, as
    in `keras_bilevel.keras2.models.binary_mlp`) the LCE file is a float32 file. `to_lce` writes
    it and warns (also in `report.warnings`); use `to_tflite(model, path, weights="int8")`
    for a file 4x smaller.

    **Binary activations** are compared one by one (`keras_bilevel.export.flips`): the
    model is converted a second time with them as outputs (the probe file, which must
    give the written file's outputs), and evaluated with the file's binary decisions in
    their place. A decision that differs from the model's where its input lies within
    `flip_margin` of the layer's scale from the threshold is a flip (float rounding, no
    error; counted in `report.flips`); one farther away is a departure, and the
    `ExportError` names the layer. The outputs must match the model's computed with the
    file's decisions within `tolerance` (`report.max_rel_diff_given_flips`);
    `report.max_rel_diff` still compares with `model.predict`.

    **Zero padding on small maps.** LCE 0.16's optimised `LceBconv2d` (what devices and
    LCE's interpreter run) computes zero padding (`padding="same"`, `pad_values=0`)
    wrongly where a binary convolution's input is smaller than its kernel (3x3 kernels
    on 2x2 maps: the last stage of ResNet-style zoo models at 64x64). `to_lce` writes
    those layers padded with +1 and subtracts the constant the +1 padding adds
    (`strip_latent(..., one_padded=...)`): the same values, one small float `SUB` more
    per layer; `report.warnings` names them.

    !!! example
        ```python
        report = keras_bilevel.export.to_lce(model, "model.tflite")
        print(report.ops["LceBconv2d"], report.binary_weight_bytes)
        ```

    # Arguments
        model, path, samples, num_samples, seed, tolerance, verbose: as for `to_tflite`.
        flip_margin: the largest `|x| / max|x|` of a binary activation's input at which
            the file may take the other value (a flip).
        weights: `"float32"` or `"int8"`: storage of the binary weights LCE does not
            bit-pack.

    # Returns
        The `ExportReport` (`format` `"lce-float32"` or `"lce-int8"`).

    # Raises
        ImportError: larq-compute-engine is not installed.
        ValueError, TypeError: as for `to_tflite`.
        ExportError: a binary activation departs from the model (the message names
            it), or the outputs differ from the model's by more than `tolerance`.
    """
    check_weights_argument(weights)
    notes = []
    try:
        import larq_compute_engine
    except ImportError as error:
        raise ImportError(
            "to_lce needs Larq Compute Engine (the optional larq-compute-engine "
            f"package), which is not installed: {_LCE_INSTALL}. to_tflite needs "
            "nothing more."
        ) from error

    def convert(keras_model):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Saved-model conversion failed.*")
            content = larq_compute_engine.convert_keras_model(keras_model)
        if weights == "int8":
            content = tflite_file.store_binary_weights_int8(content, require=False)
        return content

    # Zero padding on small maps: see "Zero padding on small maps" above.
    small = zero_padded_binary_convolutions_smaller_than_kernel(model)
    x, reference, plain = prepare(model, samples, num_samples, seed, one_padded=small)
    if small:
        notes.append(
            "zero-padded binary convolutions on inputs smaller than their kernel ("
            f"{', '.join(small)}) are written padded with +1 and corrected by a constant "
            "(the same values): LCE 0.16's optimised LceBconv2d computes their zero "
            "padding wrongly")
    content = convert(plain)
    path = tflite_file.write(path, content)
    float32_size = len(tflite_file.convert_keras_model(plain))
    ops, _, _ = tflite_file.inspect_flatbuffer(content)
    if not ops.get("LceBconv2d"):
        if has_binary_activations(model):
            why = (
                "LCE found no convolution it can run in binary (it makes LceBconv2d from "
                "2D convolutions whose inputs come from a binary input_quantizer and "
                "whose weights are binary)"
            )
        else:
            why = (
                "this network has binary weights only (no binary input_quantizer such as "
                "'ste_sign'), and LCE makes binary ops only where both the inputs and the "
                "weights of a convolution are binary"
            )
        advice = (
            "; to_tflite(model, path, weights='int8') stores the binary weights in a "
            "quarter of the space" if weights == "float32" else ""
        )
        notes.append(
            f"the LCE file has no binary convolution (LceBconv2d): {why}. It computes "
            f"in float like a TFLite file{advice}."
        )
        warnings.warn(f"to_lce({path!r}): {notes[-1]}", UserWarning, stacklevel=2)
    probe = activation_probe(model, plain, x, reference, tolerance, convert)
    return check.check_file(
        path, content, x, reference, format=f"lce-{weights}",
        float32_size_bytes=float32_size, interpreter="lce", tolerance=tolerance,
        notes=notes, verbose=verbose, probe=probe, flip_margin=flip_margin,
    )
