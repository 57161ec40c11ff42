"""The inference-only copy of a Keras 3 binary network that every export starts from.

`plain_model(model)` replaces each quantized layer of `keras_bilevel.keras3.layers` by the
plain Keras layer it extends, holding the binary kernel instead of the latent one, and
each binary input quantizer by a `BinarySign` layer: a model that loads without
keras_bilevel's quantizers and that converters (TFLite, Larq Compute Engine) can read.

!!! example
    ```python
    from keras_bilevel.keras3.plain_model import plain_model
    plain = plain_model(model)  # computes model(x, training=False)
    ```
"""

import keras
from keras import ops

from keras_bilevel.keras3 import layers as quant_layers, quantizers

__all__ = ["BinarySign", "plain_model"]

# The plain Keras layer each quantized layer becomes (the first base class it has).
_PLAIN_BASES = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)

@keras.saving.register_keras_serializable(package="keras_bilevel")
class BinarySign(keras.layers.Layer):
    r"""The inference form of a binary input quantizer: the sign with `sign(0) = +1`.

    \\[ y = \mathrm{sgn}(\mathrm{sgn}(x) + 0.1) \\]

    written, as `larq.math.sign`, with two sign ops (the pattern LCE recognises); the
    values are those of `"ste_sign"` and `"ada_ste"` at inference. No weights.

    !!! example
        ```python
        BinarySign()(np.array([-2.0, 0.0, 3.0]))  # [-1., 1., 1.]
        ```
    """

    def call(self, inputs):
        return ops.sign(ops.sign(inputs) + 0.1)

    def compute_output_shape(self, input_shape):
        return input_shape


def _is_binary_sign(quantizer):
    """Whether a quantizer is `sign(x)` (sign(0) = +1) at inference."""
    return isinstance(quantizer, (quantizers.AdaSTE, quantizers.SteSign))


def _plain_layer(layer):
    """The plain Keras 3 layer computing what quantized `layer` computes at inference."""
    base = next(cls for cls in _PLAIN_BASES if isinstance(layer, cls))
    config = layer.get_config()
    if config.pop("pad_values", 0.0) != 0.0:
        raise ValueError(
            f"plain_model: layer {layer.name!r} pads with pad_values="
            f"{layer.pad_values}, which no plain Keras layer does, so no export takes it "
            "yet. Fix: train it with pad_values=0 to export it.")
    config.pop("input_quantizer", None)
    config.pop(layer._quantizer_arg, None)
    config[layer._constraint_arg] = None
    if layer.quantization_mode is not None:
        # A quantized layer becomes the float layer it was quantized from.
        config["dtype"] = layer.dtype_policy.name.split("_from_", 1)[1]
        config.pop("quantization_config", None)
    return base.from_config(config)


def _check_nested(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model) and any(
            isinstance(inner, quant_layers._Quantized) for inner in layer._flatten_layers()
        ):
            raise ValueError(
                f"plain_model: layer {layer.name!r} is a model holding quantized layers; "
                "nested models are not supported. Build the network as one functional or "
                "Sequential model (e.g. call the inner model's layers directly)."
            )


def plain_model(model):
    """An inference-only copy of `model` made of plain Keras 3 layers.

    Every quantized layer of `keras_bilevel.keras3.layers` becomes the Keras layer it
    extends (`QuantDense` -> `Dense`, ...) whose kernel is the quantized kernel
    `kernel_quantizer(theta, training=False)` (+-1 for AdaSTE and `"ste_sign"`); biases,
    BatchNorm statistics and the other layers are copied as they are. A binary
    `input_quantizer` (`"ste_sign"`, `"ada_ste"`) becomes a `BinarySign` layer named
    `<layer>_input_sign` before it. The copy computes what `model` computes with
    `training=False`, has no quantizer, constraint or `mu`, and loads without
    keras_bilevel objects other than `BinarySign`. A layer that `quantize("int8")` or
    `"int4"` stored (`keras_bilevel.keras3.keras_quantization`) becomes the float layer
    holding its stored kernel `k / s` (+-1 again): the copy computes in float, without
    the int8 rounding of activations of Keras's quantized Dense call.

    # Arguments
        model: a built functional or Sequential Keras 3 model with one input.

    # Returns
        A functional `keras.Model` on the same backend.

    # Raises
        ValueError: a nested model holds quantized layers, an input quantizer is not
            a sign at inference, or a layer pads with `pad_values` other than 0.
    """
    if not isinstance(model, keras.Model) or not model.built or not model.inputs:
        raise ValueError(
            f"plain_model: `model` must be a built functional or Sequential keras.Model "
            f"with known inputs, got {model!r}. Fix: build it with `keras.Input(...)`."
        )
    _check_nested(model)
    if isinstance(model, keras.Sequential):
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    sources = {}  # id(new layer) -> the layer it copies
    signs = {}  # id(new layer) -> the BinarySign layer before it

    def clone(layer):
        if not isinstance(layer, quant_layers._Quantized):
            new = layer.__class__.from_config(layer.get_config())
        else:
            new = _plain_layer(layer)
            if layer.input_quantizer is not None:
                if not _is_binary_sign(layer.input_quantizer):
                    raise ValueError(
                        f"plain_model: layer {layer.name!r} has input_quantizer "
                        f"{layer.input_quantizer!r}; only binary sign quantizers "
                        "('ste_sign', 'ada_ste') can be exported."
                    )
                signs[id(new)] = BinarySign(name=f"{layer.name}_input_sign")
        sources[id(new)] = (new, layer)
        return new

    def call(layer, *args, **kwargs):
        if id(layer) in signs:
            args = (signs[id(layer)](args[0]), *args[1:])
        return layer(*args, **kwargs)

    plain = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for new, old in sources.values():
        new.set_weights(_inference_weights(old))
    return plain


def _inference_weights(layer):
    """The weights of `layer` with its latent kernel replaced by the quantized one."""
    if isinstance(layer, quant_layers._Quantized) and layer.quantization_mode is not None:
        bias = [] if layer.bias is None else [ops.convert_to_numpy(layer.bias)]
        return [ops.convert_to_numpy(layer.served_kernel()), *bias]
    values = [ops.convert_to_numpy(variable) for variable in layer.weights]
    if isinstance(layer, quant_layers._Quantized):
        latent = layer._latent_kernel
        kernel = ops.convert_to_numpy(layer._quantized_kernel(latent, training=False))
        values = [kernel if variable is latent else value
                  for variable, value in zip(layer.weights, values)]
    return values
