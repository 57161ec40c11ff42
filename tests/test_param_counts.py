"""AdaSTE adds no parameter: a model counts and profiles as the same model with `ste_sign`.

`mu` is training state of the quantizer, not a weight, so `count_params()`,
`model.summary()` and Larq's `larq.models.summary()` (weights per precision, memory)
must read exactly as for `"ste_sign"`. Saving and restoring mu is tested with the save
formats (tests/test_training.py, tests/test_callbacks.py).
"""

import larq
import pytest
import tensorflow as tf

from keras_bilevel import AdaSTE


def _mlp(quantizer):
    return [
        tf.keras.Input((9,)),
        larq.layers.QuantDense(32, kernel_quantizer=quantizer(), name="dense_a"),
        tf.keras.layers.BatchNormalization(name="bn"),
        larq.layers.QuantDense(10, input_quantizer="ste_sign", kernel_quantizer=quantizer(),
                               use_bias=False, name="dense_b"),
    ]


def _conv(quantizer):
    return [
        tf.keras.Input((8, 8, 3)),
        larq.layers.QuantConv2D(4, 3, kernel_quantizer=quantizer(), use_bias=False,
                                name="conv_a"),
        tf.keras.layers.BatchNormalization(name="bn"),
        larq.layers.QuantConv2D(6, 3, input_quantizer="ste_sign",
                                kernel_quantizer=quantizer(), name="conv_b"),
        tf.keras.layers.GlobalAveragePooling2D(name="pool"),
        larq.layers.QuantDense(2, kernel_quantizer=quantizer(), name="dense"),
    ]


def _separable(quantizer):
    return [
        tf.keras.Input((8, 8, 3)),
        larq.layers.QuantSeparableConv2D(
            5, 3, depthwise_quantizer=quantizer(), pointwise_quantizer=quantizer(),
            name="separable",
        ),
        tf.keras.layers.Flatten(name="flatten"),
        larq.layers.QuantDense(2, input_quantizer="ste_sign", kernel_quantizer=quantizer(),
                               name="dense"),
    ]


# (layers, the weight count worked out from the shapes: kernels, biases, BatchNorm)
MODELS = {
    "mlp": (_mlp, 9 * 32 + 32 + 4 * 32 + 32 * 10),
    "conv": (_conv, 3 * 3 * 3 * 4 + 4 * 4 + 3 * 3 * 4 * 6 + 6 + 6 * 2 + 2),
    "separable_conv": (_separable, 3 * 3 * 3 + 3 * 5 + 5 + 6 * 6 * 5 * 2 + 2),
}
QUANTIZERS = {
    "alias": lambda: "ada_ste",
    "instance": lambda: AdaSTE(mu=0.3, relaxed_forward=True, variant="reference"),
}


def _model(kind, quantizer):
    layers, _ = MODELS[kind]
    return tf.keras.Sequential(layers(quantizer), name=kind)


def _text(print_summary):
    lines = []
    print_summary(lambda line, *args, **kwargs: lines.append(line))
    return "\n".join(lines)


@pytest.mark.parametrize("quantizer", list(QUANTIZERS))
@pytest.mark.parametrize("kind", list(MODELS))
class TestSameCountsAsSteSign:
    def _pair(self, kind, quantizer):
        ada = _model(kind, QUANTIZERS[quantizer])
        ste = _model(kind, lambda: "ste_sign")
        assert any(isinstance(m, AdaSTE) for m in ada.submodules)
        return ada, ste

    def test_count_params(self, kind, quantizer):
        ada, ste = self._pair(kind, quantizer)
        assert ada.count_params() == ste.count_params() == MODELS[kind][1]
        assert [w.name for w in ada.weights] == [w.name for w in ste.weights]
        assert len(ada.trainable_weights) == len(ste.trainable_weights)
        assert len(ada.get_weights()) == len(ste.get_weights())

    def test_keras_summary(self, kind, quantizer):
        ada, ste = self._pair(kind, quantizer)
        text = _text(lambda fn: ada.summary(print_fn=fn))
        assert f"Total params: {MODELS[kind][1]:,}" in text
        assert text == _text(lambda fn: ste.summary(print_fn=fn))

    def test_larq_summary(self, kind, quantizer):
        ada, ste = self._pair(kind, quantizer)
        text = _text(lambda fn: larq.models.summary(ada, print_fn=fn))
        assert text == _text(lambda fn: larq.models.summary(ste, print_fn=fn))
        ada_profile, ste_profile = larq.models.ModelProfile(ada), larq.models.ModelProfile(ste)
        for bitwidth in (1, 32):
            assert ada_profile.weight_count(bitwidth) == ste_profile.weight_count(bitwidth)
        assert ada_profile.memory == ste_profile.memory
        # Per layer: a quantized layer profiles its kernels and biases, nothing more
        # (Larq folds BatchNorm's offset and scale into its statistics, so skip it).
        for layer, profile in zip(ste.layers, ada_profile.layer_profiles):
            if not isinstance(layer, tf.keras.layers.BatchNormalization):
                assert profile.weight_count() == layer.count_params(), layer.name
