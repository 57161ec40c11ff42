"""End-to-end training of binary networks with AdaSTE + LatentMomentum (Keras 3).

`fit` is compiled where the backend compiles (JAX, TensorFlow); the trained model must
learn, keep its binary forward at inference, and survive a `.keras` round trip with its
mu and optimizer state.
"""

import keras
import numpy as np
import pytest

from keras_bilevel.keras3 import layers
from keras_bilevel.keras3.callbacks import AnnealMu, adaste_quantizers
from keras_bilevel.keras3.optimizers import LatentMomentum
from keras_bilevel.keras3.quantizers import AdaSTE

JIT = keras.backend.backend() in ("jax", "tensorflow")


def _task(n=512, seed=0):
    """Labels from a hidden binary linear rule: a binary network can fit it."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 16)).astype(np.float32)
    w_true = np.where(rng.standard_normal(16) >= 0, 1.0, -1.0)
    return x, (x @ w_true > 0).astype(np.int32)


def _model(relaxed):
    quantizer = lambda: AdaSTE(relaxed_forward=relaxed)  # noqa: E731
    return keras.Sequential([
        keras.Input((16,)),
        layers.QuantDense(32, use_bias=False, kernel_quantizer=quantizer()),
        keras.layers.BatchNormalization(center=False, scale=False),
        keras.layers.ReLU(),
        layers.QuantDense(2, use_bias=False, kernel_quantizer=quantizer()),
        keras.layers.BatchNormalization(),  # affine: trained by the default optimizer
    ])


@pytest.mark.parametrize("relaxed", [False, True])
def test_binary_mlp_learns_and_round_trips(relaxed, tmp_path):
    x, y = _task()
    model = _model(relaxed)
    model.compile(LatentMomentum(0.05, momentum=0.9, gradient_scale=100.0, latent_decay=0.0,
                                 default_optimizer=keras.optimizers.Adam(0.01)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=JIT)
    history = model.fit(x, y, batch_size=64, epochs=8, verbose=0,
                        callbacks=[AnnealMu(1.5)])
    assert history.history["accuracy"][-1] > 0.85
    assert history.history["loss"][-1] < history.history["loss"][0]
    # Inference is the binary network: sign(theta) kernels.
    kernels = [layer.kernel for layer in model.layers if isinstance(layer, layers.QuantDense)]
    h = x @ np.where(keras.ops.convert_to_numpy(kernels[0]) >= 0, 1.0, -1.0)
    bn1, bn2 = model.layers[1], model.layers[4]
    h = np.maximum((h - bn1.moving_mean.numpy()) / np.sqrt(bn1.moving_variance.numpy()
                                                         + bn1.epsilon), 0)
    logits = h @ np.where(keras.ops.convert_to_numpy(kernels[1]) >= 0, 1.0, -1.0)
    gamma, beta, mean, var = bn2.get_weights()
    logits = gamma * (logits - mean) / np.sqrt(var + bn2.epsilon) + beta
    predicted = keras.ops.convert_to_numpy(model.predict(x, verbose=0))
    np.testing.assert_allclose(predicted, logits, rtol=1e-4, atol=1e-4)

    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded.predict(x, verbose=0)),
                               predicted, rtol=1e-6, atol=1e-6)
    assert [float(keras.ops.convert_to_numpy(q.mu)) for q in adaste_quantizers(loaded)] \
        == pytest.approx([0.01 * 1.5**8] * 2, rel=1e-6)
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 64
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))
