"""Larq's quantizers as formulas: forward passes and pseudo-gradients, written once.

Larq trains with quantizers whose forward pass is a step function and whose backward
pass is a pseudo-gradient chosen per method. Each function here takes as first argument
`ops`, a namespace with NumPy's names (`keras.ops` is one; so is `numpy`), so the same
definitions serve every Keras 3 backend; `keras_bilevel.keras3.larq_quantizers` binds
them. Notation: `x` the input, `dy` the incoming gradient d loss / d q(x).

| quantizer | forward q(x) | pseudo-gradient dq/dx |
|---|---|---|
| `ste_sign` | sgn(x), sgn(0) = +1 | 1 where \\|x\\| <= clip_value |
| `approx_sign` | sgn(x) | 2 - 2\\|x\\| where \\|x\\| <= 1 |
| `swish_sign` | sgn(x) | beta (2 - beta x tanh(beta x / 2)) / (1 + cosh(beta x)) |
| `ste_heaviside` | 1 where x > 0, else 0 | 1 where \\|x\\| <= clip_value |
| `ste_tern` | +1 above the threshold, -1 below its negative, 0 between | 1 where \\|x\\| <= clip_value |
| `dorefa` | round(x n) / n on [0, 1], n = 2^k - 1 | 1 (after the clip or tanh limiter) |

It imports no tensor library, Keras or Larq, and holds no state.
"""

__all__ = ["sign", "heaviside", "clipped_identity", "approx_sign_gradient",
           "swish_sign_gradient", "ternary", "twn_threshold", "k_bit", "dorefa_weights"]


def sign(ops, x):
    """sgn(x) with sgn(0) = +1: binary, never 0 (as `larq.math.sign`)."""
    return ops.where(x >= 0, ops.ones_like(x), -ops.ones_like(x))


def heaviside(ops, x):
    """1 where x > 0, else 0 (as `larq.math.heaviside`)."""
    return ops.where(x > 0, ops.ones_like(x), ops.zeros_like(x))


def clipped_identity(ops, x, dy, clip_value):
    """The straight-through estimator: dy where |x| <= clip_value (all of dy for None)."""
    if clip_value is None:
        return dy
    return ops.where(ops.abs(x) <= clip_value, dy, ops.zeros_like(dy))


def approx_sign_gradient(ops, x, dy):
    """Bi-Real Net's ApproxSign: dy (2 - 2|x|) where |x| <= 1, else 0."""
    magnitude = ops.abs(x)
    return ops.where(magnitude <= 1.0, (1.0 - magnitude) * 2.0 * dy, ops.zeros_like(dy))


def swish_sign_gradient(ops, x, dy, beta):
    """BNN+'s SignSwish: dy beta (2 - beta x tanh(beta x / 2)) / (1 + cosh(beta x))."""
    scaled = beta * x
    return dy * beta * (2.0 - scaled * ops.tanh(scaled * 0.5)) / (1.0 + ops.cosh(scaled))


def ternary(ops, x, threshold):
    """+1 where x >= threshold, -1 where x <= -threshold, 0 between (Larq's `ste_tern`:
    sgn(sgn(x + t) + sgn(x - t)) with sgn(0) = 0)."""
    return ops.sign(ops.sign(x + threshold) + ops.sign(x - threshold))


def twn_threshold(ops, x):
    """Ternary Weight Networks' threshold, 0.7 mean(|x|) over the whole tensor."""
    return 0.7 * ops.mean(ops.abs(x))


def k_bit(ops, x, bits):
    """round(x n) / n with n = 2^bits - 1: x in [0, 1] on 2^bits levels."""
    levels = 2 ** bits - 1
    return ops.round(x * levels) / levels


def dorefa_weights(ops, x, stop_gradient):
    """DoReFa's weight limiter: tanh(x) / (2 max|tanh(x)|) + 1/2, in [0, 1] (0 divided
    by 0 gives 0); the maximum is a constant for the gradient (`stop_gradient`)."""
    limited = ops.tanh(x)
    dividend = stop_gradient(2.0 * ops.max(ops.abs(limited)))
    safe = ops.where(dividend > 0, dividend, ops.ones_like(dividend))
    return ops.where(dividend > 0, limited / safe, ops.zeros_like(limited)) + 0.5
