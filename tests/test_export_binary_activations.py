"""The LCE export of fully binary networks: binary activations compared one by one.

A small network with binary inputs and weights (ada_ste and ste_sign kernels, ste_sign
inputs, a convolution with pad_values=1.0, separable and depthwise convolutions) goes
through `to_lce`. Errors are planted in the converter (a flipped weight sign, a dropped
BatchNorm, a wrong padding value, a missing layer) and the check must name where the
file departs; flips of activations within rounding of the threshold must pass.
"""

import keras_bilevel  # noqa: F401  (Keras 2 mode first)
import larq
import numpy as np
import pytest
import tensorflow as tf

from keras_bilevel import export
from keras_bilevel.export import flips, tflite_file

lce = pytest.importorskip("larq_compute_engine")

SIGNS = ["conv_a_input_sign", "sep_input_sign", "dw_input_sign", "conv_b_input_sign"]


def _fully_binary_net():
    """Real-valued stem, then four residual blocks with binary inputs and weights."""
    inputs = tf.keras.Input((12, 12, 3))
    x = larq.layers.QuantConv2D(16, 3, padding="same", use_bias=False,
                                kernel_quantizer="ada_ste", name="stem")(inputs)
    x = tf.keras.layers.BatchNormalization(name="stem_bn")(x)
    blocks = [
        ("conv_a", larq.layers.QuantConv2D, dict(
            filters=16, kernel_size=3, kernel_quantizer="ada_ste", pad_values=1.0)),
        ("sep", larq.layers.QuantSeparableConv2D, dict(
            filters=16, kernel_size=3, depthwise_quantizer="ada_ste",
            pointwise_quantizer="ada_ste")),
        ("dw", larq.layers.QuantDepthwiseConv2D, dict(
            kernel_size=3, depthwise_quantizer="ada_ste")),
        ("conv_b", larq.layers.QuantConv2D, dict(
            filters=16, kernel_size=3, kernel_quantizer="ste_sign",
            kernel_constraint="weight_clip")),
    ]
    for name, layer, config in blocks:
        y = layer(padding="same", use_bias=False, input_quantizer="ste_sign", name=name,
                  **config)(x)
        y = tf.keras.layers.BatchNormalization(name=f"{name}_bn")(y)
        x = tf.keras.layers.Add(name=f"{name}_add")([x, y])
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(10, name="head")(x))


@pytest.fixture(scope="module")
def trained_net():
    tf.keras.utils.set_random_seed(3)
    model = _fully_binary_net()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 12, 12, 3)).astype(np.float32)
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, rng.integers(0, 10, 64), batch_size=32, epochs=2, verbose=0)
    return model


def _plant(monkeypatch, replace=None, tweak=None, converter=(lce, "convert_keras_model")):
    """Makes LCE's converter (or `converter`: module, name) convert a changed copy of the
    model: `replace(layer)` gives a layer's replacement (None: keep it), `tweak(clone)`
    changes the copied weights."""
    convert = getattr(*converter)

    def clone_layer(layer):
        new = replace(layer) if replace else None
        return new or layer.__class__.from_config(layer.get_config())

    def planted(model):
        clone = tf.keras.models.clone_model(model, clone_function=clone_layer)
        for layer in clone.layers:
            source = model.get_layer(layer.name)
            if len(layer.weights) == len(source.weights):
                layer.set_weights(source.get_weights())
        if tweak:
            tweak(clone)
        return convert(clone)

    monkeypatch.setattr(*converter, planted)


def _replace(name, make):
    return lambda layer: make(layer) if layer.name == name else None


def _identity(layer):
    return tf.keras.layers.Lambda(lambda t: t, name=layer.name)


def _pad_with_zeros(layer):
    return tf.keras.layers.Lambda(
        lambda x, paddings, value: tf.pad(x, paddings, constant_values=value),
        arguments={**layer.get_config()["arguments"], "value": 0.0}, name=layer.name,
    )


def _scale_weight(name, index, factor):
    def tweak(clone):
        layer = clone.get_layer(name)
        kernel, *rest = layer.get_weights()
        kernel[index] *= factor
        layer.set_weights([kernel, *rest])

    return tweak


PLANTED = {  # name: (replace, tweak, the binary activation where the file departs)
    "flipped-weight-sign": (None, _scale_weight("conv_a", (1, 1, 0, 0), -1),
                            "sep_input_sign"),
    "dropped-batchnorm": (_replace("conv_a_bn", _identity), None, "sep_input_sign"),
    "wrong-pad-value": (_replace("conv_a_pad", _pad_with_zeros), None, "sep_input_sign"),
    "missing-layer": (_replace("dw", _identity), None, "conv_b_input_sign"),
}


def test_correct_file_passes_and_reports_every_binary_activation(trained_net, tmp_path):
    report = export.to_lce(trained_net, tmp_path / "net.tflite", num_samples=64,
                           verbose=False)
    assert report.passed and report.departing_layer is None
    assert [check.name for check in report.activations] == SIGNS
    assert [check.source for check in report.activations] == [
        "stem_bn", "conv_a_add", "sep_add", "dw_add"
    ]
    assert all(check.values == 64 * 12 * 12 * 16 for check in report.activations)
    assert report.ops["LceBconv2d"] == 2  # conv_a, conv_b (separable/depthwise: float)
    assert report.flips == sum(check.flips for check in report.activations)
    assert report.max_rel_diff_given_flips <= report.tolerance
    if report.flips == 0:  # then the file's decisions are the model's
        assert report.max_rel_diff <= report.tolerance
    text = str(report)
    assert "binary activations  4 layers" in text and "diff given flips" in text


@pytest.mark.parametrize(
    "planted",
    [name if name == "flipped-weight-sign" else pytest.param(name, marks=pytest.mark.slow)
     for name in PLANTED],
)
def test_planted_errors_name_the_departing_layer(trained_net, tmp_path, monkeypatch, planted):
    replace, tweak, departs_at = PLANTED[planted]
    _plant(monkeypatch, replace, tweak)
    expected = f"departs from the model at the binary activation '{departs_at}'"
    with pytest.raises(export.ExportError, match=expected) as error:
        export.to_lce(trained_net, tmp_path / "net.tflite", num_samples=32, verbose=False)
    report = error.value.report
    assert not report.passed and report.departing_layer.name == departs_at
    before = report.activations[: SIGNS.index(departs_at)]
    assert [check.departures for check in before] == [0] * len(before)
    assert report.departing_layer.largest_departure > flips.FLIP_MARGIN
    assert "departs at" in str(report)


@pytest.mark.slow
def test_error_after_the_last_binary_activation(trained_net, tmp_path, monkeypatch):
    _plant(monkeypatch, tweak=_scale_weight("head", (0, 0), 3.0))
    with pytest.raises(export.ExportError, match="after the last binary activation "
                                                 "'conv_b_input_sign'") as error:
        export.to_lce(trained_net, tmp_path / "net.tflite", num_samples=16, verbose=False)
    assert error.value.report.departing_layer is None


def test_to_tflite_compares_binary_activations_too(trained_net, tmp_path, monkeypatch):
    report = export.to_tflite(trained_net, tmp_path / "net.tflite", weights="int8",
                              num_samples=32, verbose=False)
    assert report.passed and [check.name for check in report.activations] == SIGNS
    assert report.max_rel_diff_given_flips <= report.tolerance
    assert "binary activations  4 layers" in str(report)
    _plant(monkeypatch, tweak=_scale_weight("conv_a", (1, 1, 0, 0), -1),
           converter=(tflite_file, "convert_keras_model"))
    with pytest.raises(export.ExportError, match="binary activation 'sep_input_sign'"):
        export.to_tflite(trained_net, tmp_path / "bad.tflite", num_samples=16,
                         verbose=False)


def _small_input_net(pad_values, activation=None, strides=1, dilation_rate=1,
                     depthwise=False, size=(2, 3)):
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((*size, 32))
    binary = dict(padding="same", input_quantizer="ste_sign", pad_values=pad_values,
                  activation=activation, strides=strides, name="small")
    if depthwise:
        x = larq.layers.QuantDepthwiseConv2D(3, depthwise_quantizer="ada_ste",
                                             use_bias=True, **binary)(inputs)
    else:
        x = larq.layers.QuantConv2D(32, 3, kernel_quantizer="ada_ste", use_bias=True,
                                    dilation_rate=dilation_rate, **binary)(inputs)
    x = tf.keras.layers.BatchNormalization()(x)
    x = larq.layers.QuantConv2D(8, 1, use_bias=False, input_quantizer="ste_sign",
                                kernel_quantizer="ada_ste", name="next")(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Flatten()(x))
    small = model.get_layer("small")
    small.bias.assign(tf.random.normal(small.bias.shape))
    return model


@pytest.mark.parametrize("pad_values, options", [
    (1.0, {}), (0.0, {}), (0.0, {"activation": "relu"}), (0.0, {"strides": 2}),
    (0.0, {"dilation_rate": 2}), (0.0, {"depthwise": True}),
    (0.0, {"dilation_rate": 2, "size": (4, 4)})],
    ids=["one-padded", "zero-padded", "relu", "stride-2", "dilated", "depthwise",
         "dilated-extent"])
def test_zero_padded_binary_convolution_on_inputs_smaller_than_the_kernel(
    tmp_path, pad_values, options
):
    """LCE 0.16's optimised LceBconv2d gets zero padding wrong on inputs smaller than
    the kernel's extent (a 3x3 kernel on 2x3 inputs; dilated 2, extent 5, on 4x4):
    to_lce writes those layers +1-padded with a constant correction, which computes the
    same, and says so; the check passes."""
    model = _small_input_net(pad_values, **options)
    report = export.to_lce(model, tmp_path / "small.tflite", num_samples=16, verbose=False)
    assert report.passed and report.max_rel_diff_given_flips < 1e-4
    assert report.ops["LceBconv2d"] == (1 if options.get("depthwise") else 2)
    if pad_values:
        assert not report.warnings
    else:
        assert any("+1 and corrected" in note and "(small)" in note
                   for note in report.warnings)


def test_one_padded_strip_equals_the_model_and_the_zero_padded_strip():
    """The rewrite is exact in float: the stripped model with `small` one-padded and
    corrected gives the model's outputs, and its LCE-style correction is not zero."""
    model = _small_input_net(0.0, activation="relu", strides=2)
    x = np.random.default_rng(1).standard_normal((6, 2, 3, 32)).astype(np.float32)
    plain = export.strip_latent(model)
    rewritten = export.strip_latent(model, one_padded=["small"])
    assert "small_padding_correction" in [layer.name for layer in rewritten.layers]
    correction = rewritten.get_layer("small_padding_correction").arguments["correction"]
    assert np.max(np.abs(correction)) >= 1.0  # sums of +-1 weights over the padding
    np.testing.assert_allclose(rewritten.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rewritten.predict(x, verbose=0), plain.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="names no layer"):
        export.strip_latent(model, one_padded=["nonexistent"])
    with pytest.raises(ValueError, match="cannot be one-padded"):
        export.strip_latent(model, one_padded=["next"])


def _probe(steps=(False,)):
    return flips.ActivationProbe(
        content=b"", names=[f"a{i}" for i in range(len(steps))],
        sources=[f"s{i}" for i in range(len(steps))], shapes=[(4,)] * len(steps),
        steps=list(steps), output_shape=(2,), forced=None,
    )


@pytest.mark.parametrize("step", [False, True])
def test_compare_activations_tells_flips_from_departures(step):
    x = np.array([[-2.0, -1e-5, 0.0, 3.0]])  # scale 3: 1e-5 is within 1e-4 * 3
    low = 0.0 if step else -1.0
    model = np.where(x > 0, 1.0, low) if step else np.where(x >= 0, 1.0, low)
    decided = model.copy()
    decided[0, 1] = 1.0  # near the threshold: a flip
    (check,) = flips.compare_activations(_probe([step]), [decided], [x])
    assert (check.flips, check.departures, check.values) == (1, 0, 4)
    assert check.largest_flip == pytest.approx(1e-5 / 3)
    decided[0, 0] = 1.0  # -2 decided as positive: a departure
    (check,) = flips.compare_activations(_probe([step]), [decided], [x])
    assert (check.flips, check.departures) == (1, 1)
    assert check.largest_departure == pytest.approx(2 / 3)
    assert flips.first_departure([check]) is check


def test_split_probe_outputs_checks_the_size():
    probe = _probe([False, False])
    flat = np.arange(2 * 10, dtype=np.float32).reshape(2, 10)
    outputs, decisions = flips.split_probe_outputs(probe, flat)
    assert outputs.shape == (2, 2) and [d.shape for d in decisions] == [(2, 4), (2, 4)]
    np.testing.assert_array_equal(decisions[1][0], [6, 7, 8, 9])
    with pytest.raises(ValueError, match="gives 9 values per sample, expected 10"):
        flips.split_probe_outputs(probe, flat[:, :9])
