"""strip_latent: the inference model of a Larq network, with the binary weights.

The Larq-specific part of the export: it turns Larq layers into the plain `tf.keras`
layers they extend, with the kernels their quantizers give at inference (+-1 for AdaSTE
and `ste_sign`), and binary activations into `Lambda` layers LCE recognises. It also
checks that a Larq model can be exported (`check_exportable`). It writes no files: the
result goes to `tflite_file.convert_keras_model` or to LCE's converter.
"""

import keras_bilevel.keras2.legacy_keras  # noqa: F401  (Keras 2 mode before TensorFlow)

import tensorflow as tf

from keras_bilevel.export import plain_layers

__all__ = [
    "check_exportable",
    "has_binary_activations",
    "replay_graph",
    "strip_latent",
    "zero_padded_binary_convolutions_smaller_than_kernel",
]

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
        model = keras_bilevel.keras2.models.binary_mlp()
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


def _binary_layers(model):
    return [
        layer
        for layer in _walk_layers(model)
        if any(plain_layers.is_binary(getattr(layer, attr, None))
               for attr in plain_layers.QUANTIZED_KERNELS.values())
    ]


def has_binary_activations(model):
    """Whether a layer of `model` has a binary `input_quantizer` (e.g. `"ste_sign"`)."""
    return any(plain_layers.is_binary(getattr(layer, "input_quantizer", None))
               for layer in _walk_layers(model))


def zero_padded_binary_convolutions_smaller_than_kernel(model):
    """Names of the layers with binary inputs, `padding="same"`, `pad_values=0` and an
    input smaller than the kernel's extent in a spatial dimension ((k - 1) d + 1 for
    kernel size k and dilation d; measured: LCE 0.16's optimised `LceBconv2d` kernel gets
    these wrong, e.g. a 3x3 kernel on 2x2 or 1x1 inputs, or dilated 2 on 4x4 inputs)."""
    names = []
    for layer in _walk_layers(model):
        if not plain_layers.is_binary(getattr(layer, "input_quantizer", None)):
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
            layer_map[id(layer)] = plain_layers.PlainQuantLayer(layer, layer.name in one_padded)
        else:
            layer_map[id(layer)] = plain_layers.PlainCopy(layer)
    return layer_map[id(layer)](args, kwargs)


def _is_larq_layer(layer):
    return any(cls.__module__.split(".")[0] == "larq" for cls in type(layer).__mro__)


class _NestedModel:
    def __init__(self, model, layer_map, one_padded=frozenset()):
        self.model = _strip_graph(model, layer_map, one_padded=one_padded)

    def __call__(self, args, kwargs):
        return self.model(*args, **kwargs)


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

