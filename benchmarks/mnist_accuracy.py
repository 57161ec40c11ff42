"""Test accuracy of binary MLPs on real MNIST, per method, over seeds.

Trains the binary MLP (`binary_mlp`) on MNIST read from a prepared, offline TFDS
directory (`python scripts/prepare_offline_mnist.py DATA_DIR`) with each method for
several seeds, records validation and test accuracy after every epoch (settings are
chosen on validation only; test accuracy is only reported), and writes
`benchmarks/results/NAME.json` plus a plot of mean test accuracy per epoch.

    python benchmarks/mnist_accuracy.py --data-dir /tmp/tfds_offline --epochs 20 --seeds 0 1 2
    python benchmarks/mnist_accuracy.py --smoke          # digits, 1 epoch: checks it runs
    python benchmarks/mnist_accuracy.py --backend jax --methods adaste ste \
        --data-dir /tmp/tfds_offline --epochs 20 --seeds 0 1 2

`--backend larq` (the default) trains with Larq on Keras 2 (`keras_bilevel.recipes`,
`tf.data` pipelines); `jax`, `tensorflow` or `torch` train the same networks with the same
methods on Keras 3 (`keras_bilevel.keras3.methods`, NumPy batches of
`keras_bilevel.keras3.data`), results in `mnist_accuracy_BACKEND.json` by default. The
backend is fixed per process (Keras reads it once): the front end is imported after the
arguments are parsed.
"""

import argparse
import dataclasses
import json
import os
import platform
import time
from datetime import datetime, timezone

import numpy as np

BACKENDS = ("larq", "jax", "tensorflow", "torch")


def larq_methods():
    """The Larq path's methods by name: the command line's and the study's."""
    import keras_bilevel  # noqa: F401  (Keras 2 mode first)
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
    return METHODS


def keras3_methods():
    """The methods that exist on Keras 3 (the study's configurations are Larq-only)."""
    from keras_bilevel.keras3 import methods, recipes

    def reference(variant):
        def make(train_size, epochs, steps_per_epoch, batch_size=128):
            recipe = recipes.adaste_reference(train_size, epochs, steps_per_epoch,
                                              variant=variant, batch_size=batch_size)
            return methods.MethodRecipe(**vars(recipe))
        return make

    return {"adaste-recipe-symmetric": reference("symmetric"),
            "adaste-recipe-reference": reference("reference"),
            **{name: methods.METHODS[name] for name in ("adaste", "ste", "full-precision")}}


def _width_arguments(method, hidden_units):
    """`width` for `adaste`, whose learning rate depends on it (imported once a front end
    has loaded `keras_bilevel`: the package's import decides which front end loads)."""
    from keras_bilevel.core.recipes import width_arguments

    return width_arguments(method, hidden_units)


def _tester(callback_base, test_accuracy):
    """A callback of `callback_base` that records `test_accuracy(model)` every epoch."""

    class TestEachEpoch(callback_base):
        def __init__(self):
            super().__init__()
            self.accuracy = []

        def on_epoch_end(self, epoch, logs=None):
            self.accuracy.append(float(test_accuracy(self.model)))

    return TestEachEpoch()


def _fit(model, recipe, tester, seed, **fit_args):
    start = time.perf_counter()
    history = model.fit(callbacks=list(recipe.callbacks) + [tester], verbose=0, **fit_args)
    return {
        "seed": seed,
        "test_accuracy": tester.accuracy[-1],
        "test_accuracy_per_epoch": tester.accuracy,
        "val_accuracy_per_epoch": [float(v) for v in history.history["val_accuracy"]],
        "seconds": time.perf_counter() - start,
    }


class LarqFrontEnd:
    """Runs on Larq (Keras 2): tf.data pipelines, `keras_bilevel.models`."""

    def __init__(self, args):
        import keras_bilevel  # noqa: F401  (Keras 2 mode first)
        import tensorflow as tf

        self.tf, self.keras_bilevel, self.args = tf, keras_bilevel, args
        self.methods = larq_methods()
        self.versions = {"tensorflow": tf.__version__}

    def load(self, seed):
        args = self.args
        return self.keras_bilevel.data.load(args.dataset, batch_size=args.batch_size,
                                            seed=seed, data_dir=args.data_dir)

    def run_one(self, method, seed, splits):
        tf, args = self.tf, self.args
        tf.keras.backend.clear_session()
        tf.keras.utils.set_random_seed(seed)
        recipe = self.methods[method](splits.num_train, args.epochs, splits.steps_per_epoch,
                                      batch_size=args.batch_size,
                                      **_width_arguments(method, args.hidden_units))
        model = self.keras_bilevel.models.binary_mlp(
            tuple(splits.input_shape), args.hidden_units, depth=args.depth,
            classes=splits.classes, kernel_quantizer=recipe.kernel_quantizer,
            kernel_initializer=recipe.kernel_initializer,
            kernel_constraint=recipe.kernel_constraint)
        model.compile(recipe.optimizer,
                      tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], jit_compile=bool(args.jit))
        tester = _tester(tf.keras.callbacks.Callback,
                         lambda m: m.evaluate(splits.test, verbose=0)[1])
        return _fit(model, recipe, tester, seed, x=splits.train,
                    validation_data=splits.validation, epochs=args.epochs)


class Keras3FrontEnd:
    """Runs on Keras 3 with `args.backend`: NumPy batches, `keras_bilevel.keras3.models`."""

    def __init__(self, args):
        os.environ["KERAS_BACKEND"] = args.backend
        import keras

        from keras_bilevel.keras3 import data, models
        from keras_bilevel.cli import keras3_commands

        if keras.backend.backend() != args.backend:
            raise SystemExit(f"--backend {args.backend}: Keras already runs on "
                             f"{keras.backend.backend()} in this process; use a new one")
        self.keras, self.data, self.models, self.args = keras, data, models, args
        self.jit = keras3_commands.default_jit(args.jit)
        self.methods = keras3_methods()
        self.versions = {"keras": keras.__version__}
        self._splits = None

    def load(self, seed):
        args = self.args
        if self._splits is None:  # the arrays once; the batches depend on the seed
            self._splits = self.data.load(args.dataset, batch_size=args.batch_size,
                                          data_dir=args.data_dir)
        return dataclasses.replace(self._splits, seed=seed)

    def run_one(self, method, seed, splits):
        keras, args = self.keras, self.args
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        recipe = self.methods[method](splits.num_train, args.epochs, splits.steps_per_epoch,
                                      batch_size=args.batch_size,
                                      **_width_arguments(method, args.hidden_units))
        model = self.models.binary_mlp(
            tuple(splits.input_shape), args.hidden_units, depth=args.depth,
            classes=splits.classes, kernel_quantizer=recipe.kernel_quantizer,
            kernel_initializer=recipe.kernel_initializer,
            kernel_constraint=recipe.kernel_constraint)
        model.compile(recipe.optimizer,
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], jit_compile=self.jit)
        x_test, y_test = splits.test
        tester = _tester(keras.callbacks.Callback, lambda m: m.evaluate(
            x_test, y_test, batch_size=args.batch_size, verbose=0)[1])
        return _fit(model, recipe, tester, seed, x=splits.train_epochs(0, args.epochs),
                    steps_per_epoch=splits.steps_per_epoch, epochs=args.epochs,
                    validation_data=splits.validation, validation_batch_size=args.batch_size,
                    shuffle=False)


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
    parser.add_argument("--backend", default="larq", choices=BACKENDS)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="default: every method of the backend")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden-units", type=int, default=256)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                        help="XLA (default: off on Larq, as measured; the backend's "
                             "default on Keras 3: on for JAX)")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--name", default=None,
                        help="default mnist_accuracy, or mnist_accuracy_BACKEND")
    parser.add_argument("--smoke", action="store_true", help="digits, 1 epoch, 1 seed")
    args = parser.parse_args(argv)
    if args.name is None:
        args.name = "mnist_accuracy" + ("" if args.backend == "larq" else f"_{args.backend}")
    if args.smoke:
        args.dataset, args.epochs, args.seeds, args.hidden_units = "digits", 1, [0], 16
        args.name += "_smoke"
    front = LarqFrontEnd(args) if args.backend == "larq" else Keras3FrontEnd(args)
    args.methods = args.methods or list(front.methods)
    unknown = sorted(set(args.methods) - set(front.methods))
    if unknown:
        parser.error(f"--methods: {unknown} not available on --backend {args.backend}; "
                     f"choose from {list(front.methods)}")
    results = {}
    for method in args.methods:
        runs = []
        for seed in args.seeds:
            runs.append(front.run_one(method, seed, front.load(seed)))
            print(f"{method:26s} seed {seed}: test {100 * runs[-1]['test_accuracy']:.2f}% "
                  f"val {100 * runs[-1]['val_accuracy_per_epoch'][-1]:.2f}% "
                  f"({runs[-1]['seconds']:.0f} s)", flush=True)
        results[method] = summarise(runs)
    record = {
        "benchmark": "mnist_accuracy",
        "backend": args.backend,
        "config": vars(args),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        **front.versions,
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
