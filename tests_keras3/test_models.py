"""The Keras 3 reference models (`keras_bilevel.keras3.models`) on the current backend.

Their parameter counts are compared with the Larq builders' in the main test process
(`tests/test_keras3_models.py`); here: structure, options, one forward pass, a `.keras`
round trip and the argument checks, at small sizes.
"""

import keras
import numpy as np
import pytest

from keras_bilevel.keras3 import constraints, layers, models, quantizers

QUANT_LAYERS = (layers.QuantDense, layers.QuantConv2D)
# builder, small arguments, the number of binary layers, the input shape
SMALL = {
    "binary_mlp": (models.binary_mlp,
                   dict(input_shape=(6, 6, 1), hidden_units=8, depth=2, classes=3), 3),
    "vgg16": (models.vgg16, dict(width=1 / 32, classes=3), 14),
    "vgg_small": (models.vgg_small, dict(input_shape=(8, 8, 3), width=1 / 64, classes=3), 9),
    "resnet18": (models.resnet18, dict(input_shape=(8, 8, 3), width=1 / 32, classes=3), 21),
}


def _binary_layers(model):
    return [layer for layer in model.layers if isinstance(layer, QUANT_LAYERS)]


def _build(builder_name, **options):
    builder, kwargs, _ = SMALL[builder_name]
    return builder(**{**kwargs, **options})


@pytest.mark.parametrize("name", list(SMALL))
class TestStructure:
    def test_forward_pass(self, name):
        model = _build(name)
        x = np.random.default_rng(0).standard_normal((2, *model.inputs[0].shape[1:]))
        logits = model.predict(x.astype("float32"), verbose=0)
        assert logits.shape == (2, 3) and np.all(np.isfinite(logits))

    def test_every_weight_binary_no_bias_batchnorm_after(self, name):
        model = _build(name)
        binary = _binary_layers(model)
        assert len(binary) == SMALL[name][2]
        for layer in binary:
            assert layer.bias is None and layer.input_quantizer is None
            assert isinstance(layer.kernel_quantizer, quantizers.AdaSTE)
            assert quantizers.is_binary_variable(layer._kernel)
        assert len({id(layer.kernel_quantizer) for layer in binary}) == len(binary)
        assert isinstance(model.layers[-1], keras.layers.BatchNormalization)
        assert isinstance(model.layers[-2], layers.QuantDense)
        norms = [layer for layer in model.layers
                 if isinstance(layer, keras.layers.BatchNormalization)]
        assert len(norms) == len(binary)
        assert all(not norm.center and not norm.scale for norm in norms)
        # mu is state: the parameters are the kernels and the BatchNorm statistics
        kernels = sum(int(np.prod(layer._kernel.shape)) for layer in binary)
        statistics = sum(2 * norm.moving_mean.shape[0] for norm in norms)
        assert model.count_params() == kernels + statistics
        assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == kernels

    def test_options(self, name):
        model = _build(name, kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                       kernel_initializer="ones", batch_norm_affine=True, name="custom")
        assert model.name == "custom"
        for layer in _binary_layers(model):
            assert isinstance(layer.kernel_quantizer, quantizers.SteSign)
            assert isinstance(layer.kernel_constraint, constraints.WeightClip)
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer._kernel), 1.0)
        norms = [layer for layer in model.layers
                 if isinstance(layer, keras.layers.BatchNormalization)]
        assert all(norm.center and norm.scale for norm in norms)


class TestSpecs:
    def test_factory_called_per_layer_and_object_shared(self):
        made = []

        def factory():
            made.append(quantizers.AdaSTE(mu=0.2))
            return made[-1]

        model = _build("binary_mlp", kernel_quantizer=factory)
        assert [layer.kernel_quantizer for layer in _binary_layers(model)] == made
        shared = quantizers.AdaSTE()
        model = _build("binary_mlp", kernel_quantizer=shared)
        assert all(layer.kernel_quantizer is shared for layer in _binary_layers(model))

    def test_keras_file_round_trip(self, tmp_path):
        model = _build("resnet18")
        path = tmp_path / "resnet.keras"
        model.save(path)
        loaded = keras.saving.load_model(path)
        x = np.random.default_rng(1).standard_normal((2, 8, 8, 3)).astype("float32")
        np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                                   rtol=1e-6, atol=1e-6)
        assert loaded.count_params() == model.count_params()


class TestArguments:
    @pytest.mark.parametrize("kwargs,match", [
        (dict(depth=-1), "depth"),
        (dict(hidden_units=0), "hidden_units"),
        (dict(classes=0), "classes"),
    ])
    def test_binary_mlp(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            models.binary_mlp(**kwargs)

    @pytest.mark.parametrize("name", ["vgg16", "vgg_small", "resnet18"])
    @pytest.mark.parametrize("kwargs,match", [
        (dict(input_shape=(32, 32)), "input_shape"),
        (dict(input_shape=(4, 4, 3)), "input_shape"),
        (dict(classes=0), "classes"),
        (dict(classes=2.0), "classes"),
        (dict(width=0), "width"),
        (dict(width=True), "width"),
    ])
    def test_image_models(self, name, kwargs, match):
        if name == "resnet18" and kwargs.get("input_shape") == (4, 4, 3):
            pytest.skip("resnet18 takes any positive height and width")
        with pytest.raises(ValueError, match=f"{name}: `{match}`"):
            getattr(models, name)(**kwargs)
