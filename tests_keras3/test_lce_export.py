"""Fully binary Keras 3 networks to Larq Compute Engine, on the current backend.

`keras_bilevel.keras3.export.to_lce` rebuilds the network from Larq layers in a process
of the Larq stack; so these tests run where that stack and LCE are installed beside
Keras 3 (the pinned test stack), and are skipped in a `.[jax]` install.
"""

import keras
import numpy as np
import pytest

# keras_bilevel.keras3 first: imported so, the package loads no Larq front end.
from keras_bilevel.keras3 import export, layers
from keras_bilevel.core import stacks  # noqa: I001
from keras_bilevel.export import ExportError
from tests_keras3.conftest import BACKEND

pytestmark = pytest.mark.skipif(
    stacks.missing_lce_message("to_lce") is not None,
    reason=str(stacks.missing_lce_message("to_lce")))


# The Larq process's check does not depend on the backend that described the model: its
# cases run from one backend; the route from every backend is the fully binary CNN's test.
on_one_backend = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="backend-independent check, run under TensorFlow")


def _binary(kind, units, name, binary_input=True, **kwargs):
    quantizers = dict(kernel_quantizer="ada_ste", use_bias=False, name=name,
                      input_quantizer="ste_sign" if binary_input else None)
    if kind == "conv":
        return layers.QuantConv2D(units, 3, padding="same", **quantizers, **kwargs)
    return layers.QuantDense(units, **quantizers, **kwargs)


def _vgg_style():
    """conv (real input) - BN - [binary conv - BN - max-pool] x2 - flatten - binary dense."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.BatchNormalization()(_binary("conv", 8, "conv_a", False)(inputs))
    for name in ("conv_b", "conv_c"):
        x = keras.layers.BatchNormalization()(_binary("conv", 16, name)(x))
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.BatchNormalization()(_binary("dense", 10, "head")(x))
    return keras.Model(inputs, outputs, name="vgg_style")


def _mlp():
    """dense (real input) - BN - binary dense - BN - binary dense - BN."""
    inputs = keras.Input((20,))
    x = keras.layers.BatchNormalization()(_binary("dense", 32, "dense_a", False)(inputs))
    x = keras.layers.BatchNormalization()(_binary("dense", 32, "dense_b")(x))
    outputs = keras.layers.BatchNormalization()(_binary("dense", 10, "head")(x))
    return keras.Model(inputs, outputs, name="mlp")


def _trained(model):
    """A few Adam steps, so that BatchNorm's statistics and the kernels are not initial."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, *model.inputs[0].shape[1:])).astype("float32")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, rng.integers(0, 10, 64), batch_size=16, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def vgg_style():
    return _trained(_vgg_style())


def test_a_fully_binary_cnn_runs_its_convolutions_in_binary(vgg_style, tmp_path):
    report = export.to_lce(vgg_style, tmp_path / "cnn.tflite", num_samples=200,
                           verbose=False)
    assert report.format == "lce-float32" and report.ops["LceBconv2d"] == 2
    assert report.max_rel_diff <= report.tolerance
    assert report.max_rel_diff_given_flips <= report.tolerance
    assert len(report.activations) == 3  # conv_b, conv_c and head take binary inputs
    assert any("rebuilt from Larq layers" in note for note in report.warnings)
    assert (tmp_path / "cnn.tflite").stat().st_size == report.size_bytes


@on_one_backend
def test_a_fully_binary_mlp_has_no_binary_dense_op_in_lce(tmp_path):
    """LCE 0.16 has no binary fully connected op: the dense layers stay float (int8
    storage with weights="int8"), the file says so and still checks."""
    model = _trained(_mlp())
    with pytest.warns(UserWarning, match="no binary convolution"):
        report = export.to_lce(model, tmp_path / "mlp.tflite", weights="int8",
                               num_samples=200, verbose=False)
    assert report.format == "lce-int8" and not report.ops.get("LceBconv2d")
    assert report.ops["FULLY_CONNECTED"] == 3
    assert report.max_rel_diff <= report.tolerance


@on_one_backend
def test_a_planted_flipped_weight_is_caught_and_named(vgg_style, tmp_path):
    with pytest.raises(ExportError) as error:
        export._to_lce(vgg_style, tmp_path / "bad.tflite", "float32", samples=None,
                       num_samples=200, seed=0, tolerance=None, verbose=False,
                       plant=("conv_b", (1, 1, 0, 0), -1.0))
    report = error.value.report
    assert report is not None and not report.passed
    # conv_b's output departs; the next binary activation, conv_c's input, shows it.
    assert "conv_c" in report.departing_layer.name, report.departing_layer
    assert report.departing_layer.name in str(error.value)


def test_what_lce_cannot_run_is_refused_naming_the_layer(tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = layers.QuantConv2D(4, 3, kernel_quantizer="ada_ste", name="conv")(inputs)
    x = keras.layers.LayerNormalization(name="norm")(x)
    model = keras.Model(inputs, keras.layers.Flatten()(x))
    with pytest.raises(ValueError, match="layer 'norm' \\(LayerNormalization\\) has no"):
        export.to_lce(model, tmp_path / "x.tflite", verbose=False)


def _two_bit(x):
    """A 2-bit activation: four levels, -1.5, -0.5, 0.5, 1.5."""
    return keras.ops.clip(keras.ops.floor(x) + 0.5, -1.5, 1.5)


def test_two_bit_activations_are_refused_naming_the_layer(tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = layers.QuantConv2D(4, 3, kernel_quantizer="ada_ste", name="conv_a")(inputs)
    x = layers.QuantConv2D(4, 3, kernel_quantizer="ada_ste", input_quantizer=_two_bit,
                           name="conv_2bit")(x)
    model = keras.Model(inputs, keras.layers.Flatten()(x))
    with pytest.raises(ValueError, match="layer 'conv_2bit' has input_quantizer"):
        export.to_lce(model, tmp_path / "x.tflite", verbose=False)


def test_to_tflite_of_binary_activations_tells_flips_from_departures(vgg_style, tmp_path):
    """With the Larq stack installed, `to_tflite` of a network with binary activations
    goes the same way (the Larq path's check compares every binary activation), so a
    sign that flips within rounding of the threshold does not fail a correct file."""
    report = export.to_tflite(vgg_style, tmp_path / "cnn.tflite", weights="int8",
                              num_samples=200, verbose=False)
    assert report.format == "tflite-int8" and len(report.activations) == 3
    assert report.max_rel_diff_given_flips <= report.tolerance
    assert any("rebuilt from Larq layers" in note for note in report.warnings)
