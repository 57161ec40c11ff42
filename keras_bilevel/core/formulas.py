"""The AdaSTE formulas, written once, for every tensor library.

This module is the one place where the mathematics of AdaSTE lives: the minimiser of the
relaxed inner problem (the forward pass) and the adaptive scale of the backward pass, in
both variants (`docs/method.md`). Each formula takes as first argument `ops`, a
small namespace of tensor operations; `keras_bilevel.keras2.formulas` binds it to TensorFlow (the
Larq front end) and `keras_bilevel.keras3.formulas` to `keras.ops` (the Keras 3 front end).

It must import no tensor library, Keras or Larq, and holds no state. Arithmetic uses the
Python operators of the tensors `ops` returns; everything else goes through `ops`:

    tensor(x)              x as a tensor (converted, dtype kept)
    f32(x)                 x as a float32 tensor (converted, cast only if needed)
    dtype(x), cast(x, d)   x's dtype; x cast to dtype d
    where, abs, minimum, maximum, clip(x, lo, hi), logical_or, ones_like
    reciprocal(x)          1 / x for float32 x >= 0 (x may be 0: the result is then finite
                           and unused)
    same_sign(a, b)        whether the sign bits of float32 a and b agree

All arithmetic is done in float32, also for float16/bfloat16 inputs; results are cast
back to the input's dtype. Notation: `theta` latent weight, `g` the incoming gradient
d loss / d w, `mu` the relaxation parameter, `alpha` the well offset.
"""

import dataclasses
import types
from typing import Optional

from keras_bilevel.core import binding

CONSTANTS = ("VARIANTS", "VARIANT_SETTINGS", "EXACT_BINARIZER_RTOL",
             "REFERENCE_EXACT_THETA_EPS")
"""What a binding module exports: these constants and the formulas bound to its ops."""
FORMULAS = ("sign", "is_exact_binarizer", "inner_solution", "backward_scale",
            "adaste_gradient")
"""The formulas a binding module exports, each bound to its tensor operations."""
__all__ = [*CONSTANTS, *FORMULAS, "CONSTANTS", "FORMULAS", "VariantSettings", "make_ops", "bind",
           "division_free_reciprocal", "latent_momentum_step", "latent_momentum_update"]

# The operations a tensor library provides under these names itself (TensorFlow and
# keras.ops both do); `make_ops` takes them from the library.
_SAME_NAME_OPS = ("where", "abs", "minimum", "maximum", "logical_or", "ones_like", "cast")

# `mu * alpha >= 1` is tested with this relative tolerance: in float32, 100 * 0.01 can
# round to either side of 1.
EXACT_BINARIZER_RTOL = 1e-6

# In the `reference` variant, once mu * alpha >= 1, the dead band in theta is this wide
# (the public reference code hard-codes it), whatever `theta_eps` is.
REFERENCE_EXACT_THETA_EPS = 1e-3


@dataclasses.dataclass(frozen=True)
class VariantSettings:
    """What distinguishes one variant of the backward rule (`docs/method.md`, section 4).

    # Arguments
        exact_jump: the inward jump once mu * alpha >= 1 (2 is the finite difference
            between the two signs).
        signed_linear_inward: whether the linear region's inward jump uses signed theta,
            2 c - theta / (1 + mu), and the scale is clamped at 0 (the public code's form),
            instead of |w*(theta)| + c.
        exact_theta_eps: the dead band in |theta| once mu * alpha >= 1; None keeps
            `theta_eps`.
    """

    exact_jump: float
    signed_linear_inward: bool = False
    exact_theta_eps: Optional[float] = None


# Each variant of the backward rule is a row here; `backward_scale` reads only the row.
VARIANT_SETTINGS = {
    "symmetric": VariantSettings(exact_jump=2.0),
    "reference": VariantSettings(exact_jump=1.0, signed_linear_inward=True,
                                 exact_theta_eps=REFERENCE_EXACT_THETA_EPS),
}
VARIANTS = tuple(VARIANT_SETTINGS)


def sign(ops, x):
    r"""Binary sign with `sign(0) = +1`.

    \\[ \mathrm{sgn}(x) = \begin{cases} +1 & x \geq 0 \\\ -1 & x < 0 \end{cases} \\]

    Same values as `larq.math.sign`, in one select.

    !!! example
        ```python
        sign([-2.0, 0.0, 3.0])  # [-1., 1., 1.]
        ```
    """
    x = ops.tensor(x)
    one = ops.ones_like(x)
    return ops.where(x >= 0, one, -one)


def is_exact_binarizer(ops, mu, alpha):
    r"""Whether the relaxation has become an exact binariser: \\(\mu\alpha \geq 1\\).

    Compared with a relative tolerance of `EXACT_BINARIZER_RTOL`, so that `mu = 100`,
    `alpha = 0.01` counts as exact in float32. Returns a boolean tensor.
    """
    return ops.f32(mu) * ops.f32(alpha) >= 1.0 - EXACT_BINARIZER_RTOL


def _relaxation_constants(ops, mu, alpha):
    """The scalars shared by forward and backward, in float32.

    Returns `mu, exact, inv_one_plus_mu, edge` where `edge` = mu (1 + alpha) / (1 + mu)
    is the distance of a well's inner edge from 0.
    """
    mu = ops.f32(mu)
    inv_one_plus_mu = 1.0 / (1.0 + mu)
    edge = mu * (1.0 + alpha) * inv_one_plus_mu
    return mu, is_exact_binarizer(ops, mu, alpha), inv_one_plus_mu, edge


def inner_solution(ops, theta, mu, alpha=0.01):
    r"""Minimiser w*(theta) of the relaxed inner problem (the AdaSTE forward pass).

    \\[
    w^*(\theta) = \mathrm{clip}\left(
        \frac{\theta + \mu (1 + \alpha)\,\mathrm{sgn}(\theta)}{1 + \mu}, -1, 1\right),
    \qquad \mathrm{sgn}(0) = +1
    \\]

    and exactly `sgn(theta)` once mu * alpha >= 1.

    # Arguments
        theta: latent weights, any float dtype.
        mu: relaxation parameter (scalar, >= 0).
        alpha: well offset (> 0).

    # Returns
        A tensor of theta's dtype and shape.

    !!! example
        ```python
        inner_solution([-0.3, 0.995, 10.0], mu=0.01)
        # [-0.307030, 0.995149, 1.0]
        ```
    """
    dtype = ops.dtype(theta)
    theta = ops.f32(theta)
    _, exact, inv_one_plus_mu, edge = _relaxation_constants(ops, mu, alpha)
    # clip(theta / (1 + mu) + sgn(theta) c, -1, 1); once exact, slope 0 and c = 1.
    slope = ops.where(exact, 0.0, inv_one_plus_mu)
    offset = ops.where(exact, 1.0, edge)
    signed_offset = ops.where(theta >= 0.0, offset, -offset)
    return ops.cast(ops.clip(theta * slope + signed_offset, -1.0, 1.0), dtype)


def backward_scale(
    ops,
    theta,
    g,
    mu,
    alpha=0.01,
    max_scale=0.5,
    grad_eps=1e-3,
    theta_eps=1e-6,
    variant="symmetric",
):
    r"""The adaptive factor of the AdaSTE backward pass: d loss / d theta ~= scale * g.

    With \\(c = \mu(1+\alpha)/(1+\mu)\\) (the inner edge of a well) and the linear region
    \\(|\theta| < 1 - \mu\alpha\\):

    - dead band, \\(|g| \leq\\) `grad_eps` or \\(|\theta| \leq\\) `theta_eps`:
      \\(1/(1+\mu)\\), or 1 once \\(\mu\alpha \geq 1\\);
    - outward, \\(\mathrm{sgn}(g) = -\mathrm{sgn}(\theta)\\): \\(1/(1+\mu)\\) in the
      linear region, 0 where saturated;
    - inward, \\(\mathrm{sgn}(g) = \mathrm{sgn}(\theta)\\):
      \\(\min(\mathrm{jump}(\theta)/|\theta|, \text{max\_scale})\\) with
      \\(\mathrm{jump} = |w^*(\theta)| + c\\), or 2 once \\(\mu\alpha \geq 1\\).

    The `reference` variant (the public PyTorch code) differs in two cases only: linear
    and inward it uses \\(\mathrm{clip}((2c - \theta/(1+\mu))/|\theta|, 0,
    \text{max\_scale})\\) with signed theta; once \\(\mu\alpha \geq 1\\) the inward jump is
    1 and the theta dead band is \\(|\theta| \leq 10^{-3}\\).

    # Arguments
        theta: latent weights.
        g: incoming gradient d loss / d w at w*(theta), same shape as theta.
        mu: relaxation parameter (scalar tensor or float).
        alpha, max_scale, grad_eps, theta_eps: as in `docs/method.md`.
        variant: `"symmetric"` or `"reference"`.

    # Returns
        The scale as a float32 tensor of theta's shape.

    !!! example
        ```python
        backward_scale([-10.0, 0.3], [-0.01, 0.01], mu=0.01)
        # [0.101, 0.5]
        ```
    """
    if variant not in VARIANT_SETTINGS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    settings = VARIANT_SETTINGS[variant]
    theta, g = ops.f32(theta), ops.f32(g)
    abs_theta = ops.abs(theta)
    mu, exact, inv_one_plus_mu, edge = _relaxation_constants(ops, mu, alpha)
    # Everything that depends on mu alone is a scalar, chosen once; per element there
    # remain a few compares, selects, multiply-adds and one reciprocal.
    linear_limit = ops.where(exact, -1.0, 1.0 - mu * alpha)  # no linear region if exact
    linear = abs_theta < linear_limit
    # jump = min(|theta| k + e, 1) + e: with (k, e) = (1/(1+mu), c) this is |w*| + c;
    # with k = 0 and e = exact_jump / 2 it is the exact binariser's constant jump.
    slope = ops.where(exact, 0.0, inv_one_plus_mu)
    offset = ops.where(exact, 0.5 * settings.exact_jump, edge)
    jump = ops.minimum(abs_theta * slope + offset, 1.0) + offset
    if settings.signed_linear_inward:  # linear and inward: signed theta, may go below 0
        jump = ops.where(linear, 2.0 * edge - theta * inv_one_plus_mu, jump)
    inward_scale = ops.minimum(jump * ops.reciprocal(abs_theta), max_scale)
    if settings.signed_linear_inward:
        inward_scale = ops.maximum(inward_scale, 0.0)
    outward_scale = ops.where(linear, inv_one_plus_mu, 0.0)
    # sgn(g) == sgn(theta), read off the sign bits. This treats -0.0 as negative, but
    # theta = +-0 and g = +-0 always fall in the dead band (both eps are >= 0).
    inward = ops.same_sign(theta, g)
    scale = ops.where(inward, inward_scale, outward_scale)

    exact_theta_eps = (theta_eps if settings.exact_theta_eps is None
                       else settings.exact_theta_eps)
    dead_theta_eps = ops.where(exact, exact_theta_eps, theta_eps)
    dead = ops.logical_or(ops.abs(g) <= ops.f32(grad_eps), abs_theta <= dead_theta_eps)
    dead_scale = ops.where(exact, 1.0, inv_one_plus_mu)
    return ops.where(dead, dead_scale, scale)


def adaste_gradient(ops, theta, g, mu, g_total=None, **kwargs):
    r"""The AdaSTE surrogate gradient d loss / d theta = backward_scale(theta, G) * g.

    G is `g_total` when given, else g. Under data parallelism g is one replica's part of
    the gradient and G the sum over replicas: the rule is nonlinear in g, so only the
    sign and magnitude of the whole batch's gradient are right, and
    scale(theta, sum_r g_r) * g_r sums over replicas to the single-device result.

    Takes the keyword arguments of `backward_scale` (`grad_eps` may be a tensor);
    returns a tensor of g's dtype.

    !!! example
        ```python
        adaste_gradient([0.3], [-0.01], mu=0.01)
        # [-0.0099010]
        ```
    """
    dtype = ops.dtype(g)
    scale = backward_scale(ops, theta, g if g_total is None else g_total, mu, **kwargs)
    return ops.cast(scale * ops.f32(g), dtype)


def latent_momentum_update(theta, moment, gradient, momentum, step_size,
                           gradient_scale=1.0, latent_decay=1.0):
    r"""One step of LatentMomentum on a binary layer's latent weights (section 6 of
    `docs/method.md`); returns `(theta, moment)` after the step.

    \[
    m \leftarrow b\,m + (1 - b)\,(s\,g + \lambda\,\theta), \qquad
    \theta \leftarrow \theta - \eta_t\,\frac{m}{1 - b^t}
    \]

    with `step_size` \(= \eta_t / (1 - b^t)\) (a scalar the optimizer computes), b =
    `momentum`, s = `gradient_scale`, \(\lambda\) = `latent_decay`. Plain arithmetic on
    tensors of one dtype, so it needs no `ops`: the optimizers of both front ends call it,
    and `keras_bilevel.keras3.backends.torch_kernels` fuses it into one pass.

    !!! example
        ```python
        latent_momentum_update(theta, m, g, 0.9, 1e-3 / (1 - 0.9 ** t))
        ```
    """
    target = gradient_scale * gradient + latent_decay * theta
    moment = momentum * moment + (1.0 - momentum) * target
    return theta - step_size * moment, moment


def latent_momentum_step(ops, theta, moment, gradient, momentum, step_size, gradient_scale,
                         latent_decay, finite):
    """`latent_momentum_update`, kept as it was where `finite` is False (a step with a
    non-finite gradient is skipped); returns `(theta, moment)`. Needs `ops.where`."""
    new_theta, new_moment = latent_momentum_update(
        theta, moment, gradient, momentum, step_size, gradient_scale, latent_decay)
    return ops.where(finite, new_theta, theta), ops.where(finite, new_moment, moment)


def division_free_reciprocal(ops, x):
    r"""1 / x for float32 x >= 0, to within 2 ulp, without a division instruction.

    A bit-level first guess refined by three Newton steps,
    \\( r \leftarrow r\,(2 - x r) \\), reaches float32 precision (relative error
    < 1.5e-7). x is clipped to [1e-30, 1e30]; callers use the result only where x is
    not tiny. A binding may use it as its `reciprocal` in compiled code: a vector
    division costs as much as a dozen multiplies on CPUs, and inside a fused training
    update XLA moves it out into a pass of its own over the kernel (`BENCHMARKS.md`).
    Needs `ops.clip`, `ops.to_bits` (float32 to its int32 bits) and `ops.from_bits`.

    !!! example
        ```python
        division_free_reciprocal(ops, x)  # ~ 1 / x, for x >= 0
        ```
    """
    x = ops.clip(x, _RECIPROCAL_TINY, 1.0 / _RECIPROCAL_TINY)
    r = ops.from_bits(_RECIPROCAL_MAGIC - ops.to_bits(x))
    for _ in range(3):
        r = r * (2.0 - x * r)
    return r


# The clip of `division_free_reciprocal`'s argument, and the integer whose difference
# with the bits of x is the bits of a first guess of 1 / x (relative error < 12%).
_RECIPROCAL_TINY = 1e-30
_RECIPROCAL_MAGIC = 0x7EF311C7


def make_ops(library, **specific):
    """The `ops` namespace: `library`'s own where, abs, minimum, maximum, logical_or,
    ones_like and cast, plus the `specific` ones (tensor, f32, dtype, clip, reciprocal,
    same_sign; see the module docstring)."""
    return types.SimpleNamespace(
        **{name: getattr(library, name) for name in _SAME_NAME_OPS}, **specific)


def bind(ops, module):
    """The formulas (in `FORMULAS` order) with their first argument fixed to `ops`, as
    functions of `module` (`keras_bilevel.core.binding.bind`)."""
    return tuple(binding.bind(ops, globals()[name], module) for name in FORMULAS)
