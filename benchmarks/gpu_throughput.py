"""VGG-16 (CIFAR shape, batch 128) training throughput on a GPU: AdaSTE against ste_sign.

For a machine with a GPU and this project installed:

    python benchmarks/gpu_throughput.py                 # writes results/gpu_throughput.json

Times AdaSTE and Larq's ste_sign VGG-16 alternately in one process (the pairing of
`quantizer_step.py`), with and without XLA, and reports images per second, the median
step-time ratio and the peak GPU memory of each model (TensorFlow's allocator statistics).
"""

import argparse
import json
import os
import platform
from datetime import datetime, timezone

import keras_bilevel  # noqa: F401  (Keras 2 mode first)
import tensorflow as tf

import quantizer_step


def peak_gpu_bytes(name, batch, jit, steps=3):
    tf.config.experimental.reset_memory_stats("GPU:0")
    step = quantizer_step._train_function(name, 0, batch, jit, 0, "vgg16")
    quantizer_step._time_block(step, steps)
    return tf.config.experimental.get_memory_info("GPU:0")["peak"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args(argv)
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        raise SystemExit("gpu_throughput.py: no GPU visible to TensorFlow.")
    results = {}
    for jit in (False, True):
        mode = "xla" if jit else "no_xla"
        r = quantizer_step.measure_pair("ada_ste", 0, args.batch, jit, args.blocks,
                                        args.steps, 5, "vgg16")
        r["images_per_second"] = 1e3 * args.batch / r["median_step_ms"]
        r["ste_sign_images_per_second"] = 1e3 * args.batch / r["ste_sign_median_step_ms"]
        ours, base = (peak_gpu_bytes(n, args.batch, jit) for n in ("ada_ste", "ste_sign"))
        r.update(peak_bytes=ours, ste_sign_peak_bytes=base, memory_ratio_vs_ste_sign=ours / base)
        results[mode] = r
        print(f"{mode}: AdaSTE {r['images_per_second']:.0f} img/s, ste_sign "
              f"{r['ste_sign_images_per_second']:.0f} img/s, step ratio "
              f"{r['median_ratio_vs_ste_sign']:.3f}, memory ratio "
              f"{r['memory_ratio_vs_ste_sign']:.3f}", flush=True)
    record = {"benchmark": "gpu_throughput", "config": vars(args),
              "device": tf.config.experimental.get_device_details(gpus[0]),
              "machine": platform.platform(), "tensorflow": tf.__version__,
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "results": results}
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "gpu_throughput.json"), "w") as f:
        json.dump(record, f, indent=2)
    return record


if __name__ == "__main__":
    main()
