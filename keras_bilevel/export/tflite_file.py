"""TFLite files: float32 conversion, int8 storage of binary weights, inspection.

Works on a TFLite flatbuffer (bytes) or a plain Keras model, whatever trained it: it
knows neither Larq nor keras_bilevel's layers and recognises binary weights by their
values alone (+-s, one s per channel). Both front ends use it: the Larq export converts
the model `strip_latent` gives, a Keras 3 export its own plain model.

- `convert_keras_model(model)`: the float32 flatbuffer of a Keras model
  (`tf.lite.TFLiteConverter.from_keras_model`, no optimisations; the converter folds
  BatchNorm into the kernels, so a binary kernel becomes +-s per channel).
- `store_binary_weights_int8(content)`: the same file with every binary weight tensor
  stored as int8 +-1 (scale s, zero point 0) and a `DEQUANTIZE` op rebuilding the float
  tensor: about 4x smaller, every op still computes in float32.
- `inspect_flatbuffer(content)`: the ops of a file, its binary weight tensors
  (`WeightInfo`, LCE's bit-packed ones included) and its hybrid ops.
- `write(path, content)`: writes the file, creating its directory.

!!! example
    ```python
    content = store_binary_weights_int8(convert_keras_model(plain_model))
    ops, weights, hybrid = inspect_flatbuffer(content)
    write("model.tflite", content)
    ```
"""

import collections
import os

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as tflite_schema
from tensorflow.lite.tools import flatbuffer_utils

from keras_bilevel.export.report import WeightInfo

__all__ = [
    "convert_keras_model",
    "inspect_flatbuffer",
    "store_binary_weights_int8",
    "write",
]

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


def store_binary_weights_int8(content, require=True):
    """Rewrites a float TFLite flatbuffer: binary weight tensors become int8 + DEQUANTIZE.

    A float32 weight tensor (input 1 of a FULLY_CONNECTED, CONV_2D, ... op) whose values
    are +-s (one s per channel along some axis, e.g. BatchNorm folded in by the
    converter) is replaced by an int8 tensor of +-1 with quantization scale s and zero
    point 0, and a DEQUANTIZE op (placed first) writes the float tensor the op reads:
    (+-1) * s is exactly +-s in float32, so the ops compute what they computed before.
    Other tensors, and ops LCE already bit-packed, are left as they are.

    # Arguments
        content: a TFLite flatbuffer (bytes), e.g. from `convert_keras_model`.
        require: raise if the file has no binary weight tensor; with `False` the
            content is returned unchanged instead.

    # Returns
        The rewritten flatbuffer (bytes).
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


def inspect_flatbuffer(content):
    """What a TFLite flatbuffer holds: `(ops, binary_weights, hybrid_ops)`.

    `ops`: `collections.Counter` of op names (builtin names, or the custom code such as
    `"LceBconv2d"`). `binary_weights`: one `WeightInfo` per weight tensor (input 1 of a
    FULLY_CONNECTED, CONV_2D, ... or LceBconv2d op) whose values are binary: float32
    +-s, int8 +-1 behind a DEQUANTIZE op, or LCE bit-packed. `hybrid_ops`: ops reading
    integer weights directly with float inputs (TFLite's dynamic-range quantisation,
    which quantises the activations at run time as well).
    """
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


def convert_keras_model(model):
    """The float32 TFLite flatbuffer of a Keras model, converted without optimisations.

    `model`: a plain inference model (`tf.keras`, or Keras 3 on the TensorFlow backend)
    with fully known input shapes; quantizers and custom training-time layers must have
    been removed first (`strip_latent` does it for Larq models).
    """
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def write(path, content):
    """Writes `content` to `path` (creating its directory) and returns the path as str."""
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as file:
        file.write(content)
    return path

