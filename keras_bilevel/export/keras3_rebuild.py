"""A Keras 3 network rebuilt from Larq layers and exported to LCE (its own process).

`keras_bilevel.keras3.export.to_lce` describes the plain copy of a Keras 3 model
(`keras_bilevel.keras3._lce.describe`) and runs this module with the Larq stack:
`python -m keras_bilevel.export.keras3_rebuild FOLDER` (and so does its `to_tflite` for a
network with binary activations, whose check must tell flips from departures). Each
described layer becomes its
Keras 2 twin; a layer that copies a quantized one becomes Larq's `QuantConv2D` or
`QuantDense` with `kernel_quantizer="ste_sign"` (its +-1 kernel is its own sign) and,
where a binary input quantizer preceded it, `input_quantizer="ste_sign"`: the network
Larq Compute Engine converts. The rebuilt model must give the Keras 3 model's outputs on
the samples (within the tolerance of the output scale), then `keras_bilevel.export.to_lce`
(or `to_tflite`) writes and checks the file as for any Larq model.
"""

import keras_bilevel.keras2.legacy_keras  # noqa: F401  (Keras 2 mode before TensorFlow)

import os
import pickle
import sys
import warnings

import larq
import numpy as np
import tensorflow as tf

from keras_bilevel.export.lce import to_lce
from keras_bilevel.export.tflite import to_tflite
from keras_bilevel.export.report import ExportError

__all__ = ["rebuild"]

_PLAIN = {
    "BatchNormalization": tf.keras.layers.BatchNormalization,
    "ReLU": tf.keras.layers.ReLU,
    "Activation": tf.keras.layers.Activation,
    "MaxPooling2D": tf.keras.layers.MaxPooling2D,
    "AveragePooling2D": tf.keras.layers.AveragePooling2D,
    "GlobalAveragePooling2D": tf.keras.layers.GlobalAveragePooling2D,
    "Flatten": tf.keras.layers.Flatten,
    "Add": tf.keras.layers.Add,
    "Dropout": tf.keras.layers.Dropout,
    "Reshape": tf.keras.layers.Reshape,
}
# The Larq layer of each kind, and the name of its kernel's quantizer argument.
_QUANTIZED = {"Conv2D": (larq.layers.QuantConv2D, "kernel_quantizer"),
              "DepthwiseConv2D": (larq.layers.QuantDepthwiseConv2D, "depthwise_quantizer"),
              "Dense": (larq.layers.QuantDense, "kernel_quantizer")}


def _layer(entry):
    """The Keras 2 (Larq) layer of one described layer."""
    settings = dict(entry["settings"], name=entry["name"])
    if entry["kind"] in _QUANTIZED:
        layer, quantizer = _QUANTIZED[entry["kind"]]
        settings[quantizer] = "ste_sign" if entry["binary_kernel"] else None
        return layer(input_quantizer="ste_sign" if entry["binary_input"] else None,
                     **settings)
    return _PLAIN[entry["kind"]](**settings)


def rebuild(description):
    """The functional Keras 2 model of a description, its weights set."""
    tensors, built = {}, []
    for entry in description["layers"]:
        if entry["kind"] == "InputLayer":
            tensors[entry["name"]] = tf.keras.Input(entry["settings"]["shape"],
                                                    name=entry["name"])
            continue
        layer = _layer(entry)
        inputs = [tensors[name] for name in entry["inputs"]]
        tensors[entry["name"]] = layer(inputs if len(inputs) > 1 else inputs[0])
        built.append((layer, entry))
    inputs = [tensors[entry["name"]] for entry in description["layers"]
              if entry["kind"] == "InputLayer"]
    model = tf.keras.Model(inputs, tensors[description["output"]],
                           name=description["name"])
    for layer, entry in built:
        layer.set_weights(entry["weights"])
    return model


def _planted(plant):
    """Test-only: a converter that scales one weight of the model it converts (a
    planted error in the file): `(layer name, index, factor)`."""
    import larq_compute_engine

    name, index, factor = plant

    original = larq_compute_engine.convert_keras_model

    def converted(model):
        layer = model.get_layer(name)
        values = layer.get_weights()
        kept = values[0].copy()
        values[0][index] *= factor
        layer.set_weights(values)
        try:
            return original(model)
        finally:
            values[0] = kept
            layer.set_weights(values)

    larq_compute_engine.convert_keras_model = converted


def _export(job):
    model = rebuild(job["description"])
    x, reference = job["x"], job["reference"]
    rebuilt = np.asarray(model.predict(x, batch_size=256, verbose=0), np.float32)
    scale = float(np.max(np.abs(reference))) or 1.0
    gap = float(np.max(np.abs(rebuilt - reference))) / scale
    if gap > job["tolerance"]:
        return {"error": (
            f"to_lce: the Larq rebuild of the Keras 3 model gives other outputs than it "
            f"({gap:.3g} of the output scale > tolerance {job['tolerance']:g}); a layer "
            "the rebuild does not reproduce"), "report": None}
    if job["plant"]:
        _planted(job["plant"])
    export = to_lce if job["format"] == "lce" else to_tflite
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            report = export(model, job["path"], job["weights"], samples=x,
                            tolerance=job["tolerance"], verbose=False)
        except ExportError as error:
            return {"error": str(error), "report": error.report}
    report.warnings.append(
        f"rebuilt from Larq layers in a TensorFlow process: the rebuilt model gives the "
        f"Keras 3 model's outputs within {gap:.2g} of the output scale")
    return {"report": report, "warnings": [str(w.message) for w in caught
                                           if issubclass(w.category, UserWarning)
                                           and str(w.message).startswith(
                                               ("to_lce(", "to_tflite("))]}


def main(folder):
    """Reads the job from FOLDER/args.pkl, writes the outcome to FOLDER/result.pkl (the
    files of `keras_bilevel.keras3.export.run_job`)."""
    with open(os.path.join(folder, "args.pkl"), "rb") as file:
        job = pickle.load(file)
    try:
        outcome = _export(job)
    except (ValueError, TypeError) as error:
        outcome = {"value_error": str(error)}
    with open(os.path.join(folder, "result.pkl"), "wb") as file:
        pickle.dump(outcome, file)


if __name__ == "__main__":
    main(sys.argv[1])
