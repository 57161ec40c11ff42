"""Training throughput of `keras-bilevel train --workers N`, 1 against 2 local workers.

For each engine (`--backend larq` and `tensorflow`: TensorFlow's
MultiWorkerMirroredStrategy; `jax`: jax.distributed), runs the same command with one and
with two local workers, block after block, the order alternating, one run at a time,
and reads each run's `metrics.json`: images per second is the number of training images
over the median duration of its epochs after the first (the first traces and compiles).
Reported per engine: the median images/s of each worker count over blocks, and the
median over blocks of the per-block ratio (2 workers / 1). The CPU model and its vector
extensions are recorded with the results.

On one machine the workers share its cores and talk over loopback: this measures what
the engines cost (the gradient all-reduce of every step, the per-worker input), not the
speed-up of two machines, which each bring their own cores.

    python benchmarks/multi_worker_throughput.py                  # the full measurement
    python benchmarks/multi_worker_throughput.py --engines jax --blocks 5
    python benchmarks/multi_worker_throughput.py --smoke          # seconds; checks it runs

Writes `benchmarks/results/multi_worker_throughput.json` and `.png`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from reference_speed import plot_bar_pairs, save_measurement  # noqa: E402

ENGINES = ("larq", "tensorflow", "jax")
_CLEARED = ("TF_USE_LEGACY_KERAS", "KERAS_BACKEND", "TF_CONFIG", "JAX_COORDINATOR_ADDRESS",
            "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def run_once(engine, workers, args):
    """One `keras-bilevel train` run; returns its images/s and wall-clock seconds."""
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    with tempfile.TemporaryDirectory() as output:
        command = [sys.executable, "-m", "keras_bilevel.cli", "train", "--backend", engine,
                   "--workers", str(workers), "--epochs", str(args.epochs),
                   "--hidden-units", str(args.hidden_units),
                   "--batch-size", str(args.batch_size), "--output", output]
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
        if result.returncode:
            raise SystemExit(f"{engine} with {workers} workers failed:\n"
                             f"{result.stderr[-3000:]}")
        with open(os.path.join(output, "metrics.json")) as f:
            metrics = json.load(f)
    epochs = metrics["seconds_per_epoch"][1:] or metrics["seconds_per_epoch"]
    return metrics["config"]["num_train"] / statistics.median(epochs)


def measure(engines, args):
    """`{engine: {"images_per_second": {1: [...], 2: [...]}, "ratios": [...]}}`."""
    found = {engine: {"images_per_second": {1: [], 2: []}, "ratios": []}
             for engine in engines}
    for block in range(args.blocks):
        for engine in engines:
            order = (1, 2) if block % 2 == 0 else (2, 1)
            rates = {workers: run_once(engine, workers, args) for workers in order}
            for workers, rate in rates.items():
                found[engine]["images_per_second"][workers].append(rate)
            found[engine]["ratios"].append(rates[2] / rates[1])
            print(f"block {block + 1}/{args.blocks} {engine:10s} 1 worker "
                  f"{rates[1]:8.0f} images/s, 2 workers {rates[2]:8.0f} images/s "
                  f"(ratio {rates[2] / rates[1]:.2f})", flush=True)
    return found


def summary(found):
    """Medians per engine: images/s for 1 and 2 workers, and the per-block ratio."""
    return {engine: {"median_images_per_second_1_worker":
                     statistics.median(values["images_per_second"][1]),
                     "median_images_per_second_2_workers":
                     statistics.median(values["images_per_second"][2]),
                     "median_ratio_2_over_1": statistics.median(values["ratios"]),
                     "blocks": len(values["ratios"])}
            for engine, values in found.items()}


def plot(results, path, title):
    engines = list(results)
    plot_bar_pairs(
        path, title, engines,
        [(label, [results[e][key] for e in engines]) for key, label in [
            ("median_images_per_second_1_worker", "1 worker"),
            ("median_images_per_second_2_workers", "2 workers")]],
        [(f"x{results[e]['median_ratio_2_over_1']:.2f}", True) for e in engines],
        "training images / s (median)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--hidden-units", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--output", default=os.path.join(HERE, "results"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = parser.parse_args(argv)
    name = "multi_worker_throughput"
    if args.smoke:
        args.engines, args.blocks, args.epochs, args.hidden_units = ["larq"], 1, 2, 16
        name += "_smoke"
    found = measure(args.engines, args)
    results = summary(found)
    record = save_measurement(
        args.output, name, "multi_worker_throughput.py", argv,
        {"dataset": "digits", "model": "mlp", "hidden_units": args.hidden_units,
         "batch_size": args.batch_size, "epochs": args.epochs,
         "workers": "local processes on this one machine, loopback network"},
        results, found, plot,
        f"binary MLP {args.hidden_units} on the digits, batch {args.batch_size}")
    for engine, r in results.items():
        print(f"{engine:10s} 1 worker {r['median_images_per_second_1_worker']:8.0f} "
              f"images/s, 2 workers {r['median_images_per_second_2_workers']:8.0f} "
              f"images/s, ratio {r['median_ratio_2_over_1']:.2f} (median of "
              f"{r['blocks']} blocks)")
    return record


if __name__ == "__main__":
    main()
