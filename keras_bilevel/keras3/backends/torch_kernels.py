"""The AdaSTE formulas as fused PyTorch kernels: one pass over the weights each.

On PyTorch a training step runs op by op unless the step is compiled, and the backward
rule written in `keras.ops` is some twenty elementwise kernels over every binary kernel:
an eager AdaSTE step cost 1.9x a `ste_sign` step (MLP 784-2048x3-10). Here the formulas
of `keras_bilevel.core.formulas` are bound to PyTorch's own operations and compiled with
`torch.compile` (TorchInductor) into one kernel each, as the Larq front end runs them as
one XLA-compiled pass, also when the model itself is not compiled:

    sign(x), inner_solution(theta, mu, alpha), adaste_gradient(theta, g, mu, ...),
    latent_momentum_step(theta, m, g, b, step_size, s, decay, finite)  # LatentMomentum

Same arguments and values as `keras_bilevel.keras3.formulas` (which uses these on the
PyTorch backend). The formulas are elementwise, so every kernel runs on its tensors
flattened to one dimension, and with `dynamic=True` that is one compiled graph per
formula, dtype and set of settings, whatever the layers' shapes: a model with many
differently shaped kernels never meets Dynamo's recompile limit (which made every run
fall back to eager kernels after its first epoch). Each formula is compiled from its own
function of `keras_bilevel.core.formulas`, so each has its own cache. The kernels run
without autograd (inside a custom gradient's forward and backward passes, and at
inference, there is none to record); where a caller does need autograd through them (a
tensor that requires grad, with grad mode on), the plain bound function runs instead.
Inside a training step that is itself compiled (`jit_compile=True`), the plain bound
functions are traced, and TorchInductor fuses them with the rest of the step. If
compiling fails (no C++ compiler, an unsupported platform), one warning says so and the
plain bound functions run eagerly: the same values, more kernels.

!!! example
    ```python
    from keras_bilevel.keras3.backends import torch_kernels
    torch_kernels.adaste_gradient(theta, g, mu, alpha=0.01)  # one fused pass
    ```
"""

import functools
import types
import warnings

import torch

from keras_bilevel.core import formulas

__all__ = ["FUSED", "adaste_gradient", "inner_solution", "latent_momentum_step", "sign"]

FUSED = ("sign", "inner_solution", "adaste_gradient", "latent_momentum_step")
_INT32, _FLOAT32 = torch.int32, torch.float32


def _tensor(x):
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x)


def _f32(x):
    x = _tensor(x)
    return x if x.dtype == _FLOAT32 else x.to(_FLOAT32)


def _same_sign(a, b):
    return torch.bitwise_xor(a.view(_INT32), b.view(_INT32)) >= 0


def _minimum(a, b):
    return torch.clamp(a, max=b) if isinstance(b, float) else torch.minimum(a, _tensor(b))


def _maximum(a, b):
    return torch.clamp(a, min=b) if isinstance(b, float) else torch.maximum(a, _tensor(b))


_OPS = formulas.make_ops(
    types.SimpleNamespace(where=torch.where, abs=torch.abs, minimum=_minimum,
                          maximum=_maximum, logical_or=torch.logical_or,
                          ones_like=torch.ones_like, cast=lambda x, dtype: x.to(dtype)),
    tensor=_tensor, f32=_f32, dtype=lambda x: _tensor(x).dtype, clip=torch.clamp,
    to_bits=lambda x: x.view(_INT32), from_bits=lambda x: x.view(_FLOAT32),
    same_sign=_same_sign, reciprocal=lambda x: torch.reciprocal(torch.clamp(x, min=1e-30)))
_PLAIN = dict(zip(formulas.FORMULAS, formulas.bind(_OPS, __name__)))
_failed = []  # set once compiling failed: then everything runs the plain functions


def _flat(x, shape):
    """`x` without autograd (a guard of its own otherwise), flat where it has `shape`."""
    if not isinstance(x, torch.Tensor):
        return x
    x = x.detach()
    return x.reshape(-1) if x.shape == shape else x


def _shaped(x, shape):
    if isinstance(x, tuple):
        return tuple(_shaped(item, shape) for item in x)
    return x.reshape(shape)


def _needs_autograd(args, kwargs):
    return torch.is_grad_enabled() and any(
        isinstance(a, torch.Tensor) and a.requires_grad for a in (*args, *kwargs.values()))


def _own_code(name):
    """The core formula `name` on `_OPS`, as a function with a code object of its own:
    Dynamo keeps its cache (and counts recompiles) per code object, so the formulas must
    not share one (as `functools.partial` or one closure for all would)."""
    formula = getattr(formulas, name)

    def kernel(*args, **kwargs):
        return formula(_OPS, *args, **kwargs)

    return types.FunctionType(kernel.__code__.replace(co_name=name), kernel.__globals__,
                              name, None, kernel.__closure__)


def _fused(name):
    plain = _PLAIN[name]
    # On flattened tensors, with dynamic shapes: one graph for every layer shape.
    compiled = torch.compile(_own_code(name), dynamic=True, fullgraph=True)

    @functools.wraps(plain)
    def run(*args, **kwargs):
        first = _tensor(args[0])
        if (_failed or torch.compiler.is_compiling() or first.device.type == "meta"
                or _needs_autograd(args, kwargs)):
            return plain(*args, **kwargs)  # (meta tensors: Keras inferring shapes)
        shape = first.shape
        flat_args = [_flat(a, shape) for a in args]
        flat_kwargs = {key: _flat(value, shape) for key, value in kwargs.items()}
        try:
            with torch.no_grad():
                return _shaped(compiled(*flat_args, **flat_kwargs), shape)
        except Exception as error:  # TorchInductor's errors have no common base class
            _failed.append(error)
            warnings.warn(
                f"keras_bilevel: compiling the AdaSTE kernels with torch.compile failed "
                f"({type(error).__name__}: {str(error).strip().splitlines()[0][:200]}); "
                "they run eagerly instead (same values, slower)", RuntimeWarning,
                stacklevel=2)
            return plain(*args, **kwargs)

    return run


_PLAIN["latent_momentum_step"] = functools.partial(formulas.latent_momentum_step, _OPS)
sign, inner_solution, adaste_gradient, latent_momentum_step = (
    _fused(name) for name in FUSED)
