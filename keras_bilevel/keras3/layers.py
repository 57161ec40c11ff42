"""Quantized layers for Keras 3 (every backend), with Larq's argument names.

`QuantDense`, `QuantConv1D`, `QuantConv2D`, `QuantConv3D`, `QuantDepthwiseConv2D`,
`QuantConv2DTranspose` and `QuantConv3DTranspose` are the Keras 3 layers of the same base
name plus Larq's quantizer arguments: `kernel_quantizer` (or `depthwise_quantizer`)
applied to the latent kernel, and `input_quantizer` applied to the inputs (for fully
binary layers); the convolutions also take Larq's `pad_values`. Every argument of the Keras 3 base layer works as
there, and `kernel_constraint` also takes `"weight_clip"`, so a Larq model ports by
changing its imports. This module only plumbs: the quantizers live in
`keras_bilevel.keras3.quantizers`. It imports neither TensorFlow nor Larq.

!!! example
    ```python
    from keras_bilevel.keras3 import layers
    model = keras.Sequential([
        keras.Input((784,)),
        layers.QuantDense(256, kernel_quantizer="ada_ste", use_bias=False),
        keras.layers.BatchNormalization(center=False, scale=False),
        keras.layers.Activation("relu"),
        layers.QuantDense(10, kernel_quantizer="ada_ste", input_quantizer="ste_sign"),
    ])
    ```
"""

import keras
from keras import ops

from keras_bilevel.core.conv_padding import same_padding
from keras_bilevel.keras3 import constraints, quantizers
from keras_bilevel.keras3.backends import current as backend
from keras_bilevel.keras3.dense_product import dense_product
from keras_bilevel.keras3.keras_quantization import ConvQuantization, KerasQuantization

__all__ = ["QuantDense", "QuantConv1D", "QuantConv2D", "QuantConv3D", "QuantDepthwiseConv2D",
           "QuantConv2DTranspose", "QuantConv3DTranspose"]


def _apply(quantizer, x, training):
    if quantizer is None:
        return x
    if isinstance(quantizer, keras.layers.Layer):
        return quantizer(x, training=training)
    return quantizer(x)


class _Quantized(KerasQuantization):
    """Larq's quantizer arguments on top of a Keras 3 layer (a mixin placed first).

    Subclasses name the quantizer argument (`_quantizer_arg`), the constraint argument
    that also takes `"weight_clip"` (`_constraint_arg`) and the attribute holding the
    latent kernel variable (`_kernel_attr`), and compute their outputs from
    `_quantized_inputs` and `_quantized_kernel`. Keras's `quantize` works on them as
    `keras_bilevel.keras3.keras_quantization` describes.
    """

    _quantizer_arg = "kernel_quantizer"
    _constraint_arg = "kernel_constraint"

    def __init__(self, *args, input_quantizer=None, **kwargs):
        quantizer = kwargs.pop(self._quantizer_arg, None)
        if self._constraint_arg in kwargs:
            kwargs[self._constraint_arg] = constraints.get(kwargs[self._constraint_arg])
        super().__init__(*args, **kwargs)
        # Strings resolve to fresh quantizer objects; set after Layer.__init__ so that
        # Keras tracks them (AdaSTE's mu is saved with the layer).
        self.input_quantizer = quantizers.get(input_quantizer)
        setattr(self, self._quantizer_arg, quantizers.get(quantizer))
        self._refuse_quantized_policy()

    def build(self, input_shape):
        self._refuse_quantized_policy()
        super().build(input_shape)
        if self.quantization_mode is None:
            quantizers.mark_binary(self._latent_kernel, getattr(self, self._quantizer_arg))
        else:  # a served layer (a quantized file being loaded): no latent kernel
            self._build_quantized_kernel()

    @property
    def _latent_kernel(self):
        return getattr(self, self._kernel_attr)

    def _quantized_inputs(self, inputs, training):
        return _apply(self.input_quantizer, inputs, training)

    def _quantized_kernel(self, kernel, training):
        # In the layer's compute dtype, as Keras's own layers use their kernels (under a
        # mixed policy TensorFlow's quantizer sees the float32 variable).
        kernel = _apply(getattr(self, self._quantizer_arg), kernel, training)
        return ops.cast(kernel, self.compute_dtype)

    def _bias_and_activation(self, outputs):
        if getattr(self, "bias", None) is not None:
            shape = [1] * len(outputs.shape)
            shape[1 if getattr(self, "data_format", None) == "channels_first" else -1] = -1
            outputs = ops.add(outputs, ops.reshape(self.bias, shape))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "input_quantizer": quantizers.serialize(self.input_quantizer),
            self._quantizer_arg: quantizers.serialize(getattr(self, self._quantizer_arg)),
        }


@keras.saving.register_keras_serializable(package="keras_bilevel")
class QuantDense(_Quantized, keras.layers.Dense):
    """`keras.layers.Dense` with a quantized kernel and optionally quantized inputs.

    \\( y = \\mathrm{activation}(q_{in}(x)\\, q_k(\\theta) + b) \\)

    # Arguments
        units: as in `keras.layers.Dense` (and every other Dense argument).
        input_quantizer: applied to the inputs: None, `"ste_sign"`, `"ada_ste"`, an
            object or a callable.
        kernel_quantizer: applied to the latent kernel, likewise.
        kernel_constraint: any Keras constraint, or `"weight_clip"`.
    """

    def call(self, inputs, training=None):
        kernel = self._quantized_kernel(self.kernel, training)
        outputs = dense_product(self._quantized_inputs(inputs, training), kernel)
        return self._bias_and_activation(outputs)

    def _quantize_float_kernel(self, mode, config):
        # No kernel quantizer: a float Dense, quantized as Keras quantizes Dense.
        return keras.layers.Dense.quantize(self, mode, type_check=False, config=config)


class _PadValues:
    """Larq's `pad_values`: a "same" convolution padded with this value, not zeros (a
    mixin placed before the Keras convolution)."""

    def __init__(self, *args, pad_values=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.pad_values = float(pad_values)
        if self.padding == "causal" and self.pad_values != 0.0:
            raise ValueError(
                f"{type(self).__name__}: causal padding pads with zeros; pad_values="
                f"{self.pad_values} needs padding='same' (as in Larq).")

    def _padded_with_values(self, inputs):
        """The inputs padded as "same" pads them, with `pad_values` (then convolve
        "valid"), or None where the padding is Keras's own."""
        if self.padding != "same" or self.pad_values == 0.0:
            return None
        first = 1 if self.data_format == "channels_last" else 2
        sizes = tuple(inputs.shape[first:first + len(self.kernel_size)])
        if None in sizes:
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: pad_values={self.pad_values} needs "
                f"the input's spatial size, got {tuple(inputs.shape)}. Fix: give "
                "keras.Input a fixed shape.")
        padding = [same_padding(size, k, s, d) for size, k, s, d in zip(
            sizes, self.kernel_size, self.strides, self.dilation_rate)]
        padding = ([(0, 0), *padding, (0, 0)] if first == 1
                   else [(0, 0), (0, 0), *padding])
        return ops.pad(inputs, padding, constant_values=self.pad_values)

    def get_config(self):
        return {**super().get_config(), "pad_values": self.pad_values}


class _Convolution(ConvQuantization, _Quantized):
    """A quantized convolution: the subclass computes `_convolve(inputs, kernel)`."""

    def call(self, inputs, training=None):
        kernel = self._quantized_kernel(self.kernel, training)
        inputs = self._quantized_inputs(inputs, training)
        return self._bias_and_activation(self._convolve(inputs, kernel))


class _QuantConv(_Convolution, _PadValues):
    def _convolve(self, inputs, kernel):
        padded = self._padded_with_values(inputs)
        if padded is not None:
            return ops.conv(padded, kernel, strides=list(self.strides), padding="valid",
                            dilation_rate=self.dilation_rate, data_format=self.data_format)
        if self.padding == "causal":
            # As Keras's Conv1D: zeros on the left (after the input quantizer), then a
            # "valid" convolution, so that output t sees inputs up to t only.
            return ops.conv(ops.pad(inputs, self._compute_causal_padding()), kernel,
                            strides=list(self.strides), padding="valid",
                            dilation_rate=self.dilation_rate,
                            data_format=self.data_format)
        return backend.convolution(self, inputs, kernel)


@keras.saving.register_keras_serializable(package="keras_bilevel")
class QuantConv1D(_QuantConv, keras.layers.Conv1D):
    """`keras.layers.Conv1D` with a quantized kernel and optionally quantized inputs.

    # Arguments
        filters, kernel_size: as in `keras.layers.Conv1D` (and every other argument).
        input_quantizer, kernel_quantizer, kernel_constraint, pad_values: as in
            `QuantConv2D`.
    """


@keras.saving.register_keras_serializable(package="keras_bilevel")
class QuantConv2D(_QuantConv, keras.layers.Conv2D):
    """`keras.layers.Conv2D` with a quantized kernel and optionally quantized inputs.

    # Arguments
        filters, kernel_size: as in `keras.layers.Conv2D` (and every other argument).
        input_quantizer, kernel_quantizer, kernel_constraint: as in `QuantDense`.
        pad_values: the value "same" padding pads with (0: Keras's own padding).
    """


@keras.saving.register_keras_serializable(package="keras_bilevel")
class QuantConv3D(_QuantConv, keras.layers.Conv3D):
    """`keras.layers.Conv3D` with a quantized kernel and optionally quantized inputs.

    # Arguments
        filters, kernel_size: as in `keras.layers.Conv3D` (and every other argument).
        input_quantizer, kernel_quantizer, kernel_constraint, pad_values: as in
            `QuantConv2D`.
    """


@keras.saving.register_keras_serializable(package="keras_bilevel")
class QuantDepthwiseConv2D(_Convolution, _PadValues, keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` with a quantized depthwise kernel.

    As in Larq, the kernel's quantizer is `depthwise_quantizer` and its constraint
    `depthwise_constraint`; the latent kernel is `depthwise_kernel` (Keras 3 calls it
    `kernel`).

    # Arguments
        kernel_size: as in `keras.layers.DepthwiseConv2D` (and every other argument).
        input_quantizer: applied to the inputs, as in `QuantDense`.
        depthwise_quantizer: applied to the latent depthwise kernel.
        depthwise_constraint: any Keras constraint, or `"weight_clip"`.
        pad_values: as in `QuantConv2D`.
    """

    _quantizer_arg = "depthwise_quantizer"
    _constraint_arg = "depthwise_constraint"
    _kernel_attr = "kernel"
    _output_axes = 2

    @property
    def depthwise_kernel(self):
        """The latent depthwise kernel (the variable Keras 3 names `kernel`)."""
        return self.kernel

    def _convolve(self, inputs, kernel):
        padded = self._padded_with_values(inputs)
        return ops.depthwise_conv(
            inputs if padded is None else padded,
            kernel,
            strides=self.strides,
            padding=self.padding if padded is None else "valid",
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )


class _QuantConvTranspose(_Convolution):
    _kernel_attr = "kernel"
    _output_axes = 2  # the kernel is (..., filters, input channels)

    def _convolve(self, inputs, kernel):
        return ops.conv_transpose(
            inputs, kernel, strides=list(self.strides), padding=self.padding,
            output_padding=self.output_padding, dilation_rate=self.dilation_rate,
            data_format=self.data_format)


@keras.saving.register_keras_serializable(package="keras_bilevel")
class QuantConv2DTranspose(_QuantConvTranspose, keras.layers.Conv2DTranspose):
    """`keras.layers.Conv2DTranspose` with a quantized kernel and optionally quantized
    inputs.

    # Arguments
        filters, kernel_size: as in `keras.layers.Conv2DTranspose` (and every other
            argument).
        input_quantizer, kernel_quantizer, kernel_constraint: as in `QuantDense`.
    """


@keras.saving.register_keras_serializable(package="keras_bilevel")
class QuantConv3DTranspose(_QuantConvTranspose, keras.layers.Conv3DTranspose):
    """`keras.layers.Conv3DTranspose` with a quantized kernel and optionally quantized
    inputs.

    # Arguments
        filters, kernel_size: as in `keras.layers.Conv3DTranspose` (and every other
            argument).
        input_quantizer, kernel_quantizer, kernel_constraint: as in `QuantDense`.
    """
