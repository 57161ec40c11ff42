"""Test accuracy of binary MLPs on real MNIST, per method, over seeds.

Trains `keras_bilevel.models.binary_mlp` on MNIST read from a prepared, offline TFDS
directory (`python scripts/prepare_offline_mnist.py DATA_DIR`) with each method for
several seeds, records validation and test accuracy after every epoch (settings are
chosen on validation only; test accuracy is only reported), and writes
`benchmarks/results/mnist_accuracy.json` plus a plot of mean test accuracy per epoch.

    python benchmarks/mnist_accuracy.py --data-dir /tmp/tfds_offline --epochs 20 --seeds 0 1 2
    python benchmarks/mnist_accuracy.py --smoke          # digits, 1 epoch: checks it runs
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

from keras_bilevel import recipes


def _reference(variant):
    def make(train_size, epochs, steps_per_epoch, batch_size=128):
        return recipes.adaste_reference(train_size, epochs, steps_per_epoch,
                                        variant=variant, batch_size=batch_size)
    return make


def _explore(relaxed, reach, initializer=None, optimizer="adam", gradient_scale_factor=1.0):
    """Candidate AdaSTE configurations for the "where does AdaSTE win" study."""
    def make(train_size, epochs, steps_per_epoch, batch_size=128):
        if optimizer == "adam":
            recipe = recipes.adaste_recommended(train_size, epochs, steps_per_epoch,
                                                batch_size=batch_size)
        else:
            recipe = recipes.adaste_reference(train_size, epochs, steps_per_epoch,
                                              batch_size=batch_size)
            recipe.optimizer.gradient_scale *= gradient_scale_factor
        recipe.kernel_quantizer = lambda: keras_bilevel.AdaSTE(relaxed_forward=relaxed)
        if initializer is not None:  # else the recipe's own
            recipe.kernel_initializer = initializer
        if reach is not None:
            recipe.callbacks = [keras_bilevel.callbacks.AnnealMuToBinary(
                epochs * steps_per_epoch, reach=reach),
                keras_bilevel.callbacks.BinarizationGap(warn_above=None)]
        return recipe
    return make


EXPLORE = {
    "adam-relaxed-reach0.8": _explore(True, 0.8),
    "adam-relaxed-reach0.5": _explore(True, 0.5),
    "adam-relaxed-reach0.8-init1": _explore(
        True, 0.8, initializer=lambda: keras_bilevel.initializers.RandomSign(1.0)),
    "recipe-reach0.8": _explore(True, 0.8, optimizer="latent"),
    "recipe-scale0.01": _explore(True, None, optimizer="latent", gradient_scale_factor=0.01),
    "adam-sign-reach0.8": _explore(False, 0.8),
}

METHODS = {
    "adaste-recipe-symmetric": _reference("symmetric"),
    "adaste-recipe-reference": _reference("reference"),
    "adaste": recipes.METHODS["adaste"],
    "ste": recipes.METHODS["ste"],
    "bop": recipes.METHODS["bop"],
    "full-precision": recipes.METHODS["full-precision"],
    **EXPLORE,
}


class _TestEachEpoch(tf.keras.callbacks.Callback):
    def __init__(self, dataset):
        super().__init__()
        self.dataset = dataset
        self.accuracy = []

    def on_epoch_end(self, epoch, logs=None):
        self.accuracy.append(float(self.model.evaluate(self.dataset, verbose=0)[1]))


def run_one(method, seed, splits, args):
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    steps = -(-splits.num_train // args.batch_size)
    recipe = METHODS[method](splits.num_train, args.epochs, steps, batch_size=args.batch_size)
    model = keras_bilevel.models.binary_mlp(
        tuple(splits.input_shape), args.hidden_units, depth=args.depth,
        classes=splits.classes, kernel_quantizer=recipe.kernel_quantizer,
        kernel_initializer=recipe.kernel_initializer,
        kernel_constraint=recipe.kernel_constraint)
    model.compile(recipe.optimizer,
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=args.jit)
    tester = _TestEachEpoch(splits.test)
    start = time.perf_counter()
    history = model.fit(splits.train, validation_data=splits.validation, epochs=args.epochs,
                        callbacks=list(recipe.callbacks) + [tester], verbose=0)
    seconds = time.perf_counter() - start
    return {
        "seed": seed,
        "test_accuracy": tester.accuracy[-1],
        "test_accuracy_per_epoch": tester.accuracy,
        "val_accuracy_per_epoch": [float(v) for v in history.history["val_accuracy"]],
        "seconds": seconds,
    }


def summarise(runs):
    final = np.array([r["test_accuracy"] for r in runs])
    val = np.array([r["val_accuracy_per_epoch"][-1] for r in runs])
    return {"test_accuracy_mean": float(final.mean()), "test_accuracy_std": float(final.std()),
            "val_accuracy_mean": float(val.mean()), "runs": runs}


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for method, summary in results.items():
        curves = np.array([r["test_accuracy_per_epoch"] for r in summary["runs"]])
        epochs = np.arange(1, curves.shape[1] + 1)
        ax.plot(epochs, 100 * curves.mean(0), label=f"{method} "
                f"({100 * summary['test_accuracy_mean']:.2f}±{100 * summary['test_accuracy_std']:.2f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%), mean over seeds")
    ax.set_ylim(bottom=max(ax.get_ylim()[0], 90))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden-units", type=int, default=256)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--name", default="mnist_accuracy")
    parser.add_argument("--smoke", action="store_true", help="digits, 1 epoch, 1 seed")
    args = parser.parse_args(argv)
    if args.smoke:
        args.dataset, args.epochs, args.seeds, args.hidden_units = "digits", 1, [0], 16
        args.name = "mnist_accuracy_smoke"
    results = {}
    for method in args.methods:
        runs = []
        for seed in args.seeds:
            splits = keras_bilevel.data.load(args.dataset, batch_size=args.batch_size,
                                             seed=seed, data_dir=args.data_dir)
            runs.append(run_one(method, seed, splits, args))
            print(f"{method:26s} seed {seed}: test {100 * runs[-1]['test_accuracy']:.2f}% "
                  f"val {100 * runs[-1]['val_accuracy_per_epoch'][-1]:.2f}% "
                  f"({runs[-1]['seconds']:.0f} s)", flush=True)
        results[method] = summarise(runs)
    record = {
        "benchmark": "mnist_accuracy",
        "config": vars(args),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "tensorflow": tf.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "results": results,
    }
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, f"{args.name}.json"), "w") as f:
        json.dump(record, f, indent=2)
    plot(results, os.path.join(args.output, f"{args.name}.png"))
    for method, s in results.items():
        print(f"{method:26s} {100 * s['test_accuracy_mean']:.2f} ± "
              f"{100 * s['test_accuracy_std']:.2f}")
    return record


if __name__ == "__main__":
    main()
