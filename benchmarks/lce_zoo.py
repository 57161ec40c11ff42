"""Larq Zoo architectures with AdaSTE kernels through `.keras` and Larq Compute Engine.

For every architecture of `larq_zoo.sota` and `larq_zoo.literature` (larq-zoo 2.4.0),
built with `weights=None`, 64x64x3 inputs and 10 classes:

1. the kernel quantizers that are binary (a sign, possibly scaled per output channel:
   `ste_sign`, `approx_sign`, `magnitude_aware_sign`, XNOR-Net's scaled sign, ...) are
   replaced by `"ada_ste"` through the model config (variant `ada_ste`), or kept as
   shipped (variant `shipped`); the input quantizers stay as shipped;
2. the model trains `--epochs` epochs on `--images` random images (Adam; with AdaSTE
   `AnnealMu(1.05)`, so that `mu` moves);
3. it is saved to `.keras` and loaded again: the predictions must be equal and so must
   every AdaSTE quantizer's `mu`;
4. the loaded model goes through `keras_bilevel.export.to_lce` (`--samples` random-normal
   inputs, LCE's interpreter): file size and its ratio to the float32 file, binary ops
   (`LceBconv2d`), flips of binary activations within rounding, the differences and the
   verdict: `pass`, `refused` (the self-check found a departure; the departing binary
   activation and the layer feeding it are recorded) or `error` (the message).

Each architecture runs in its own process with a time limit (`--timeout`; past it the
row says so), `--jobs` of them at a time. Results are merged into
`benchmarks/results/lce_zoo.json` by (model, variant), so the survey can be run in
parts. Not part of CI: it needs larq-zoo, which
pulls in `zookeeper`, whose requirements downgrade packages TensorFlow needs. Install
both without their dependencies into a separate folder and put it on `PYTHONPATH`:

    pip install --no-deps --target /tmp/zoo_site larq-zoo==2.4.0 zookeeper==1.4.0
    PYTHONPATH=/tmp/zoo_site nice -n 19 python benchmarks/lce_zoo.py
    PYTHONPATH=/tmp/zoo_site python benchmarks/lce_zoo.py --models QuickNetSmall \\
        --variants ada_ste shipped
"""

import argparse
import concurrent.futures
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUTPUT = os.path.join(ROOT, "benchmarks", "results", "lce_zoo.json")
MODELS = [  # cheapest first, so that a partial run covers the most rows
    "QuickNetSmall", "BinaryResNetE18", "BiRealNet", "QuickNet", "BinaryAlexNet",
    "XNORNet", "DoReFaNet", "RealToBinaryNet", "BinaryDenseNet28", "QuickNetLarge",
    "BinaryDenseNet37", "BinaryDenseNet37Dilated", "BinaryDenseNet45", "MeliusNet22",
]
VARIANTS = ("ada_ste", "shipped")
KERNEL_QUANTIZERS = ("kernel_quantizer", "depthwise_quantizer", "pointwise_quantizer")
INPUT_SHAPE = (64, 64, 3)
CLASSES = 10


def _zoo():
    import keras_bilevel  # noqa: F401  (Keras 2 mode before larq_zoo loads TensorFlow)

    try:
        import larq_zoo
    except ImportError as error:
        raise SystemExit(
            f"benchmarks/lce_zoo.py needs larq-zoo ({error}); install it with "
            "`pip install --no-deps --target DIR larq-zoo==2.4.0 zookeeper==1.4.0` and run "
            "with PYTHONPATH=DIR (installing zookeeper's dependencies breaks TensorFlow)."
        ) from error
    return larq_zoo


def architectures():
    """Every model function larq_zoo offers under `sota` and `literature`."""
    zoo = _zoo()
    found = {}
    for package in (zoo.sota, zoo.literature):
        for name in getattr(package, "__all__", dir(package)):
            if name[0].isupper() and callable(getattr(package, name)):
                found[name] = getattr(package, name)
    return found


# ------------------------------------------------------------------ one architecture


def _is_binary_kernel_quantizer(quantizer):
    """A sign, possibly scaled per output channel (Larq `precision == 1`, or a function
    whose output has one nonzero magnitude per output channel)."""
    import numpy as np
    import tensorflow as tf

    if quantizer is None:
        return False
    if getattr(quantizer, "precision", None) is not None:
        return quantizer.precision == 1
    theta = tf.random.stateless_normal((3, 3, 4, 8), seed=(1, 2))
    out = np.abs(np.asarray(quantizer(theta))).reshape(-1, 8)
    return bool(np.all(out > 0) and np.allclose(out, out[:1], rtol=1e-5))


def _quantizer_name(quantizer):
    return getattr(quantizer, "__name__", None) or type(quantizer).__name__


def swap_to_ada_ste(model, custom_objects=None):
    """`(new_model, replaced)`: the model rebuilt from its config with every binary kernel
    quantizer replaced by `"ada_ste"`; `replaced` counts the quantizers replaced by name.
    `custom_objects`: for the rebuild (default: larq_zoo's, `zoo_custom_objects()`)."""
    import tensorflow as tf

    targets, replaced = {}, {}
    for layer in model.layers:
        for key in KERNEL_QUANTIZERS:
            quantizer = getattr(layer, key, None)
            if _is_binary_kernel_quantizer(quantizer):
                targets.setdefault(layer.name, []).append(key)
                name = _quantizer_name(quantizer)
                replaced[name] = replaced.get(name, 0) + 1
    config = model.get_config()
    for layer in config["layers"]:
        for key in targets.get(layer["config"]["name"], []):
            layer["config"][key] = "ada_ste"
    if custom_objects is None:
        custom_objects = zoo_custom_objects()
    return tf.keras.Model.from_config(config, custom_objects=custom_objects), replaced


def swap_in_place(model):
    """`replaced` as in `swap_to_ada_ste`, for a model whose config cannot be rebuilt
    (MeliusNet22's `Lambda` loses its op): a fresh `AdaSTE` object becomes the quantizer
    of every binary kernel of the built model, which then trains and exports as it is.

    A built Larq layer quantizes through its kernel variable (a `QuantizedVariable` made
    at build time with the quantizer of that time), so both the layer's attribute (its
    config, the export) and the variable's quantizer (the training) are replaced."""
    import keras_bilevel

    replaced = {}
    for layer in model.layers:
        for key in KERNEL_QUANTIZERS:
            quantizer = getattr(layer, key, None)
            if _is_binary_kernel_quantizer(quantizer):
                name = _quantizer_name(quantizer)
                replaced[name] = replaced.get(name, 0) + 1
                ada_ste = keras_bilevel.AdaSTE()
                setattr(layer, key, ada_ste)
                variable = getattr(layer, key.replace("_quantizer", "_kernel")
                                   if key != "kernel_quantizer" else "kernel")
                variable.quantizer = ada_ste
    return replaced


def zoo_custom_objects():
    """Functions and layer classes defined in larq_zoo's model modules (the shipped
    XNOR-Net and DoReFa-Net kernel quantizers, Real-to-Binary's rescale layer), which
    `.keras` files name but Keras does not know."""
    import inspect

    import tensorflow as tf

    zoo, found = _zoo(), {}
    modules = [module for package in (zoo.sota, zoo.literature)
               for module in vars(package).values() if inspect.ismodule(module)]
    for module in modules:
        for value in vars(module).values():
            owners = [value] + (list(vars(value).values()) if inspect.isclass(value) else [])
            for item in owners:
                if getattr(item, "__module__", "").startswith("larq_zoo") and (
                    inspect.isfunction(item)
                    or (inspect.isclass(item) and issubclass(item, tf.keras.layers.Layer))
                ):
                    found[item.__name__] = item
    return found


def _has_lambdas(model):
    import tensorflow as tf

    return any(isinstance(layer, tf.keras.layers.Lambda) for layer in model.layers)


def _mu_values(model):
    from keras_bilevel.callbacks import adaste_quantizers

    return [float(quantizer.mu.numpy()) for quantizer in adaste_quantizers(model)]


def _train(model, variant, images, batch, epochs, seed):
    import numpy as np
    import tensorflow as tf

    from keras_bilevel.callbacks import AnnealMu

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((images, *INPUT_SHAPE)).astype(np.float32)
    y = rng.integers(0, CLASSES, images)
    softmax = getattr(model.layers[-1], "activation", None) is tf.keras.activations.softmax
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax)
    model.compile("adam", loss)
    callbacks = [AnnealMu(rate=1.05)] if variant == "ada_ste" else []
    history = model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0,
                        callbacks=callbacks)
    return x, [float(v) for v in history.history["loss"]]


def _round_trip(model, x, workdir):
    import numpy as np
    import tensorflow as tf

    path = os.path.join(workdir, f"{model.name}.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path, custom_objects=zoo_custom_objects(),
                                        safe_mode=not _has_lambdas(model))
    before, after = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    mu_before, mu_after = _mu_values(model), _mu_values(loaded)
    return loaded, {
        "keras_bytes": os.path.getsize(path),
        "predictions_equal": bool(np.array_equal(before, after)),
        "predictions_max_abs_diff": float(np.max(np.abs(before - after))),
        "mu": sorted(set(mu_before)),
        "mu_equal": mu_before == mu_after,
    }


def _report_fields(report):
    departing = report.departing_layer
    return {
        "file_bytes": report.size_bytes,
        "float32_file_bytes": report.float32_size_bytes,
        "size_vs_float32": report.size_vs_float32,
        "ops": dict(report.ops),
        "lce_bconv2d": report.ops.get("LceBconv2d", 0),
        "binary_ops": report.binary_ops,
        "binary_activations": len(report.activations),
        "flips": report.flips,
        "largest_flip": max((c.largest_flip for c in report.activations), default=0.0),
        "max_rel_diff": report.max_rel_diff,
        "max_rel_diff_given_flips": report.max_rel_diff_given_flips,
        "argmax_agreement": report.argmax_agreement,
        "departing_activation": departing.name if departing else None,
        "departing_source": departing.source if departing else None,
        "largest_departure": departing.largest_departure if departing else None,
        "warnings": list(report.warnings),
    }


def survey_one(name, variant, images, batch, epochs, samples, workdir, seed=0):
    """The measured row of one architecture and variant (a dict; never raises)."""
    import keras_bilevel  # noqa: F401  (Keras 2 mode first)
    import tensorflow as tf

    from keras_bilevel import export

    row = {"model": name, "variant": variant, "verdict": "error", "stage": "build"}
    times = row["seconds"] = {}
    start = time.perf_counter()
    try:
        tf.keras.utils.set_random_seed(seed)
        model = architectures()[name](input_shape=INPUT_SHAPE, weights=None,
                                      num_classes=CLASSES)
        row["parameters"] = model.count_params()
        if _has_lambdas(model):
            # The zoo model holds Python lambdas (Real-to-Binary Net); this process
            # deserialises only what it built itself.
            tf.keras.__internal__.enable_unsafe_deserialization()
            row["python_lambdas"] = True
        if variant == "ada_ste":
            row["stage"] = "swap"
            tf.keras.utils.set_random_seed(seed)
            try:
                model, row["replaced"] = swap_to_ada_ste(model)
            except Exception as error:  # noqa: BLE001  (a config the zoo cannot rebuild)
                row["swap"] = (f"in place: the config does not rebuild "
                               f"({type(error).__name__}: {str(error)[:200]})")
                row["replaced"] = swap_in_place(model)
            if not row["replaced"]:
                row.update(verdict="not applicable", stage="swap",
                           message="no binary kernel quantizer to replace")
                return row
        times["build"] = time.perf_counter() - start
        row["stage"] = "train"
        x, row["loss"] = _train(model, variant, images, batch, epochs, seed)
        times["train"] = time.perf_counter() - start - sum(times.values())
        row["stage"] = "round trip"
        try:
            loaded, row["round_trip"] = _round_trip(model, x, workdir)
        except Exception as error:  # noqa: BLE001  (recorded; the live model exports)
            loaded = model
            row["round_trip"] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
        times["round_trip"] = time.perf_counter() - start - sum(times.values())
        row["stage"] = "export"
        path = os.path.join(workdir, f"{name}_{variant}.tflite")
        try:
            report = export.to_lce(loaded, path, num_samples=samples, verbose=False)
            row["verdict"] = "pass"
        except export.ExportError as error:
            report = error.report
            row["verdict"] = "refused"
            row["message"] = str(error).split("\n")[0]
        except TypeError as error:  # not a binary network LCE can pack: refused, named
            report = None
            row["verdict"] = "refused"
            row["message"] = f"{type(error).__name__}: {error}"[:2000]
        if report is not None:
            row.update(_report_fields(report))
        times["export"] = time.perf_counter() - start - sum(times.values())
        row["stage"] = "done"
    except Exception as error:  # noqa: BLE001  (the row records any failure)
        row["message"] = f"{type(error).__name__}: {error}"[:2000]
        row["traceback"] = traceback.format_exc()[-4000:]
    times["total"] = time.perf_counter() - start
    return row


# ------------------------------------------------------------------------ the survey


def _environment():
    import importlib.metadata

    versions = {}
    for package in ("tensorflow", "tf-keras", "larq", "larq-zoo", "larq-compute-engine"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.platform()}",
        "versions": versions,
    }


def _run_worker(name, variant, args, workdir):
    """One architecture in a fresh process (memory is returned, a hang is cut off)."""
    result = os.path.join(workdir, f"{name}_{variant}.json")
    command = [sys.executable, os.path.abspath(__file__), "--worker", name, variant,
               "--images", str(args.images), "--batch", str(args.batch),
               "--epochs", str(args.epochs), "--samples", str(args.samples),
               "--workdir", workdir]
    start = time.perf_counter()
    try:
        completed = subprocess.run(command, timeout=args.timeout, capture_output=True,
                                   text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    except subprocess.TimeoutExpired:
        return {"model": name, "variant": variant, "verdict": "skipped",
                "message": f"took more than {args.timeout} s (--timeout) on this machine"}
    if not os.path.exists(result):
        tail = (completed.stderr or completed.stdout)[-1500:]
        return {"model": name, "variant": variant, "verdict": "error",
                "message": f"worker exited with {completed.returncode}: {tail}",
                "seconds": {"total": time.perf_counter() - start}}
    with open(result) as f:
        return json.load(f)


def _merge(output, rows, args):
    record = {"benchmark": "lce_zoo", "rows": []}
    if os.path.exists(output):
        with open(output) as f:
            record = json.load(f)
    keep = {(r["model"], r["variant"]) for r in rows}
    record["rows"] = [r for r in record["rows"] if (r["model"], r["variant"]) not in keep]
    record["rows"] += rows
    order = {name: i for i, name in enumerate(MODELS)}
    record["rows"].sort(key=lambda r: (order.get(r["model"], len(order)), r["model"],
                                       VARIANTS.index(r["variant"])))
    record.update(
        _environment(),
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command="python benchmarks/lce_zoo.py " + " ".join(args.argv),
        settings={"input_shape": INPUT_SHAPE, "classes": CLASSES, "images": args.images,
                  "batch": args.batch, "epochs": args.epochs, "samples": args.samples,
                  "timeout_s": args.timeout},
    )
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as f:
        json.dump(record, f, indent=1)
    return record


def _verdict_cell(row):
    verdict = row["verdict"]
    if verdict == "refused" and row.get("departing_activation"):
        return (f"refused: departs at `{row['departing_activation']}` "
                f"(from `{row['departing_source']}`)")
    if verdict == "refused":
        return f"refused: {row.get('message', '').split(': ', 1)[-1][:140]}"
    if verdict == "pass":
        return "passes"
    message = row.get("message", "").split("\n")[0].split(". ")[0]
    return f"{verdict} ({row.get('stage', '')}): {message[:140]}"


def markdown_table(record):
    """The BENCHMARKS.md table of a survey record."""
    lines = [
        "| model | kernels | params | file (x float32) | LceBconv2d | flips | max rel. diff "
        "(given flips) | `.keras` round trip | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        replaced = ", ".join(f"{count} {name}"
                             for name, count in row.get("replaced", {}).items())
        kernels = row["variant"] + (f" (was {replaced})" if replaced else "")
        trip = row.get("round_trip")
        trip = ("-" if trip is None else "fails: " + " ".join(trip["error"].split())[:150] if "error" in trip
                else "equal" if trip["predictions_equal"] and trip["mu_equal"]
                else f"DIFFERS ({trip})")
        kernels += " (swapped in place)" if "swap" in row else ""
        if "file_bytes" in row:
            file = f"{row['file_bytes']:,} B ({row['size_vs_float32']:.3f}x)"
            given = row["max_rel_diff_given_flips"]
            diff = f"{row['max_rel_diff']:.2g}" + (f" ({given:.2g})" if given is not None
                                                    else "")
            cells = [file, row["lce_bconv2d"], row["flips"], diff]
        else:
            cells = ["-"] * 4
        params = f"{row['parameters'] / 1e6:.1f} M" if "parameters" in row else "-"
        lines.append("| " + " | ".join(
            str(c) for c in [row["model"], kernels, params, *cells, trip,
                             _verdict_cell(row)]) + " |")
    return "\n".join(lines)


def _summary(row):
    sizes = (f"{row['file_bytes']:,} B ({row['size_vs_float32']:.3f}x), "
             f"{row['lce_bconv2d']} LceBconv2d, {row['flips']} flips, "
             f"diff {row['max_rel_diff']:.3g} " if "file_bytes" in row else "")
    return f"{row['model']:<24} {row['variant']:<8} {sizes}-> {_verdict_cell(row)}"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", help="default: every architecture")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["ada_ste"])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=16, help="export check inputs")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per model")
    parser.add_argument("--jobs", type=int, default=1, help="models run at a time")
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument("--workdir", help="for the .keras and .tflite files")
    parser.add_argument("--table", action="store_true",
                        help="print the markdown table of --output and stop")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "VARIANT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        name, variant = args.worker
        row = survey_one(name, variant, args.images, args.batch, args.epochs,
                         args.samples, args.workdir)
        with open(os.path.join(args.workdir, f"{name}_{variant}.json"), "w") as f:
            json.dump(row, f, indent=1)
        return row
    if args.table:
        with open(args.output) as f:
            print(markdown_table(json.load(f)))
        return None
    available = list(architectures())  # fails early without larq-zoo
    names = args.models or [m for m in MODELS if m in available] + sorted(
        set(available) - set(MODELS))
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; larq_zoo offers {available}")
    record = None
    with tempfile.TemporaryDirectory() as scratch, \
            concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        workdir = args.workdir or scratch
        runs = [pool.submit(_run_worker, name, variant, args, workdir)
                for name in names for variant in args.variants]
        for run in concurrent.futures.as_completed(runs):
            print(_summary(run.result()), flush=True)
            record = _merge(args.output, [run.result()], args)
    return record


if __name__ == "__main__":
    main()
