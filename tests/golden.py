"""Test data shared by both front ends: the spec's golden table and a grid of every region.

Plain numbers (no tensor library), so that the Keras 3 tests, run under any backend,
import it without TensorFlow.
"""

import numpy as np

# The golden table of docs/method.md, section 5:
# (mu, theta, g, w*, scale symmetric, scale reference)
GOLDEN = [
    (0.01, -10, 0.01, -1.000000, 0.000000, 0.000000),
    (0.01, -10, -0.01, -1.000000, 0.101000, 0.101000),
    (0.01, -10, 0.0001, -1.000000, 0.990099, 0.990099),
    (0.01, -0.3, 0.01, -0.307030, 0.990099, 0.990099),
    (0.01, -0.3, -0.01, -0.307030, 0.500000, 0.500000),
    (0.01, 0.005, 0.01, 0.014950, 0.500000, 0.500000),
    (0.01, 0.3, 0.01, 0.307030, 0.500000, 0.000000),
    (0.01, 0.3, -0.01, 0.307030, 0.990099, 0.990099),
    (0.01, 0.995, 0.01, 0.995149, 0.500000, 0.000000),
    (0.01, 10, 0.01, 1.000000, 0.101000, 0.101000),
    (0.01, 10, -0.01, 1.000000, 0.000000, 0.000000),
    (1, 10, 0.01, 1.000000, 0.150500, 0.150500),
    (1, 0.995, -0.01, 1.000000, 0.000000, 0.000000),
    (1, 10, 0.0001, 1.000000, 0.500000, 0.500000),
    (100, -10, -0.01, -1.000000, 0.200000, 0.100000),
    (100, 0.3, 0.01, 1.000000, 0.500000, 0.500000),
    (100, 0.3, -0.01, 1.000000, 0.000000, 0.000000),
    (100, 10, 0.0001, 1.000000, 1.000000, 1.000000),
]
MUS = [0.01, 1.0, 100.0]

# Keyword arguments of backward_scale beyond the defaults, with test ids.
SCALE_KWARGS = [{}, {"max_scale": 2.0, "grad_eps": 0.0, "theta_eps": 0.0}, {"alpha": 0.1}]
SCALE_KWARGS_IDS = ["defaults", "no-dead-band", "alpha0.1"]


def grid():
    """(theta, g) as flat float32 arrays covering every region of the rule.

    Deep saturated, near the band edge, linear, tiny, zero; both signs of theta and g.
    """
    magnitudes = [0.0, 1e-7, 5e-4, 2e-3, 0.005, 0.03, 0.3, 0.9899, 0.9901, 0.995,
                  0.99995, 1.0, 1.5, 10.0, 1e4]
    thetas = sorted({s * m for m in magnitudes for s in (-1.0, 1.0)})
    grads = [-1.0, -0.01, -2e-3, -1e-3, -1e-4, 0.0, 1e-4, 1e-3, 2e-3, 0.01, 1.0]
    theta, g = np.meshgrid(np.array(thetas, np.float32), np.array(grads, np.float32))
    return theta.ravel(), g.ravel()
