"""Training-step cost of the AdaSTE quantizer against Larq's `ste_sign`.

Builds the same binary MLP (784-H-H-H-10, `keras_bilevel.models.binary_mlp`) once per
quantizer, compiles both with the same optimizer, and times them alternately in one
process: each AdaSTE configuration is paired with its own `ste_sign` model, and each block
runs `--steps` training steps of both in turn (the order alternating between blocks). The
reported figure is the median over blocks of the per-block time ratio (ours / ste_sign).
Writes `benchmarks/results/quantizer_step.json` and a plot next to it.

    python benchmarks/quantizer_step.py                 # the full measurement
    python benchmarks/quantizer_step.py --smoke         # seconds; checks the script runs
"""

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone

import keras_bilevel  # noqa: F401  (Keras 2 mode first)
import numpy as np
import tensorflow as tf

QUANTIZERS = {
    "ste_sign": "ste_sign",
    "ada_ste": lambda: keras_bilevel.AdaSTE(),
    "ada_ste_relaxed": lambda: keras_bilevel.AdaSTE(relaxed_forward=True),
}
CANDIDATES = ["ada_ste", "ada_ste_relaxed"]


def _train_function(name, hidden, batch, jit, seed):
    tf.keras.utils.set_random_seed(seed)
    model = keras_bilevel.models.binary_mlp((784,), hidden, kernel_quantizer=QUANTIZERS[name])
    model.compile(
        optimizer=tf.keras.optimizers.Adam(1e-3),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    iterator = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    step = model.make_train_function()
    return lambda: step(iterator)


def _time_block(step_fn, steps):
    start = time.perf_counter()
    for _ in range(steps):
        logs = step_fn()
    float(logs["loss"])  # wait for the device
    return (time.perf_counter() - start) / steps


def measure_pair(name, hidden, batch, jit, blocks, steps, warmup):
    """Median step time of `name` and of ste_sign, and the median per-block ratio."""
    pair = {n: _train_function(n, hidden, batch, jit, seed=0) for n in ("ste_sign", name)}
    for fn in pair.values():
        _time_block(fn, warmup)
    times = {n: [] for n in pair}
    for block in range(blocks):
        order = list(pair) if block % 2 == 0 else list(pair)[::-1]
        for n in order:
            times[n].append(_time_block(pair[n], steps))
    ratios = np.array(times[name]) / np.array(times["ste_sign"])
    return {
        "median_step_ms": 1e3 * float(np.median(times[name])),
        "ste_sign_median_step_ms": 1e3 * float(np.median(times["ste_sign"])),
        "median_ratio_vs_ste_sign": float(np.median(ratios)),
        "ratios": [float(r) for r in ratios],
    }


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels, ratios = [], []
    for mode, per_quantizer in results.items():
        for name, r in per_quantizer.items():
            labels.append(f"{name}\n{mode}")
            ratios.append(r["ratios"])
    ax.boxplot(ratios, tick_labels=labels)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.axhline(1.05, color="red", lw=0.8, ls="--", label="goal 1.05")
    ax.set_ylabel("step time / ste_sign step time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--blocks", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = parser.parse_args(argv)
    if args.smoke:
        args.hidden, args.blocks, args.steps, args.warmup = 32, 2, 2, 1
    results = {}
    for jit in (False, True):
        mode = "xla" if jit else "no_xla"
        results[mode] = {}
        for name in CANDIDATES:
            r = measure_pair(name, args.hidden, args.batch, jit, args.blocks, args.steps,
                             args.warmup)
            results[mode][name] = r
            print(f"{mode:7s} {name:16s} step ratio vs ste_sign "
                  f"{r['median_ratio_vs_ste_sign']:.3f}  (median of {args.blocks} blocks; "
                  f"ste_sign {r['ste_sign_median_step_ms']:.1f} ms/step)", flush=True)
    os.makedirs(args.output, exist_ok=True)
    name = "quantizer_step_smoke" if args.smoke else "quantizer_step"
    record = {
        "benchmark": "quantizer_step",
        "config": vars(args),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.platform()}",
        "tensorflow": tf.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "results": results,
    }
    with open(os.path.join(args.output, f"{name}.json"), "w") as f:
        json.dump(record, f, indent=2)
    plot(results, os.path.join(args.output, f"{name}.png"))
    return record


if __name__ == "__main__":
    main()
