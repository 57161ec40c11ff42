"""Larq's other quantized layers on Keras 3 (`QuantConv3D`, `QuantConv2DTranspose`,
`QuantConv3DTranspose`) and `pad_values`: each against Keras's own layer given the sign
of our latent kernel (and, for `pad_values`, the input padded by NumPy).
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_bilevel.keras3 import layers
from tests_keras3.test_layers import sign

RNG = np.random.default_rng(11)

# (ours, Keras's, arguments, input shape)
CASES = {
    "conv3d": (layers.QuantConv3D, keras.layers.Conv3D,
               dict(filters=3, kernel_size=2, strides=(1, 2, 1), padding="same"), (2, 4, 5, 3, 2)),
    "conv2d_transpose": (layers.QuantConv2DTranspose, keras.layers.Conv2DTranspose,
                         dict(filters=3, kernel_size=3, strides=2, padding="same"), (2, 4, 5, 2)),
    "conv3d_transpose": (layers.QuantConv3DTranspose, keras.layers.Conv3DTranspose,
                         dict(filters=2, kernel_size=2, strides=2, output_padding=1),
                         (2, 3, 3, 2, 2)),
}


def with_sign_kernel(ours, theirs, x):
    """Build both; Keras's layer gets the sign of our latent kernel and our bias."""
    ours(x)
    theirs(x)
    latent, *rest = [ops.convert_to_numpy(w) for w in ours.get_weights()]
    theirs.set_weights([sign(latent), *rest])


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_new_layer_computes_kerass_layer_on_the_sign_kernel(case):
    ours_class, keras_class, arguments, shape = CASES[case]
    ours = ours_class(**arguments, kernel_quantizer="ada_ste", input_quantizer="ste_sign",
                      bias_initializer="glorot_uniform")
    theirs = keras_class(**arguments, bias_initializer="glorot_uniform")
    x = RNG.normal(size=shape).astype(np.float32)
    with_sign_kernel(ours, theirs, x)
    expected = ops.convert_to_numpy(theirs(sign(x)))
    np.testing.assert_allclose(ops.convert_to_numpy(ours(x)), expected, rtol=1e-5, atol=1e-5)
    ours.quantize("int8")  # exact: -1/+1 stored with a unit scale
    np.testing.assert_allclose(ops.convert_to_numpy(ours(x)), expected, rtol=1e-5, atol=1e-5)


PADDED = {
    "conv1d": (layers.QuantConv1D, keras.layers.Conv1D, dict(filters=3, kernel_size=4),
               (2, 7, 2)),
    "conv2d": (layers.QuantConv2D, keras.layers.Conv2D,
               dict(filters=3, kernel_size=3, strides=2, dilation_rate=1), (2, 6, 5, 2)),
    "conv3d": (layers.QuantConv3D, keras.layers.Conv3D, dict(filters=2, kernel_size=3),
               (1, 4, 3, 5, 2)),
    "depthwise": (layers.QuantDepthwiseConv2D, keras.layers.DepthwiseConv2D,
                  dict(kernel_size=3, depth_multiplier=2), (2, 5, 5, 3)),
}


def np_same_padding(size, kernel, stride):
    outputs = -(-size // stride)
    total = max((outputs - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("case", sorted(PADDED))
def test_pad_values_pads_same_with_the_value(case):
    ours_class, keras_class, arguments, shape = PADDED[case]
    quantizer = ("depthwise_quantizer" if case == "depthwise" else "kernel_quantizer")
    ours = ours_class(**arguments, padding="same", pad_values=1.0, **{quantizer: "ste_sign"})
    theirs = keras_class(**arguments, padding="valid")
    x = RNG.normal(size=shape).astype(np.float32)
    strides = arguments.get("strides", 1)
    rank = len(shape) - 2
    kernel = arguments["kernel_size"]
    padded = np.pad(x, [(0, 0), *(np_same_padding(n, kernel, strides) for n in shape[1:-1]),
                        (0, 0)], constant_values=1.0)
    ours(x)
    theirs(padded)
    latent, *rest = ours.get_weights()
    theirs.set_weights([sign(latent), *rest])
    got = ops.convert_to_numpy(ours(x))
    assert got.shape[1:1 + rank] == tuple(-(-n // strides) for n in shape[1:-1])
    np.testing.assert_allclose(got, ops.convert_to_numpy(theirs(padded)), rtol=1e-5, atol=1e-5)
    assert ours_class.from_config(ours.get_config()).pad_values == 1.0


def test_pad_values_with_causal_padding_is_refused():
    with pytest.raises(ValueError, match="causal"):
        layers.QuantConv1D(2, 3, padding="causal", pad_values=1.0)


def test_new_layers_save_and_load(tmp_path):
    model = keras.Sequential([
        keras.Input((4, 4, 4, 2)),
        layers.QuantConv3D(2, 3, padding="same", pad_values=1.0, kernel_quantizer="ada_ste"),
        layers.QuantConv3DTranspose(2, 2, strides=2, kernel_quantizer="ste_sign"),
    ])
    x = RNG.normal(size=(2, 4, 4, 4, 2)).astype(np.float32)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)


def test_the_plain_copy_takes_the_new_layers_and_refuses_pad_values():
    from keras_bilevel.keras3.plain_model import plain_model

    x = RNG.normal(size=(2, 4, 4, 2)).astype(np.float32)
    model = keras.Sequential([keras.Input((4, 4, 2)),
                              layers.QuantConv2DTranspose(3, 2, kernel_quantizer="ste_sign")])
    np.testing.assert_allclose(plain_model(model).predict(x, verbose=0),
                               model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    padded = keras.Sequential([keras.Input((4, 4, 2)),
                               layers.QuantConv2D(3, 3, padding="same", pad_values=1.0,
                                                  kernel_quantizer="ste_sign")])
    with pytest.raises(ValueError, match="pad_values"):
        plain_model(padded)
