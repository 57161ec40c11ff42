"""Can JAX run VGG-16's convolutions faster on a CPU as patches and one matrix product?

XLA's CPU backend runs convolutions slowly (BENCHMARKS.md: the JAX VGG-16 step is several
times the other backends'). The common remedy is to lower a convolution to a matrix
product: gather each output pixel's 3x3 neighbourhood into one row ("patches", shifted
slices of the padded input concatenated along the channels) and multiply by the kernel
reshaped to (9 * channels, filters). For each of VGG-16's convolution shapes (CIFAR
form, batch 128, stride 1, SAME padding), this times XLA's convolution and the patches
form, forward alone and forward with both gradients (input and kernel), jit-compiled,
and reports the largest relative difference of their outputs. It also times the 2x2
max-pooling's backward pass, XLA's `reduce_window` against a reshape and a first-maximum
mask (the same gradient, checked exactly).

    KERAS_BACKEND=jax python benchmarks/jax_cpu_convolution.py
    python benchmarks/jax_cpu_convolution.py --smoke      # small shapes, seconds

Writes `benchmarks/results/jax_cpu_convolution.json` and `.png`.
"""

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_speed import save_measurement  # noqa: E402

# VGG-16's convolutions in its CIFAR form: (height = width, input channels, filters).
CONVOLUTIONS = [(32, 3, 64), (32, 64, 64), (16, 64, 128), (16, 128, 128), (8, 128, 256),
                (8, 256, 256), (4, 256, 512), (4, 512, 512), (2, 512, 512)]
POOLS = [(32, 64), (16, 128), (8, 256), (4, 512)]


def convolution_xla(x, kernel):
    return lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def convolution_patches(x, kernel):
    """The same convolution as a matrix product over 3x3 patches (odd kernels, SAME)."""
    kh, kw, channels, filters = kernel.shape
    n, h, w, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    patches = jnp.concatenate([padded[:, i:i + h, j:j + w, :]
                               for i in range(kh) for j in range(kw)], axis=-1)
    product = patches.reshape(-1, kh * kw * channels) @ kernel.reshape(-1, filters)
    return product.reshape(n, h, w, filters)


def pool_xla(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def _windows(x):
    n, h, w, c = x.shape
    return (x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4)
            .reshape(n, h // 2, w // 2, c, 4))


@jax.custom_vjp
def pool_reshape(x):
    """2x2 max-pooling; its gradient goes to the first maximum of each window, as XLA's."""
    return jnp.max(_windows(x), axis=-1)


def _pool_forward(x):
    windows = _windows(x)
    return jnp.max(windows, axis=-1), (jnp.argmax(windows, axis=-1), x.shape)


def _pool_backward(residuals, g):
    first, (n, h, w, c) = residuals
    spread = jax.nn.one_hot(first, 4, dtype=g.dtype) * g[..., None]
    return (spread.reshape(n, h // 2, w // 2, c, 2, 2).transpose(0, 1, 4, 2, 5, 3)
            .reshape(n, h, w, c),)


pool_reshape.defvjp(_pool_forward, _pool_backward)


def _median_seconds(function, *args, repeats):
    jax.block_until_ready(function(*args))  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_convolutions(shapes, batch, repeats, rng):
    results = {}
    for size, channels, filters in shapes:
        x = jnp.asarray(rng.standard_normal((batch, size, size, channels)), jnp.float32)
        kernel = jnp.asarray(np.sign(rng.standard_normal((3, 3, channels, filters))),
                             jnp.float32)
        row = {}
        for name, convolution in (("xla", convolution_xla), ("patches", convolution_patches)):
            loss = lambda x, k, f=convolution: jnp.sum(f(x, k) ** 2)  # noqa: E731
            row[name + "_forward_ms"] = 1e3 * _median_seconds(
                jax.jit(convolution), x, kernel, repeats=repeats)
            row[name + "_with_gradients_ms"] = 1e3 * _median_seconds(
                jax.jit(jax.grad(loss, argnums=(0, 1))), x, kernel, repeats=repeats)
        reference = jax.jit(convolution_xla)(x, kernel)
        row["max_relative_difference"] = float(
            jnp.max(jnp.abs(reference - jax.jit(convolution_patches)(x, kernel)))
            / jnp.max(jnp.abs(reference)))
        row["xla_over_patches_with_gradients"] = (row["xla_with_gradients_ms"]
                                                  / row["patches_with_gradients_ms"])
        results[f"{size}x{size}x{channels}->{filters}"] = row
        print(f"conv {size}x{size}x{channels}->{filters}: " + ", ".join(
            f"{k} {v:.3g}" for k, v in row.items()), flush=True)
    return results


def measure_pools(shapes, batch, repeats, rng):
    results = {}
    for size, channels in shapes:
        # Small integers: ties in a window are common, as after binary convolutions.
        x = jnp.asarray(np.round(2 * rng.standard_normal((batch, size, size, channels))),
                        jnp.float32)
        weights = jnp.arange(1, channels + 1, dtype=jnp.float32)
        row, gradients = {}, {}
        for name, pool in (("xla", pool_xla), ("reshape", pool_reshape)):
            gradient = jax.jit(jax.grad(lambda x, f=pool: jnp.sum(f(x) * weights)))
            row[name + "_with_gradient_ms"] = 1e3 * _median_seconds(gradient, x,
                                                                    repeats=repeats)
            gradients[name] = gradient(x)
        row["same_gradient"] = bool(jnp.all(gradients["xla"] == gradients["reshape"]))
        results[f"{size}x{size}x{channels}"] = row
        print(f"pool {size}x{size}x{channels}: {row}", flush=True)
    return results


def plot(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["convolutions"])
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for offset, (key, label) in enumerate((("xla_with_gradients_ms", "XLA convolution"),
                                           ("patches_with_gradients_ms", "patches + product"))):
        ax.bar([i + 0.4 * offset for i in range(len(names))],
               [results["convolutions"][n][key] for n in names], width=0.4, label=label)
    ax.set_xticks([i + 0.2 for i in range(len(names))], names, rotation=30, fontsize=7)
    ax.set_ylabel("ms, forward and both gradients")
    ax.set_title(title, fontsize=8)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__),
                                                         "results"))
    parser.add_argument("--smoke", action="store_true", help="small shapes: checks the script")
    args = parser.parse_args(argv)
    convolutions, pools = CONVOLUTIONS, POOLS
    if args.smoke:
        args.batch, args.repeats = 2, 1
        convolutions, pools = [(8, 3, 4)], [(8, 4)]
    rng = np.random.default_rng(0)
    results = {"convolutions": measure_convolutions(convolutions, args.batch, args.repeats, rng),
               "pools": measure_pools(pools, args.batch, args.repeats, rng)}
    setting = {"batch": args.batch, "repeats": args.repeats, "jax": jax.__version__,
               "device": jax.default_backend()}
    save_measurement(args.output, "jax_cpu_convolution_smoke" if args.smoke else
                     "jax_cpu_convolution", "jax_cpu_convolution.py", argv, setting,
                     results, {}, plot, "JAX on a CPU: VGG-16's convolutions, batch "
                     f"{args.batch}")


if __name__ == "__main__":
    main()
