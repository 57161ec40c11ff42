"""The Keras 3 front end provides every data set, model and method the registries
declare for it (`keras_bilevel.core.registry`)."""

from keras_bilevel.core import registry
from keras_bilevel.keras3 import data, methods, models


def test_every_registered_data_set_loads_here():
    assert data.DATASETS == registry.names(registry.DATASETS, front_end="keras3")


def test_every_registered_model_has_a_builder():
    for name in registry.names(registry.MODELS, front_end="keras3"):
        assert callable(getattr(models, registry.MODELS[name].builder)), name


def test_every_registered_method_has_a_recipe():
    assert set(methods.METHODS) == set(registry.names(registry.METHODS, front_end="keras3"))
    assert set(methods.LARQ_ONLY) == set(registry.METHODS) - set(methods.METHODS)
