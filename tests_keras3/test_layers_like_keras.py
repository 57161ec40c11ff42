"""The quantized layers behave as the Keras layers they extend, argument by argument.

Each case builds Keras's own layer and ours with the same arguments, gives Keras's the
binary kernel (the sign of ours) and compares the outputs on the same inputs, with and
without an input quantizer; where Keras's layer refuses an argument, ours refuses it
with the same error type. Then what Keras's Dense takes besides arguments: dtype
policies (mixed precision), LoRA, sparse inputs, masks.
"""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from keras_bilevel.keras3 import layers
from tests_keras3.autodiff import gradient
from tests_keras3.conftest import BACKEND


def _sign(x):
    return np.where(x >= 0, 1.0, -1.0).astype(np.float32)


def _conv_cases():
    cases = []
    for padding, data_format, strides, dilation, groups in itertools.product(
            ["valid", "same", "causal"], ["channels_last", "channels_first"], [1, 2],
            [1, 2], [1, 2]):
        if strides > 1 and dilation > 1:
            continue  # Keras refuses both at once
        cases.append((layers.QuantConv1D, keras.layers.Conv1D, (2, 9, 4),
                      dict(filters=4, kernel_size=3, padding=padding,
                           data_format=data_format, strides=strides,
                           dilation_rate=dilation, groups=groups)))
    for padding, data_format, strides, dilation, groups in itertools.product(
            ["valid", "same"], ["channels_last", "channels_first"], [1, 2], [1, 2],
            [1, 2]):
        if strides > 1 and dilation > 1:
            continue
        cases.append((layers.QuantConv2D, keras.layers.Conv2D, (2, 7, 7, 4),
                      dict(filters=4, kernel_size=3, padding=padding,
                           data_format=data_format, strides=strides,
                           dilation_rate=dilation, groups=groups)))
    for padding, data_format, strides, dilation in itertools.product(
            ["valid", "same"], ["channels_last", "channels_first"], [1, 2], [1, 2]):
        if strides > 1 and dilation > 1:
            continue
        cases.append((layers.QuantDepthwiseConv2D, keras.layers.DepthwiseConv2D,
                      (2, 7, 7, 4), dict(kernel_size=3, padding=padding,
                                         data_format=data_format, strides=strides,
                                         dilation_rate=dilation, depth_multiplier=2)))
    return cases


CASES = _conv_cases()


def _case_id(case):
    quant_cls, _, _, kwargs = case
    return quant_cls.__name__ + "-" + "-".join(
        f"{value}" for key, value in kwargs.items() if key not in ("filters", "kernel_size"))


def _inputs(shape, data_format):
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    return np.moveaxis(x, -1, 1) if data_format == "channels_first" else x


# Every case without an input quantizer; with one, the channels-last cases without
# dilation or groups (the input quantizer acts before any of them).
QUANTIZED_INPUT_CASES = [case for case in CASES if case[3]["data_format"] == "channels_last"
                         and case[3].get("dilation_rate") == 1 and case[3].get("groups", 1) == 1]
PARAMETERS = ([(case, None) for case in CASES]
              + [(case, "ste_sign") for case in QUANTIZED_INPUT_CASES])


@pytest.mark.parametrize("case,input_quantizer", PARAMETERS,
                         ids=[f"{_case_id(case)}-{quantizer}" for case, quantizer in PARAMETERS])
def test_outputs_equal_the_keras_layer_on_the_binary_kernel(case, input_quantizer):
    quant_cls, base_cls, shape, kwargs = case
    quantizer_arg = ("depthwise_quantizer" if quant_cls is layers.QuantDepthwiseConv2D
                     else "kernel_quantizer")
    x = _inputs(shape, kwargs["data_format"])
    base = base_cls(**kwargs, bias_initializer="ones")
    try:
        expected_inputs = x if input_quantizer is None else _sign(x)
        base(expected_inputs)  # builds it
    except Exception as refused:  # Keras refuses this combination on this backend
        ours = quant_cls(**kwargs, **{quantizer_arg: "ste_sign"},
                         input_quantizer=input_quantizer)
        with pytest.raises(type(refused)):
            ours(x)
        return
    ours = quant_cls(**kwargs, **{quantizer_arg: "ste_sign"}, input_quantizer=input_quantizer,
                     bias_initializer="ones")
    ours(x)
    latent = [ops.convert_to_numpy(w) for w in ours.weights]
    base.set_weights([_sign(latent[0])] + latent[1:])
    expected = ops.convert_to_numpy(base(expected_inputs))
    for training in (False, True):
        got = ops.convert_to_numpy(ours(x, training=training))
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("quant_cls,base_cls,kwargs,shape", [
    (layers.QuantDense, keras.layers.Dense, {"units": 4}, (3, 5)),
    (layers.QuantConv2D, keras.layers.Conv2D, {"filters": 4, "kernel_size": 3}, (2, 6, 6, 3)),
], ids=["QuantDense", "QuantConv2D"])
def test_dtype_policies_give_keras_dtypes_and_values(policy, quant_cls, base_cls, kwargs,
                                                     shape):
    x = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    ours = quant_cls(**kwargs, kernel_quantizer="ste_sign", dtype=policy)
    base = base_cls(**kwargs, dtype=policy)
    ours(x), base(x)
    latent = [ops.convert_to_numpy(w) for w in ours.weights]
    assert [w.dtype for w in latent] == [np.float32, np.float32]  # variables stay float32
    base.set_weights([_sign(latent[0])] + latent[1:])
    got, expected = ours(x), base(x)
    assert ops.dtype(got) == ops.dtype(expected) == keras.DTypePolicy(policy).compute_dtype
    np.testing.assert_array_equal(ops.convert_to_numpy(ops.cast(got, "float32")),
                                  ops.convert_to_numpy(ops.cast(expected, "float32")))


@pytest.mark.parametrize("quant_cls,base_cls,kwargs,shape", [
    (layers.QuantDense, keras.layers.Dense, {"units": 5}, (3, 6)),
    (layers.QuantConv2D, keras.layers.Conv2D, {"filters": 5, "kernel_size": 3}, (2, 6, 6, 3)),
], ids=["QuantDense", "QuantConv2D"])
def test_lora_adapts_the_latent_kernel_that_is_binarized(quant_cls, base_cls, kwargs, shape):
    """With LoRA, Keras's layer uses W + (alpha / rank) A B as its kernel; ours binarizes
    that kernel, so the served layer stays binary while only A and B train."""
    x = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    ours = quant_cls(**kwargs, kernel_quantizer="ste_sign", use_bias=False)
    ours(x)
    ours.enable_lora(2)
    rng = np.random.default_rng(4)
    for lora in (ours.lora_kernel_a, ours.lora_kernel_b):
        lora.assign(rng.normal(size=lora.shape).astype(np.float32))
    assert [v.path.split("/")[-1] for v in ours.trainable_variables] == [
        "lora_kernel_a", "lora_kernel_b"]
    merged = (ops.convert_to_numpy(ours._kernel) + ours.lora_alpha / ours.lora_rank
              * ops.convert_to_numpy(ours.lora_kernel_a) @ ops.convert_to_numpy(
                  ours.lora_kernel_b))
    base = base_cls(**kwargs, use_bias=False)
    base(x)
    base.set_weights([_sign(merged)])
    np.testing.assert_allclose(ops.convert_to_numpy(ours(x)), ops.convert_to_numpy(base(x)),
                               rtol=1e-5, atol=1e-5)


def _sparse(x):
    if BACKEND == "jax":
        from jax.experimental import sparse
        return sparse.BCOO.fromdense(x)
    import tensorflow as tf
    return tf.sparse.from_dense(x)


@pytest.mark.skipif(BACKEND == "torch", reason="Keras's Dense takes no sparse input on torch")
def test_sparse_inputs_give_the_dense_inputs_values_and_gradients():
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(4, 6)) * (rng.random((4, 6)) > 0.6)).astype(np.float32)
    ours = layers.QuantDense(3, kernel_quantizer="ada_ste")
    ours(x)
    np.testing.assert_allclose(ops.convert_to_numpy(ours(_sparse(x))),
                               ops.convert_to_numpy(ours(x)), rtol=1e-6, atol=1e-6)
    bias = ours.bias.value
    state = [v.value for v in ours.non_trainable_variables]  # AdaSTE's mu

    def loss(inputs):
        return lambda kernel: ops.sum(
            ours.stateless_call([kernel, bias], state, inputs, training=True)[0] ** 2)

    kernel = ops.convert_to_numpy(ours.kernel)
    np.testing.assert_allclose(gradient(loss(_sparse(x)), kernel), gradient(loss(x), kernel),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="ragged tensors are TensorFlow's")
def test_ragged_inputs_are_refused_as_by_dense():
    import tensorflow as tf

    ragged = tf.ragged.constant([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0]]], ragged_rank=1)
    with pytest.raises(Exception) as refused:
        keras.layers.Dense(3)(ragged)
    with pytest.raises(type(refused.value)):
        layers.QuantDense(3, kernel_quantizer="ste_sign")(ragged)


def test_masks_pass_through_as_through_dense():
    inputs = keras.Input((4, 5))
    masked = keras.layers.Masking()(inputs)
    ours = keras.Model(inputs, layers.QuantDense(3, kernel_quantizer="ste_sign")(masked))
    base = keras.Model(inputs, keras.layers.Dense(3)(masked))
    x = np.ones((2, 4, 5), np.float32)
    x[:, 2] = 0.0  # a masked time step
    assert ops.convert_to_numpy(ours(x)).shape == ops.convert_to_numpy(base(x)).shape
    assert layers.QuantDense(3).supports_masking == keras.layers.Dense(3).supports_masking
