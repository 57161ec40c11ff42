"""An independent NumPy transcription of `docs/method.md`, scalar by scalar.

Written case by case from the specification, deliberately unlike the vectorised
implementation under test, so that both agreeing is evidence.
"""

import numpy as np

ALPHA, MAX_SCALE, GRAD_EPS, THETA_EPS = 0.01, 0.5, 1e-3, 1e-6


def sgn(x):
    return 1.0 if x >= 0 else -1.0


def exact(mu, alpha):
    return mu * alpha >= 1.0 - 1e-6


def w_star(theta, mu, alpha=ALPHA):
    theta, mu = float(theta), float(mu)
    if exact(mu, alpha):
        return sgn(theta)
    value = (theta + mu * (1 + alpha) * sgn(theta)) / (1 + mu)
    return min(max(value, -1.0), 1.0)


def scale(
    theta,
    g,
    mu,
    alpha=ALPHA,
    max_scale=MAX_SCALE,
    grad_eps=GRAD_EPS,
    theta_eps=THETA_EPS,
    variant="symmetric",
):
    theta, g, mu = float(theta), float(g), float(mu)
    is_exact = exact(mu, alpha)
    if variant == "reference" and is_exact:
        theta_eps = 1e-3
    # The thresholds are float32 numbers, as in the implementation (which works in float32).
    f32 = np.float32
    if abs(f32(g)) <= f32(grad_eps) or abs(f32(theta)) <= f32(theta_eps):
        return 1.0 if is_exact else 1.0 / (1 + mu)
    linear = (not is_exact) and abs(theta) < 1 - mu * alpha
    if sgn(g) == -sgn(theta):  # outward
        return 1.0 / (1 + mu) if linear else 0.0
    # inward
    if is_exact:
        jump = 2.0 if variant == "symmetric" else 1.0
        return min(jump / abs(theta), max_scale)
    if variant == "reference" and linear:
        value = (2 * mu * (1 + alpha) - theta) / ((1 + mu) * abs(theta))
        return min(max(value, 0.0), max_scale)
    if linear:
        jump = (abs(theta) + 2 * mu * (1 + alpha)) / (1 + mu)
    else:
        jump = (1 + 2 * mu + mu * alpha) / (1 + mu)
    return min(jump / abs(theta), max_scale)


def w_star_array(theta, mu, **kw):
    return np.vectorize(lambda t: w_star(t, mu, **kw))(theta)


def scale_array(theta, g, mu, **kw):
    return np.vectorize(lambda t, d: scale(t, d, mu, **kw))(theta, g)
