"""Does the input pipeline keep up? Images/s read against images/s trained, per front end.

Writes a TinyImageNet tree of generated 64x64 JPEGs (`--images`, 10,000 by default: 100
classes of 100 training images, in the official layout), then, in a process per front
end (one at a time, nothing else running):

- the pipeline: the training batches of whole epochs (decode, random-resized crop to
  64x64, flip, standardise, batch 128) read and thrown away: `tf.data` for the Larq
  front end, Pillow on threads for Keras 3; images/s per epoch, after an untimed first
  epoch (the file check and `tf.data`'s tracing, once per run);
- the training step: ResNet-18 (TinyImageNet form, every weight binary, AdaSTE with its
  recipe) on one batch of 128 of those images, `train_on_batch` after two warm-up steps;
  images/s per step.

Reported per front end: the medians, and their ratio (pipeline / step): above 1 the step
bounds an epoch, below 1 the pipeline does. Keras 3 runs on PyTorch, the faster Keras 3
backend for convolutions on a CPU (JAX compiles them slowly here). The CPU model and its
vector extensions are recorded with the results.

    python benchmarks/input_pipeline.py               # the full measurement
    python benchmarks/input_pipeline.py --smoke       # seconds; checks it runs

Writes `benchmarks/results/input_pipeline.json` and `.png`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from reference_speed import plot_bar_pairs, save_measurement  # noqa: E402

FRONT_ENDS = {"larq": None, "keras3": "torch"}  # name: KERAS_BACKEND


def write_tree(root, images, classes):
    """A TinyImageNet tree of `images` training JPEGs over `classes` classes."""
    sys.path.insert(0, ROOT)
    from tests.image_trees import write_tiny_imagenet

    return write_tiny_imagenet(root, classes=classes, per_class=images // classes,
                               val_per_class=2, size=64, grey_every=50)


def measure_in_this_process(front_end, tree, args):
    """`{"pipeline": [images/s per epoch], "step": [images/s per step]}`."""
    if front_end == "larq":
        from keras_bilevel import data, models, recipes  # first: Keras 2 for Larq

        import tensorflow as tf

        make, loss = recipes.make, tf.keras.losses
    else:
        import keras

        from keras_bilevel.keras3 import data, methods, models

        make, loss = methods.make, keras.losses
    splits = data.load("tiny_imagenet", batch_size=args.batch_size, data_dir=tree,
                       validation_fraction=0)
    pipeline = []
    first_batch = None
    for epoch in range(args.blocks + 1):  # epoch 0 untimed: it traces the pipeline
        started, count = time.perf_counter(), 0
        for images, labels in splits.epoch_batches(epoch):
            if first_batch is None:
                first_batch = (np_array(images), np_array(labels))
            count += len(labels)
        if epoch:
            pipeline.append(count / (time.perf_counter() - started))
    recipe = make("adaste", splits.num_train, 1, splits.steps_per_epoch,
                  batch_size=args.batch_size)
    model = models.resnet18(input_shape=splits.input_shape, classes=splits.classes,
                            width=args.width)
    model.compile(recipe.optimizer, loss.SparseCategoricalCrossentropy(from_logits=True))
    for _ in range(2):
        model.train_on_batch(*first_batch)
    step = []
    for _ in range(args.steps):
        started = time.perf_counter()
        model.train_on_batch(*first_batch)
        step.append(len(first_batch[1]) / (time.perf_counter() - started))
    return {"pipeline": pipeline, "step": step}


def np_array(value):
    import numpy as np

    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def run_front_end(front_end, tree, args):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS",
                                                               "KERAS_BACKEND")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if FRONT_ENDS[front_end]:
        env["KERAS_BACKEND"] = FRONT_ENDS[front_end]
    command = [sys.executable, os.path.abspath(__file__), "--worker", front_end,
               "--tree", tree, "--blocks", str(args.blocks), "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--width", str(args.width)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if result.returncode:
        raise SystemExit(f"{front_end} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def summary(found):
    results = {}
    for front_end, values in found.items():
        pipeline = statistics.median(values["pipeline"])
        step = statistics.median(values["step"])
        results[front_end] = {
            "median_pipeline_images_per_second": pipeline,
            "median_step_images_per_second": step,
            "pipeline_over_step": pipeline / step,
            "bound_by": "training step" if pipeline > step else "input pipeline",
            "epochs": len(values["pipeline"]), "steps": len(values["step"])}
    return results


def plot(results, path, title):
    names = list(results)
    plot_bar_pairs(
        path, title, [f"{n} ({FRONT_ENDS[n] or 'tf.data'})" for n in names],
        [(label, [results[n][key] for n in names]) for key, label in [
            ("median_pipeline_images_per_second", "input pipeline"),
            ("median_step_images_per_second", "ResNet-18 training step")]],
        [(f"x{results[n]['pipeline_over_step']:.1f}", False) for n in names],
        "images / s (median, log scale)", log=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--front-ends", nargs="+", default=list(FRONT_ENDS),
                        choices=list(FRONT_ENDS))
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--blocks", type=int, default=3, help="epochs read per front end")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--width", type=float, default=1.0, help="ResNet-18's width")
    parser.add_argument("--output", default=os.path.join(HERE, "results"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--worker", choices=list(FRONT_ENDS), help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure_in_this_process(args.worker, args.tree, args)))
        return None
    name = "input_pipeline"
    if args.smoke:
        args.images, args.classes, args.blocks, args.steps = 60, 3, 1, 1
        args.batch_size, args.width = 8, 1 / 16
        name += "_smoke"
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        tree = os.path.dirname(write_tree(scratch, args.images, args.classes))
        print(f"wrote {args.images} JPEGs in {time.perf_counter() - started:.0f} s",
              flush=True)
        found = {}
        for front_end in args.front_ends:
            found[front_end] = run_front_end(front_end, tree, args)
            print(f"{front_end}: pipeline {found[front_end]['pipeline']} images/s, "
                  f"step {found[front_end]['step']} images/s", flush=True)
    results = summary(found)
    record = save_measurement(
        args.output, name, "input_pipeline.py", argv,
        {"dataset": "tiny_imagenet layout, generated 64x64 JPEGs", "images": args.images,
         "classes": args.classes, "batch_size": args.batch_size, "image_size": 64,
         "model": f"resnet18 (TinyImageNet form), width {args.width}",
         "keras3_backend": FRONT_ENDS["keras3"]},
        results, found, plot,
        f"{args.images} generated 64x64 JPEGs, batch {args.batch_size}")
    for front_end, r in results.items():
        print(f"{front_end:7s} pipeline {r['median_pipeline_images_per_second']:8.0f} "
              f"images/s, ResNet-18 step {r['median_step_images_per_second']:6.1f} "
              f"images/s: pipeline/step {r['pipeline_over_step']:.1f}, epochs bound by "
              f"the {r['bound_by']}")
    return record


if __name__ == "__main__":
    main()
