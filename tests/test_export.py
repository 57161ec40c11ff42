"""Tests of keras_bilevel.export: stripped models, TFLite (float32/int8) and LCE files."""

import collections
import sys

import keras_bilevel  # noqa: F401  (Keras 2 mode first)
import larq
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from keras_bilevel import export, models
from keras_bilevel.export import check, tflite_file

MLP_BINARY_WEIGHTS = 784 * 1024 + 1024 * 1024 + 1024 * 1024 + 1024 * 10  # 2,910,208


def _train_briefly(model, x, classes, steps=4, batch_size=64, seed=0):
    """A few optimiser steps on random labels: non-trivial weights and BN statistics."""
    labels = np.random.default_rng(seed).integers(0, classes, len(x))
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[: steps * batch_size], labels[: steps * batch_size], batch_size=batch_size,
              epochs=1, verbose=0)
    return model


def _moving_means(model):
    return [
        layer.moving_mean.numpy()
        for layer in model.layers
        if isinstance(layer, tf.keras.layers.BatchNormalization)
    ]


@pytest.fixture(scope="module")
def trained_mlp():
    """The reference binary MLP (784-1024x3-10, AdaSTE) after a few steps."""
    tf.keras.utils.set_random_seed(1)
    model = models.binary_mlp()
    x = np.random.default_rng(1).standard_normal((256, 784)).astype(np.float32)
    return _train_briefly(model, x, classes=10)


def _binary_conv_net(pad_values=0.0, input_shape=(16, 16, 3)):
    """A small CNN with binary activations: binary stem, two binary-input convolutions."""
    inputs = tf.keras.Input(input_shape)
    x = larq.layers.QuantConv2D(32, 3, padding="same", use_bias=False,
                                kernel_quantizer="ada_ste")(inputs)
    x = tf.keras.layers.BatchNormalization()(x)
    y = larq.layers.QuantConv2D(32, 3, padding="same", use_bias=False,
                                input_quantizer="ste_sign", kernel_quantizer="ada_ste",
                                pad_values=pad_values)(x)
    y = tf.keras.layers.BatchNormalization()(y)
    x = tf.keras.layers.Add()([x, y])
    x = tf.keras.layers.MaxPooling2D()(x)
    x = larq.layers.QuantConv2D(64, 3, use_bias=False, input_quantizer="ste_sign",
                                kernel_quantizer="ste_sign",
                                kernel_constraint="weight_clip")(x)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.ReLU()(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = larq.layers.QuantDense(10, use_bias=False, kernel_quantizer="ada_ste")(x)
    outputs = tf.keras.layers.BatchNormalization()(x)
    return tf.keras.Model(inputs, outputs, name="binary_conv_net")


@pytest.fixture
def trained_conv_net():
    tf.keras.utils.set_random_seed(2)
    model = _binary_conv_net()
    x = np.random.default_rng(2).standard_normal((128, 16, 16, 3)).astype(np.float32)
    return _train_briefly(model, x, classes=10, batch_size=32)


def _small_mlp():
    tf.keras.utils.set_random_seed(3)
    return models.binary_mlp((64,), hidden_units=32, depth=1)


def _run_file(path, x):
    """Runs a .tflite file with the LiteRT interpreter (independently of the module)."""
    with open(path, "rb") as file:
        interpreter = Interpreter(model_content=file.read())
    (inp,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(out["index"]).copy(), interpreter


def _weights_but_mu(model):
    return [w for w in model.weights if not w.name.split("/")[-1].startswith("mu")]


def _relative_error(actual, expected):
    return np.max(np.abs(actual - expected)) / np.max(np.abs(expected))


# ------------------------------------------------------------------------ strip_latent


def test_strip_latent_mlp_is_plain_binary_and_gives_predict(trained_mlp):
    assert all(np.any(mean != 0) for mean in _moving_means(trained_mlp))
    plain = export.strip_latent(trained_mlp)

    for layer in plain.layers:
        assert type(layer).__module__.split(".")[0] == "tf_keras", layer
    names = [weight.name for weight in plain.weights]
    assert not any("mu" in name.split("/")[-1] for name in names)
    # Every weight is kept (AdaSTE's `mu`, training state, is not a weight of either).
    assert len(plain.weights) == len(_weights_but_mu(trained_mlp)) == 12
    dense = [layer for layer in plain.layers if isinstance(layer, tf.keras.layers.Dense)]
    quant = [layer for layer in trained_mlp.layers
             if isinstance(layer, larq.layers.QuantDense)]
    assert len(dense) == len(quant) == 4
    for plain_layer, layer in zip(dense, quant):
        latent = layer.kernel.latent_variable.numpy()
        np.testing.assert_array_equal(plain_layer.kernel.numpy(),
                                      np.where(latent >= 0, 1.0, -1.0))

    x = np.random.default_rng(5).standard_normal((500, 784)).astype(np.float32)
    expected = trained_mlp.predict(x, verbose=0)
    assert _relative_error(plain.predict(x, verbose=0), expected) <= 1e-5


def test_strip_latent_conv_net_keeps_binary_activations(trained_conv_net):
    plain = export.strip_latent(trained_conv_net)
    kinds = collections.Counter(type(layer).__name__ for layer in plain.layers)
    assert kinds == collections.Counter(
        InputLayer=1, Conv2D=3, BatchNormalization=4, Lambda=2, Add=1, MaxPooling2D=1,
        ReLU=1, GlobalAveragePooling2D=1, Dense=1,
    )
    for layer in plain.layers:
        if isinstance(layer, tf.keras.layers.Conv2D):
            assert set(np.unique(layer.kernel.numpy())) == {-1.0, 1.0}

    x = np.random.default_rng(6).standard_normal((64, 16, 16, 3)).astype(np.float32)
    sign = plain.get_layer("quant_conv2d_1_input_sign")
    probe = tf.keras.Model(plain.inputs, sign.output)
    assert set(np.unique(probe.predict(x, verbose=0))) == {-1.0, 1.0}
    expected = trained_conv_net.predict(x, verbose=0)
    assert _relative_error(plain.predict(x, verbose=0), expected) <= 1e-5


def test_strip_latent_pad_values_sequential_nested_and_shared_layers():
    tf.keras.utils.set_random_seed(4)
    block = tf.keras.Sequential(
        [
            tf.keras.Input((8, 8, 8)),
            larq.layers.QuantConv2D(8, 3, padding="same", pad_values=1.0,
                                    input_quantizer="ste_sign", kernel_quantizer="ada_ste"),
            tf.keras.layers.BatchNormalization(),
        ],
        name="block",
    )
    inputs = tf.keras.Input((8, 8, 3))
    x = larq.layers.QuantDepthwiseConv2D(3, depth_multiplier=1, padding="same",
                                         depthwise_quantizer="ada_ste")(inputs)
    x = tf.keras.layers.Conv2D(8, 1)(x)
    x = block(block(x))  # one nested model used twice: its weights stay shared
    x = tf.keras.layers.Flatten()(x)
    outputs = larq.layers.QuantDense(4, kernel_quantizer="ste_sign")(x)
    model = tf.keras.Model(inputs, outputs)
    x = np.random.default_rng(4).standard_normal((32, 8, 8, 3)).astype(np.float32)
    _train_briefly(model, x, classes=4, steps=2, batch_size=16)

    plain = export.strip_latent(model)
    nested = plain.get_layer("block")
    assert [type(layer).__name__ for layer in nested.layers] == [
        "InputLayer", "Lambda", "Lambda", "Conv2D", "BatchNormalization"
    ]
    assert nested.layers[3].padding == "valid"  # the padding Lambda pads with 1
    assert len(plain.weights) == len(_weights_but_mu(model))
    expected = model.predict(x, verbose=0)
    assert _relative_error(plain.predict(x, verbose=0), expected) <= 1e-5


# ---------------------------------------------------------------------------- TFLite


def test_mlp_float32_and_int8_files(trained_mlp, tmp_path):
    f32 = export.to_tflite(trained_mlp, tmp_path / "mlp32.tflite", verbose=False)
    i8 = export.to_tflite(trained_mlp, tmp_path / "mlp8.tflite", weights="int8",
                          verbose=False)

    assert f32.format == "tflite-float32" and i8.format == "tflite-int8"
    assert f32.num_samples == i8.num_samples == 1000
    assert f32.ops == collections.Counter(FULLY_CONNECTED=4)
    assert f32.size_vs_float32 == 1.0
    assert f32.max_rel_diff <= 1e-4

    assert i8.ops == collections.Counter(DEQUANTIZE=4, FULLY_CONNECTED=4)
    assert i8.hybrid_ops == 0 and i8.binary_ops == 0
    assert i8.float32_size_bytes == f32.size_bytes
    assert i8.size_bytes == (tmp_path / "mlp8.tflite").stat().st_size
    assert i8.size_vs_float32 <= 0.27
    assert i8.binary_weight_bytes == MLP_BINARY_WEIGHTS
    assert i8.binary_weight_float32_bytes == 4 * MLP_BINARY_WEIGHTS
    assert f32.binary_weight_bytes == 4 * MLP_BINARY_WEIGHTS
    assert [info.storage for info in i8.binary_weights] == ["int8"] * 4
    assert i8.argmax_agreement >= 0.995
    assert i8.max_rel_diff <= 1e-4

    # The int8 file computes what the float32 file computes.
    x = np.random.default_rng(7).standard_normal((1000, 784)).astype(np.float32)
    out32, _ = _run_file(tmp_path / "mlp32.tflite", x)
    out8, interpreter = _run_file(tmp_path / "mlp8.tflite", x)
    np.testing.assert_allclose(out8, out32, rtol=0, atol=1e-6 * np.abs(out32).max())
    # Independently of the report: the weights are int8 +-1 tensors with float scales.
    int8_weights = [t for t in interpreter.get_tensor_details()
                    if t["dtype"] == np.int8 and t["shape"].size == 2]
    assert sorted(tuple(t["shape"]) for t in int8_weights) == [
        (10, 1024), (1024, 784), (1024, 1024), (1024, 1024)
    ]
    for tensor in int8_weights:
        assert set(np.unique(interpreter.get_tensor(tensor["index"]))) == {-1, 1}
        assert np.all(tensor["quantization_parameters"]["zero_points"] == 0)


def test_report_string_and_fields(tmp_path):
    model = _small_mlp()
    report = export.to_tflite(model, tmp_path / "small.tflite", weights="int8",
                              num_samples=50, verbose=False)
    text = str(report)
    path = tmp_path / "small.tflite"
    assert text.splitlines()[0] == f"Export report: {path} (tflite-int8)"
    for expected in ("DEQUANTIZE x2", "FULLY_CONNECTED x2", "2 tensors (2 int8)",
                     "4.0x smaller than float32", "of 50 samples", "check", "passed",
                     "hybrid ops: 0"):
        assert expected in text
    assert report.binary_weight_bytes == 64 * 32 + 32 * 10
    assert report.max_rel_diff == report.max_abs_diff / report.output_scale
    assert report.passed


def test_export_prints_the_report(tmp_path, capsys):
    export.to_tflite(_small_mlp(), tmp_path / "small.tflite", num_samples=10)
    assert "Export report:" in capsys.readouterr().out


def test_tflite_dynamic_range_quantisation_is_hybrid():
    """The detector behind `hybrid_ops == 0` finds TFLite's own (inexact) int8 files."""
    plain = export.strip_latent(_small_mlp())
    converter = tf.lite.TFLiteConverter.from_keras_model(plain)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    ops, _, hybrid = tflite_file.inspect_flatbuffer(converter.convert())
    assert hybrid == 1  # only the 64x32 kernel has enough weights to be quantised
    assert ops["FULLY_CONNECTED"] == 2


def test_conv_net_int8_file(trained_conv_net, tmp_path):
    report = export.to_tflite(trained_conv_net, tmp_path / "conv.tflite", weights="int8",
                              num_samples=200, verbose=False)
    assert report.ops["DEQUANTIZE"] == 4 and report.ops["CONV_2D"] == 3
    assert report.ops["SIGN"] == 4  # two binary activations, sign(sign(x) + 0.1) each
    assert report.hybrid_ops == 0
    assert report.binary_weight_bytes == (
        3 * 3 * 3 * 32 + 3 * 3 * 32 * 32 + 3 * 3 * 32 * 64 + 64 * 10
    )
    assert report.max_rel_diff <= 1e-4
    assert report.argmax_agreement == 1.0


def test_real_valued_layers_stay_float32(tmp_path):
    tf.keras.utils.set_random_seed(9)
    inputs = tf.keras.Input((16,))
    x = larq.layers.QuantDense(8, kernel_quantizer="ada_ste", use_bias=False)(inputs)
    x = tf.keras.layers.Dense(8, activation="relu")(x)
    outputs = tf.keras.layers.Dense(1)(x)  # one value per input: not "binary per channel"
    model = tf.keras.Model(inputs, outputs)
    report = export.to_tflite(model, tmp_path / "m.tflite", weights="int8", num_samples=50,
                              verbose=False)
    assert report.ops == collections.Counter(DEQUANTIZE=1, FULLY_CONNECTED=3)
    assert [(info.shape, info.storage) for info in report.binary_weights] == [
        ((8, 16), "int8")
    ]
    assert report.argmax_agreement is None
    assert report.max_rel_diff <= 1e-4


def test_difference_above_tolerance_is_an_error(tmp_path, monkeypatch):
    real_run = check.run_tflite
    monkeypatch.setattr(check, "run_tflite", lambda content, x: real_run(content, x) + 1.0)
    with pytest.raises(export.ExportError, match="does not compute what the Keras model"
                       ) as caught:
        export.to_tflite(_small_mlp(), tmp_path / "bad.tflite", num_samples=20,
                         verbose=False)
    report = caught.value.report
    assert not report.passed
    assert report.max_abs_diff == pytest.approx(1.0, rel=1e-4)
    assert (tmp_path / "bad.tflite").exists()
    assert "FAILED" in str(report)


# -------------------------------------------------------------------------- refusals


def test_refuses_model_without_binary_layers(tmp_path):
    inputs = tf.keras.Input((8,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(2)(inputs))
    with pytest.raises(ValueError, match="no binary layers.*tf.lite"):
        export.to_tflite(model, tmp_path / "m.tflite")
    ternary = tf.keras.Model(
        inputs, larq.layers.QuantDense(2, kernel_quantizer="ste_tern")(inputs)
    )
    with pytest.raises(ValueError, match="no binary layers"):
        export.strip_latent(ternary)


def test_refuses_input_shape_not_fully_known(tmp_path):
    inputs = tf.keras.Input((None, None, 3))
    x = larq.layers.QuantConv2D(4, 3, kernel_quantizer="ada_ste")(inputs)
    model = tf.keras.Model(inputs, tf.keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(ValueError, match=r"\(None, None, 3\) .*not fully known.*"
                                         r"tf.keras.Input"):
        export.to_tflite(model, tmp_path / "m.tflite")
    unbuilt = tf.keras.Sequential([larq.layers.QuantDense(2, kernel_quantizer="ada_ste")])
    with pytest.raises(ValueError, match="not known.*tf.keras.Input"):
        export.to_tflite(unbuilt, tmp_path / "m.tflite")


def test_refuses_mixed_precision(tmp_path):
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = models.binary_mlp((16,), hidden_units=8, depth=1)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    with pytest.raises(ValueError, match="mixed_float16.*set_global_policy\\('float32'\\)"):
        export.to_tflite(model, tmp_path / "m.tflite")


def test_refuses_subclassed_models_and_bad_arguments(tmp_path):
    class Subclassed(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = larq.layers.QuantDense(2, kernel_quantizer="ada_ste")

        def call(self, inputs):
            return self.dense(inputs)

    model = Subclassed()
    model(np.zeros((1, 4), np.float32))
    with pytest.raises(TypeError, match="subclassed.*functional API"):
        export.strip_latent(model)
    with pytest.raises(TypeError, match="tf.keras.Model"):
        export.to_tflite("model.h5", tmp_path / "m.tflite")
    with pytest.raises(ValueError, match='"float32" or "int8"'):
        export.to_tflite(_small_mlp(), tmp_path / "m.tflite", weights="int4")
    with pytest.raises(ValueError, match=r"shape \(N, 64\)"):
        export.to_tflite(_small_mlp(), tmp_path / "m.tflite",
                         samples=np.zeros((4, 65), np.float32))


def test_refuses_input_quantizer_that_is_not_a_step():
    inputs = tf.keras.Input((8,))
    layer = larq.layers.QuantDense(2, kernel_quantizer="ada_ste",
                                   input_quantizer=larq.quantizers.DoReFa(k_bit=2))
    model = tf.keras.Model(inputs, layer(inputs))
    with pytest.raises(TypeError, match="not a sign or Heaviside step"):
        export.strip_latent(model)


def test_lce_missing_is_a_clear_import_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "larq_compute_engine", None)
    with pytest.raises(ImportError, match="pip install 'larq-compute-engine==0.16.\\*'"):
        export.to_lce(_small_mlp(), tmp_path / "m.tflite")


# ------------------------------------------------------------------------------- LCE


def test_lce_bitpacks_binary_convolutions(trained_conv_net, tmp_path):
    pytest.importorskip("larq_compute_engine")
    report = export.to_lce(trained_conv_net, tmp_path / "conv_lce.tflite",
                           num_samples=200, verbose=False)
    assert report.format == "lce-float32"
    assert report.ops["LceBconv2d"] == 2
    assert report.binary_ops == report.ops["LceBconv2d"] + report.ops["LceQuantize"] + (
        report.ops["LceBMaxPool2d"]
    )
    assert report.warnings == []
    bconv = [info for info in report.binary_weights if info.op == "LceBconv2d"]
    # 32 input channels = one int32 word per (out, h, w).
    assert [(info.shape, info.storage, info.stored_bytes) for info in bconv] == [
        ((32, 3, 3, 32), "bitpacked", 32 * 3 * 3 * 4),
        ((64, 3, 3, 32), "bitpacked", 64 * 3 * 3 * 4),
    ]
    for info in bconv:
        assert info.float32_bytes / info.stored_bytes >= 20
    assert report.size_vs_float32 < 0.2
    assert report.max_rel_diff <= 1e-4
    assert report.argmax_agreement == 1.0


def test_lce_with_one_padding(tmp_path):
    pytest.importorskip("larq_compute_engine")
    tf.keras.utils.set_random_seed(8)
    model = _binary_conv_net(pad_values=1.0)
    x = np.random.default_rng(8).standard_normal((64, 16, 16, 3)).astype(np.float32)
    _train_briefly(model, x, classes=10, steps=2, batch_size=32)
    report = export.to_lce(model, tmp_path / "one_pad.tflite", num_samples=100,
                           verbose=False)
    assert report.ops["LceBconv2d"] == 2 and "PADV2" not in report.ops
    assert report.max_rel_diff <= 1e-4


def test_lce_warns_for_weight_only_binary_networks(tmp_path):
    pytest.importorskip("larq_compute_engine")
    with pytest.warns(UserWarning, match="no binary convolution.*binary weights only.*"
                                         "weights='int8'"):
        report = export.to_lce(_small_mlp(), tmp_path / "mlp_lce.tflite", num_samples=100,
                               verbose=False)
    assert report.binary_ops == 0
    assert report.ops == collections.Counter(FULLY_CONNECTED=2)
    assert len(report.warnings) == 1
    assert report.max_rel_diff <= 1e-4


def test_lce_int8_stores_the_other_binary_weights_as_int8(trained_conv_net, tmp_path):
    pytest.importorskip("larq_compute_engine")
    float32 = export.to_lce(trained_conv_net, tmp_path / "f.tflite", num_samples=50,
                            verbose=False)
    int8 = export.to_lce(trained_conv_net, tmp_path / "i.tflite", weights="int8",
                         num_samples=50, verbose=False)
    assert int8.format == "lce-int8"
    assert int8.ops["DEQUANTIZE"] == 2 and int8.ops["LceBconv2d"] == 2
    storage = {info.shape: info.storage for info in int8.binary_weights}
    assert storage == {(32, 3, 3, 3): "int8", (32, 3, 3, 32): "bitpacked",
                       (64, 3, 3, 32): "bitpacked", (10, 64): "int8"}
    assert int8.binary_weight_bytes == (3 * 3 * 3 * 32 + 64 * 10  # int8: 1 byte each
                                        + 32 * 3 * 3 * 4 + 64 * 3 * 3 * 4)  # bit-packed
    int8_weights = 3 * 3 * 3 * 32 + 64 * 10
    assert float32.binary_weight_bytes == int8.binary_weight_bytes + 3 * int8_weights
    assert int8.size_bytes < float32.size_bytes
    assert int8.max_rel_diff <= 1e-4
