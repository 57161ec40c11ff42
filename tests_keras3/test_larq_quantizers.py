"""Larq's quantizers on Keras 3 against NumPy transcriptions of Larq's definitions:
forward values and gradients (through the backend's own autodiff), string aliases,
configs, and the layers that apply them.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_bilevel.keras3 import layers, quantizers
from tests_keras3.autodiff import gradient

X = np.array([[-2.0, -1.0, -0.6, -0.05, 0.0], [0.03, 0.5, 0.999, 1.0, 1.7]], np.float32).T
DY = np.linspace(-1.5, 2.0, X.size, dtype=np.float32).reshape(X.shape)  # d loss / d q


def np_sign(x):
    return np.where(x >= 0, 1.0, -1.0)


def np_ste(x, dy, clip=1.0):
    return dy if clip is None else np.where(np.abs(x) <= clip, dy, 0.0)


def np_dorefa_weights(x, bits):
    limited = np.tanh(x)
    top = np.abs(limited).max()
    n = 2 ** bits - 1
    forward = 2.0 * np.round((limited / (2 * top) + 0.5) * n) / n - 1.0
    return forward, (1.0 - limited ** 2) / top  # d/dx of 2 (tanh(x) / 2m + 1/2) - 1


def expected(name, x, dy):
    """(q(x), dy * dq/dx) as Larq defines them."""
    mean_abs = np.abs(x).mean(axis=0)  # every axis but the last
    twn = 0.7 * np.abs(x).mean()
    n2 = 3.0  # 2 bits
    return {
        "ste_sign": (np_sign(x), np_ste(x, dy)),
        "ste_sign_unclipped": (np_sign(x), dy),
        "approx_sign": (np_sign(x), np.where(np.abs(x) <= 1, (2 - 2 * np.abs(x)) * dy, 0.0)),
        "swish_sign": (np_sign(x), dy * 5.0 * (2 - 5.0 * x * np.tanh(2.5 * x))
                       / (1 + np.cosh(5.0 * x))),
        "ste_heaviside": (np.where(x > 0, 1.0, 0.0), np_ste(x, dy)),
        "magnitude_aware_sign": (mean_abs * np_sign(x), mean_abs * np_ste(x, dy)),
        "ste_tern": (np.where(x >= 0.05, 1.0, np.where(x <= -0.05, -1.0, 0.0)), np_ste(x, dy)),
        "ste_tern_twn": (np.where(x >= twn, 1.0, np.where(x <= -twn, -1.0, 0.0)),
                         np_ste(x, dy, 0.5)),
        "dorefa": (np.round(np.clip(x, 0, 1) * n2) / n2,
                   np.where((x >= 0) & (x <= 1), dy, 0.0)),
        "dorefa_weights": (np_dorefa_weights(x, 2)[0], dy * np_dorefa_weights(x, 2)[1]),
        "noop": (x, dy),
    }[name]


MAKE = {
    "ste_sign": lambda: quantizers.get("ste_sign"),
    "ste_sign_unclipped": lambda: quantizers.SteSign(clip_value=None),
    "approx_sign": lambda: quantizers.get("approx_sign"),
    "swish_sign": lambda: quantizers.get("swish_sign"),
    "ste_heaviside": lambda: quantizers.get("ste_heaviside"),
    "magnitude_aware_sign": lambda: quantizers.get("magnitude_aware_sign"),
    "ste_tern": lambda: quantizers.get("ste_tern"),
    "ste_tern_twn": lambda: quantizers.SteTern(ternary_weight_networks=True, clip_value=0.5),
    "dorefa": lambda: quantizers.get("dorefa_quantizer"),
    "dorefa_weights": lambda: quantizers.DoReFa(k_bit=2, mode="weights"),
    "noop": lambda: quantizers.NoOp(precision=1),
}


@pytest.mark.parametrize("name", sorted(MAKE))
def test_forward_and_pseudo_gradient_are_larqs(name):
    quantizer = MAKE[name]()
    values, grads = expected(name, X.astype(np.float64), DY.astype(np.float64))
    np.testing.assert_allclose(ops.convert_to_numpy(quantizer(X)), values, rtol=1e-6,
                               atol=1e-6)
    got = gradient(lambda x: ops.sum(quantizer(x) * ops.convert_to_tensor(DY)), X)
    np.testing.assert_allclose(got, grads, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(MAKE))
def test_config_round_trip_keeps_the_arguments(name):
    quantizer = MAKE[name]()
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(quantizer))
    assert type(copy) is type(quantizer) and copy.get_config() == quantizer.get_config()
    assert copy.precision == quantizer.precision


@pytest.mark.parametrize("alias,precision", [
    ("approx_sign", 1), ("swish_sign", 1), ("ste_heaviside", 1),
    ("magnitude_aware_sign", 1), ("ste_tern", 2), ("dorefa_quantizer", 2), ("noop", None)])
def test_larqs_aliases_work_in_layers_and_files(alias, precision, tmp_path):
    model = keras.Sequential([keras.Input((6,)),
                              layers.QuantDense(4, kernel_quantizer=alias,
                                                input_quantizer=alias)])
    assert model.layers[0].kernel_quantizer.precision == precision
    x = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("make,message", [
    (lambda: quantizers.SteSign(clip_value=0), "clip_value"),
    (lambda: quantizers.SwishSign(beta=-1), "beta"),
    (lambda: quantizers.DoReFa(k_bit=0), "k_bit"),
    (lambda: quantizers.DoReFa(mode="kernel"), "mode"),
])
def test_bad_arguments_are_refused_naming_them(make, message):
    with pytest.raises(ValueError, match=message):
        make()
