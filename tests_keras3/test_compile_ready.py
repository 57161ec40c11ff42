"""`backends.current.compile_ready`: models the compiler can trace whole, values unchanged.

Every builder of `keras_bilevel.keras3.models` returns its model through it. On PyTorch
it stores BatchNorm's reduction axes as a tuple (Keras keeps a tracked list, which
Dynamo cannot pass to `torch.mean`), so that a compiled training step traces the whole
forward pass as one graph: the only break left is `loss.backward()`. Elsewhere it
leaves the model as it is.
"""

import keras
import numpy as np
import pytest

from keras_bilevel.keras3 import models
from keras_bilevel.keras3.backends import current as backend
from tests_keras3.conftest import BACKEND

BUILDERS = {
    "binary_mlp": lambda: models.binary_mlp((784,), hidden_units=64),
    "vgg_small": lambda: models.vgg_small((32, 32, 3), width=0.125),
}


def _batch(model, rows=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, *model.input_shape[1:])).astype(np.float32)
    return x, rng.integers(0, 10, rows).astype(np.int32)


def _batch_norms(model):
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization)]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_builders_return_compile_ready_models_with_unchanged_values(name):
    keras.utils.set_random_seed(0)
    built = BUILDERS[name]()
    plain = keras.models.clone_model(built)  # rebuilt by Keras, not made ready
    plain.set_weights(built.get_weights())
    x, y = _batch(built)
    for training in (False, True):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(built(x, training=training)),
            keras.ops.convert_to_numpy(plain(x, training=training)))
    as_tuples = [isinstance(layer._reduction_axes, tuple) for layer in _batch_norms(built)]
    assert as_tuples and all(t == (BACKEND == "torch") for t in as_tuples)
    assert backend.compile_ready(built) is built


def test_an_unbuilt_model_is_left_as_it_is():
    model = keras.Sequential([keras.layers.Dense(4), keras.layers.BatchNormalization()])
    assert backend.compile_ready(model) is model
    assert _batch_norms(model)[0]._reduction_axes is None


@pytest.mark.skipif(BACKEND != "torch", reason="torch.compile's graph breaks")
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_compiled_step_traces_the_whole_forward_pass_on_torch(name):
    import torch

    model = BUILDERS[name]()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _batch(model)
    model.train_on_batch(x, y)  # builds the optimizer and the metrics
    data = (keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y), None)
    explanation = torch._dynamo.explain(model.train_step)(data)
    reasons = [reason.reason for reason in explanation.break_reasons]
    assert explanation.graph_break_count == 1, reasons
    assert "backward" in reasons[0]
    assert all(type(layer._reduction_axes) is tuple for layer in _batch_norms(model))
