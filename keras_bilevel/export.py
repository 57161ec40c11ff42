"""Export trained binary networks to files that compute what the Keras model computes.

A binary network is trained with latent real-valued weights; on a device only their signs
matter. This module writes those signs into TFLite and Larq Compute Engine (LCE) files and
checks every file it writes against the Keras model before it reports success:

- `strip_latent(model)`: an inference-only Keras model made of plain `tf.keras` layers,
  with the +-1 (binary) kernels in place of the latent ones, no `mu` and no Larq or
  keras_bilevel objects. Binary activations (`input_quantizer="ste_sign"` and the like)
  become `Lambda` layers computing `tf.sign(tf.sign(x) + 0.1)`, the pattern of
  `larq.math.sign` that LCE turns into bit-packing ops.
- `to_tflite(model, path, weights="float32" | "int8")`: a TFLite file computing in
  float32. With `weights="int8"` each binary weight tensor is stored as int8 (+-1, with a
  float32 scale per output channel where the converter folded BatchNorm into the kernel)
  and a `DEQUANTIZE` op rebuilds the float kernel when the interpreter prepares the
  model. Every op still computes in float, so the file is about 4x smaller and gives the
  float32 file's outputs. TFLite's own dynamic-range quantisation is *not* used: its
  hybrid kernels quantise the activations at run time as well, which changes the
  network (measured on a small binary MLP: 1% of the argmax predictions changed).
- `to_lce(model, path, weights="float32" | "int8")`: a Larq Compute Engine file (needs
  the optional `larq-compute-engine` package). Convolutions whose inputs *and* weights
  are binary become `LceBconv2d` ops with bit-packed weights (32 weights per int32 word);
  other binary weights stay float32 or, with `weights="int8"`, int8 as above. Networks
  with binary weights only (the AdaSTE paper's setting: real-valued ReLU activations) get
  no binary ops from LCE: the file is a plain float file, and `to_lce` warns about it.
  Export such networks with `to_tflite(..., weights="int8")`.

Each export runs the written file (the TFLite interpreter, or LCE's interpreter for LCE
files) on sample inputs, compares it with `model.predict` and returns an `ExportReport`
(printed unless `verbose=False`): file size and size relative to the float32 file, the op
list with the binary ops counted, the binary weight tensors and how they are stored, the
largest difference and the argmax agreement. A difference above `tolerance` raises
`ExportError` (the file is left in place for inspection).

Binary activations and ties: the converters fold BatchNorm into the kernels, so the file
rounds differently from Keras, and a pre-activation within float rounding of the sign
threshold can take the other sign in the file; the change then propagates through the
following binary layers. With BatchNorm statistics from training (moving averages) such
near-ties are rare and the check passes (measured: largest relative difference about
1e-6); BatchNorm statistics that make integer pre-activations land exactly on the
threshold (e.g. a mean of a few integers) break ties differently and fail the check. The
`ExportError` carries the report, whose `argmax_agreement` says how much it matters.

Refused, with a message saying what to do instead: models without binary layers (no Larq
quantizer with `precision == 1`), subclassed models, input shapes that are not fully known,
mixed-precision models, and `to_lce` without `larq-compute-engine` installed.
"""

import collections
import dataclasses
import os
import warnings

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as tflite_schema
from tensorflow.lite.tools import flatbuffer_utils

__all__ = [
    "ExportError",
    "ExportReport",
    "WeightInfo",
    "strip_latent",
    "to_lce",
    "to_tflite",
]

# Relative to the output scale (the largest |output| of the Keras model on the samples).
DEFAULT_TOLERANCE = 1e-4

_QUANTIZED_KERNELS = {
    "kernel": "kernel_quantizer",
    "depthwise_kernel": "depthwise_quantizer",
    "pointwise_kernel": "pointwise_quantizer",
}
_LARQ_ONLY_CONFIG = (
    "input_quantizer", "metrics", "pad_values", *_QUANTIZED_KERNELS.values()
)

# TFLite ops whose input 1 is a weight tensor.
_WEIGHT_OPS = frozenset(
    {
        "FULLY_CONNECTED",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "CONV_3D",
        "TRANSPOSE_CONV",
        "CONV_3D_TRANSPOSE",
        "BATCH_MATMUL",
    }
)
_BUILTIN_NAMES = {
    code: name
    for name, code in vars(tflite_schema.BuiltinOperator).items()
    if not name.startswith("_")
}
_FLOAT32 = tflite_schema.TensorType.FLOAT32
_INT8 = tflite_schema.TensorType.INT8
_INTEGER_WEIGHT_TYPES = {
    tflite_schema.TensorType.INT8,
    tflite_schema.TensorType.UINT8,
    getattr(tflite_schema.TensorType, "INT4", -1),
}
_LCE_INSTALL = "pip install 'larq-compute-engine==0.16.*'"


class ExportError(RuntimeError):
    """The written file does not compute what the Keras model computes.

    `report` holds the measurements (`ExportReport`); the file is left at `report.path`.

    !!! example
        ```python
        try:
            keras_bilevel.export.to_lce(model, "model.tflite")
        except keras_bilevel.export.ExportError as error:
            print(error.report.max_rel_diff, error.report.argmax_agreement)
        ```
    """

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


@dataclasses.dataclass
class WeightInfo:
    """One binary weight tensor of an exported file and how it is stored.

    !!! example
        ```python
        report = keras_bilevel.export.to_lce(model, "model.tflite")
        bconv = [w for w in report.binary_weights if w.op == "LceBconv2d"]
        sum(w.float32_bytes for w in bconv) / sum(w.stored_bytes for w in bconv)  # ~32
        ```

    # Attributes
        op: the op that uses the weights (`"FULLY_CONNECTED"`, `"LceBconv2d"`, ...).
        name: the tensor's name in the file.
        shape: the shape of the weights as the op sees them (float elements).
        storage: `"float32"`, `"int8"` or `"bitpacked"` (LCE: 32 weights per int32).
        stored_bytes: bytes the tensor takes in the file.
        float32_bytes: bytes it would take as float32.
    """

    op: str
    name: str
    shape: tuple
    storage: str
    stored_bytes: int
    float32_bytes: int


@dataclasses.dataclass
class ExportReport:
    """What an export wrote and how closely the file reproduces the Keras model.

    # Attributes
        path: the file written.
        format: `"tflite-float32"`, `"tflite-int8"`, `"lce-float32"` or `"lce-int8"`.
        size_bytes: the file's size.
        float32_size_bytes: the size of the float32 TFLite file of the same model.
        size_vs_float32: `size_bytes / float32_size_bytes`.
        ops: `collections.Counter` of the op names in the file.
        binary_ops: how many ops compute on bit-packed data (the `Lce*` ops).
        hybrid_ops: ops with int8 weights and float inputs (they quantise activations at
            run time); 0 for every file this module writes.
        binary_weights: one `WeightInfo` per binary weight tensor in the file.
        num_samples: how many sample inputs were compared.
        max_abs_diff: the largest |file output - Keras output|.
        output_scale: the largest |Keras output| on the samples (1 if all are 0).
        max_rel_diff: `max_abs_diff / output_scale`.
        argmax_agreement: the fraction of samples whose argmax over the last axis agrees
            (`None` for outputs with a single value per sample).
        tolerance: the largest `max_rel_diff` accepted.
        warnings: what the user should know about the file (e.g. no binary ops).

    !!! example
        ```python
        report = keras_bilevel.export.to_tflite(model, "mlp.tflite", weights="int8")
        assert report.hybrid_ops == 0 and report.size_vs_float32 < 0.27
        print(report.ops, report.max_rel_diff, report.argmax_agreement)
        ```
    """

    path: str
    format: str
    size_bytes: int
    float32_size_bytes: int
    size_vs_float32: float
    ops: collections.Counter
    binary_ops: int
    hybrid_ops: int
    binary_weights: list
    num_samples: int
    max_abs_diff: float
    output_scale: float
    max_rel_diff: float
    argmax_agreement: float | None
    tolerance: float
    warnings: list = dataclasses.field(default_factory=list)

    @property
    def binary_weight_bytes(self):
        """Bytes the binary weight tensors take in the file."""
        return sum(info.stored_bytes for info in self.binary_weights)

    @property
    def binary_weight_float32_bytes(self):
        """Bytes the binary weight tensors would take as float32."""
        return sum(info.float32_bytes for info in self.binary_weights)

    @property
    def passed(self):
        """Whether the file reproduces the model within `tolerance`."""
        return bool(self.max_rel_diff <= self.tolerance)

    def __str__(self):
        storage = collections.Counter()
        for info in self.binary_weights:
            storage[info.storage] += 1
        if self.binary_weights:
            ratio = self.binary_weight_float32_bytes / max(self.binary_weight_bytes, 1)
            weights = (
                f"{len(self.binary_weights)} tensors ("
                + ", ".join(f"{count} {kind}" for kind, count in sorted(storage.items()))
                + f"), {self.binary_weight_bytes:,} bytes, {ratio:.1f}x smaller than "
                "float32"
            )
        else:
            weights = "none found"
        ops = ", ".join(f"{name} x{count}" for name, count in sorted(self.ops.items()))
        agreement = (
            "n/a (one output value per sample)"
            if self.argmax_agreement is None
            else f"{100 * self.argmax_agreement:.2f}% of {self.num_samples} samples"
        )
        rows = [
            ("file size", f"{self.size_bytes:,} bytes ({self.size_vs_float32:.3f}x the "
                          f"float32 file, {self.float32_size_bytes:,} bytes)"),
            ("binary weights", weights),
            ("ops", ops),
            ("binary ops", f"{self.binary_ops} (hybrid ops: {self.hybrid_ops})"),
            ("max abs difference",
             f"{self.max_abs_diff:.3g} on {self.num_samples} samples"),
            ("max rel difference",
             f"{self.max_rel_diff:.3g} (output scale {self.output_scale:.4g}, "
             f"tolerance {self.tolerance:.0e})"),
            ("argmax agreement", agreement),
            ("check", "passed" if self.passed else "FAILED"),
        ]
        rows += [("warning", text) for text in self.warnings]
        width = max(len(key) for key, _ in rows)
        lines = [f"Export report: {self.path} ({self.format})"]
        lines += [f"  {key:<{width}}  {value}" for key, value in rows]
        return "\n".join(lines)


# --------------------------------------------------------------------------- strip_latent


def strip_latent(model):
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

    # Arguments
        model: a functional or Sequential `tf.keras.Model` (nested ones included) with
            at least one Larq layer with a binary (`precision == 1`) quantizer.

    # Returns
        A functional `tf.keras.Model` named `<model.name>_binary`.

    # Raises
        TypeError: subclassed models, unsupported Larq layers or input quantizers.
        ValueError: no binary layers.
    """
    _check_model_type(model)
    _check_binary_layers(model)
    return _strip_graph(model, {}, name=f"{model.name}_binary")


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


def _has_binary_activations(model):
    return any(
        _is_binary(getattr(layer, "input_quantizer", None)) for layer in _walk_layers(model)
    )


def _check_binary_layers(model):
    if not _binary_layers(model):
        raise ValueError(
            f"Model {model.name!r} has no binary layers (no Larq layer whose kernel "
            "quantizer has precision 1, e.g. kernel_quantizer='ada_ste' or 'ste_sign'): "
            "there is nothing binary to export; export it with tf.lite.TFLiteConverter "
            "directly."
        )


def _strip_graph(model, layer_map, name=None):
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
    computed = {id(old): new for old, new in zip(model.inputs, new_inputs)}

    def lookup(value):
        return computed.get(id(value), value)

    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input:
                continue
            args = tf.nest.map_structure(lookup, node.call_args)
            kwargs = tf.nest.map_structure(lookup, node.call_kwargs)
            outputs = _plain_call(node.layer, layer_map, args, kwargs)
            for old, new in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(outputs)):
                computed[id(old)] = new
    outputs = [computed[id(tensor)] for tensor in model.outputs]
    outputs = tf.nest.pack_sequence_as(model._nested_outputs, outputs)
    return tf.keras.Model(new_inputs, outputs, name=name or model.name)


def _plain_call(layer, layer_map, args, kwargs):
    """Calls the plain replacement of `layer` (made once per layer, so sharing is kept)."""
    if id(layer) not in layer_map:
        if isinstance(layer, tf.keras.Model):
            layer_map[id(layer)] = _NestedModel(layer, layer_map)
        elif _is_larq_layer(layer):
            layer_map[id(layer)] = _PlainQuantLayer(layer)
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
    def __init__(self, model, layer_map):
        self.model = _strip_graph(model, layer_map)

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

    def __init__(self, layer):
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

    def __call__(self, args, kwargs):
        (inputs, *rest) = args
        if self.input_function is not None:
            inputs = self.input_function(inputs)
        if self.pad_value is not None:
            inputs = self._pad(inputs)
        outputs = self.layer(inputs, *rest, **kwargs)
        if not self.built:
            self._set_weights()
            self.built = True
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


# ------------------------------------------------------------------- checks and samples


def _check_exportable(model):
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


def _sample_inputs(model, samples, num_samples, seed):
    shape = tuple(model.inputs[0].shape[1:])
    if samples is None:
        if num_samples is None:
            num_samples = 1000 if int(np.prod(shape)) <= 1024 else 64
        rng = np.random.default_rng(seed)
        return rng.standard_normal((num_samples, *shape)).astype(np.float32)
    samples = np.asarray(samples, dtype=np.float32)
    if samples.shape[1:] != shape or len(samples) == 0:
        raise ValueError(
            f"`samples` must be an array of shape (N, {', '.join(map(str, shape))}) with "
            f"N >= 1, got shape {samples.shape}."
        )
    return samples


# ------------------------------------------------------------------- flatbuffer helpers


class _AlignedBuffer(tflite_schema.BufferT):
    """A TFLite buffer packed with its data aligned to 16 bytes (as the converter does)."""

    def Pack(self, builder):
        data = None
        if self.data is not None and len(self.data):
            payload = np.asarray(self.data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(payload), 16)
            builder.head = builder.head - len(payload)
            builder.Bytes[builder.head : builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            data = builder.EndVector()
        tflite_schema.BufferStart(builder)
        if data is not None:
            tflite_schema.BufferAddData(builder, data)
        tflite_schema.BufferAddOffset(builder, self.offset)
        tflite_schema.BufferAddSize(builder, self.size)
        return tflite_schema.BufferEnd(builder)


def _op_name(model, operator):
    code = model.operatorCodes[operator.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == tflite_schema.BuiltinOperator.CUSTOM:
        custom = code.customCode
        return custom.decode() if isinstance(custom, bytes) else str(custom)
    return _BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}")


def _buffer_array(model, tensor, dtype):
    data = model.buffers[tensor.buffer].data
    if data is None or len(data) == 0:
        return None
    return np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtype=dtype).reshape(
        tuple(tensor.shape)
    )


def _binary_scales(weights):
    """(scales, axis) with weights == sign * scales along `axis`, or None if not binary.

    `axis` is None for one scale for the whole tensor. Channels of zeros get scale 1.
    Axes whose channels hold a single value are not tried (every tensor would pass).
    """
    magnitude = np.abs(weights)
    if weights.size == 0 or not np.all(np.isfinite(weights)):
        return None
    if np.all(magnitude == magnitude.flat[0]) and magnitude.flat[0] > 0:
        return np.array([magnitude.flat[0]], np.float32), None
    for axis in range(weights.ndim):
        if weights.size // weights.shape[axis] < 2:
            continue
        per_channel = np.moveaxis(magnitude, axis, 0).reshape(weights.shape[axis], -1)
        first = per_channel[:, :1]
        if np.all(per_channel == first):
            scales = first[:, 0].astype(np.float32)
            return np.where(scales > 0, scales, np.float32(1)), axis
    return None


def _store_binary_weights_int8(content, require=True):
    """Rewrites a float TFLite flatbuffer: binary weight tensors become int8 + DEQUANTIZE.

    A float32 weight tensor (input 1 of a FULLY_CONNECTED, CONV_2D, ... op) whose values
    are +-s (one s per channel along some axis, e.g. BatchNorm folded in by the
    converter) is replaced by an int8 tensor of +-1 with quantization scale s and zero
    point 0, and a DEQUANTIZE op (placed first) writes the float tensor the op reads:
    (+-1) * s is exactly +-s in float32, so the ops compute what they computed before.
    """
    model = flatbuffer_utils.read_model_from_bytearray(content)
    dequantize_index = None
    per_channel = False
    converted = 0
    for subgraph in model.subgraphs:
        constant = {
            index
            for index, tensor in enumerate(subgraph.tensors)
            if model.buffers[tensor.buffer].data is not None
            and len(model.buffers[tensor.buffer].data)
        }
        new_operators = []
        done = set()
        for operator in subgraph.operators:
            if _op_name(model, operator) not in _WEIGHT_OPS or len(operator.inputs) < 2:
                continue
            index = int(operator.inputs[1])
            tensor = subgraph.tensors[index] if index >= 0 else None
            if index in done or index not in constant or tensor.type != _FLOAT32:
                continue
            weights = _buffer_array(model, tensor, np.float32)
            found = _binary_scales(weights)
            if found is None:
                continue
            scales, axis = found
            if axis is None:
                expanded = scales[0]
            else:
                shape = [1] * weights.ndim
                shape[axis] = -1
                expanded = scales.reshape(shape)
            signs = np.rint(weights / expanded).astype(np.int8)
            if not np.array_equal(signs.astype(np.float32) * expanded, weights):
                continue  # not exactly representable (never for +-s weights)

            buffer = _AlignedBuffer()
            buffer.data = np.frombuffer(signs.tobytes(), np.uint8)
            model.buffers.append(buffer)
            quantization = tflite_schema.QuantizationParametersT()
            quantization.scale = [float(s) for s in scales]
            quantization.zeroPoint = [0] * len(scales)
            quantization.quantizedDimension = 0 if axis is None else axis
            per_channel |= len(scales) > 1
            int8_tensor = tflite_schema.TensorT()
            int8_tensor.shape = np.array(tensor.shape, np.int32)
            int8_tensor.type = _INT8
            int8_tensor.buffer = len(model.buffers) - 1
            int8_tensor.name = _as_bytes(tensor.name) + b"/int8"
            int8_tensor.quantization = quantization
            subgraph.tensors.append(int8_tensor)
            tensor.buffer = 0  # buffer 0 is the empty sentinel: now computed at run time

            if dequantize_index is None:
                code = tflite_schema.OperatorCodeT()
                code.builtinCode = tflite_schema.BuiltinOperator.DEQUANTIZE
                code.deprecatedBuiltinCode = tflite_schema.BuiltinOperator.DEQUANTIZE
                code.version = 2
                model.operatorCodes.append(code)
                dequantize_index = len(model.operatorCodes) - 1
            dequantize = tflite_schema.OperatorT()
            dequantize.opcodeIndex = dequantize_index
            dequantize.inputs = np.array([len(subgraph.tensors) - 1], np.int32)
            dequantize.outputs = np.array([index], np.int32)
            new_operators.append(dequantize)
            done.add(index)
            converted += 1
        subgraph.operators = new_operators + list(subgraph.operators)
    if dequantize_index is not None and per_channel:
        model.operatorCodes[dequantize_index].version = 5  # int8 per-channel DEQUANTIZE
    if converted == 0 and require:
        raise ValueError(
            "The converted model has no binary weight tensors to store as int8 (no "
            "FULLY_CONNECTED/CONV weights equal to +-scale per channel)."
        )
    if converted == 0:
        return content
    _drop_unused_buffers(model)
    model.buffers = [_aligned(buffer) for buffer in model.buffers]
    return flatbuffer_utils.convert_object_to_bytearray(model)


def _as_bytes(name):
    return name if isinstance(name, bytes) else str(name).encode()


def _aligned(buffer):
    if isinstance(buffer, _AlignedBuffer):
        return buffer
    aligned = _AlignedBuffer()
    aligned.data, aligned.offset, aligned.size = buffer.data, buffer.offset, buffer.size
    return aligned


def _drop_unused_buffers(model):
    used = {0}
    for subgraph in model.subgraphs:
        used.update(tensor.buffer for tensor in subgraph.tensors)
    for metadata in model.metadata or []:
        used.add(metadata.buffer)
    for index, buffer in enumerate(model.buffers):
        if index not in used:
            buffer.data = None


def _inspect(content):
    """(ops Counter, binary WeightInfo list, hybrid op count) of a TFLite flatbuffer."""
    model = flatbuffer_utils.read_model_from_bytearray(content)
    ops = collections.Counter()
    weights = []
    hybrid = 0
    for subgraph in model.subgraphs:
        producer = {}
        for operator in subgraph.operators:
            for output in operator.outputs:
                producer[int(output)] = operator
        seen = set()  # a weight tensor shared by several ops is stored once
        for operator in subgraph.operators:
            name = _op_name(model, operator)
            ops[name] += 1
            if name not in _WEIGHT_OPS and name != "LceBconv2d":
                continue
            if len(operator.inputs) < 2 or operator.inputs[1] < 0:
                continue
            index = int(operator.inputs[1])
            if index in seen:
                continue
            seen.add(index)
            if name == "LceBconv2d":
                weights.append(_bitpacked_info(model, subgraph, operator))
                continue
            tensor = subgraph.tensors[index]
            if tensor.type in _INTEGER_WEIGHT_TYPES:
                hybrid += 1
                continue
            info = _float_weight_info(model, subgraph, index, name, producer)
            if info is not None:
                weights.append(info)
    return ops, weights, hybrid


def _float_weight_info(model, subgraph, index, op, producer):
    tensor = subgraph.tensors[index]
    shape = tuple(int(size) for size in tensor.shape)
    float32_bytes = 4 * int(np.prod(shape))
    name = _as_bytes(tensor.name).decode(errors="replace")
    values = _buffer_array(model, tensor, np.float32) if tensor.type == _FLOAT32 else None
    if values is not None:
        if _binary_scales(values) is None:
            return None
        return WeightInfo(op, name, shape, "float32", values.nbytes, float32_bytes)
    source = producer.get(index)
    if source is None or _op_name(model, source) != "DEQUANTIZE":
        return None
    stored = subgraph.tensors[source.inputs[0]]
    values = _buffer_array(model, stored, np.int8) if stored.type == _INT8 else None
    if values is None or not np.all(np.abs(values) <= 1):
        return None
    return WeightInfo(op, name, shape, "int8", values.nbytes, float32_bytes)


def _bitpacked_info(model, subgraph, operator):
    from flatbuffers import flexbuffers

    tensor = subgraph.tensors[operator.inputs[1]]
    shape = [int(size) for size in tensor.shape]  # (out, h, w, words of 32 channels)
    options = {}
    if operator.customOptions is not None and len(operator.customOptions):
        options = flexbuffers.Loads(bytes(operator.customOptions))
    channels_in = int(options.get("channels_in", 32 * shape[-1]))
    float_shape = (*shape[:-1], channels_in)
    data = model.buffers[tensor.buffer].data
    return WeightInfo(
        "LceBconv2d",
        _as_bytes(tensor.name).decode(errors="replace"),
        float_shape,
        "bitpacked",
        0 if data is None else len(data),
        4 * int(np.prod(float_shape)),
    )


# ------------------------------------------------------------------ running and reports


def _tflite_interpreter(content):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        return tf.lite.Interpreter(model_content=content)


def _run_tflite(content, x, batch_size=256):
    interpreter = _tflite_interpreter(content)
    (input_details,) = interpreter.get_input_details()
    (output_details,) = interpreter.get_output_details()
    fixed_batch = int(input_details["shape_signature"][0])
    batch_size = fixed_batch if fixed_batch > 0 else batch_size
    outputs, current = [], None
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        count = len(batch)
        if fixed_batch > 0 and count < fixed_batch:
            padding = np.zeros((fixed_batch - count, *x.shape[1:]), x.dtype)
            batch = np.concatenate([batch, padding])
        if batch.shape != current:
            interpreter.resize_tensor_input(input_details["index"], batch.shape)
            interpreter.allocate_tensors()
            current = batch.shape
        interpreter.set_tensor(input_details["index"], batch)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(output_details["index"])[:count].copy())
    return np.concatenate(outputs)


def _run_lce(content, x):
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    return np.asarray(Interpreter(content).predict(x))


def _convert_float32(plain):
    converter = tf.lite.TFLiteConverter.from_keras_model(plain)
    return converter.convert()


def _write(path, content):
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as file:
        file.write(content)
    return path


def _finish(path, format, content, float32_size, reference, outputs, tolerance, notes,
            verbose):
    ops, weights, hybrid = _inspect(content)
    outputs = np.asarray(outputs, np.float32).reshape(reference.shape)
    max_abs = float(np.max(np.abs(outputs - reference)))
    scale = float(np.max(np.abs(reference))) or 1.0
    agreement = None
    if reference.ndim >= 2 and reference.shape[-1] > 1:
        agreement = float(np.mean(np.argmax(outputs, -1) == np.argmax(reference, -1)))
    report = ExportReport(
        path=path,
        format=format,
        size_bytes=len(content),
        float32_size_bytes=float32_size,
        size_vs_float32=len(content) / float32_size,
        ops=ops,
        binary_ops=sum(count for name, count in ops.items() if name.startswith("Lce")),
        hybrid_ops=hybrid,
        binary_weights=weights,
        num_samples=len(reference),
        max_abs_diff=max_abs,
        output_scale=scale,
        max_rel_diff=max_abs / scale,
        argmax_agreement=agreement,
        tolerance=tolerance,
        warnings=list(notes),
    )
    if verbose:
        print(report)
    if not report.passed:
        raise ExportError(
            f"{path} does not compute what the Keras model computes: max difference "
            f"{max_abs:.3g} = {report.max_rel_diff:.3g} of the output scale {scale:.4g}, "
            f"above the tolerance {tolerance:g} (the file is left there for inspection).\n"
            f"{report}",
            report,
        )
    return report


def _prepare(model, samples, num_samples, seed):
    _check_exportable(model)
    x = _sample_inputs(model, samples, num_samples, seed)
    reference = np.asarray(model.predict(x, batch_size=256, verbose=0), np.float32)
    return x, reference, strip_latent(model)


# ---------------------------------------------------------------------------- exports


def to_tflite(
    model,
    path,
    weights="float32",
    *,
    samples=None,
    num_samples=None,
    seed=0,
    tolerance=DEFAULT_TOLERANCE,
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
    the TFLite interpreter on the samples and compared with `model.predict`.

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
    if weights not in ("float32", "int8"):
        raise ValueError(f'`weights` must be "float32" or "int8", got {weights!r}.')
    x, reference, plain = _prepare(model, samples, num_samples, seed)
    float_content = _convert_float32(plain)
    content = float_content
    if weights == "int8":
        content = _store_binary_weights_int8(float_content)
    path = _write(path, content)
    outputs = _run_tflite(content, x)
    return _finish(path, f"tflite-{weights}", content, len(float_content), reference,
                   outputs, tolerance, [], verbose)


def to_lce(
    model,
    path,
    weights="float32",
    *,
    samples=None,
    num_samples=None,
    seed=0,
    tolerance=DEFAULT_TOLERANCE,
    verbose=True,
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
    in `keras_bilevel.models.binary_mlp`) the LCE file is a float32 file. `to_lce` writes
    it and warns (also in `report.warnings`); use `to_tflite(model, path, weights="int8")`
    for a file 4x smaller.

    Binary activations make the check strict: see "Binary activations and ties" in the
    module's documentation.

    !!! example
        ```python
        report = keras_bilevel.export.to_lce(model, "model.tflite")
        print(report.ops["LceBconv2d"], report.binary_weight_bytes)
        ```

    # Arguments
        model, path, samples, num_samples, seed, tolerance, verbose: as for `to_tflite`.
        weights: `"float32"` or `"int8"`: storage of the binary weights LCE does not
            bit-pack.

    # Returns
        The `ExportReport` (`format` `"lce-float32"` or `"lce-int8"`).

    # Raises
        ImportError: larq-compute-engine is not installed.
        ValueError, TypeError, ExportError: as for `to_tflite`.
    """
    if weights not in ("float32", "int8"):
        raise ValueError(f'`weights` must be "float32" or "int8", got {weights!r}.')
    try:
        import larq_compute_engine
    except ImportError as error:
        raise ImportError(
            "to_lce needs Larq Compute Engine (the optional larq-compute-engine "
            f"package), which is not installed: {_LCE_INSTALL}. to_tflite needs "
            "nothing more."
        ) from error

    x, reference, plain = _prepare(model, samples, num_samples, seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Saved-model conversion failed.*")
        content = larq_compute_engine.convert_keras_model(plain)
    if weights == "int8":
        content = _store_binary_weights_int8(content, require=False)
    path = _write(path, content)
    float32_size = len(_convert_float32(plain))
    notes = []
    ops, _, _ = _inspect(content)
    if not ops.get("LceBconv2d"):
        if _has_binary_activations(model):
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
    outputs = _run_lce(content, x)
    return _finish(path, f"lce-{weights}", content, float32_size, reference, outputs,
                   tolerance, notes, verbose)
