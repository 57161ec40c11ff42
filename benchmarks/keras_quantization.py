"""Keras's own `quantize` on trained binary networks, on every Keras 3 backend.

Three models, trained on the UCI digits (offline, 8x8 images) with each backend:

- `mlp`: the reference binary MLP (64-1024x3-10, AdaSTE);
- `vgg_small`: BinaryConnect's CIFAR network at half width on 8x8x1 inputs (AdaSTE);
- `keras_dense`: the same MLP made of Keras's own `Dense` (float weights), quantized the
  same way for comparison: its int8 kernel is Keras's absmax rounding of float weights.

For each model and mode (`"int8"`, `"int4"`) against the model before quantizing, on
the digits' test split: the largest difference of the logits (absolute and relative to
their largest magnitude), argmax agreement, test accuracy; the `.keras` file's size;
and the latency of `predict_on_batch` on a batch of 1 and of 256 test images (median
of `--runs` calls after warm-up, same process, same run). Each backend runs in its own
process (Keras reads the backend once).

    python benchmarks/keras_quantization.py            # every installed backend
    python benchmarks/keras_quantization.py --smoke   # a few steps, for the test suite

Writes `benchmarks/results/keras_quantization.json` and `.png`.
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

MODELS = ("mlp", "vgg_small", "keras_dense")
MODES = ("int8", "int4")


def build(name):
    import keras

    from keras_bilevel.keras3 import models

    if name == "mlp":
        return models.binary_mlp(input_shape=(64,))
    if name == "vgg_small":
        return models.vgg_small(input_shape=(8, 8, 1), width=0.5)
    return keras.Sequential(
        [keras.Input((64,))]
        + [layer for _ in range(3) for layer in (
            keras.layers.Dense(1024, use_bias=False),
            keras.layers.BatchNormalization(center=False, scale=False),
            keras.layers.Activation("relu"))]
        + [keras.layers.Dense(10, use_bias=False),
           keras.layers.BatchNormalization(center=False, scale=False)])


def median_seconds(call, runs):
    for _ in range(3):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(model, x, runs, folder, tag):
    """Logits, file size and latencies of `model` (saved into `folder`)."""
    import numpy as np

    path = os.path.join(folder, f"{tag}.keras")
    model.save(path)
    one, batch = x[:1], x[:256]
    return dict(
        logits=np.asarray(model.predict(x, batch_size=256, verbose=0), np.float64),
        bytes=os.path.getsize(path),
        latency_1=median_seconds(lambda: model.predict_on_batch(one), runs),
        latency_256=median_seconds(lambda: model.predict_on_batch(batch), runs))


def run_backend(args):
    """In a process of one backend: train, quantize, measure; print JSON."""
    import keras
    import numpy as np

    from keras_bilevel.keras3 import data

    keras.utils.set_random_seed(0)
    splits = data.load("digits", batch_size=64, augment=False)
    x_train, x_test = (splits.standardise(images)
                       for images in (splits.train_images, splits.test_images))
    y_train, y_test = splits.train_labels, splits.test_labels
    results = {}
    for name in MODELS:
        model = build(name)
        flat = len(model.inputs[0].shape) == 2
        shape = (-1, 64) if flat else (-1, 8, 8, 1)
        train, test = x_train.reshape(shape), x_test.reshape(shape)
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(train[:args.train_examples], y_train[:args.train_examples],
                  epochs=args.epochs, batch_size=64, verbose=0)
        weights = model.get_weights()
        reference = build(name)  # uncompiled, as the quantized copies: no optimizer saved
        reference.set_weights(weights)
        with tempfile.TemporaryDirectory() as folder:
            before = measure(reference, test, args.runs, folder, "float")
            for mode in MODES:
                served = build(name)
                served.set_weights(weights)
                served.quantize(mode)
                after = measure(served, test, args.runs, folder, mode)
                difference = np.abs(after["logits"] - before["logits"])
                results[f"{name}/{mode}"] = dict(
                    largest_difference=float(difference.max()),
                    relative_difference=float(difference.max()
                                              / np.abs(before["logits"]).max()),
                    argmax_agreement=float(np.mean(after["logits"].argmax(1)
                                                   == before["logits"].argmax(1))),
                    accuracy_before=float(np.mean(before["logits"].argmax(1) == y_test)),
                    accuracy_after=float(np.mean(after["logits"].argmax(1) == y_test)),
                    size_vs_float=after["bytes"] / before["bytes"],
                    bytes_before=before["bytes"], bytes_after=after["bytes"],
                    latency_1_ratio=after["latency_1"] / before["latency_1"],
                    latency_256_ratio=after["latency_256"] / before["latency_256"],
                    latency_1_before_ms=1e3 * before["latency_1"],
                    latency_256_before_ms=1e3 * before["latency_256"])
    print("RESULTS", json.dumps(results))


def plot(results, path, title):
    from reference_speed import plot_bar_pairs

    rows = [(backend, key) for backend in results for key in results[backend]
            if key.endswith("/int8")]
    short = {"tensorflow": "TF", "jax": "JAX", "torch": "torch", "mlp": "MLP",
             "vgg_small": "VGG-S", "keras_dense": "Dense"}
    groups = [f"{short[backend]}\n{short[key.split('/')[0]]}" for backend, key in rows]
    bars = [("file size vs float", [results[b][k]["size_vs_float"] for b, k in rows]),
            ("batch-256 latency vs float", [results[b][k]["latency_256_ratio"]
                                            for b, k in rows])]
    notes = [(f"{100 * results[b][k]['argmax_agreement']:.1f}%", False) for b, k in rows]
    plot_bar_pairs(path, title + " (int8; labels: argmax agreement)", groups, bars, notes,
                   "after quantize / before")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few steps, few runs")
    parser.add_argument("--backend-process", help=argparse.SUPPRESS)
    parser.add_argument("--backends", nargs="*", default=None)
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    args.epochs, args.runs, args.train_examples = (
        (1, 3, 128) if args.smoke else (15, 30, None))
    if args.backend_process:
        return run_backend(args)
    from reference_speed import save_measurement

    backends = args.backends or [b for b in ("jax", "tensorflow", "torch")
                                 if importlib.util.find_spec(b)]
    results = {}
    for backend in backends:
        env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
        env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        command = [sys.executable, os.path.abspath(__file__), "--backend-process", backend]
        if args.smoke:
            command.append("--smoke")
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"{backend}: {(done.stdout + done.stderr)[-3000:]}")
        results[backend] = json.loads(done.stdout.split("RESULTS", 1)[1])
        print(backend, json.dumps(results[backend], indent=1), flush=True)
    name = "keras_quantization_smoke" if args.smoke else "keras_quantization"
    return save_measurement(args.out, name, "keras_quantization.py", argv,
                            dict(epochs=args.epochs, runs=args.runs, data="digits"),
                            results, None, plot, "model.quantize on trained binary nets")


if __name__ == "__main__":
    main()
