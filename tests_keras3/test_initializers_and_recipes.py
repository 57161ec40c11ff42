"""RandomSign and the Keras 3 reference recipe, under every backend."""

import keras
import numpy as np
import pytest

from keras_bilevel.keras3 import layers, methods, recipes
from keras_bilevel.keras3.callbacks import AnnealMu, BinarizationGap, NonFiniteSteps
from keras_bilevel.keras3.initializers import RandomSign
from keras_bilevel.keras3.optimizers import LatentMomentum
from keras_bilevel.keras3.quantizers import AdaSTE


class TestRandomSign:
    @pytest.mark.parametrize("magnitude", [10.0, 1.0, 0.5])
    def test_values_are_plus_minus_magnitude_with_both_signs(self, magnitude):
        values = keras.ops.convert_to_numpy(RandomSign(magnitude)((64, 32)))
        np.testing.assert_array_equal(np.abs(values), magnitude)
        assert 0.4 < np.mean(values > 0) < 0.6
        assert values.dtype == np.float32

    def test_seed_and_instances(self):
        a = keras.ops.convert_to_numpy(RandomSign(seed=3)((50,)))
        b = keras.ops.convert_to_numpy(RandomSign(seed=3)((50,)))
        c = keras.ops.convert_to_numpy(RandomSign(seed=4)((50,)))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
        unseeded = RandomSign()
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(unseeded((50,))),
                                      keras.ops.convert_to_numpy(unseeded((50,))))
        assert not np.array_equal(keras.ops.convert_to_numpy(RandomSign()((50,))),
                                  keras.ops.convert_to_numpy(RandomSign()((50,))))

    def test_config_and_layer_round_trip(self, tmp_path):
        init = RandomSign(2.0, seed=1)
        restored = keras.initializers.deserialize(keras.initializers.serialize(init))
        assert isinstance(restored, RandomSign)
        assert restored.get_config() == {"magnitude": 2.0, "seed": 1}
        model = keras.Sequential([keras.Input((3,)), layers.QuantDense(
            4, kernel_quantizer="ada_ste", kernel_initializer=RandomSign(10.0))])
        model.save(tmp_path / "m.keras")
        loaded = keras.saving.load_model(tmp_path / "m.keras")
        np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])
        np.testing.assert_array_equal(np.abs(model.get_weights()[0]), 10.0)

    @pytest.mark.parametrize("kwargs,name", [({"magnitude": 0.0}, "magnitude"),
                                             ({"magnitude": True}, "magnitude"),
                                             ({"seed": 1.5}, "seed")])
    def test_bad_arguments(self, kwargs, name):
        with pytest.raises(ValueError, match=f"`{name}`"):
            RandomSign(**kwargs)


class TestAdasteReference:
    def test_values(self):
        recipe = recipes.adaste_reference(train_size=50_000, epochs=4, steps_per_epoch=10,
                                          momentum=0.0, variant="reference")
        opt = recipe.optimizer
        assert isinstance(opt, LatentMomentum)
        assert opt.gradient_scale == pytest.approx((10 * 50_000) ** 2)
        assert (opt.momentum, opt.latent_decay) == (0.0, 1.0)
        schedule = opt._learning_rate
        assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
        assert (schedule.initial_learning_rate, schedule.decay_steps) == (3e-4, 40)
        quantizer = recipe.kernel_quantizer()
        assert isinstance(quantizer, AdaSTE) and quantizer is not recipe.kernel_quantizer()
        assert (quantizer.initial_mu, quantizer.alpha, quantizer.variant,
                quantizer.relaxed_forward) == (0.01, 0.01, "reference", True)
        initializer = recipe.kernel_initializer()
        assert isinstance(initializer, RandomSign) and initializer.magnitude == 10.0
        assert [type(c) for c in recipe.callbacks] == [AnnealMu, BinarizationGap,
                                                       NonFiniteSteps]
        assert recipe.callbacks[0].rate == 1.05
        assert recipe.batch_size == 128 and recipe.epochs == 4
        assert set(recipe.sources) == {
            "learning_rate", "momentum", "gradient_scale", "latent_decay",
            "kernel_initializer", "kernel_quantizer", "callbacks", "batch_size"}
        assert "(10 N)^2 = 2.5e+11 with N = 50000" in recipe.sources["gradient_scale"]

    def test_trains_and_logs(self):
        recipe = recipes.adaste_reference(train_size=64, epochs=2, steps_per_epoch=4,
                                          batch_size=16)
        model = keras.Sequential([
            keras.Input((5,)),
            layers.QuantDense(8, use_bias=False, kernel_quantizer=recipe.kernel_quantizer(),
                              kernel_initializer=recipe.kernel_initializer()),
            keras.layers.BatchNormalization(center=False, scale=False),
            keras.layers.ReLU(),
            layers.QuantDense(2, use_bias=False, kernel_quantizer=recipe.kernel_quantizer(),
                              kernel_initializer=recipe.kernel_initializer()),
        ])
        model.compile(recipe.optimizer,
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((64, 5)).astype(np.float32), rng.integers(0, 2, 64)
        history = model.fit(x, y, batch_size=recipe.batch_size, epochs=recipe.epochs,
                            verbose=0, callbacks=recipe.callbacks)
        assert {"loss", "mu", "binarization_gap", "skipped_steps"} <= set(history.history)
        np.testing.assert_allclose(history.history["mu"], [0.0105, 0.011025], rtol=1e-6)
        assert history.history["skipped_steps"] == [0, 0]

    @pytest.mark.parametrize("name", ["train_size", "epochs", "steps_per_epoch",
                                      "batch_size"])
    def test_bad_arguments(self, name):
        kwargs = dict(train_size=10, epochs=1, steps_per_epoch=1, batch_size=2)
        kwargs[name] = 0
        with pytest.raises(ValueError, match=f"`{name}`"):
            recipes.adaste_reference(**kwargs)


@pytest.mark.parametrize("width, rate", [(16, 1e-2), (64, 1e-2), (128, 5e-3),
                                         (256, 2.5e-3), (1024, 1e-3), (None, 1e-3)])
def test_method_adaste_learning_rate_falls_as_one_over_width(width, rate):
    """clip(1e-2 x 64 / width, 1e-3, 1e-2), worked by hand, as on the Larq path."""
    recipe = methods.make("adaste", 54000, 5, 422, width=width)
    assert float(recipe.optimizer._learning_rate(0)) == pytest.approx(rate, rel=1e-6)
    assert f"= {rate:.4g} for width" in recipe.sources["optimizer"]
    ste = methods.make("ste", 54000, 5, 422, width=width)  # ignores the width
    assert float(ste.optimizer._learning_rate(0)) == pytest.approx(1e-3, rel=1e-6)


@pytest.mark.parametrize("epochs, steps", [(5, 422), (20, 11)])
def test_method_adaste_is_adam_cosine_decayed_as_on_the_larq_path(epochs, steps):
    recipe = methods.make("adaste", 54000, epochs, steps, width=64)
    schedule = recipe.optimizer._learning_rate
    assert isinstance(recipe.optimizer, keras.optimizers.Adam)
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert float(schedule(0)) == pytest.approx(1e-2)
    assert float(schedule(epochs * steps // 2)) == pytest.approx(5e-3, rel=1e-4)
    assert "adaste_map" in recipe.sources["optimizer"]
    assert isinstance(recipe.kernel_quantizer(), AdaSTE)
