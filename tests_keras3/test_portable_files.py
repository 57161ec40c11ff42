"""A `.keras` file saved under this backend loads under every backend, with the same
predictions and the same mu; so does the file of the same model after
`model.quantize("int8")` (int8 kernels, no mu).

Each backend's run saves a model and loads it back under all three backends (the other two
in subprocesses: Keras reads the backend once per process), so the three runs of
`tests/test_keras3_suite_*.py` together test every ordered pair.
"""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_bilevel.keras3 import AdaSTE, layers
from tests_keras3.conftest import BACKEND

# The backends installed here (a .[jax] install has JAX only).
BACKENDS = [b for b in ("jax", "tensorflow", "torch") if importlib.util.find_spec(b)]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Run under another backend (from the repository root): load, predict, report mu.
LOAD = """
import json, sys
import numpy as np
from tests_keras3.test_portable_files import load_here
path, quantized, inputs, out = sys.argv[1:]
predictions, mus = load_here(path, np.load(inputs))
np.save(out, predictions)
np.save(out + ".quantized.npy", load_here(quantized, np.load(inputs))[0])
print("MUS", json.dumps(mus))
"""


def binary_net():
    model = keras.Sequential([
        keras.Input((8, 8, 2)),
        layers.QuantConv2D(6, 3, kernel_quantizer=AdaSTE(mu=0.02, variant="reference"),
                           use_bias=False, padding="same"),
        keras.layers.BatchNormalization(center=False, scale=False),
        keras.layers.Activation("relu"),
        layers.QuantDepthwiseConv2D(3, depthwise_quantizer="ste_sign",
                                    input_quantizer="ste_sign", depth_multiplier=2),
        keras.layers.GlobalAveragePooling2D(),
        layers.QuantDense(4, kernel_quantizer=AdaSTE(relaxed_forward=True),
                          input_quantizer="ste_sign"),
    ])
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) + (w.ndim == 1) * 2.0
                       for w in model.get_weights()])  # moving variances > 0
    mus = [2.5, 7.0]  # values a schedule reached, not the initial ones
    for layer, mu in zip([model.layers[0], model.layers[-1]], mus):
        layer.kernel_quantizer.mu.assign(mu)
    return model, mus


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    keras.utils.set_random_seed(0)
    directory = tmp_path_factory.mktemp(f"portable_{BACKEND}")
    model, mus = binary_net()
    path = str(directory / "model.keras")
    model.save(path)
    inputs = np.random.default_rng(2).normal(size=(5, 8, 8, 2)).astype(np.float32)
    np.save(directory / "inputs.npy", inputs)
    predictions = model.predict(inputs, verbose=0)
    model.quantize("int8")  # every kernel binary, every Dense input -1/+1: exact
    model.save(directory / "quantized.keras")
    return directory, path, predictions, mus


def load_here(path, inputs):
    """Predictions of the model saved at `path`, and the mu of each AdaSTE quantizer."""
    model = keras.models.load_model(path)
    mus = [float(keras.ops.convert_to_numpy(v)) for v in model.non_trainable_variables
           if v.path.endswith("/mu")]
    return model.predict(inputs, verbose=0), mus


def load_elsewhere(target, path, directory):
    out = str(directory / f"predictions_{target}.npy")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(KERAS_BACKEND=target, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", LOAD, path, str(directory / "quantized.keras"),
         str(directory / "inputs.npy"), out],
        capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return (np.load(out), json.loads(result.stdout.split("MUS", 1)[1]),
            np.load(out + ".quantized.npy"))


@pytest.mark.parametrize("target", BACKENDS)
def test_a_saved_file_loads_under_every_backend(saved, target):
    directory, path, predictions, mus = saved
    if target == BACKEND:
        inputs = np.load(directory / "inputs.npy")
        loaded, loaded_mus = load_here(path, inputs)
        quantized = load_here(str(directory / "quantized.keras"), inputs)[0]
    else:
        loaded, loaded_mus, quantized = load_elsewhere(target, path, directory)
    assert loaded_mus == mus  # float32 values that are exact in binary
    scale = np.abs(predictions).max()
    np.testing.assert_allclose(loaded, predictions, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(quantized, predictions, rtol=0, atol=1e-6 * scale)
