"""Keras's own quantization (`layer.quantize`, `model.quantize`) on the binary layers.

A trained binary layer computes with the kernel \\( q(\\theta) = \\mathrm{sgn}(\\theta) \\in
\\{-1, +1\\} \\). Keras 3 stores a quantized kernel as integers \\( k \\) with a float scale
\\( s \\) per output channel and computes with \\( k / s \\): \\( k = q(\\theta) \\) with
\\( s = 1 \\) holds the binary kernel exactly, in one byte (`"int8"`) or half a byte
(`"int4"`, two values packed per byte) instead of four. So quantizing a trained binary
layer loses nothing in its weights:

- `QuantDense` becomes Keras's own quantized `Dense`: Keras's variables (`_kernel`,
  `kernel_scale`), file layout and quantized call. In `"int8"` mode Keras's call also
  rounds the layer's inputs to int8 (an absmax scale per row): the only difference from
  the model before quantizing, and none at all for inputs that are already -1/+1 (an
  `input_quantizer`). `"int4"` is weight-only in Keras, hence exact.
- The convolutions (Keras 3 quantizes none) go as far: the same variables, a unit scale
  per output channel, and a convolution in the compute dtype on the stored kernel, so
  their outputs are exactly those before quantizing.

After `quantize`, the layer has no latent kernel, so it has no kernel quantizer either
(`kernel_quantizer` is None in its config); its `input_quantizer` still runs first. A
merged LoRA update is binarized with the kernel, and the LoRA weights go. Other modes
(`"float8"`, `"gptq"`, `"awq"`) fit float kernels, not -1/+1 ones, and are refused in one
line; so is a quantized dtype policy on a layer that has a kernel quantizer (it would
skip the quantizer). A layer without a kernel quantizer is a float layer and is
quantized as Keras quantizes its base layer (a float convolution is skipped, as Keras
skips its own).

!!! example
    ```python
    model.fit(...)              # a binary network of keras_bilevel.keras3.layers
    model.quantize("int8")      # every binary kernel now int8, -1/+1, unit scale
    model.save("served.keras")  # about a quarter of the float file
    ```
"""

import keras
import numpy as np
from keras import ops

__all__ = ["SERVING_MODES", "KerasQuantization", "ConvQuantization"]

SERVING_MODES = ("int8", "int4")
"""The Keras quantization modes that store a -1/+1 kernel exactly."""


def _name(quantizer):
    """How an error names a quantizer: its class (a layer) or the callable itself."""
    if isinstance(quantizer, keras.layers.Layer):
        return type(quantizer).__name__
    return getattr(quantizer, "__name__", repr(quantizer))


def _int4_columns(width):
    """The packed length of a last axis of `width` int4 values (two per byte)."""
    return (width + 1) // 2


class KerasQuantization:
    """Keras quantization for a quantized layer (a mixin placed before the Keras layer).

    The layer names its quantizer argument (`_quantizer_arg`), the attribute holding its
    kernel variable (`_kernel_attr`) and computes `_quantized_kernel` and
    `_quantized_inputs`, as `keras_bilevel.keras3.layers` does.
    """

    _kernel_attr = "_kernel"

    def _refuse_quantized_policy(self):
        """A quantized dtype policy would run Keras's quantized path around the quantizer."""
        mode = self.quantization_mode
        quantizer = getattr(self, self._quantizer_arg, None)
        if mode is not None and quantizer is not None:
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: dtype policy "
                f"{self.dtype_policy.name!r} runs Keras's {mode} path, which would skip "
                f"{self._quantizer_arg}={_name(quantizer)}. Fix: build and train the layer with a "
                f"float policy, then call `quantize({mode!r})` to store its kernel in {mode}."
            )

    def _build_quantized_kernel(self):
        """After the base layer's build under a quantized policy: nothing to add (Keras's
        quantized Dense builds its own variables)."""

    def served_kernel(self):
        """The kernel a quantized layer computes with, `k / s`, in the compute dtype."""
        return ops.divide(ops.cast(self.kernel, self.compute_dtype),
                          ops.cast(self.kernel_scale, self.compute_dtype))

    def _flatten_layers(self, include_self=True, recursive=True):
        # The quantizers are part of this layer's arithmetic, not layers to quantize on
        # their own; leaving them out makes `Model.quantize` (which quantizes layers
        # without sublayers only) reach this layer.
        own = {id(getattr(self, name, None))
               for name in ("input_quantizer", self._quantizer_arg)}
        return [layer for layer in super()._flatten_layers(include_self, recursive)
                if id(layer) not in own]

    def quantize(self, mode=None, type_check=True, config=None):
        """Store the binary kernel in `mode` (`"int8"` or `"int4"`), exactly.

        `type_check` is accepted for Keras's signature: these layers are meant to be
        quantized. An int4 `config`'s `block_size` does not apply (one unit scale per
        output channel is exact); its activation quantizer does, on Dense. Raises
        ValueError for another mode or a kernel quantizer whose inference values are
        not -1/+1.
        """
        quantizer = getattr(self, self._quantizer_arg)
        if quantizer is None:
            return self._quantize_float_kernel(mode, config)
        if mode not in SERVING_MODES:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} has a binary kernel "
                f"({self._quantizer_arg}={_name(quantizer)}); quantization mode {mode!r} is "
                f"meant for float kernels. Fix: use one of {SERVING_MODES}, which store "
                "its -1/+1 kernel exactly."
            )
        if mode == "int4":
            # Per channel whatever the block size asked for (Keras's default is 128):
            # a -1/+1 kernel needs one unit scale per channel, no group scales or zeros.
            config = keras.quantizers.Int4QuantizationConfig(
                activation_quantizer=getattr(config, "activation_quantizer", None),
                block_size=-1)
        values = self._binary_kernel_values(quantizer)
        self._drop_training_state()
        delattr(self, self._kernel_attr)
        self.quantization_config = config
        self.quantized_build(values.shape, mode, config)
        if mode == "int4":
            values = keras.quantizers.pack_int4(values, axis=-1)[0]
        getattr(self, self._kernel_attr).assign(values)
        self.kernel_scale.assign(ops.ones(self.kernel_scale.shape))
        policy = "int4/-1" if mode == "int4" else mode
        self.dtype_policy = f"{policy}_from_{self.dtype_policy.name}"

    def _binary_kernel_values(self, quantizer):
        """The kernel at inference, `q(theta)`, as int8 -1/+1 (LoRA merged, if enabled)."""
        kernel = ops.convert_to_numpy(self._quantized_kernel(self.kernel, training=False))
        kernel = kernel.astype(np.float32)
        if not np.all(np.abs(kernel) == 1.0):
            other = kernel[np.abs(kernel) != 1.0].flat[0]
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: {self._quantizer_arg}={_name(quantizer)} "
                f"gives values other than -1 and +1 at inference (for example {other}), so "
                "the kernel is not binary and cannot be stored exactly with a unit scale."
            )
        return kernel.astype(np.int8)

    def _drop_training_state(self):
        """Remove what only training uses: the kernel quantizer and the LoRA weights."""
        if getattr(self, "lora_enabled", False):
            del self.lora_kernel_a
            del self.lora_kernel_b
            self.lora_enabled = False
            self.lora_rank = None
            self.lora_alpha = None
        quantizer = getattr(self, self._quantizer_arg)
        for variable in quantizer.variables:  # AdaSTE's mu, tracked by this layer too
            self._post_untrack_variable(variable)
        setattr(self, self._quantizer_arg, None)
        self._layers[:] = [layer for layer in self._layers if layer is not quantizer]

    def quantized_call(self, inputs, training=None, **kwargs):
        # The input quantizer runs before Keras's quantized call, as before `call`.
        inputs = self._quantized_inputs(inputs, training)
        return super().quantized_call(inputs, training=training, **kwargs)


class ConvQuantization(KerasQuantization):
    """`"int8"` and `"int4"` for convolutions: the stored kernel, unit scales, a float
    convolution (mixin placed before `KerasQuantization`'s layer base).

    The layer computes its outputs from inputs and a kernel with `_convolve`, and names
    how many trailing kernel axes are output channels (`_output_axes`: 1 for a
    convolution, 2 for a depthwise one).
    """

    _output_axes = 1

    def _quantize_float_kernel(self, mode, config):
        raise NotImplementedError(
            f"{type(self).__name__} {self.name!r} has no kernel quantizer: Keras 3 "
            f"quantizes no float convolution kernel in mode {mode!r}, so it stays float."
        )

    def quantized_build(self, kernel_shape, mode, config=None):
        kernel_shape = tuple(kernel_shape)
        if mode == "int4":
            stored = kernel_shape[:-1] + (_int4_columns(kernel_shape[-1]),)
        elif mode == "int8":
            stored = kernel_shape
        else:
            raise self._quantization_mode_error(mode)
        setattr(self, self._kernel_attr, self.add_weight(
            name="kernel", shape=stored, initializer="zeros", dtype="int8",
            trainable=False))
        self.kernel_scale = self.add_weight(
            name="kernel_scale", shape=kernel_shape[-self._output_axes:],
            initializer="ones", trainable=False)
        self._kernel_width = kernel_shape[-1]
        self._is_quantized = True

    def _build_quantized_kernel(self):
        """After the base layer's build under a quantized policy (a loaded file): swap
        its float kernel for the quantized variables."""
        kernel_shape = tuple(getattr(self, self._kernel_attr).shape)
        delattr(self, self._kernel_attr)
        self.quantized_build(kernel_shape, self.quantization_mode)

    def served_kernel(self):
        kernel = getattr(self, self._kernel_attr)
        if self.quantization_mode == "int4":
            kernel = keras.quantizers.unpack_int4(kernel, self._kernel_width, axis=-1)
        return ops.divide(ops.cast(kernel, self.compute_dtype),
                          ops.cast(self.kernel_scale, self.compute_dtype))

    def _int8_call(self, inputs, training=None):
        return self._bias_and_activation(self._convolve(inputs, self.served_kernel()))

    _int4_call = _int8_call

    def _served_variables(self):
        bias = [self.bias] if self.bias is not None else []
        return [getattr(self, self._kernel_attr), *bias, self.kernel_scale]

    def save_own_variables(self, store):
        if not self.quantization_mode:
            return super().save_own_variables(store)
        for index, variable in enumerate(self._served_variables()):
            store[str(index)] = variable

    def load_own_variables(self, store):
        if not self.quantization_mode:
            return super().load_own_variables(store)
        variables = self._served_variables()
        if len(store.keys()) != len(variables):
            raise ValueError(
                f"{type(self).__name__} {self.name!r} ({self.quantization_mode}) expects "
                f"{len(variables)} variables, the file holds {len(store.keys())}: "
                f"{[variable.name for variable in variables]}."
            )
        for index, variable in enumerate(variables):
            variable.assign(store[str(index)])
