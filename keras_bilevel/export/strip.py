"""strip_latent: the inference model of a Larq network, with the binary weights.

The Larq-specific part of the export: it turns Larq layers into the plain `tf.keras`
layers they extend, with the kernels their quantizers give at inference (+-1 for AdaSTE
and `ste_sign`), and binary activations into `Lambda` layers LCE recognises. It also
checks that a Larq model can be exported (`check_exportable`). It writes no files: the
result goes to `tflite_file.convert_keras_model` or to LCE's converter.
"""

import keras_bilevel._keras2  # noqa: F401  (Keras 2 mode before TensorFlow)

import numpy as np
import tensorflow as tf

__all__ = [
    "check_exportable",
    "has_binary_activations",
    "replay_graph",
    "strip_latent",
    "zero_padded_binary_convolutions_smaller_than_kernel",
]

_QUANTIZED_KERNELS = {
    "kernel": "kernel_quantizer",
    "depthwise_kernel": "depthwise_quantizer",
    "pointwise_kernel": "pointwise_quantizer",
}
_LARQ_ONLY_CONFIG = (
    "input_quantizer", "metrics", "pad_values", *_QUANTIZED_KERNELS.values()
)



def strip_latent(model, one_padded=()):
    """An inference-only copy of `model` with plain layers and the binary weights.

    Each Larq layer (`QuantDense`, `QuantConv1D/2D/3D`, `QuantDepthwiseConv2D`,
    `QuantSeparableConv1D/2D`, ...) becomes the `tf.keras` layer it extends, with the
    kernels its quantizers give at inference (`quantizer(latent, training=False)`:
    `larq.math.sign(theta)`, i.e. +-1, for AdaSTE and `ste_sign`). The quantizers and
    their variables (AdaSTE's `mu`) are dropped, and so are weight constraints,
    regularizers and initializers. A binary `input_quantizer` (`ste_sign`,
    `approx_sign`, `swish_sign`, ...) becomes a `Lambda` layer named
    `<layer>_input_sign` computing `tf.sign(tf.sign(x) + 0.1)` (`larq.math.sign`, the
    pattern Larq Compute Engine turns into bit-packing), `ste_heaviside` one computing
    `tf.sign(tf.nn.relu(x))`; `pad_values != 0` becomes a `Lambda` padding with that
    value before a `"valid"` convolution. Other layers are copied with their weights;
    BatchNormalization is kept as it is (the TFLite converter folds it).

    The result gives the outputs of `model.predict` (the same float operations), has the
    same inputs, and can be converted with `tf.lite.TFLiteConverter.from_keras_model`.
    Saving it to `.h5`/`.keras` stores the `Lambda` functions as Python bytecode (load
    with `safe_mode=False`).

    !!! example
        ```python
        model = keras_bilevel.models.binary_mlp()
        ...  # train
        plain = keras_bilevel.export.strip_latent(model)
        np.testing.assert_allclose(plain.predict(x), model.predict(x), atol=1e-5)
        ```

    `one_padded` names zero-padded binary convolutions (`padding="same"`,
    `pad_values=0`, binary inputs) to compute another way with the same result: padded
    with +1 (which a binary input can hold, and LCE bit-packs) before a `"valid"`
    convolution, then minus the constant the +1 padding added (a `Lambda` named
    `<layer>_padding_correction`: the convolution of the padding ring alone, per output
    position and channel), then the layer's activation. `to_lce` uses it where LCE 0.16
    computes zero padding wrongly (`zero_padded_binary_convolutions_smaller_than_kernel`).

    # Arguments
        model: a functional or Sequential `tf.keras.Model` (nested ones included) with
            at least one Larq layer with a binary (`precision == 1`) quantizer.
        one_padded: names of layers to compute as described above.

    # Returns
        A functional `tf.keras.Model` named `<model.name>_binary`.

    # Raises
        TypeError: subclassed models, unsupported Larq layers or input quantizers.
        ValueError: no binary layers.
    """
    _check_model_type(model)
    _check_binary_layers(model)
    one_padded = set(one_padded)
    unknown = one_padded - {layer.name for layer in _walk_layers(model)}
    if unknown:
        raise ValueError(f"strip_latent: `one_padded` names no layer of {model.name!r}: "
                         f"{sorted(unknown)}")
    return _strip_graph(model, {}, name=f"{model.name}_binary", one_padded=one_padded)


def _check_model_type(model):
    if not isinstance(model, tf.keras.Model):
        raise TypeError(
            "Expected a tf.keras.Model (functional or Sequential), got "
            f"{type(model).__name__}. Import keras_bilevel before building the model so "
            "that tf.keras is Keras 2."
        )
    if not getattr(model, "_is_graph_network", False):
        if isinstance(model, tf.keras.Sequential):
            raise ValueError(
                f"The input shape of Sequential model {model.name!r} is not known: build "
                "it with a fixed input shape, e.g. start it with "
                "tf.keras.Input((32, 32, 3))."
            )
        raise TypeError(
            f"Model {model.name!r} is a subclassed model ({type(model).__name__}); only "
            "functional and Sequential models can be exported. Rebuild it with the "
            "functional API (tf.keras.Input -> layers -> tf.keras.Model) and copy the "
            "weights."
        )


def _walk_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, tf.keras.Model):
            yield from _walk_layers(layer)


def _is_binary(quantizer):
    return (
        quantizer is not None
        and getattr(quantizer, "precision", None) == 1
        and type(quantizer).__name__ != "NoOp"
    )


def _binary_layers(model):
    return [
        layer
        for layer in _walk_layers(model)
        if any(
            _is_binary(getattr(layer, attr, None)) for attr in _QUANTIZED_KERNELS.values()
        )
    ]


def has_binary_activations(model):
    """Whether a layer of `model` has a binary `input_quantizer` (e.g. `"ste_sign"`)."""
    return any(
        _is_binary(getattr(layer, "input_quantizer", None)) for layer in _walk_layers(model)
    )


def zero_padded_binary_convolutions_smaller_than_kernel(model):
    """Names of the layers with binary inputs, `padding="same"`, `pad_values=0` and an
    input smaller than the kernel's extent in a spatial dimension ((k - 1) d + 1 for
    kernel size k and dilation d; measured: LCE 0.16's optimised `LceBconv2d` kernel gets
    these wrong, e.g. a 3x3 kernel on 2x2 or 1x1 inputs, or dilated 2 on 4x4 inputs)."""
    names = []
    for layer in _walk_layers(model):
        if not _is_binary(getattr(layer, "input_quantizer", None)):
            continue
        if getattr(layer, "padding", None) != "same" or not hasattr(layer, "kernel_size"):
            continue
        if float(tf.keras.backend.get_value(getattr(layer, "pad_values", 0.0))) != 0.0:
            continue
        shape = layer.input_shape
        spatial = shape[1:-1] if getattr(layer, "data_format", "") == "channels_last" \
            else shape[2:]
        dilation = getattr(layer, "dilation_rate", (1,) * len(layer.kernel_size))
        if any(size is not None and size < (kernel - 1) * rate + 1
               for size, kernel, rate in zip(spatial, layer.kernel_size, dilation)):
            names.append(layer.name)
    return names


def _check_binary_layers(model):
    if not _binary_layers(model):
        raise ValueError(
            f"Model {model.name!r} has no binary layers (no Larq layer whose kernel "
            "quantizer has precision 1, e.g. kernel_quantizer='ada_ste' or 'ste_sign'): "
            "there is nothing binary to export; export it with tf.lite.TFLiteConverter "
            "directly."
        )


def _strip_graph(model, layer_map, name=None, one_padded=frozenset()):
    """Rebuilds a functional/Sequential graph with `_plain_call` in place of each layer."""
    _check_model_type(model)
    new_inputs = []
    for tensor, input_layer in zip(model.inputs, model._input_layers):
        new_inputs.append(
            tf.keras.Input(
                shape=tuple(tensor.shape[1:]),
                batch_size=tensor.shape[0],
                dtype=tensor.dtype,
                name=input_layer.name,
            )
        )
    outputs = replay_graph(
        model, new_inputs,
        lambda node, args, kwargs: _plain_call(node.layer, layer_map, args, kwargs,
                                               one_padded),
    )
    return tf.keras.Model(new_inputs, outputs, name=name or model.name)


def replay_graph(model, inputs, call_node):
    """The outputs of a functional model's graph computed again from `inputs`, node by
    node in order, each node's outputs given by `call_node(node, args, kwargs)` (its
    arguments mapped to the new tensors)."""
    computed = {id(old): new for old, new in zip(model.inputs, tf.nest.flatten(inputs))}

    def lookup(value):
        return computed.get(id(value), value)

    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input:
                continue
            args = tf.nest.map_structure(lookup, node.call_args)
            kwargs = tf.nest.map_structure(lookup, node.call_kwargs)
            outputs = call_node(node, args, kwargs)
            for old, new in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(outputs)):
                computed[id(old)] = new
    outputs = [computed[id(tensor)] for tensor in model.outputs]
    return tf.nest.pack_sequence_as(model._nested_outputs, outputs)


def _plain_call(layer, layer_map, args, kwargs, one_padded=frozenset()):
    """Calls the plain replacement of `layer` (made once per layer, so sharing is kept)."""
    if id(layer) not in layer_map:
        if isinstance(layer, tf.keras.Model):
            layer_map[id(layer)] = _NestedModel(layer, layer_map, one_padded)
        elif _is_larq_layer(layer):
            layer_map[id(layer)] = _PlainQuantLayer(layer, layer.name in one_padded)
        else:
            layer_map[id(layer)] = _PlainCopy(layer)
    return layer_map[id(layer)](args, kwargs)


def _is_larq_layer(layer):
    return any(cls.__module__.split(".")[0] == "larq" for cls in type(layer).__mro__)


def _plain_config(config):
    """A layer config without Larq keys and without objects an inference model needs not."""
    config = {key: value for key, value in config.items() if key not in _LARQ_ONLY_CONFIG}
    for key in list(config):
        if key.endswith("_initializer"):
            config[key] = "zeros"  # overwritten by the weights; may be a custom object
        elif key.endswith(("_constraint", "_regularizer")):
            config[key] = None
    return config


class _NestedModel:
    def __init__(self, model, layer_map, one_padded=frozenset()):
        self.model = _strip_graph(model, layer_map, one_padded=one_padded)

    def __call__(self, args, kwargs):
        return self.model(*args, **kwargs)


class _PlainCopy:
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


class _PlainQuantLayer:
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
        if not (_is_binary(getattr(layer, "input_quantizer", None))
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
            quantizer = getattr(self.source, _QUANTIZED_KERNELS.get(attribute, ""), None)
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


def check_exportable(model):
    """Raises if `model` cannot be exported (see `to_tflite`'s "Raises").

    It must be a functional or Sequential float32 model with one input of fully known
    shape, one output, and at least one binary Larq layer.
    """
    _check_model_type(model)
    for layer in [model, *_walk_layers(model)]:
        policy = getattr(layer, "dtype_policy", None)
        compute = getattr(policy, "compute_dtype", None) or getattr(layer, "dtype", None)
        variable = getattr(policy, "variable_dtype", None) or compute
        if (compute, variable) != ("float32", "float32") and compute is not None:
            raise ValueError(
                f"Layer {layer.name!r} of model {model.name!r} uses dtype policy "
                f"{getattr(policy, 'name', compute)!r}: mixed-precision models cannot be "
                "exported (TFLite and LCE refuse them). Cast the model to float32 first: "
                "rebuild it under tf.keras.mixed_precision.set_global_policy('float32') "
                "and copy the weights (float32_model.set_weights(model.get_weights()))."
            )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"Model {model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} "
            "outputs; export supports models with one input and one output."
        )
    shape = tuple(model.inputs[0].shape)
    if any(size is None for size in shape[1:]):
        raise ValueError(
            f"Input shape {shape[1:]} of model {model.name!r} is not fully known: build "
            "the model with a fixed input shape, e.g. tf.keras.Input((32, 32, 3))."
        )
    _check_binary_layers(model)

