"""The plain `tf.keras` layer that replaces each layer of a Larq network at export.

A Larq layer becomes the `tf.keras` layer it extends, holding the kernel its quantizer
gives at inference (+-1 for AdaSTE and `ste_sign`), with a binary input quantizer as a
sign LCE recognises; any other layer is copied from its config with its weights.
`keras_bilevel.export.strip` replays a model's graph through these.
"""

import keras_bilevel.keras2.legacy_keras  # noqa: F401  (Keras 2 mode before TensorFlow)

import numpy as np
import tensorflow as tf

__all__ = ["PlainCopy", "PlainQuantLayer", "QUANTIZED_KERNELS", "is_binary"]

QUANTIZED_KERNELS = {
    "kernel": "kernel_quantizer",
    "depthwise_kernel": "depthwise_quantizer",
    "pointwise_kernel": "pointwise_quantizer",
}
_LARQ_ONLY_CONFIG = (
    "input_quantizer", "metrics", "pad_values", *QUANTIZED_KERNELS.values()
)



def is_binary(quantizer):
    """Whether `quantizer` is a binary (1-bit) Larq quantizer."""
    return (
        quantizer is not None
        and getattr(quantizer, "precision", None) == 1
        and type(quantizer).__name__ != "NoOp"
    )


def _plain_config(config):
    """A layer config without Larq keys and without objects an inference model needs not."""
    config = {key: value for key, value in config.items() if key not in _LARQ_ONLY_CONFIG}
    for key in list(config):
        if key.endswith("_initializer"):
            config[key] = "zeros"  # overwritten by the weights; may be a custom object
        elif key.endswith(("_constraint", "_regularizer")):
            config[key] = None
    return config


class PlainCopy:
    """A plain (non-Larq) layer: the same class from its config, with its weights."""

    def __init__(self, layer):
        self.source = layer
        try:
            self.layer = type(layer).from_config(_plain_config(layer.get_config()))
        except Exception as error:  # noqa: BLE001  (re-raised with the layer named)
            raise TypeError(
                f"Cannot copy layer {layer.name!r} ({type(layer).__name__}) from its "
                f"config: {error}"
            ) from error
        self.built = False

    def __call__(self, args, kwargs):
        outputs = self.layer(*args, **kwargs)
        if not self.built:
            self.layer.set_weights(self.source.get_weights())
            self.built = True
        return outputs


class PlainQuantLayer:
    """A Larq layer as [input sign Lambda] -> [padding Lambda] -> plain Keras layer."""

    def __init__(self, layer, one_padded=False):
        plain_class = next(
            (
                cls
                for cls in type(layer).__mro__
                if cls.__module__.split(".")[0] in ("tf_keras", "keras")
                and issubclass(cls, tf.keras.layers.Layer)
                and cls is not tf.keras.layers.Layer
            ),
            None,
        )
        if plain_class is None:
            raise TypeError(
                f"Larq layer {layer.name!r} ({type(layer).__name__}) extends no tf.keras "
                "layer; strip_latent cannot replace it."
            )
        self.source = layer
        config = _plain_config(layer.get_config())
        self.pad_value = None
        if not getattr(layer, "_is_native_padding", True):
            self.pad_value = float(tf.keras.backend.get_value(layer.pad_values))
            config["padding"] = "valid"
        self.one_padded, self.corrected_activation = one_padded, None
        if one_padded:
            self._check_one_padding(layer)
            self.pad_value = 1.0
            config["padding"] = "valid"
            activation = config.get("activation") or "linear"
            if activation != "linear":  # applied after the correction
                self.corrected_activation = tf.keras.layers.Activation(
                    activation, name=f"{layer.name}_activation")
            config["activation"] = "linear"
        self.layer = plain_class.from_config(config)
        self.input_function = _input_quantizer_function(layer)
        self.pad_layers = {}  # one padding Lambda per input shape (shared layers)
        self.built = False

    def _pad(self, inputs):
        spatial = self.source._get_spatial_shape(inputs.shape)
        if any(size is None for size in spatial):
            raise ValueError(
                f"Layer {self.source.name!r} pads with pad_values={self.pad_value} and "
                f"its input shape {tuple(inputs.shape)} is not fully known: build the "
                "model with a fixed input shape, e.g. tf.keras.Input((32, 32, 3))."
            )
        padding = [list(pair) for pair in self.source._get_spatial_padding_same(spatial)]
        if self.source.data_format == "channels_last":
            paddings = [[0, 0], *padding, [0, 0]]
        else:
            paddings = [[0, 0], [0, 0], *padding]
        key = str(paddings)
        if key not in self.pad_layers:
            suffix = f"_{len(self.pad_layers)}" if self.pad_layers else ""
            self.pad_layers[key] = tf.keras.layers.Lambda(
                lambda x, paddings, value: tf.pad(x, paddings, constant_values=value),
                arguments={"paddings": paddings, "value": self.pad_value},
                name=f"{self.source.name}_pad{suffix}",
            )
        return self.pad_layers[key](inputs)

    @staticmethod
    def _check_one_padding(layer):
        if not (is_binary(getattr(layer, "input_quantizer", None))
                and getattr(layer, "padding", None) == "same"
                and getattr(layer, "_is_native_padding", True)):
            raise ValueError(
                f"strip_latent: layer {layer.name!r} cannot be one-padded: only "
                "convolutions with binary inputs, padding='same' and pad_values=0 can")

    def _padding_correction(self, inputs):
        """The constant that +1 padding adds to the "valid" convolution: the layer on an
        all-zero input padded with ones, minus the same padded with zeros (its bias)."""
        (pad_layer,) = self.pad_layers.values()
        zeros = tf.zeros((1, *inputs.shape[1:]), inputs.dtype)
        paddings = pad_layer.arguments["paddings"]
        ones = self.layer(tf.pad(zeros, paddings, constant_values=1.0))
        bias = self.layer(tf.pad(zeros, paddings))
        return np.asarray(ones) - np.asarray(bias)

    def __call__(self, args, kwargs):
        (inputs, *rest) = args
        if self.input_function is not None:
            inputs = self.input_function(inputs)
        signed = inputs
        if self.pad_value is not None:
            inputs = self._pad(inputs)
        outputs = self.layer(inputs, *rest, **kwargs)
        if not self.built:
            self._set_weights()
            self.built = True
        if self.one_padded:
            if len(self.pad_layers) > 1:
                raise ValueError(f"strip_latent: layer {self.source.name!r} is shared by "
                                 "inputs of several shapes; it cannot be one-padded")
            correction = self._padding_correction(signed)
            outputs = tf.keras.layers.Lambda(
                _subtract_through_flat_view, arguments={"correction": correction},
                name=f"{self.source.name}_padding_correction")(outputs)
            if self.corrected_activation is not None:
                outputs = self.corrected_activation(outputs)
        return outputs

    def _set_weights(self):
        values = []
        for weight in self.layer.weights:
            attribute = weight.name.split("/")[-1].split(":")[0]
            source = getattr(self.source, attribute, None)
            if source is None:
                raise TypeError(
                    f"Cannot find weight {attribute!r} on Larq layer {self.source.name!r}."
                )
            latent = getattr(source, "latent_variable", source)
            quantizer = getattr(self.source, QUANTIZED_KERNELS.get(attribute, ""), None)
            value = tf.convert_to_tensor(latent)
            if quantizer is not None:
                value = _quantize_for_inference(quantizer, value)
            values.append(np.asarray(value, dtype=weight.dtype.as_numpy_dtype))
        self.layer.set_weights(values)


def _subtract_through_flat_view(x, correction):
    """x - correction, for a constant of x's shape (batch 1), computed on a flat view.

    Subtracting it directly would let LCE 0.16's converter fold the constant into the
    preceding LceBconv2d's per-channel `post_activation_bias`, which it is not (the file
    then fails to load, or computes wrongly after a BatchNorm); the reshapes keep it a
    subtraction of its own."""
    size = int(np.prod(correction.shape[1:]))
    flat = tf.reshape(x, (-1, size)) - correction.reshape(1, size)
    return tf.reshape(flat, (-1, *correction.shape[1:]))


def _quantize_for_inference(quantizer, value):
    if isinstance(quantizer, tf.keras.layers.Layer):
        return quantizer(value, training=False)  # passed on only where `call` takes it
    return quantizer(value)


_SIGN_PROBE = np.array([-3.0, -1.0, -0.25, -1e-6, 0.0, 1e-6, 0.25, 1.0, 3.0], np.float32)


def _input_quantizer_function(layer):
    """A function of Keras tensors that reproduces `layer.input_quantizer` at inference."""
    quantizer = getattr(layer, "input_quantizer", None)
    if quantizer is None:
        return None
    name = getattr(quantizer, "name", None) or getattr(quantizer, "__name__", "quantizer")
    probe = np.asarray(_quantize_for_inference(quantizer, tf.constant(_SIGN_PROBE)))
    if np.array_equal(probe, np.where(_SIGN_PROBE >= 0, 1.0, -1.0)):
        function, suffix = (lambda x: tf.sign(tf.sign(x) + 0.1)), "input_sign"
    elif np.array_equal(probe, np.where(_SIGN_PROBE > 0, 1.0, 0.0)):
        function, suffix = (lambda x: tf.sign(tf.nn.relu(x))), "input_heaviside"
    else:
        raise TypeError(
            f"Layer {layer.name!r}: input quantizer {name!r} is not a sign or Heaviside "
            f"step at inference (it maps {_SIGN_PROBE.tolist()} to {probe.tolist()}); "
            "strip_latent supports binary activations (ste_sign, approx_sign, swish_sign, "
            "ste_heaviside) only."
        )
    return tf.keras.layers.Lambda(function, name=f"{layer.name}_{suffix}")


# ------------------------------------------------------------------------------ checks
