"""Keras 3 export to TFLite from the backend under test (`keras_bilevel.keras3.export`).

The files are checked here independently of the export's own self-check: the test runs
each written file in LiteRT's interpreter on fresh inputs and compares it with the
model's `predict` on this backend. On JAX and PyTorch each export starts a TensorFlow
subprocess (about 15 s), so only the reference MLP runs there in the fast suite.
"""

import os

import keras
import numpy as np
import pytest

# Exporting needs the [tensorflow] extra (TensorFlow's converter, LiteRT); the [jax]
# install's refusal of it is tested in tests_install/.
pytest.importorskip("tensorflow", reason="exporting needs keras-bilevel[tensorflow]")
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from keras_bilevel.export import ExportError, ExportReport
from keras_bilevel.keras3 import export, layers, models, quantizers
from tests_keras3.conftest import BACKEND

# Exports that run in this process on TensorFlow and in a subprocess elsewhere.
SUBPROCESS_SLOW = [pytest.mark.slow] if BACKEND != "tensorflow" else []
REL_TOLERANCE = 1e-4
QUANT_LAYERS = (layers.QuantDense, layers.QuantConv1D, layers.QuantConv2D,
                layers.QuantDepthwiseConv2D)


def _train_briefly(model, input_shape, classes, steps=4, batch_size=32):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((steps * batch_size, *input_shape)).astype("float32")
    y = rng.integers(0, classes, len(x))
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    return model


def _run_file(path, x):
    """The file's outputs on `x`, one LiteRT call per sample batch."""
    interpreter = Interpreter(model_path=os.fspath(path))
    (inputs,) = interpreter.get_input_details()
    (outputs,) = interpreter.get_output_details()
    interpreter.resize_tensor_input(inputs["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inputs["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(outputs["index"]).copy()


def _fresh_inputs(shape, count=200):
    return np.random.default_rng(7).standard_normal((count, *shape)).astype("float32")


def _assert_file_computes_model(path, model, x):
    expected = model.predict(x, verbose=0)
    got = _run_file(path, x)
    scale = np.max(np.abs(expected))
    assert np.max(np.abs(got - expected)) <= REL_TOLERANCE * scale
    agreement = np.mean(np.argmax(got, -1) == np.argmax(expected, -1))
    assert agreement >= 0.995
    return got


class TestReferenceMLP:
    def test_float32_and_int8(self, tmp_path):
        # the reference MLP (784-1024x3-10), trained for a few steps on this backend
        model = _train_briefly(models.binary_mlp(), (784,), classes=10)
        reports = {
            weights: export.to_tflite(model, tmp_path / f"mlp_{weights}.tflite",
                                      weights=weights, verbose=False)
            for weights in ("float32", "int8")
        }
        for weights, report in reports.items():
            assert isinstance(report, ExportReport)
            assert report.format == f"tflite-{weights}" and report.passed
            assert report.max_rel_diff <= REL_TOLERANCE
            assert report.argmax_agreement >= 0.995
            assert report.hybrid_ops == 0
            assert report.size_bytes == os.path.getsize(report.path)
            # four binary layers: BatchNorm folded in, each kernel is +-s per channel
            assert len(report.binary_weights) == 4
            assert {info.storage for info in report.binary_weights} == {weights}
        float_report, int8_report = reports["float32"], reports["int8"]
        assert int8_report.float32_size_bytes == float_report.size_bytes
        assert int8_report.size_vs_float32 <= 0.27
        assert int8_report.ops["DEQUANTIZE"] == 4

        x = _fresh_inputs((784,))
        float_out = _assert_file_computes_model(float_report.path, model, x)
        int8_out = _assert_file_computes_model(int8_report.path, model, x)
        np.testing.assert_allclose(int8_out, float_out, rtol=0, atol=0)


def _conv_model():
    """Binary convolutions (depthwise included), binary activations, shortcut, dense."""
    inputs = keras.Input((8, 8, 3))
    x = layers.QuantConv2D(8, 3, padding="same", kernel_quantizer="ada_ste",
                           use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(center=False, scale=False)(x)
    y = layers.QuantConv2D(8, 3, padding="same", input_quantizer="ste_sign",
                           kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                           use_bias=False)(x)
    y = keras.layers.BatchNormalization()(y)
    y = layers.QuantDepthwiseConv2D(3, padding="same", depthwise_quantizer="ada_ste")(y)
    x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = layers.QuantDense(10, input_quantizer="ada_ste", kernel_quantizer="ada_ste")(x)
    return keras.Model(inputs, x)


class TestPlainModel:
    @pytest.mark.parametrize("build", ["mlp", "sequential", "conv"])
    def test_computes_what_the_model_computes(self, build):
        model, shape = {
            "mlp": lambda: (models.binary_mlp((20,), hidden_units=16, depth=2), (20,)),
            "sequential": lambda: (keras.Sequential([
                keras.Input((12,)),
                layers.QuantDense(6, kernel_quantizer="ada_ste", input_quantizer="ste_sign"),
                keras.layers.BatchNormalization(),
                layers.QuantDense(3, kernel_quantizer="ste_sign", input_quantizer="ada_ste"),
            ]), (12,)),
            "conv": lambda: (_conv_model(), (8, 8, 3)),
        }[build]()
        _train_briefly(model, shape, classes=model.outputs[0].shape[-1], steps=2)
        plain = export.plain_model(model)
        x = _fresh_inputs(shape, count=64)
        np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0),
                                   rtol=1e-5, atol=1e-5)
        flat = list(plain._flatten_layers())
        assert not any(isinstance(layer, QUANT_LAYERS) for layer in flat)
        assert not any(isinstance(layer, quantizers.AdaSTE) for layer in flat)
        binary = [layer for layer in model._flatten_layers()
                  if isinstance(layer, QUANT_LAYERS)]
        for layer in binary:
            kernel = keras.ops.convert_to_numpy(plain.get_layer(layer.name).kernel)
            assert set(np.unique(kernel)) <= {-1.0, 1.0}
        signs = [layer for layer in flat if isinstance(layer, export.BinarySign)]
        assert len(signs) == sum(layer.input_quantizer is not None for layer in binary)

    def test_binary_sign(self):
        out = export.BinarySign()(np.array([-2.0, -0.0, 0.0, 1e-30, 3.0], "float32"))
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(out), [-1, 1, 1, 1, 1])

    def test_other_input_quantizer_is_refused(self):
        model = keras.Sequential([
            keras.Input((4,)),
            layers.QuantDense(2, kernel_quantizer="ada_ste", input_quantizer=keras.ops.tanh),
        ])
        with pytest.raises(ValueError, match="input_quantizer"):
            export.plain_model(model)

    def test_nested_model_is_refused(self):
        inner = keras.Sequential([keras.Input((4,)), layers.QuantDense(2)])
        outer = keras.Sequential([keras.Input((4,)), inner])
        with pytest.raises(ValueError, match="nested"):
            export.plain_model(outer)


class TestArguments:
    def test_weights(self, tmp_path):
        model = models.binary_mlp((4,), hidden_units=2, depth=0)
        with pytest.raises(ValueError, match='"float32" or "int8"'):
            export.to_tflite(model, tmp_path / "m.tflite", weights="int4")

    def test_unknown_input_shape(self, tmp_path):
        inputs = keras.Input((None, 3))
        model = keras.Model(inputs, layers.QuantDense(2)(inputs))
        with pytest.raises(ValueError, match="input shape"):
            export.to_tflite(model, tmp_path / "m.tflite")


class TestOtherModels:
    pytestmark = SUBPROCESS_SLOW

    def test_conv_binary_activations_int8(self, tmp_path):
        keras.utils.set_random_seed(0)
        model = _train_briefly(_conv_model(), (8, 8, 3), classes=10, steps=8)
        report = export.to_tflite(model, tmp_path / "conv.tflite", weights="int8",
                                  verbose=False)
        assert report.passed and report.argmax_agreement >= 0.995
        assert {info.storage for info in report.binary_weights} == {"int8"}
        assert len(report.binary_weights) == 4
        _assert_file_computes_model(report.path, model, _fresh_inputs((8, 8, 3)))

    def test_export_error_carries_the_report(self, tmp_path):
        model = _train_briefly(models.binary_mlp((16,), hidden_units=8, depth=1), (16,), 10)
        path = tmp_path / "strict.tflite"
        with pytest.raises(ExportError) as raised:
            export.to_tflite(model, path, tolerance=1e-12, verbose=False)
        report = raised.value.report
        assert not report.passed and report.max_rel_diff > 1e-12
        assert os.path.exists(path) and report.path == os.fspath(path)
