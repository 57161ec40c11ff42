r"""The product of a dense layer's inputs and its quantized kernel, fast on every backend.

\\[ y = x\,K, \qquad \frac{\partial L}{\partial x} = g\,K^\top, \qquad
    \frac{\partial L}{\partial K} = x^\top g \\]

`dense_product(x, kernel)` is `keras.ops.matmul(x, kernel)`, with the same values and the
same gradients, on every backend. Where a backend runs one layout of the backward
products slowly, its module in `keras_bilevel.keras3.backends` computes the same product
another way (JAX on CPUs with an older jaxlib: `uses_transposed_backward()`).

!!! example
    ```python
    from keras_bilevel.keras3.dense_product import dense_product
    y = dense_product(x, quantized_kernel)   # x: (..., k), kernel: (k, n)
    ```
"""

from keras_bilevel.keras3.backends import current as _backend

__all__ = ["dense_product", "uses_transposed_backward"]

dense_product = _backend.dense_product
uses_transposed_backward = _backend.uses_transposed_backward
