"""VGG-16 (CIFAR shape, batch 128) training throughput on a GPU: AdaSTE against ste_sign.

Times the AdaSTE and `ste_sign` VGG-16 alternately in one process (the pairing of
`quantizer_step.py`: paired blocks of `--steps` steps, the order alternating between
blocks) and reports images per second, the median per-block step-time ratio (goal
<= 1.05) and the peak GPU memory of training each model. One path per `--backend`:

- `larq` (the default): the Larq front end on TensorFlow's GPU, with and without XLA;
  peak memory from TensorFlow's allocator statistics. Writes `gpu_throughput.json`.
- `jax`, `torch`: the Keras 3 front end (`keras_bilevel.keras3`) on that Keras backend,
  JAX with `jit_compile=True` and PyTorch eager. This path imports only keras,
  `keras_bilevel.keras3` and numpy (neither TensorFlow nor Larq), so it runs where only
  JAX or PyTorch is installed, and on a CPU too (peak memory then null). Peak memory is
  measured in a fresh process per model (JAX's peak cannot be reset): JAX's
  `memory_stats()["peak_bytes_in_use"]`, `torch.cuda.max_memory_allocated()`, over
  building, compiling and `--warmup` training steps. Writes
  `gpu_throughput_keras3_<backend>.json` and a plot next to it.

    python benchmarks/gpu_throughput.py                   # Larq path, TensorFlow GPU
    python benchmarks/gpu_throughput.py --backend jax     # Keras 3 on JAX
    python benchmarks/gpu_throughput.py --backend torch --width 0.125 --batch 8 --blocks 2

`benchmarks/gpu_device_run.sh` runs the two Keras 3 backends on the lent GPU machine.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone

import numpy as np

from keras3_step_worker import CompiledStep, time_block  # run as a script: this folder is on sys.path

KERAS3_BACKENDS = ("jax", "torch")
QUANTIZERS = ("ste_sign", "ada_ste")  # the baseline first
GOAL = 1.05


# --- The Larq path (TensorFlow imported only here) -----------------------------------


def _tensorflow():
    import keras_bilevel  # noqa: F401  (Keras 2 mode before TensorFlow)
    import tensorflow as tf

    return tf


def _larq_peak_gpu_bytes(name, batch, jit, steps=3):
    import quantizer_step

    tf = _tensorflow()
    tf.config.experimental.reset_memory_stats("GPU:0")
    step = quantizer_step._train_function(name, 0, batch, jit, 0, "vgg16")
    quantizer_step._time_block(step, steps)
    return tf.config.experimental.get_memory_info("GPU:0")["peak"]


def _larq_main(args):
    tf = _tensorflow()
    import quantizer_step

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        raise SystemExit("gpu_throughput.py: no GPU visible to TensorFlow (--backend larq); "
                         "--backend jax or torch runs the Keras 3 front end instead.")
    results = {}
    for jit in (False, True):
        mode = "xla" if jit else "no_xla"
        r = quantizer_step.measure_pair("ada_ste", 0, args.batch, jit, args.blocks,
                                        args.steps, args.warmup, "vgg16")
        r["images_per_second"] = 1e3 * args.batch / r["median_step_ms"]
        r["ste_sign_images_per_second"] = 1e3 * args.batch / r["ste_sign_median_step_ms"]
        ours, base = (_larq_peak_gpu_bytes(n, args.batch, jit) for n in ("ada_ste", "ste_sign"))
        r.update(peak_bytes=ours, ste_sign_peak_bytes=base, memory_ratio_vs_ste_sign=ours / base)
        results[mode] = r
        _print_result(mode, r)
    return _write(args, "gpu_throughput", {
        "device": tf.config.experimental.get_device_details(gpus[0]),
        "tensorflow": tf.__version__}, results)


# --- The Keras 3 path (keras, keras_bilevel.keras3 and numpy only) -------------------


def _keras(backend):
    """Keras 3 on `backend`; Keras reads KERAS_BACKEND once, at its first import."""
    os.environ["KERAS_BACKEND"] = backend
    import keras

    if keras.backend.backend() != backend:
        raise SystemExit(f"gpu_throughput.py: keras was already imported with backend "
                         f"{keras.backend.backend()!r}, not --backend {backend!r}; run "
                         f"the script in a fresh process.")
    return keras


def _keras3_step(name, args, seed=0):
    """`CompiledStep` of VGG-16 (width `args.width`) with quantizer `name` on one random
    batch. (Not `keras.utils.set_random_seed`: it imports TensorFlow where it is
    installed; the initial weights do not change the step's cost.)"""
    keras = _keras(args.backend)
    from keras_bilevel.keras3 import AdaSTE, models

    quantizer = (lambda: AdaSTE()) if name == "ada_ste" else name
    model = models.vgg16((32, 32, 3), width=args.width, kernel_quantizer=quantizer)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=args.backend == "jax")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((args.batch, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, args.batch).astype(np.int32)
    return CompiledStep(model, x, y)


def _device_and_peak(backend):
    """(device name, peak bytes allocated on the GPU so far, or None on a CPU)."""
    if backend == "jax":
        import jax

        device = jax.local_devices()[0]
        stats = device.memory_stats() if device.platform == "gpu" else None
        return device.device_kind, (stats or {}).get("peak_bytes_in_use")
    import torch

    if not torch.cuda.is_available():
        return "cpu", None
    torch.cuda.synchronize()
    return torch.cuda.get_device_name(0), torch.cuda.max_memory_allocated()


def _memory_child(args):
    """In a fresh process: build, compile and train model `args.memory_child` for
    `--warmup` steps, then print the device's peak bytes in use as one JSON line."""
    time_block(_keras3_step(args.memory_child, args), max(args.warmup, 1))
    print(json.dumps({"peak_bytes": _device_and_peak(args.backend)[1]}), flush=True)


def _keras3_peak_bytes(name, args):
    command = [sys.executable, os.path.abspath(__file__), "--backend", args.backend,
               "--memory-child", name, "--batch", str(args.batch), "--width", str(args.width),
               "--warmup", str(args.warmup)]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"the {args.backend} memory process of {name} failed:\n"
                           f"{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]


def paired_blocks(steps_by_name, blocks, steps, warmup):
    """Seconds per step of every step function over `blocks` blocks of `steps` steps,
    timed in turn (the order reversed every other block) after `warmup` steps each
    (0: none beyond the compiling step each function's constructor ran)."""
    for step in steps_by_name.values():
        if warmup:
            time_block(step, warmup)
    names = list(steps_by_name)
    times = {name: [] for name in names}
    for block in range(blocks):
        for name in names if block % 2 == 0 else names[::-1]:
            times[name].append(time_block(steps_by_name[name], steps))
    return {name: np.array(t) for name, t in times.items()}


def _keras3_main(args):
    # Memory first, each model in a fresh process, before this process takes the GPU
    # (JAX preallocates most of its memory at its first use).
    peaks = ({name: _keras3_peak_bytes(name, args) for name in QUANTIZERS}
             if args.memory else dict.fromkeys(QUANTIZERS))
    keras = _keras(args.backend)
    times = paired_blocks({name: _keras3_step(name, args) for name in QUANTIZERS},
                          args.blocks, args.steps, args.warmup)
    ours, base = times["ada_ste"], times["ste_sign"]
    ratios = ours / base
    r = {
        "median_step_ms": 1e3 * float(np.median(ours)),
        "ste_sign_median_step_ms": 1e3 * float(np.median(base)),
        "median_ratio_vs_ste_sign": float(np.median(ratios)),
        "ratios": [float(x) for x in ratios],
        "goal": GOAL,
        "meets_goal": bool(np.median(ratios) <= GOAL),
        "peak_bytes": peaks["ada_ste"],
        "ste_sign_peak_bytes": peaks["ste_sign"],
        "memory_ratio_vs_ste_sign": (peaks["ada_ste"] / peaks["ste_sign"]
                                     if peaks["ste_sign"] else None),
    }
    r["images_per_second"] = 1e3 * args.batch / r["median_step_ms"]
    r["ste_sign_images_per_second"] = 1e3 * args.batch / r["ste_sign_median_step_ms"]
    mode = "jax_jit" if args.backend == "jax" else "torch_eager"
    _print_result(mode, r)
    backend_module = __import__(args.backend)
    name = f"gpu_throughput_keras3_{args.backend}"
    record = _write(args, name, {
        "device": _device_and_peak(args.backend)[0],
        "versions": {"keras": keras.__version__, args.backend: backend_module.__version__,
                     "numpy": np.__version__}}, {mode: r})
    _plot(record, os.path.join(args.output, f"{name}.png"))
    return record


# --- Shared reporting ----------------------------------------------------------------


def _print_result(mode, r):
    memory = r["memory_ratio_vs_ste_sign"]
    print(f"{mode}: AdaSTE {r['images_per_second']:.0f} img/s, ste_sign "
          f"{r['ste_sign_images_per_second']:.0f} img/s, step ratio "
          f"{r['median_ratio_vs_ste_sign']:.3f}, memory ratio "
          + ("n/a (no GPU)" if memory is None else f"{memory:.3f}"), flush=True)


def _write(args, name, about, results):
    record = {"benchmark": "gpu_throughput", "config": vars(args), **about,
              "machine": platform.platform(),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "results": results}
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, f"{name}.json"), "w") as f:
        json.dump(record, f, indent=2)
    return record


def _plot(record, path):
    """Per-block step-time ratios (box) and images per second (bars) of each mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.5))
    modes = list(record["results"])
    left.boxplot([record["results"][m]["ratios"] for m in modes], tick_labels=modes)
    left.axhline(1.0, color="gray", lw=0.8)
    left.axhline(GOAL, color="red", lw=0.8, ls="--", label=f"goal {GOAL}")
    left.set_ylabel("AdaSTE step time / ste_sign step time")
    left.legend()
    for i, m in enumerate(modes):
        r = record["results"][m]
        right.bar([2 * i, 2 * i + 0.8], [r["ste_sign_images_per_second"],
                                         r["images_per_second"]],
                  color=["gray", "tab:blue"], width=0.8)
    right.set_xticks([x for i in range(len(modes)) for x in (2 * i, 2 * i + 0.8)],
                     [f"{q}\n{m}" for m in modes for q in QUANTIZERS], fontsize=8)
    right.set_ylabel("images / s")
    fig.suptitle(f"VGG-16, batch {record['config']['batch']}, {record['device']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="larq", choices=("larq", *KERAS3_BACKENDS),
                        help="larq: the Larq path on TensorFlow; jax, torch: Keras 3")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--width", type=float, default=1.0,
                        help="VGG-16 width multiplier (Keras 3 backends; tests use 0.125)")
    parser.add_argument("--blocks", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="Keras 3 backends: skip the two peak-memory processes")
    parser.add_argument("--memory-child", default=None, choices=QUANTIZERS,
                        help=argparse.SUPPRESS)
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args(argv)
    if args.backend == "larq":
        return _larq_main(args)
    if args.memory_child:
        return _memory_child(args)
    return _keras3_main(args)


if __name__ == "__main__":
    main()
