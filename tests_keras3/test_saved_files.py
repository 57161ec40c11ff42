"""A `.keras` file written by an earlier version of the Keras 3 front end keeps loading,
under every backend, with the same predictions, quantizers, optimizer step and callbacks.

The file and what it recorded are in `tests/saved_files/` (written on JAX by
`tests/saved_files/write_files.py`, on the version its manifest names).
"""

import json
import os

import keras
import numpy as np
import pytest

import keras_bilevel.keras3 as kb

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "tests", "saved_files")
MANIFEST = json.load(open(os.path.join(HERE, "manifest.json")))["keras3"]
INPUTS = np.random.default_rng(0).normal(size=(4, 8, 8, 2)).astype(np.float32)


def test_an_earlier_keras_file_loads_and_predicts_the_same():
    model = keras.saving.load_model(os.path.join(HERE, "keras3_model.keras"))
    expected = np.load(os.path.join(HERE, "keras3_predictions.npy"))
    np.testing.assert_allclose(np.asarray(model.predict(INPUTS, verbose=0)), expected,
                               rtol=1e-5, atol=1e-6)
    first, last = model.layers[0], model.layers[-1]
    assert type(first.kernel_quantizer) is kb.AdaSTE
    assert first.kernel_quantizer.variant == "reference"
    assert last.kernel_quantizer.relaxed_forward
    assert type(model.layers[2].input_quantizer) is kb.SteSign
    assert type(first.kernel_constraint) is kb.constraints.WeightClip
    assert isinstance(model.optimizer, kb.optimizers.LatentMomentum)
    assert int(np.asarray(model.optimizer.iterations)) == MANIFEST["optimizer_iterations"]
    mus = [float(np.asarray(q.mu)) for q in (first.kernel_quantizer, last.kernel_quantizer)]
    np.testing.assert_allclose(mus, MANIFEST["mus"])


@pytest.mark.parametrize("config", MANIFEST["callbacks"], ids=lambda c: c["class_name"])
def test_an_earlier_callback_configuration_loads(config):
    callback = keras.saving.deserialize_keras_object(config)
    assert type(callback) is getattr(kb.callbacks, config["class_name"])
    assert keras.saving.serialize_keras_object(callback)["config"] == config["config"]
