"""The Keras 3 quantized layers on the current backend: outputs, arguments, training, mu."""

import io
import contextlib

import keras
import numpy as np
import pytest
from keras import ops

from keras_bilevel.keras3 import AdaSTE, SteSign, constraints, layers
from keras_bilevel.keras3.quantizers import is_binary_variable
from tests import reference
from tests_keras3.conftest import BACKEND, JIT_COMPILE

# (quant layer, Keras base layer, constructor kwargs, input shape, quantizer argument)
LAYERS = [
    (layers.QuantDense, keras.layers.Dense, {"units": 3}, (2, 5), "kernel_quantizer"),
    (layers.QuantConv1D, keras.layers.Conv1D, {"filters": 3, "kernel_size": 2},
     (2, 6, 4), "kernel_quantizer"),
    (layers.QuantConv2D, keras.layers.Conv2D,
     {"filters": 3, "kernel_size": 3, "padding": "same", "strides": 2}, (2, 6, 6, 2),
     "kernel_quantizer"),
    (layers.QuantDepthwiseConv2D, keras.layers.DepthwiseConv2D,
     {"kernel_size": 2, "depth_multiplier": 2}, (2, 5, 5, 3), "depthwise_quantizer"),
]
IDS = [entry[0].__name__ for entry in LAYERS]


def numpy(x):
    return ops.convert_to_numpy(x)


def sign(x):
    return np.where(x >= 0, 1.0, -1.0).astype(np.float32)


def latent_kernel(layer):
    return layer.depthwise_kernel if isinstance(layer, layers.QuantDepthwiseConv2D) else layer.kernel


def random_inputs(shape):
    return np.random.default_rng(0).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("quant_cls,base_cls,kwargs,shape,arg", LAYERS, ids=IDS)
class TestEveryLayer:
    def test_inference_is_the_base_layer_on_binary_weights(self, quant_cls, base_cls,
                                                           kwargs, shape, arg):
        x = random_inputs(shape)
        layer = quant_cls(**kwargs, input_quantizer="ste_sign", **{arg: "ada_ste"},
                          activation="relu", bias_initializer="ones")
        base = base_cls(**kwargs, activation="relu")
        layer(x), base(x)
        base.set_weights([sign(w) for w in [numpy(latent_kernel(layer))]] + [numpy(layer.bias)])
        for training in [False, True]:  # the default AdaSTE forward is the sign in training
            np.testing.assert_allclose(numpy(layer(x, training=training)), numpy(base(sign(x))),
                                       rtol=1e-6, atol=1e-6)

    def test_quantizers_are_objects_and_strings_give_fresh_ones(self, quant_cls, base_cls,
                                                                kwargs, shape, arg):
        first = quant_cls(**kwargs, **{arg: "ada_ste"}, input_quantizer="ste_sign")
        second = quant_cls(**kwargs, **{arg: "ada_ste"})
        assert isinstance(getattr(first, arg), AdaSTE)
        assert getattr(first, arg) is not getattr(second, arg)
        assert isinstance(first.input_quantizer, SteSign) and second.input_quantizer is None

    def test_binary_kernels_are_marked(self, quant_cls, base_cls, kwargs, shape, arg):
        marked = {}
        for quantizer in ["ada_ste", "ste_sign", None]:
            layer = quant_cls(**kwargs, **{arg: quantizer})
            layer.build(shape)
            marked[quantizer] = [is_binary_variable(v) for v in layer.trainable_variables]
        assert marked == {"ada_ste": [True, False], "ste_sign": [True, False],
                          None: [False, False]}

    def test_config_round_trip(self, quant_cls, base_cls, kwargs, shape, arg):
        constraint_arg = arg.replace("quantizer", "constraint")
        layer = quant_cls(**kwargs, **{arg: AdaSTE(mu=0.5, variant="reference"),
                                       constraint_arg: "weight_clip"},
                          input_quantizer=SteSign(clip_value=2.0), use_bias=False,
                          name="binary")
        clone = quant_cls.from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
        assert getattr(clone, arg).variant == "reference"
        assert getattr(clone, arg).initial_mu == 0.5
        assert clone.input_quantizer.clip_value == 2.0
        assert isinstance(getattr(clone, constraint_arg), constraints.WeightClip)
        assert clone.name == "binary" and not clone.use_bias


def test_a_larq_model_ports_by_changing_its_imports():
    # The arguments as a Larq model spells them (larq.layers.QuantConv2D etc.).
    kwargs = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                  kernel_constraint="weight_clip", use_bias=False)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        layers.QuantConv2D(4, (3, 3), kernel_quantizer="ste_sign",
                           kernel_constraint="weight_clip", use_bias=False),
        layers.QuantDepthwiseConv2D((3, 3), padding="same", input_quantizer="ste_sign",
                                    depthwise_quantizer="ste_sign",
                                    depthwise_constraint="weight_clip", use_bias=False),
        keras.layers.BatchNormalization(momentum=0.999, scale=False),
        keras.layers.Flatten(),
        layers.QuantDense(10, **kwargs),
    ])
    assert model.output_shape == (None, 10)


def mlp(quantizer):
    return keras.Sequential([
        keras.Input((6,)),
        layers.QuantDense(5, kernel_quantizer=quantizer, use_bias=False),
        keras.layers.BatchNormalization(center=False, scale=False),
        layers.QuantDense(3, kernel_quantizer=quantizer, input_quantizer="ste_sign"),
    ])


def summary_lines(model):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        model.summary(print_fn=print)
    return [line for line in out.getvalue().splitlines() if "params" in line]


class TestMuIsStateNotParameter:
    def test_parameters_and_summary_equal_the_ste_sign_model(self):
        ada, ste = mlp("ada_ste"), mlp("ste_sign")
        assert ada.count_params() == ste.count_params()
        assert len(ada.weights) == len(ste.weights)
        assert len(ada.non_trainable_weights) == len(ste.non_trainable_weights)
        assert summary_lines(ada) == summary_lines(ste)

    def test_mu_is_in_the_state_compiled_steps_receive(self):
        model = mlp("ada_ste")
        mus = [layer.kernel_quantizer.mu for layer in model.layers[::2]]
        ids = {id(v) for v in model.non_trainable_variables}
        assert all(id(mu) in ids for mu in mus)
        assert not any(id(mu) in {id(w) for w in model.weights} for mu in mus)


# XLA on JAX and TensorFlow; PyTorch's jit_compile (torch.compile) takes ~40 s to compile.
COMPILE = [pytest.param(JIT_COMPILE, id=f"jit_compile={JIT_COMPILE}")]
if BACKEND == "torch":
    COMPILE.append(pytest.param(True, marks=pytest.mark.slow, id="torch.compile"))


def one_weight_model(quantizer, theta, jit_compile):
    """y = q(theta) x for one weight; with x = 1 and target 2, g = dL/dw = 2 (q - 2)."""
    model = keras.Sequential([
        keras.Input((1,)),
        layers.QuantDense(1, use_bias=False, kernel_quantizer=quantizer,
                          kernel_initializer=keras.initializers.Constant(theta)),
    ])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse",
                  jit_compile=jit_compile)
    return model


def expected_step(theta, mu, target=2.0, lr=0.1):
    w = reference.sgn(theta)
    g = 2.0 * (w - target)
    return theta - lr * reference.scale(theta, g, mu) * g


@pytest.mark.parametrize("jit_compile", COMPILE)
@pytest.mark.parametrize("how", ["fit", "train_on_batch"])
def test_a_mu_assignment_reaches_the_next_compiled_step(how, jit_compile):
    quantizer = AdaSTE(mu=0.01)
    model = one_weight_model(quantizer, 0.3, jit_compile)
    x, y = np.ones((1, 1), np.float32), np.full((1, 1), 2.0, np.float32)
    theta = 0.3
    for mu in [0.01, 1.0, 100.0]:
        quantizer.mu.assign(mu)  # what AnnealMu does between epochs
        if how == "fit":
            model.fit(x, y, epochs=1, batch_size=1, verbose=0)
        else:
            model.train_on_batch(x, y)
        theta = expected_step(theta, mu)
        np.testing.assert_allclose(numpy(model.layers[0].kernel)[0, 0], theta, rtol=1e-6)


def test_fit_trains_a_binary_conv_net():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 1)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int32)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        layers.QuantConv2D(8, 3, kernel_quantizer=AdaSTE(relaxed_forward=True),
                           use_bias=False),
        keras.layers.BatchNormalization(center=False, scale=False),
        keras.layers.Activation("relu"),
        layers.QuantDepthwiseConv2D(3, depthwise_quantizer="ada_ste", use_bias=False),
        keras.layers.GlobalAveragePooling2D(),
        layers.QuantDense(2, kernel_quantizer="ada_ste", input_quantizer="ste_sign"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=JIT_COMPILE)
    before = [numpy(v).copy() for v in model.trainable_variables]
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all()
    changed = [not np.array_equal(b, numpy(v)) for b, v in zip(before, model.trainable_variables)]
    assert all(changed), changed


def test_binary_marks_and_quantizers_survive_save_and_load(tmp_path):
    model = mlp("ada_ste")
    model.layers[0].kernel_quantizer.mu.assign(3.0)
    path = str(tmp_path / "mlp.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [is_binary_variable(v) for v in loaded.trainable_variables] == [
        is_binary_variable(v) for v in model.trainable_variables] == [True, True, False]
    quantizer = loaded.layers[0].kernel_quantizer
    assert isinstance(quantizer, AdaSTE) and float(numpy(quantizer.mu)) == 3.0
    assert isinstance(loaded.layers[2].input_quantizer, SteSign)
