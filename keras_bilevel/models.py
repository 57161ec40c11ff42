"""Reference binary-weight models built from the public API (Larq layers + AdaSTE).

As in the paper's setup: every weight binary (first and last layer included), ReLU
activations in full precision, BatchNorm without affine parameters by default, and a
final BatchNorm on the logits. The kernel quantizer and initializer are arguments, so
the same builder gives the STE baseline with `kernel_quantizer="ste_sign"`.
"""

import larq
import tensorflow as tf

__all__ = ["binary_mlp"]


def binary_mlp(
    input_shape=(784,),
    hidden_units=1024,
    depth=3,
    classes=10,
    kernel_quantizer="ada_ste",
    kernel_initializer="glorot_uniform",
    kernel_constraint=None,
    batch_norm_affine=False,
    name="binary_mlp",
):
    """The BinaryConnect MLP: `depth` binary hidden layers of `hidden_units`, logits out.

    `kernel_quantizer`, `kernel_initializer` and `kernel_constraint` may be identifiers
    (a fresh object is made for every layer) or zero-argument factories.

    !!! example
        ```python
        model = binary_mlp((64,), hidden_units=256)                 # AdaSTE
        baseline = binary_mlp((64,), kernel_quantizer="ste_sign",
                              kernel_constraint="weight_clip")        # STE
        ```
    """
    if depth < 0 or hidden_units < 1 or classes < 1:
        raise ValueError(
            f"binary_mlp: need depth >= 0, hidden_units >= 1 and classes >= 1, got "
            f"depth={depth!r}, hidden_units={hidden_units!r}, classes={classes!r}."
        )

    inputs = tf.keras.Input(input_shape)
    x = tf.keras.layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
    for index in range(depth + 1):
        last = index == depth
        x = larq.layers.QuantDense(
            classes if last else hidden_units,
            kernel_quantizer=_fresh(kernel_quantizer),
            kernel_initializer=_fresh(kernel_initializer),
            kernel_constraint=_fresh(kernel_constraint),
            use_bias=False,
        )(x)
        x = tf.keras.layers.BatchNormalization(
            center=batch_norm_affine, scale=batch_norm_affine
        )(x)
        if not last:
            x = tf.keras.layers.ReLU()(x)
    return tf.keras.Model(inputs, x, name=name)


def _fresh(spec):
    """A new object per layer from a factory; identifiers are passed through."""
    is_factory = callable(spec) and not isinstance(spec, (type, tf.Module))
    return spec() if is_factory and not hasattr(spec, "get_config") else spec
