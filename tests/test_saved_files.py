"""Files written by an earlier version of the Larq front end keep loading.

`tests/saved_files/` holds a model saved as `.keras`, `.h5` and SavedModel, with its
predictions, quantizer mus, optimizer step and the configurations of every callback,
written by `tests/saved_files/write_files.py` on the version its manifest names.
"""

import json
import os

import larq  # noqa: F401  (its layers, for the files' class names)
import numpy as np
import pytest
import tensorflow as tf

import keras_bilevel
from tests.saved_files.write_files import INPUTS

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "saved_files")
MANIFEST = json.load(open(os.path.join(HERE, "manifest.json")))["larq"]


@pytest.mark.parametrize("name", ["larq_model.keras", "larq_model.h5", "larq_savedmodel"])
def test_an_earlier_model_file_loads_and_predicts_the_same(name):
    model = tf.keras.models.load_model(os.path.join(HERE, name))
    expected = np.load(os.path.join(HERE, "larq_predictions.npy"))
    np.testing.assert_allclose(model.predict(INPUTS, verbose=0), expected, rtol=1e-5, atol=1e-6)
    quantizers = [model.layers[0].kernel_quantizer, model.layers[-1].kernel_quantizer]
    if name != "larq_savedmodel":  # a SavedModel restores layers, not their Python classes
        assert [type(q) for q in quantizers] == [keras_bilevel.AdaSTE] * 2
        assert quantizers[0].variant == "reference"
        assert isinstance(model.optimizer, keras_bilevel.optimizers.LatentMomentum)
        assert int(model.optimizer.iterations.numpy()) == MANIFEST["optimizer_iterations"]
    np.testing.assert_allclose([float(q.mu.numpy()) for q in quantizers], MANIFEST["mus"])


@pytest.mark.parametrize("config", MANIFEST["callbacks"], ids=lambda c: c["class_name"])
def test_an_earlier_callback_configuration_loads(config):
    callback = tf.keras.utils.deserialize_keras_object(config)
    assert type(callback) is getattr(keras_bilevel.callbacks, config["class_name"])
    assert tf.keras.utils.serialize_keras_object(callback)["config"] == config["config"]
