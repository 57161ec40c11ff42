"""Writes the saved-file fixtures: one small file of each kind a released version writes.

The files in this folder were written by this script on the version named in
`manifest.json`, and are committed as they came out; the tests in
`tests/test_saved_files.py` (Larq front end) and `tests_keras3/test_saved_files.py`
(Keras 3) load them with today's package and compare predictions, quantizer settings,
optimizer state and callback configurations with those recorded here. A file that stops
loading means a registered name or a class moved without an alias.

    TF_USE_LEGACY_KERAS=1 python tests/saved_files/write_files.py larq
    KERAS_BACKEND=jax python tests/saved_files/write_files.py keras3

Do not rerun it to "fix" a failing test: the point is files written by an earlier version.
"""

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
INPUTS = np.random.default_rng(0).normal(size=(4, 8, 8, 2)).astype(np.float32)


def _record(name, predictions, extra):
    np.save(os.path.join(HERE, f"{name}_predictions.npy"), predictions)
    path = os.path.join(HERE, "manifest.json")
    manifest = json.load(open(path)) if os.path.exists(path) else {}
    import keras_bilevel

    manifest[name] = {"version": keras_bilevel.__version__, **extra}
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)


def write_larq():
    import keras_bilevel
    import larq
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input((8, 8, 2)),
        larq.layers.QuantConv2D(
            4, 3, kernel_quantizer=keras_bilevel.AdaSTE(mu=0.05, variant="reference"),
            kernel_initializer=keras_bilevel.initializers.RandomSign(2.0, seed=3),
            use_bias=False, padding="same"),
        tf.keras.layers.BatchNormalization(center=False, scale=False),
        tf.keras.layers.GlobalAveragePooling2D(),
        larq.layers.QuantDense(3, kernel_quantizer="ada_ste", input_quantizer="ste_sign",
                               kernel_initializer="random_sign"),
    ])
    model.layers[0].kernel_quantizer.mu.assign(0.7)
    model.compile(keras_bilevel.optimizers.LatentMomentum(1e-2, momentum=0.5),
                  "sparse_categorical_crossentropy")
    labels = np.array([0, 1, 2, 1])
    model.fit(INPUTS, labels, epochs=2, verbose=0)  # optimizer state worth saving
    model.save(os.path.join(HERE, "larq_model.keras"))
    model.save(os.path.join(HERE, "larq_model.h5"))
    model.save(os.path.join(HERE, "larq_savedmodel"), save_format="tf")
    callbacks = [keras_bilevel.callbacks.AnnealMu(rate=1.1, max_mu=50.0),
                 keras_bilevel.callbacks.AnnealMuToBinary(total_steps=70, reach=0.5),
                 keras_bilevel.callbacks.BinarizationGap(warn_above=0.2),
                 keras_bilevel.callbacks.NonFiniteSteps(),
                 keras_bilevel.callbacks.LinkLossScale()]
    configs = [tf.keras.utils.serialize_keras_object(c) for c in callbacks]
    _record("larq", model.predict(INPUTS, verbose=0), {
        "mus": [float(model.layers[0].kernel_quantizer.mu.numpy()),
                float(model.layers[-1].kernel_quantizer.mu.numpy())],
        "optimizer_iterations": int(model.optimizer.iterations.numpy()),
        "callbacks": configs})


def write_keras3():
    import keras

    import keras_bilevel.keras3 as kb
    from keras_bilevel.keras3.export import BinarySign

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 2)),
        kb.layers.QuantConv2D(
            4, 3, kernel_quantizer=kb.AdaSTE(mu=0.05, variant="reference"),
            kernel_initializer=kb.initializers.RandomSign(2.0, seed=3),
            kernel_constraint=kb.constraints.WeightClip(3.0),
            use_bias=False, padding="same"),
        keras.layers.BatchNormalization(center=False, scale=False),
        kb.layers.QuantDepthwiseConv2D(3, depthwise_quantizer="ste_sign",
                                       input_quantizer=kb.SteSign(clip_value=2.0)),
        BinarySign(),
        keras.layers.GlobalAveragePooling2D(),
        kb.layers.QuantDense(3, kernel_quantizer=kb.AdaSTE(relaxed_forward=True),
                             input_quantizer="ste_sign"),
    ])
    model.layers[0].kernel_quantizer.mu.assign(0.7)
    model.compile(kb.optimizers.LatentMomentum(1e-2, momentum=0.5),
                  "sparse_categorical_crossentropy")
    model.fit(INPUTS, np.array([0, 1, 2, 1]), epochs=2, verbose=0)
    model.save(os.path.join(HERE, "keras3_model.keras"))
    callbacks = [kb.callbacks.AnnealMu(rate=1.1, max_mu=50.0), kb.callbacks.BinarizationGap(warn_above=0.2),
                 kb.callbacks.NonFiniteSteps()]
    configs = [keras.saving.serialize_keras_object(c) for c in callbacks]
    _record("keras3", np.asarray(model.predict(INPUTS, verbose=0)), {
        "backend": keras.backend.backend(),
        "mus": [float(model.layers[0].kernel_quantizer.mu.numpy()),
                float(model.layers[-1].kernel_quantizer.mu.numpy())],
        "optimizer_iterations": int(np.asarray(model.optimizer.iterations)),
        "callbacks": configs})


if __name__ == "__main__":
    {"larq": write_larq, "keras3": write_keras3}[sys.argv[1]]()
