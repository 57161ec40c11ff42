"""`backends.current.convolution`: a QuantConv2D's product and its gradients, against NumPy.

On JAX on a CPU, a convolution whose kernel is larger than its input runs as patches and
one matrix product (XLA's CPU convolution is slow there); everywhere else it is Keras'
own. Either way the values and both gradients are those of the convolution, written
here in NumPy: with "same" padding p = k // 2,

    y[n, i, j, f] = sum_{a, b, c} xpad[n, i + a, j + b, c] K[a, b, c, f].
"""

import numpy as np
import pytest
from keras import ops

from keras_bilevel.keras3 import layers
from keras_bilevel.keras3.backends import current as backend
from tests_keras3.autodiff import gradient
from tests_keras3.conftest import BACKEND

# (input height, width, channels), (kernel height, width), filters: the patches case
# (VGG-16's last stage on 32x32 images, in small), a 1x1 map, a 5x5 kernel on a 3x5 map,
# and maps larger than the kernel (Keras' own convolution everywhere).
CASES = [((2, 2, 5), (3, 3), 4), ((1, 1, 3), (3, 3), 2), ((3, 5, 2), (5, 5), 3),
         ((4, 4, 3), (3, 3), 2), ((6, 5, 2), (3, 3), 3)]


def _numpy_convolution(x, kernel, weights):
    """y, dL/dx and dL/dK of L = sum(weights * y), in float64."""
    kh, kw = kernel.shape[:2]
    h, w = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    y = np.zeros((x.shape[0], h, w, kernel.shape[3]))
    d_padded = np.zeros_like(padded)
    d_kernel = np.zeros_like(kernel)
    for a in range(kh):
        for b in range(kw):
            window = padded[:, a:a + h, b:b + w, :]
            y += np.einsum("nijc,cf->nijf", window, kernel[a, b])
            d_padded[:, a:a + h, b:b + w, :] += np.einsum("nijf,cf->nijc", weights,
                                                          kernel[a, b])
            d_kernel[a, b] = np.einsum("nijc,nijf->cf", window, weights)
    d_x = d_padded[:, kh // 2:kh // 2 + h, kw // 2:kw // 2 + w, :]
    return y, d_x, d_kernel


def _layer(kernel):
    layer = layers.QuantConv2D(kernel.shape[3], kernel.shape[:2], padding="same",
                               kernel_quantizer=None, use_bias=False)
    layer.build((None, None, None, kernel.shape[2]))
    layer.kernel.assign(kernel)
    return layer


@pytest.mark.parametrize("shape, kernel_size, filters", CASES)
def test_values_and_gradients_equal_the_convolution(shape, kernel_size, filters):
    rng = np.random.default_rng(sum(shape) + filters)
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    kernel = rng.standard_normal((*kernel_size, shape[2], filters)).astype(np.float32)
    weights = rng.standard_normal((3, *shape[:2], filters)).astype(np.float32)
    expected_y, expected_dx, expected_dk = _numpy_convolution(
        *(a.astype(np.float64) for a in (x, kernel, weights)))
    layer = _layer(kernel)
    w = ops.convert_to_tensor(weights)

    def loss_of_x(t):
        return ops.sum(backend.convolution(layer, t, ops.convert_to_tensor(kernel)) * w)

    def loss_of_kernel(t):
        return ops.sum(backend.convolution(layer, ops.convert_to_tensor(x), t) * w)

    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), expected_y, atol=1e-4)
    np.testing.assert_allclose(gradient(loss_of_x, x), expected_dx, atol=1e-4)
    np.testing.assert_allclose(gradient(loss_of_kernel, kernel), expected_dk, atol=1e-4)


@pytest.mark.skipif(BACKEND != "jax", reason="JAX's CPU convolutions")
@pytest.mark.parametrize("shape, kernel_size, filters", CASES)
def test_jax_takes_the_patches_form_exactly_where_the_kernel_is_larger(shape, kernel_size,
                                                                       filters):
    import jax

    kernel = np.ones((*kernel_size, shape[2], filters), np.float32)
    layer = _layer(kernel)
    x = np.ones((2, *shape), np.float32)
    program = str(jax.make_jaxpr(lambda t: backend.convolution(layer, t, kernel))(x))
    larger = kernel_size[0] > shape[0] or kernel_size[1] > shape[1]
    patches = larger and jax.default_backend() == "cpu"
    assert ("conv_general_dilated" not in program) == patches


def test_strided_and_valid_convolutions_are_keras_own():
    kernel = np.ones((3, 3, 2, 2), np.float32)
    layer = layers.QuantConv2D(2, 3, strides=2, padding="same", kernel_quantizer=None,
                               use_bias=False)
    layer.build((None, 2, 2, 2))
    layer.kernel.assign(kernel)
    x = np.ones((1, 2, 2, 2), np.float32)
    np.testing.assert_allclose(ops.convert_to_numpy(backend.convolution(layer, x, kernel)),
                               ops.convert_to_numpy(layer.convolution_op(x, kernel)))
