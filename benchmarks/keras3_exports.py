"""What each export of a Keras 3 binary network gives: size, agreement, latency.

Three Keras 3 models, their BatchNorm statistics from one epoch on random data:

- `mlp`: the reference binary MLP (784-1024x3-10, binary weights, float ReLU);
- `vgg_small`: BinaryConnect's CIFAR network (binary weights, float ReLU);
- `binary_cnn`: the vgg_small layout fully binary: every layer but the first takes the
  sign of its input (`input_quantizer="ste_sign"`), no ReLU, as in Larq Compute Engine's
  networks.

Each is exported three ways (`keras_bilevel.keras3.export`): `to_tflite` with float32
weights, `to_tflite` with int8 storage of the binary weights, and `to_lce` (rebuilt from
Larq layers; the binary weights LCE does not bit-pack stored as int8). For each file:
its size against the float32 file; its agreement with the Keras model (`predict`) on 256
random-normal inputs, run here in its own interpreter (LiteRT for TFLite, LCE's for
LCE), with the export's own check on the same inputs (binary activations that flipped
within rounding of the threshold, the difference given the file's decisions); and its
latency for one input (median of `--runs` invocations after 3 warm-ups)
with 1 and 2 threads. On an x86 CPU LCE's interpreter runs its reference kernels; its
optimised binary kernels are for Arm.

    KERAS_BACKEND=tensorflow python benchmarks/keras3_exports.py     # the measurement
    KERAS_BACKEND=tensorflow python benchmarks/keras3_exports.py --smoke

Needs the Larq stack, LCE and Keras 3 in one environment (the test stack). Writes
`benchmarks/results/keras3_exports.json` and `.png`.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from reference_speed import plot_bar_pairs, save_measurement  # noqa: E402

MODELS = ("mlp", "vgg_small", "binary_cnn")
FORMATS = ("tflite-float32", "tflite-int8", "lce")


def build(name, width):
    import keras

    from keras_bilevel.keras3 import layers, models

    if name == "mlp":
        return models.binary_mlp(hidden_units=max(1, round(1024 * width)))
    if name == "vgg_small":
        return models.vgg_small(width=width)
    inputs = keras.Input((32, 32, 3))
    x, first = inputs, True
    for filters in (128, 128, "M", 256, 256, "M", 512, 512, "M"):
        if filters == "M":
            x = keras.layers.MaxPooling2D(2)(x)
            continue
        x = layers.QuantConv2D(max(1, round(filters * width)), 3, padding="same",
                               use_bias=False, kernel_quantizer="ste_sign",
                               input_quantizer=None if first else "ste_sign")(x)
        x = keras.layers.BatchNormalization()(x)
        first = False
    x = keras.layers.Flatten()(x)
    for units in (1024, 1024, 10):
        x = layers.QuantDense(max(1, round(units * width)) if units != 10 else 10,
                              use_bias=False, kernel_quantizer="ste_sign",
                              input_quantizer="ste_sign")(x)
        x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, x, name="binary_cnn")


def trained(model, count):
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(count, *model.inputs[0].shape[1:])).astype("float32")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, rng.integers(0, 10, count), batch_size=64, epochs=1, verbose=0)
    return model


def interpreter(fmt, content, threads):
    """A function running one batch through the file, with `threads` threads."""
    if fmt == "lce":
        from larq_compute_engine.tflite.python.interpreter import Interpreter

        return Interpreter(content, num_threads=threads).predict
    from keras_bilevel.export.check import tflite_runner

    return tflite_runner(content, num_threads=threads)


def measure_file(fmt, content, x, reference, runs):
    import numpy as np

    run = interpreter(fmt, content, 1)
    outputs = np.concatenate([run(x[i:i + 1]) for i in range(len(x))])
    scale = float(np.max(np.abs(reference))) or 1.0
    latency = {}
    for threads in (1, 2):
        run = interpreter(fmt, content, threads)
        one = x[:1]
        for _ in range(3):
            run(one)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            run(one)
            times.append(time.perf_counter() - started)
        latency[threads] = statistics.median(times)
    return {"size_bytes": len(content),
            "max_rel_diff": float(np.max(np.abs(outputs - reference))) / scale,
            "argmax_agreement": float(np.mean(outputs.argmax(-1) == reference.argmax(-1))),
            "latency_ms": {str(t): 1000 * s for t, s in latency.items()}}


def measure_model(name, args):
    import numpy as np

    from keras_bilevel.keras3 import export

    model = trained(build(name, args.width), args.train)
    x = np.random.default_rng(1).normal(
        size=(args.samples, *model.inputs[0].shape[1:])).astype("float32")
    reference = np.asarray(model.predict(x, verbose=0), np.float32)
    found = {}
    with tempfile.TemporaryDirectory() as folder:
        for fmt in FORMATS:
            path = os.path.join(folder, f"{name}.{fmt}.tflite")
            if fmt == "lce":
                report = export.to_lce(model, path, weights="int8", samples=x,
                                       verbose=False)
            else:
                report = export.to_tflite(model, path, weights=fmt.split("-")[1],
                                          samples=x, verbose=False)
            with open(path, "rb") as f:
                content = f.read()
            found[fmt] = measure_file(fmt, content, x, reference, args.runs)
            found[fmt]["binary_ops"] = report.binary_ops
            # The export's own check on the same inputs: binary activations that took
            # the other value within rounding of the threshold, and the difference
            # left once the model is given the file's binary decisions.
            found[fmt]["flips"] = report.flips
            found[fmt]["max_rel_diff_given_flips"] = report.max_rel_diff_given_flips
            found[fmt]["lce_bconv2d"] = int(report.ops.get("LceBconv2d", 0))
            print(f"{name:10s} {fmt:15s} {found[fmt]['size_bytes']:>11,} B, "
                  f"max rel diff {found[fmt]['max_rel_diff']:.2g}, latency "
                  f"{found[fmt]['latency_ms']['1']:.2f} / "
                  f"{found[fmt]['latency_ms']['2']:.2f} ms (1/2 threads)", flush=True)
    base = found["tflite-float32"]
    for fmt in FORMATS:
        found[fmt]["size_vs_float32"] = found[fmt]["size_bytes"] / base["size_bytes"]
        found[fmt]["latency_vs_float32"] = {
            t: found[fmt]["latency_ms"][t] / base["latency_ms"][t] for t in ("1", "2")}
    return found


def plot(results, path, title):
    names = list(results)
    plot_bar_pairs(
        path, title, names,
        [(label, [results[n][fmt]["size_vs_float32"] for n in names])
         for fmt, label in [("tflite-int8", "TFLite int8 weights"), ("lce", "LCE")]],
        [(f"{results[n]['lce']['latency_vs_float32']['1']:.1f}x time", True)
         for n in names],
        "file size / float32 TFLite file (LCE's time at 1 thread above)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--train", type=int, default=512, help="random training examples")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--output", default=os.path.join(HERE, "results"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = parser.parse_args(argv)
    name = "keras3_exports"
    if args.smoke:
        args.models, args.width, args.train, args.samples, args.runs = (
            ["binary_cnn"], 1 / 16, 64, 16, 3)
        name += "_smoke"
    import keras

    results = {model: measure_model(model, args) for model in args.models}
    return save_measurement(
        args.output, name, "keras3_exports.py", argv,
        {"backend": keras.backend.backend(), "width": args.width,
         "train_examples": args.train, "samples": args.samples, "runs": args.runs,
         "input": "one random-normal input per invocation (batch 1)"},
        results, None, plot, "Keras 3 exports")


if __name__ == "__main__":
    main()
