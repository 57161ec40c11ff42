"""Keras 3's own export formats on a binary network: each route this backend has either
writes an artifact that computes `predict` (run in its own runtime), or is refused in one
line naming the route to use or the package to install.
"""

import importlib.util

import keras
import numpy as np
import pytest

from keras_bilevel.keras3 import keras_export, layers
from tests_keras3.conftest import BACKEND

SUFFIX = {"litert": ".tflite", "onnx": ".onnx", "openvino": ".xml", "torch": ".pt2",
          "tf_saved_model": ""}


@pytest.fixture(autouse=True)
def _no_openvino_telemetry(monkeypatch):
    # OpenVINO's converter sends usage telemetry from a forked process unless CI is set:
    # no network here, and a fork of a JAX process may deadlock.
    monkeypatch.setenv("CI", "true")


def binary_model():
    model = keras.Sequential([
        keras.Input((6, 6, 2)),
        layers.QuantConv2D(4, 3, kernel_quantizer="ada_ste", padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.Flatten(),
        layers.QuantDense(5, kernel_quantizer="ste_sign", input_quantizer="ste_sign"),
        layers.QuantDense(3, kernel_quantizer="ste_sign"),
    ])
    rng = np.random.default_rng(0)
    model.set_weights([np.abs(w) + 0.5 if w.ndim == 1 else w for w in (
        rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights())])
    return model


def route(format):
    """None where this backend's route is open here, else the error it must raise."""
    try:
        keras_export.check_route(format)
    except (ValueError, ImportError) as error:
        return error
    return None


@pytest.mark.parametrize("quantized", [False, True])
@pytest.mark.parametrize("format", keras_export.FORMATS)
def test_every_format_is_checked_against_predict_or_refused_in_one_line(
        format, quantized, tmp_path):
    model = binary_model()
    if quantized:
        model.quantize("int8")
    refused = route(format)
    path = tmp_path / f"model{SUFFIX[format]}"
    if refused is not None:
        assert "\n" not in str(refused) and "Fix:" in str(refused)
        with pytest.raises(type(refused)):
            keras_export.export_checked(model, path, format, num_samples=8)
        assert not path.exists()  # refused before anything is written
        return
    report = keras_export.export_checked(model, path, format, num_samples=8)
    assert report.passed and report.argmax_agreement == 1.0 and report.size_bytes > 0


def test_the_routes_keras_lacks_name_what_to_use():
    if BACKEND == "jax":
        assert "to_tflite" in str(route("litert"))
    if BACKEND == "torch":
        assert "format='torch'" in str(route("tf_saved_model"))
    else:
        assert "KERAS_BACKEND=torch" in str(route("torch"))


def test_a_missing_package_is_named(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(ImportError, match="needs openvino.*Fix: pip install openvino"):
        keras_export.check_route("openvino")


# The route of each backend that `model.export` takes on the model itself, quantizers and all.
DIRECT = {"jax": "tf_saved_model", "tensorflow": "litert", "torch": "torch"}


def test_model_export_itself_writes_what_predict_computes(tmp_path):
    format = DIRECT[BACKEND]
    if route(format) is not None:
        pytest.skip(str(route(format)))
    model = binary_model()
    x = np.random.default_rng(1).normal(size=(8, 6, 6, 2)).astype(np.float32)
    path = str(tmp_path / f"model{SUFFIX[format]}")
    model.export(path, format=format, verbose=False)
    np.testing.assert_allclose(keras_export._RUNNERS[format](path, x),
                               model.predict(x, verbose=0), rtol=0, atol=1e-5)
