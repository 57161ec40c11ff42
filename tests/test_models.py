"""The reference model builders: sizes, binary kernels, training, saving, arguments.

Expected parameter counts are written out layer by layer from the architectures'
definitions, not computed by the code under test.
"""

import re

import larq
import numpy as np
import pytest
import tensorflow as tf

import keras_bilevel  # noqa: F401  (Keras 2 mode before anything touches tf.keras)
from keras_bilevel import AdaSTE, models

BUILDERS = [models.binary_mlp, models.vgg16, models.vgg_small, models.resnet18]
IMAGE_BUILDERS = [models.vgg16, models.vgg_small, models.resnet18]
BINARY_LAYERS = (larq.layers.QuantConv2D, larq.layers.QuantDense)


def _expected(kernels, bn_channels, affine=False):
    """(total, trainable) parameters from per-layer kernel sizes and BatchNorm widths.

    BatchNorm keeps 2 moving statistics per channel (non-trainable), plus a trainable
    scale and offset per channel when affine. AdaSTE's `mu` is state, not a weight.
    """
    bn_trainable = 2 * sum(bn_channels) if affine else 0
    trainable = sum(kernels) + bn_trainable
    total = trainable + 2 * sum(bn_channels)
    return total, trainable


def _default_input_shape(builder):
    return (784,) if builder is models.binary_mlp else (32, 32, 3)


def _binary_layers(model):
    return [layer for layer in model.layers if isinstance(layer, BINARY_LAYERS)]


def _trainable_count(model):
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)


# ---- expected sizes, per layer -------------------------------------------------------

MLP_DEFAULT = _expected(  # 784-1024-1024-1024-10
    kernels=[784 * 1024, 1024 * 1024, 1024 * 1024, 1024 * 10],
    bn_channels=[1024, 1024, 1024, 10],
)
MLP_SMALL_AFFINE = _expected(  # 64-32-32-5, affine BatchNorm
    kernels=[64 * 32, 32 * 32, 32 * 5],
    bn_channels=[32, 32, 5],
    affine=True,
)
VGG16_DEFAULT = _expected(
    kernels=[
        3 * 3 * 3 * 64, 3 * 3 * 64 * 64,
        3 * 3 * 64 * 128, 3 * 3 * 128 * 128,
        3 * 3 * 128 * 256, 3 * 3 * 256 * 256, 3 * 3 * 256 * 256,
        3 * 3 * 256 * 512, 3 * 3 * 512 * 512, 3 * 3 * 512 * 512,
        3 * 3 * 512 * 512, 3 * 3 * 512 * 512, 3 * 3 * 512 * 512,
        1 * 1 * 512 * 10,  # flatten of 1x1x512 -> 10
    ],
    bn_channels=[64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512, 10],
)
VGG16_QUARTER_100 = _expected(  # width=0.25, classes=100
    kernels=[
        3 * 3 * 3 * 16, 3 * 3 * 16 * 16,
        3 * 3 * 16 * 32, 3 * 3 * 32 * 32,
        3 * 3 * 32 * 64, 3 * 3 * 64 * 64, 3 * 3 * 64 * 64,
        3 * 3 * 64 * 128, 3 * 3 * 128 * 128, 3 * 3 * 128 * 128,
        3 * 3 * 128 * 128, 3 * 3 * 128 * 128, 3 * 3 * 128 * 128,
        1 * 1 * 128 * 100,
    ],
    bn_channels=[16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128, 100],
)
VGG_SMALL_DEFAULT = _expected(
    kernels=[
        3 * 3 * 3 * 128, 3 * 3 * 128 * 128,
        3 * 3 * 128 * 256, 3 * 3 * 256 * 256,
        3 * 3 * 256 * 512, 3 * 3 * 512 * 512,
        4 * 4 * 512 * 1024,  # flatten of 4x4x512
        1024 * 1024,
        1024 * 10,
    ],
    bn_channels=[128, 128, 256, 256, 512, 512, 1024, 1024, 10],
)
VGG_SMALL_EIGHTH_GRAY_STE = _expected(  # width=0.125, 16x16x1 input, STE, affine
    kernels=[
        3 * 3 * 1 * 16, 3 * 3 * 16 * 16,
        3 * 3 * 16 * 32, 3 * 3 * 32 * 32,
        3 * 3 * 32 * 64, 3 * 3 * 64 * 64,
        2 * 2 * 64 * 128,  # flatten of 2x2x64 (16 / 2**3 = 2)
        128 * 128,
        128 * 10,
    ],
    bn_channels=[16, 16, 32, 32, 64, 64, 128, 128, 10],
    affine=True,
)
RESNET18_DEFAULT = _expected(
    kernels=[
        3 * 3 * 3 * 64,                                              # stem
        3 * 3 * 64 * 64, 3 * 3 * 64 * 64, 3 * 3 * 64 * 64, 3 * 3 * 64 * 64,  # stage 1
        3 * 3 * 64 * 128, 3 * 3 * 128 * 128, 1 * 1 * 64 * 128,      # stage 2, block 1
        3 * 3 * 128 * 128, 3 * 3 * 128 * 128,                        # stage 2, block 2
        3 * 3 * 128 * 256, 3 * 3 * 256 * 256, 1 * 1 * 128 * 256,    # stage 3, block 1
        3 * 3 * 256 * 256, 3 * 3 * 256 * 256,                        # stage 3, block 2
        3 * 3 * 256 * 512, 3 * 3 * 512 * 512, 1 * 1 * 256 * 512,    # stage 4, block 1
        3 * 3 * 512 * 512, 3 * 3 * 512 * 512,                        # stage 4, block 2
        512 * 10,                                                    # dense
    ],
    bn_channels=[64, 64, 64, 64, 64, 128, 128, 128, 128, 128, 256, 256, 256, 256, 256,
                 512, 512, 512, 512, 512, 10],
)
RESNET18_QUARTER_100_GRAY = _expected(  # width=0.25, classes=100, 28x28x1 input
    kernels=[
        3 * 3 * 1 * 16,
        3 * 3 * 16 * 16, 3 * 3 * 16 * 16, 3 * 3 * 16 * 16, 3 * 3 * 16 * 16,
        3 * 3 * 16 * 32, 3 * 3 * 32 * 32, 1 * 1 * 16 * 32,
        3 * 3 * 32 * 32, 3 * 3 * 32 * 32,
        3 * 3 * 32 * 64, 3 * 3 * 64 * 64, 1 * 1 * 32 * 64,
        3 * 3 * 64 * 64, 3 * 3 * 64 * 64,
        3 * 3 * 64 * 128, 3 * 3 * 128 * 128, 1 * 1 * 64 * 128,
        3 * 3 * 128 * 128, 3 * 3 * 128 * 128,
        128 * 100,
    ],
    bn_channels=[16, 16, 16, 16, 16, 32, 32, 32, 32, 32, 64, 64, 64, 64, 64,
                 128, 128, 128, 128, 128, 100],
)

SIZES = [
    (models.binary_mlp, {}, MLP_DEFAULT),
    (models.binary_mlp, dict(input_shape=(64,), hidden_units=32, depth=2, classes=5,
                             batch_norm_affine=True), MLP_SMALL_AFFINE),
    (models.vgg16, {}, VGG16_DEFAULT),
    (models.vgg16, dict(width=0.25, classes=100), VGG16_QUARTER_100),
    (models.vgg_small, {}, VGG_SMALL_DEFAULT),
    (models.vgg_small, dict(width=0.125, input_shape=(16, 16, 1), batch_norm_affine=True,
                            kernel_quantizer="ste_sign", kernel_constraint="weight_clip"),
     VGG_SMALL_EIGHTH_GRAY_STE),
    (models.resnet18, {}, RESNET18_DEFAULT),
    (models.resnet18, dict(width=0.25, classes=100, input_shape=(28, 28, 1)),
     RESNET18_QUARTER_100_GRAY),
]


def _size_id(case):
    builder, kwargs, _ = case
    return builder.__name__ + ("-default" if not kwargs else "-other")


@pytest.mark.parametrize("builder, kwargs, expected", SIZES, ids=map(_size_id, SIZES))
def test_parameter_counts(builder, kwargs, expected):
    model = builder(**kwargs)
    total, trainable = expected
    assert model.count_params() == total
    assert _trainable_count(model) == trainable


@pytest.mark.parametrize("builder, expected", [
    (models.vgg16, VGG16_DEFAULT),
    (models.vgg_small, VGG_SMALL_DEFAULT),
    (models.resnet18, RESNET18_DEFAULT),
])
def test_docstring_states_the_default_counts(builder, expected):
    total, trainable = expected
    doc = " ".join(builder.__doc__.split())
    assert f"{total:,} parameters, {trainable:,} of them trainable" in doc


# ---- every kernel binary -------------------------------------------------------------

EXPECTED_BINARY_LAYERS = {"binary_mlp": 4, "vgg16": 14, "vgg_small": 9, "resnet18": 21}


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_every_kernel_is_binary(builder):
    model = builder()
    binary = _binary_layers(model)
    assert len(binary) == EXPECTED_BINARY_LAYERS[builder.__name__]
    for layer in model.layers:
        if isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Dense)):
            assert isinstance(layer, BINARY_LAYERS), layer.name
    for layer in binary:
        assert isinstance(layer.kernel_quantizer, AdaSTE), layer.name
        assert layer.kernel_quantizer.precision == 1
        assert layer.input_quantizer is None  # activations stay full precision
        assert layer.use_bias is False


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_ste_baseline_from_the_same_builder(builder):
    model = builder(kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
    binary = _binary_layers(model)
    assert len(binary) == EXPECTED_BINARY_LAYERS[builder.__name__]
    for layer in binary:
        assert isinstance(layer.kernel_quantizer, larq.quantizers.SteSign), layer.name
        assert layer.kernel_quantizer.precision == 1
        assert isinstance(layer.kernel_constraint, larq.constraints.WeightClip)


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
@pytest.mark.parametrize("affine", [False, True])
def test_batch_norm_after_every_binary_layer_and_on_the_logits(builder, affine):
    model = builder(batch_norm_affine=affine)
    for layer in _binary_layers(model):
        consumers = [node.layer for node in layer.outbound_nodes]
        assert len(consumers) == 1, layer.name
        assert isinstance(consumers[0], tf.keras.layers.BatchNormalization), layer.name
    norms = [layer for layer in model.layers
             if isinstance(layer, tf.keras.layers.BatchNormalization)]
    assert len(norms) == EXPECTED_BINARY_LAYERS[builder.__name__]
    assert all(norm.center is affine and norm.scale is affine for norm in norms)
    assert model.layers[-1] is norms[-1] and model.outputs[0] is norms[-1].output


# ---- architecture ---------------------------------------------------------------------


def _layers_of(model, kind):
    return [layer for layer in model.layers if isinstance(layer, kind)]


def test_vgg16_architecture():
    model = models.vgg16()
    convs = _layers_of(model, larq.layers.QuantConv2D)
    assert [conv.filters for conv in convs] == [64, 64, 128, 128, 256, 256, 256,
                                                 512, 512, 512, 512, 512, 512]
    assert all(conv.kernel_size == (3, 3) and conv.strides == (1, 1) for conv in convs)
    assert len(_layers_of(model, tf.keras.layers.MaxPooling2D)) == 5
    assert len(_layers_of(model, tf.keras.layers.ReLU)) == 13
    assert tuple(_layers_of(model, tf.keras.layers.Flatten)[0].input.shape) == (None, 1, 1,
                                                                                 512)
    assert [dense.units for dense in _layers_of(model, larq.layers.QuantDense)] == [10]
    assert tuple(model.output.shape) == (None, 10)


def test_vgg_small_architecture():
    model = models.vgg_small()
    convs = _layers_of(model, larq.layers.QuantConv2D)
    assert [conv.filters for conv in convs] == [128, 128, 256, 256, 512, 512]
    assert all(conv.kernel_size == (3, 3) and conv.strides == (1, 1) for conv in convs)
    assert len(_layers_of(model, tf.keras.layers.MaxPooling2D)) == 3
    assert len(_layers_of(model, tf.keras.layers.ReLU)) == 8
    assert tuple(_layers_of(model, tf.keras.layers.Flatten)[0].input.shape) == (None, 4, 4,
                                                                                 512)
    dense = _layers_of(model, larq.layers.QuantDense)
    assert [layer.units for layer in dense] == [1024, 1024, 10]


def test_resnet18_architecture():
    model = models.resnet18()
    convs = _layers_of(model, larq.layers.QuantConv2D)
    shortcuts = [conv for conv in convs if conv.kernel_size == (1, 1)]
    assert [(conv.filters, conv.strides) for conv in shortcuts] == [
        (128, (2, 2)), (256, (2, 2)), (512, (2, 2))]
    three = [conv for conv in convs if conv.kernel_size == (3, 3)]
    assert [conv.filters for conv in three] == [64] * 5 + [128] * 4 + [256] * 4 + [512] * 4
    strided = [index for index, conv in enumerate(three) if conv.strides == (2, 2)]
    assert strided == [5, 9, 13]  # first conv of stages 2-4; the stem has stride 1
    assert not _layers_of(model, tf.keras.layers.MaxPooling2D)
    assert len(_layers_of(model, tf.keras.layers.Add)) == 8
    assert len(_layers_of(model, tf.keras.layers.ReLU)) == 1 + 8 * 2
    pool = _layers_of(model, tf.keras.layers.GlobalAveragePooling2D)[0]
    assert tuple(pool.input.shape) == (None, 4, 4, 512)


def test_resnet18_shortcuts():
    # Identity where the shape stays (the block input, a ReLU output); else a 1x1 + BN.
    model = models.resnet18(width=0.125)
    sources = [add.input[1]._keras_history.layer
               for add in _layers_of(model, tf.keras.layers.Add)]
    kinds = ["identity" if isinstance(source, tf.keras.layers.ReLU) else "projection"
             for source in sources]
    assert kinds == ["identity", "identity"] + ["projection", "identity"] * 3
    for source, kind in zip(sources, kinds):
        if kind == "projection":
            assert isinstance(source, tf.keras.layers.BatchNormalization)
            conv = source.input._keras_history.layer
            assert conv.kernel_size == (1, 1) and conv.strides == (2, 2)


# ---- fresh objects per layer ----------------------------------------------------------


class _Factory:
    """A zero-argument factory that remembers what it made."""

    def __init__(self, make):
        self.make = make
        self.made = []

    def __call__(self):
        self.made.append(self.make())
        return self.made[-1]


def _small_kwargs(builder):
    if builder is models.binary_mlp:
        return dict(input_shape=(16,), hidden_units=8)
    return dict(width=0.125)


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_factories_are_called_once_per_layer(builder):
    quantizer = _Factory(lambda: AdaSTE(mu=0.05))
    initializer = _Factory(tf.keras.initializers.GlorotNormal)
    constraint = _Factory(lambda: larq.constraints.WeightClip(2.0))
    model = builder(kernel_quantizer=quantizer, kernel_initializer=initializer,
                    kernel_constraint=constraint, **_small_kwargs(builder))
    binary = _binary_layers(model)
    count = EXPECTED_BINARY_LAYERS[builder.__name__]
    assert len(quantizer.made) == len(initializer.made) == len(constraint.made) == count
    # Every layer holds one of the objects made, none shared.
    assert {id(layer.kernel_quantizer) for layer in binary} == {id(q) for q in quantizer.made}
    assert {id(layer.kernel_initializer) for layer in binary} == {
        id(i) for i in initializer.made}
    assert {id(layer.kernel_constraint) for layer in binary} == {
        id(c) for c in constraint.made}
    assert len({id(q) for q in quantizer.made}) == count


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_identifiers_give_distinct_quantizers(builder):
    binary = _binary_layers(builder(**_small_kwargs(builder)))
    quantizers = [layer.kernel_quantizer for layer in binary]
    assert len({id(q) for q in quantizers}) == len(quantizers)
    assert len({id(q.mu) for q in quantizers}) == len(quantizers)


# ---- forward pass and one gradient step -----------------------------------------------


def _batch(input_shape, classes=10):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, *input_shape)).astype("float32")
    return x, np.array([1, classes - 1])


def _compile(model):
    model.compile(optimizer="adam",
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_forward_and_one_step_moves_every_kernel(builder):
    tf.keras.utils.set_random_seed(0)
    model = builder()
    x, y = _batch(_default_input_shape(builder))
    logits = model(x, training=False).numpy()
    assert logits.shape == (2, 10) and np.all(np.isfinite(logits))

    binary = _binary_layers(model)
    before = [layer.kernel.numpy() for layer in binary]
    _compile(model)
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for layer, old in zip(binary, before):
        assert np.any(layer.kernel.numpy() != old), f"no update reached {layer.name}"


# ---- saving ---------------------------------------------------------------------------


def test_vgg_small_keras_round_trip_keeps_predictions(tmp_path):
    tf.keras.utils.set_random_seed(0)
    model = models.vgg_small(width=0.125)
    x, y = _batch((32, 32, 3))
    _compile(model)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)  # moving statistics off their init
    before = model.predict(x, verbose=0)

    path = str(tmp_path / "vgg_small.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path)

    np.testing.assert_array_equal(loaded.predict(x, verbose=0), before)
    assert all(isinstance(layer.kernel_quantizer, AdaSTE) for layer in _binary_layers(loaded))
    assert loaded.count_params() == model.count_params()


# ---- invalid arguments ----------------------------------------------------------------

BAD_ARGUMENTS = [
    (models.vgg16, "input_shape", (16, 16, 3)),     # 5 poolings need >= 32
    (models.vgg_small, "input_shape", (4, 32, 3)),  # 3 poolings need >= 8
    (models.resnet18, "input_shape", (32, 32)),
    (models.resnet18, "input_shape", (32, 32, 0)),
    (models.vgg16, "input_shape", (32.0, 32, 3)),
    (models.vgg16, "input_shape", None),
    (models.vgg16, "classes", 0),
    (models.vgg_small, "classes", 2.5),
    (models.resnet18, "classes", True),
    (models.vgg16, "width", 0),
    (models.vgg_small, "width", -0.5),
    (models.resnet18, "width", float("inf")),
    (models.resnet18, "width", "1"),
    (models.vgg_small, "width", True),
]


@pytest.mark.parametrize("builder, argument, value", BAD_ARGUMENTS,
                         ids=[f"{b.__name__}-{a}-{v!r}" for b, a, v in BAD_ARGUMENTS])
def test_bad_arguments_raise(builder, argument, value):
    pattern = f"{builder.__name__}.*`{argument}`.*{re.escape(repr(value))}"
    with pytest.raises(ValueError, match=pattern):
        builder(**{argument: value})


@pytest.mark.parametrize("builder", IMAGE_BUILDERS, ids=lambda b: b.__name__)
def test_smallest_allowed_input_builds(builder):
    side = {"vgg16": 32, "vgg_small": 8, "resnet18": 1}[builder.__name__]
    model = builder(input_shape=(side, side, 2), width=0.125)
    assert tuple(model.output.shape) == (None, 10)


# ---- the forms for larger inputs ----------------------------------------------------


def _resnet18_weights(stem, classes):
    """The weights (kernels, no biases) of ResNet-18 with a `stem` kernel count, as in
    He et al. (2016), Table 1: every stage's 3x3 convolutions and 1x1 projections."""
    stages = [
        3 * 3 * 64 * 64, 3 * 3 * 64 * 64, 3 * 3 * 64 * 64, 3 * 3 * 64 * 64,
        3 * 3 * 64 * 128, 3 * 3 * 128 * 128, 1 * 1 * 64 * 128, 3 * 3 * 128 * 128,
        3 * 3 * 128 * 128,
        3 * 3 * 128 * 256, 3 * 3 * 256 * 256, 1 * 1 * 128 * 256, 3 * 3 * 256 * 256,
        3 * 3 * 256 * 256,
        3 * 3 * 256 * 512, 3 * 3 * 512 * 512, 1 * 1 * 256 * 512, 3 * 3 * 512 * 512,
        3 * 3 * 512 * 512,
    ]
    return stem + sum(stages) + 512 * classes


# BatchNorm channels of ResNet-18 without the logits' (stem, stages with projections).
RESNET18_BN_CHANNELS = 64 + 4 * 64 + 5 * 128 + 5 * 256 + 5 * 512


def test_imagenet_resnet18_has_torchvisions_weights():
    """torchvision's resnet18 has 11,689,512 parameters (1000 classes): our binary
    weights plus its fc bias and its BatchNorm scales and offsets."""
    weights = _resnet18_weights(7 * 7 * 3 * 64, 1000)
    assert weights + 1000 + 2 * RESNET18_BN_CHANNELS == 11_689_512
    model = models.resnet18(input_shape=(224, 224, 3), classes=1000)
    assert _trainable_count(model) == weights
    assert model.count_params() == weights + 2 * (RESNET18_BN_CHANNELS + 1000)


def test_tiny_imagenet_resnet18_has_the_reference_codes_weights():
    """The public AdaSTE code's TinyImageNet ResNet-18 (a 3x3 stem with stride 2, BN
    without affine parameters) has these weights plus its linear layer's 200 biases."""
    model = models.resnet18(input_shape=(64, 64, 3), classes=200)
    assert _trainable_count(model) == _resnet18_weights(3 * 3 * 3 * 64, 200)


def test_imagenet_vgg16_has_the_originals_weights():
    """VGG-16 (configuration D of Simonyan and Zisserman) has 138,357,544 parameters:
    our binary weights plus 13,416 biases."""
    convs = sum(a * b * 9 for a, b in [
        (3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
        (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)])
    dense = 7 * 7 * 512 * 4096 + 4096 * 4096 + 4096 * 1000
    biases = 2 * 64 + 2 * 128 + 3 * 256 + 6 * 512 + 4096 + 4096 + 1000
    assert convs + dense + biases == 138_357_544
    model = models.vgg16(input_shape=(224, 224, 3), classes=1000)
    assert _trainable_count(model) == convs + dense


@pytest.mark.parametrize("side, form", [(32, "cifar"), (63, "cifar"), (64, "tiny"),
                                        (127, "tiny"), (128, "imagenet"), (224, "imagenet")])
def test_resnet18_picks_its_stem_by_input_size(side, form):
    model = models.resnet18(input_shape=(side, side + 10, 3), width=1 / 16)
    stem = _layers_of(model, larq.layers.QuantConv2D)[0]
    pools = _layers_of(model, tf.keras.layers.MaxPooling2D)
    assert (stem.kernel_size, stem.strides, len(pools)) == {
        "cifar": ((3, 3), (1, 1), 0), "tiny": ((3, 3), (2, 2), 0),
        "imagenet": ((7, 7), (2, 2), 1)}[form]
    forced = models.resnet18(input_shape=(side, side, 3), width=1 / 16, form="cifar")
    assert _layers_of(forced, larq.layers.QuantConv2D)[0].strides == (1, 1)
    pool = _layers_of(model, tf.keras.layers.GlobalAveragePooling2D)[0]
    # "same" padding: each stride-2 step rounds up; 8, 16 or 32 in all.
    assert pool.input.shape[1] == -(-side // {"cifar": 8, "tiny": 16, "imagenet": 32}[form])


@pytest.mark.parametrize("side, hidden", [(32, []), (64, []), (128, [4096, 4096])])
def test_vgg16_picks_its_head_by_input_size(side, hidden):
    model = models.vgg16(input_shape=(side, side, 3), classes=5)
    dense = _layers_of(model, larq.layers.QuantDense)
    assert [layer.units for layer in dense] == hidden + [5]


@pytest.mark.parametrize("builder, form", [(models.resnet18, "huge"),
                                           (models.vgg16, "tiny")])
def test_an_unknown_form(builder, form):
    with pytest.raises(ValueError, match="`form` must be 'auto' or one of"):
        builder(form=form)


@pytest.mark.parametrize("build", [
    lambda: models.vgg_small((32, 32, 3)),
    lambda: models.vgg16((32, 32, 3)),
    lambda: models.resnet18((32, 32, 3)),
    lambda: models.resnet18((64, 64, 3)),
    lambda: models.resnet18((224, 224, 3)),
], ids=["vgg_small", "vgg16", "resnet18-cifar", "resnet18-tiny", "resnet18-imagenet"])
def test_convolutional_models_are_wide_for_adastes_learning_rate(build):
    """`--method adaste` gives the convolutional models (width None) 1e-3, the rate of
    width 640 and up: the median fan-in of their binary layers is at least that."""
    fan_ins = [int(np.prod(layer.kernel.shape[:-1])) for layer in build().layers
               if getattr(layer, "kernel_quantizer", None) is not None]
    assert len(fan_ins) >= 8
    assert np.median(fan_ins) >= 640, sorted(fan_ins)
