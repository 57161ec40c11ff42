"""A Keras 3 network to Larq Compute Engine: described here, rebuilt from Larq layers.

LCE converts Keras 2 models whose binary layers are Larq's. `to_lce` describes the plain
copy of a Keras 3 model (`keras_bilevel.keras3.plain_model.plain_model`: binary kernels,
binary input quantizers as `BinarySign` layers) as a list of layers with their settings,
weights and inputs, and a Python process with the Larq stack
(`keras_bilevel.export.keras3_rebuild`) rebuilds the same network from Larq layers, checks
that it computes what the Keras 3 model computes, and exports it with the Larq path's
`keras_bilevel.export.to_lce`: the same strip, flip-aware check, one-padding rewrite and
report. Used through `keras_bilevel.keras3.export.to_lce`.
"""

import os
import warnings

import numpy as np
from keras import ops

from keras_bilevel.core import stacks
from keras_bilevel.export.report import ExportError
from keras_bilevel.keras3 import layers as quant_layers, quantizers, subprocess_jobs

__all__ = ["NotRebuildable", "SUPPORTED_LAYERS", "describe", "export_rebuilt",
           "has_binary_activations", "require_lce"]

# What the rebuild knows (plain Keras 3 class names), besides InputLayer and BinarySign.
# The settings each layer keeps (the rest of a Keras 3 config is Keras 3's own).
_SETTINGS = {
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "dilation_rate", "use_bias",
               "activation"),
    "DepthwiseConv2D": ("kernel_size", "strides", "padding", "depth_multiplier",
                        "dilation_rate", "use_bias", "activation"),
    "Dense": ("units", "use_bias", "activation"),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "ReLU": ("max_value", "negative_slope", "threshold"),
    "Activation": ("activation",),
    "MaxPooling2D": ("pool_size", "strides", "padding"),
    "AveragePooling2D": ("pool_size", "strides", "padding"),
    "GlobalAveragePooling2D": ("keepdims",),
    "Flatten": (),
    "Add": (),
    "Dropout": ("rate",),
    "Reshape": ("target_shape",),
}
# What the rebuild knows (plain Keras 3 class names), besides InputLayer and BinarySign.
SUPPORTED_LAYERS = tuple(_SETTINGS)


class NotRebuildable(ValueError):
    """A layer the Larq rebuild does not know (named in the message)."""


def describe(plain, model):
    """The layers of `plain` (the plain copy of `model`) as plain data, in order: a dict
    per layer with `name`, `kind` (the Keras class name), `settings`, `inputs` (names),
    `weights` (NumPy arrays), `binary_input` (it follows a `BinarySign`, which is
    folded in) and `binary_kernel` (it copies a quantized layer of `model`).

    Raises `NotRebuildable` naming the first layer the rebuild does not know."""
    quantized = {layer.name for layer in model.layers if _has_binary_kernel(layer)}
    sign_input = {}  # name of a BinarySign layer -> the name of its input
    described = []
    for layer in plain.operations:
        kind = type(layer).__name__
        inputs = [tensor._keras_history.operation.name
                  for tensor in _input_tensors(layer)]
        if kind == "BinarySign":
            sign_input[layer.name] = inputs[0]
            continue
        if kind == "InputLayer":
            described.append(dict(name=layer.name, kind=kind, inputs=[], weights=[],
                                  settings=dict(shape=tuple(layer.batch_shape[1:])),
                                  binary_input=False, binary_kernel=False))
            continue
        if kind not in _SETTINGS:
            raise NotRebuildable(
                f"to_lce: layer {layer.name!r} ({kind}) has no Larq counterpart that LCE "
                f"runs here; the Keras 3 LCE export takes {', '.join(SUPPORTED_LAYERS)} "
                "and the quantized layers QuantConv2D, QuantDepthwiseConv2D and QuantDense")
        config = layer.get_config()
        if config.get("data_format", "channels_last") != "channels_last":
            raise NotRebuildable(f"to_lce: layer {layer.name!r} is channels_first; LCE "
                                 "runs channels_last networks")
        binary_input = any(name in sign_input for name in inputs)
        described.append(dict(
            name=layer.name, kind=kind,
            inputs=[sign_input.get(name, name) for name in inputs],
            settings={key: config[key] for key in _SETTINGS[kind] if key in config},
            weights=[ops.convert_to_numpy(w) for w in layer.weights],
            binary_input=binary_input, binary_kernel=layer.name in quantized))
    return dict(layers=described, output=plain.outputs[0]._keras_history.operation.name,
                name=model.name)


def _has_binary_kernel(layer):
    """Whether a layer's kernel is +-1: quantized by a sign, or stored +-1 by
    `quantize` (a kernel quantized otherwise, or not at all, is copied as the float
    kernel it is)."""
    if not isinstance(layer, quant_layers._Quantized):
        return False
    if layer.quantization_mode is not None:
        return bool(np.all(np.abs(ops.convert_to_numpy(layer.served_kernel())) == 1))
    return isinstance(getattr(layer, layer._quantizer_arg),
                      (quantizers.AdaSTE, quantizers.SteSign))


def _input_tensors(layer):
    node = layer._inbound_nodes[0]
    return list(node.input_tensors)


def has_binary_activations(plain):
    """Whether the plain copy of a model has binary activations (`BinarySign` layers)."""
    return any(type(layer).__name__ == "BinarySign" for layer in plain.layers)


def require_lce():
    """ImportError in one line unless the Larq stack and LCE are installed here."""
    message = stacks.missing_lce_message(
        "exporting a Keras 3 model to Larq Compute Engine (rebuilt from Larq layers)")
    if message:
        raise ImportError(message)


def export_rebuilt(model, plain, path, weights, x, reference, tolerance, format="lce",
                   plant=None):
    """Runs the rebuild and the Larq path's `to_lce` (`format="lce"`) or `to_tflite`
    (`"tflite"`) in a process of the Larq stack; returns the `ExportReport`, raises
    `ExportError` or `ValueError` as it did."""
    job = dict(description=describe(plain, model), path=os.fspath(path), weights=weights,
               x=x, reference=np.asarray(reference, np.float32), tolerance=tolerance,
               plant=plant, format=format)
    outcome = subprocess_jobs.run_job(
        ["-m", "keras_bilevel.export.keras3_rebuild"],
        subprocess_jobs.python_env(drop=("KERAS_BACKEND",), TF_USE_LEGACY_KERAS="1"), job,
        "the Larq process that rebuilds and converts the model")
    if "value_error" in outcome:
        raise ValueError(outcome["value_error"])
    if "error" in outcome:
        raise ExportError(outcome["error"], outcome["report"])
    for message in outcome.get("warnings", ()):  # the Larq path's, said here again
        warnings.warn(message, UserWarning, stacklevel=4)  # the caller of to_lce
    return outcome["report"]
