"""The explicit padding of a "same" convolution, per spatial axis (as TensorFlow pads).

A "same" convolution with stride s, dilation d and kernel size k gives ceil(n / s)
outputs along an axis of n inputs. It reads (ceil(n / s) - 1) s + (k - 1) d + 1 inputs,
so the axis is padded by the difference from n (never less than 0), half before and the
odd one after. Larq pads so when `pad_values` is not 0, with that value instead of
zeros; `keras_bilevel.keras3.layers` does the same. No framework is imported.

!!! example
    ```python
    same_padding(input_size=5, kernel_size=3, stride=2, dilation=1)  # (1, 1)
    ```
"""

__all__ = ["same_padding"]


def same_padding(input_size, kernel_size, stride, dilation):
    """(before, after): what a "same" convolution pads along one spatial axis."""
    outputs = (input_size + stride - 1) // stride
    read = (outputs - 1) * stride + (kernel_size - 1) * dilation + 1
    total = max(read - input_size, 0)
    return total // 2, total - total // 2
