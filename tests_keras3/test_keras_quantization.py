"""Keras's own `quantize` on the binary layers: exact -1/+1 storage, Keras's int8 call,
refusals in one line, files that shrink and load (on the backend of the run).

Expected values are NumPy transcriptions: the sign with sign(0) = +1, and Keras's int8
Dense call (inputs rounded to int8 with an absmax scale per row).
"""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_bilevel.keras3 import export, layers
from keras_bilevel.keras3.plain_model import plain_model
from tests_keras3.conftest import BACKEND
from tests_keras3.test_layers import sign

RNG = np.random.default_rng(3)


def stored_kernel(layer, mode):
    variable = getattr(layer, layer._kernel_attr)
    assert ops.convert_to_numpy(variable).dtype == np.int8
    if mode == "int8":
        return ops.convert_to_numpy(variable)
    width = layer.units if isinstance(layer, keras.layers.Dense) else layer._kernel_width
    return ops.convert_to_numpy(keras.quantizers.unpack_int4(variable, width, axis=-1))


# (layer, input shape): Dense with -1/+1 inputs, so that Keras's int8 call is exact too.
CASES = {
    "dense": (lambda: layers.QuantDense(6, kernel_quantizer="ada_ste",
                                        input_quantizer="ste_sign"), (5, 7)),
    "conv1d": (lambda: layers.QuantConv1D(5, 3, kernel_quantizer="ste_sign",
                                          padding="causal"), (2, 9, 3)),
    "conv2d": (lambda: layers.QuantConv2D(5, 3, kernel_quantizer="ada_ste", strides=2,
                                          input_quantizer="ste_sign"), (2, 8, 8, 3)),
    "depthwise": (lambda: layers.QuantDepthwiseConv2D(3, depthwise_quantizer="ste_sign",
                                                      depth_multiplier=2), (2, 6, 6, 3)),
}


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_binary_layer_stores_its_sign_kernel_exactly(case, mode):
    make, shape = CASES[case]
    layer = make()
    x = RNG.normal(size=shape).astype(np.float32)
    before = ops.convert_to_numpy(layer(x))
    latent = ops.convert_to_numpy(getattr(layer, layer._kernel_attr))
    layer.quantize(mode)
    assert layer.quantization_mode == mode
    assert getattr(layer, layer._quantizer_arg) is None
    np.testing.assert_array_equal(stored_kernel(layer, mode), sign(latent))
    np.testing.assert_array_equal(ops.convert_to_numpy(layer.kernel_scale), 1.0)
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), before, rtol=0, atol=1e-5)
    config = layer.get_config()
    assert config[layer._quantizer_arg] is None
    assert layer.dtype_policy.name == ("int4/-1" if mode == "int4" else "int8") + "_from_float32"
    assert config["dtype"]["config"]["mode"].startswith(mode)


def test_a_dense_layer_rounds_real_inputs_as_kerass_int8_dense_does():
    layer = layers.QuantDense(4, kernel_quantizer="ada_ste")
    x = RNG.normal(size=(6, 9)).astype(np.float32)
    layer.build(x.shape)
    layer.bias.assign(RNG.normal(size=4).astype(np.float32))
    kernel = sign(ops.convert_to_numpy(layer._kernel))
    layer.quantize("int8")
    scale = 127.0 / np.abs(x).max(axis=-1, keepdims=True)
    rounded = np.clip(np.round(x * scale), -127, 127)
    expected = rounded @ kernel / scale + ops.convert_to_numpy(layer.bias)
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), expected, rtol=1e-6,
                               atol=1e-5)


def randomize(model):
    """Random weights; the 1-D ones (biases, BatchNorm's statistics) positive."""
    model.set_weights([np.abs(w) + 0.5 if w.ndim == 1 else w for w in (
        RNG.normal(size=w.shape).astype(np.float32) for w in model.get_weights())])


def small_model():
    model = keras.Sequential([
        keras.Input((6, 6, 2)),
        layers.QuantConv2D(4, 3, kernel_quantizer="ada_ste", use_bias=False),
        keras.layers.BatchNormalization(),
        layers.QuantConv2D(4, 3, kernel_quantizer=None, padding="same"),  # a float layer
        keras.layers.Flatten(),
        layers.QuantDense(8, kernel_quantizer="ste_sign", input_quantizer="ste_sign"),
        keras.layers.Dense(3),
    ])
    randomize(model)
    return model


def test_model_quantize_reaches_binary_layers_and_skips_float_convolutions_as_keras():
    model = small_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.quantize("int8")
    said = " ".join(str(w.message) for w in caught)
    assert [layer.quantization_mode for layer in model.layers] == [
        "int8", None, None, None, "int8", "int8"]
    assert "SteSign" not in said and "AdaSTE" not in said  # the quantizers are not layers to quantize
    assert "has no kernel quantizer" in said  # the float convolution, skipped as Keras skips Conv2D


def test_a_float_dense_is_quantized_as_kerass_dense():
    x = RNG.normal(size=(4, 5)).astype(np.float32)
    ours, plain = layers.QuantDense(3), keras.layers.Dense(3)
    ours.build(x.shape)
    plain.build(x.shape)
    plain.set_weights(ours.get_weights())
    ours.quantize("int8")
    plain.quantize("int8")
    np.testing.assert_array_equal(ops.convert_to_numpy(ours(x)), ops.convert_to_numpy(plain(x)))


def test_lora_is_merged_then_binarized():
    layer = layers.QuantDense(4, kernel_quantizer="ada_ste")
    layer.build((None, 6))
    layer.enable_lora(2)
    layer.lora_kernel_b.assign(RNG.normal(size=(2, 4)).astype(np.float32))
    merged = sign(ops.convert_to_numpy(layer.kernel))
    layer.quantize("int8")
    assert not layer.lora_enabled and len(layer.weights) == 3  # kernel, bias, kernel_scale
    np.testing.assert_array_equal(stored_kernel(layer, "int8"), merged)


def one_line_error(error):
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("mode", ["float8"])
def test_a_mode_for_float_kernels_is_refused_in_one_line(mode):
    model = small_model()
    with pytest.raises(ValueError) as error:
        model.quantize(mode)
    assert "binary kernel" in one_line_error(error) and "'int8'" in str(error.value)


def test_a_kernel_quantizer_that_is_not_binary_is_refused():
    layer = layers.QuantDense(3, kernel_quantizer=lambda w: 0.5 * w)
    layer.build((None, 4))
    with pytest.raises(ValueError) as error:
        layer.quantize("int8")
    assert "other than -1 and +1" in one_line_error(error)


def test_a_quantized_policy_that_would_skip_the_quantizer_is_refused():
    with pytest.raises(ValueError) as error:
        layers.QuantConv2D(2, 3, kernel_quantizer="ada_ste", dtype="int8_from_float32")
    assert "would skip kernel_quantizer" in one_line_error(error)
    layer = layers.QuantDense(2, kernel_quantizer="ste_sign")
    layer.dtype_policy = "int8_from_float32"  # not built yet: refused when it builds
    with pytest.raises(ValueError, match="quantize\\('int8'\\)"):
        layer.build((None, 3))


def test_a_quantized_file_is_smaller_and_loads(tmp_path):
    model = keras.Sequential([keras.Input((64,)),
                              layers.QuantDense(256, kernel_quantizer="ada_ste"),
                              layers.QuantDense(256, kernel_quantizer="ada_ste",
                                                input_quantizer="ste_sign")])
    x = RNG.normal(size=(8, 64)).astype(np.float32)
    model.save(tmp_path / "float.keras")
    sizes = {}
    for mode in ("int8", "int4"):
        quantized = keras.models.clone_model(model)
        quantized.set_weights(model.get_weights())
        quantized.quantize(mode)
        path = tmp_path / f"{mode}.keras"
        quantized.save(path)
        sizes[mode] = path.stat().st_size / (tmp_path / "float.keras").stat().st_size
        loaded = keras.models.load_model(path)
        assert [layer.quantization_mode for layer in loaded.layers] == [mode, mode]
        np.testing.assert_array_equal(loaded.predict(x, verbose=0),
                                      quantized.predict(x, verbose=0))
    assert 0.2 < sizes["int8"] < 0.3 and 0.1 < sizes["int4"] < 0.2, sizes


def binary_model():
    model = keras.Sequential([
        keras.Input((6, 6, 2)),
        layers.QuantConv2D(4, 3, kernel_quantizer="ada_ste", use_bias=False),
        keras.layers.BatchNormalization(),
        keras.layers.Flatten(),
        layers.QuantDense(3, kernel_quantizer="ste_sign", input_quantizer="ste_sign"),
    ])
    randomize(model)
    return model


def test_the_plain_copy_of_a_quantized_model_is_the_network_before_quantize():
    model, x = binary_model(), RNG.normal(size=(5, 6, 6, 2)).astype(np.float32)
    before = model.predict(x, verbose=0)
    model.quantize("int8")
    plain = plain_model(model)
    assert not any(layer.quantization_mode for layer in plain.layers)
    np.testing.assert_allclose(plain.predict(x, verbose=0), before, rtol=0, atol=1e-5)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the in-process TFLite route; the "
                    "other backends export the same plain copy through a subprocess")
def test_a_quantized_model_exports_to_tflite(tmp_path):
    model = binary_model()
    model.quantize("int8")
    report = export.to_tflite(model, tmp_path / "served.tflite", weights="int8",
                              num_samples=8, verbose=False)
    assert report.passed
