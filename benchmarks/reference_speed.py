"""Training-step speed of every backend against the public PyTorch AdaSTE code.

Side by side, in one run on one machine, with the paper's recipe (AdaSTE, reference
variant, LatentMomentum, relaxed forward; the reference's own `FenBPOpt` for it): the
MNIST MLP 784-2048x3-10 at batch 100 and VGG-16 in its CIFAR form at batch 128, on
every front end in its default configuration and its best one. Each configuration runs
in a worker process of its own (`reference_speed_worker.py`; Keras and TensorFlow read
their settings once per process), all built first, then timed in turn, block after block,
the order rotating, so that no two ever run at once. Reported per configuration: the
median seconds per step over blocks and the median over blocks of the reference's time
divided by its own in the same block (the speed-up; above 1 is faster than the
reference). The CPU model and its vector extensions are recorded with the results.

The reference is not part of this project: pass a checkout of it,

    git clone https://github.com/intellhave/AdaSTE /tmp/AdaSTE     # needs torch
    python benchmarks/reference_speed.py --reference /tmp/AdaSTE
    python benchmarks/reference_speed.py --reference /tmp/AdaSTE --models vgg16 --blocks 5
    python benchmarks/reference_speed.py --smoke           # seconds; no reference needed

Writes `benchmarks/results/reference_speed.json` and `reference_speed.png`.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "reference_speed_worker.py")

# name: (what it is, worker --config, environment, models it runs on). The defaults are
# what `keras-bilevel train` does on a CPU; XLA is left out of VGG-16 (about 7x slower
# for convolutions on a CPU).
CONFIGS = {
    "reference": ("public PyTorch code (FenBPOpt), eager", "reference", {}, ("mlp", "vgg16")),
    "larq": ("Larq path, default (graph, oneDNN on)", "larq", {}, ("mlp", "vgg16")),
    "larq-no-onednn": ("Larq path, TF_ENABLE_ONEDNN_OPTS=0", "larq",
                       {"TF_ENABLE_ONEDNN_OPTS": "0"}, ("mlp", "vgg16")),
    "larq-xla": ("Larq path, XLA (--jit)", "larq-xla", {}, ("mlp",)),
    "jax": ("Keras 3 JAX, default (jit)", "keras3-default", {"KERAS_BACKEND": "jax"},
            ("mlp", "vgg16")),
    "tensorflow": ("Keras 3 TensorFlow, default (graph, AdaSTE math under XLA)",
                   "keras3-default", {"KERAS_BACKEND": "tensorflow"}, ("mlp", "vgg16")),
    "tensorflow-xla": ("Keras 3 TensorFlow, XLA (--jit)", "keras3-jit",
                       {"KERAS_BACKEND": "tensorflow"}, ("mlp",)),
    "torch": ("Keras 3 PyTorch, default for this run (torch.compile from 10,000 steps)",
              "keras3-default", {"KERAS_BACKEND": "torch"}, ("mlp", "vgg16")),
    "torch-eager": ("Keras 3 PyTorch, eager (the default below 10,000 steps)",
                    "keras3-eager", {"KERAS_BACKEND": "torch"}, ("mlp", "vgg16")),
}
# Variables the parent's environment must not pass on: each worker gets the library's
# defaults unless its configuration sets them.
_CLEARED = ("TF_USE_LEGACY_KERAS", "KERAS_BACKEND", "TF_ENABLE_ONEDNN_OPTS")


def cpu_description():
    """The CPU model and the vector extensions that matter for these kernels."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("", platform.machine()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    break
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
    return {"model": model, "vector_flags": [f for f in wanted if f in flags],
            "cores": os.cpu_count()}


def plot_bar_pairs(path, title, groups, bars, notes, ylabel, log=False):
    """Two bars per group: `bars` is `[(label, values per group)] * 2`; `notes[i]` is
    written above group i's second bar (None: above its first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for offset, (label, values) in enumerate(bars):
        ax.bar([i + 0.38 * offset for i in range(len(groups))], values, width=0.38,
               label=label)
    for i, (text, second) in enumerate(notes):
        values = bars[1 if second else 0][1]
        ax.annotate(text, (i + (0.38 if second else 0), values[i]), ha="center",
                    va="bottom")
    if log:
        ax.set_yscale("log")
    ax.set_xticks([i + 0.19 for i in range(len(groups))], groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_measurement(directory, name, script, argv, setting, results, per_block, plot,
                     title):
    """Write `name`.json (date, command, machine, setting, results, per-block values)
    and `name`.png (`plot(results, path, title + the machine)`) into `directory`;
    returns the record."""
    machine = cpu_description()
    record = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": f"python benchmarks/{script} " + " ".join(argv or sys.argv[1:]),
        "machine": machine,
        "setting": setting,
        "results": results,
        "per_block": per_block,
    }
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name + ".json"), "w") as f:
        json.dump(record, f, indent=2)
    plot(results, os.path.join(directory, name + ".png"),
         f"{title}; one {machine['cores']}-core {machine['model']}")
    return record


class Worker:
    def __init__(self, name, model, reference, warmup, hidden):
        _, config, extra_env, _ = CONFIGS[name]
        env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
        env.update(extra_env, TF_CPP_MIN_LOG_LEVEL="3",
                   PYTHONPATH=os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p))
        command = [sys.executable, WORKER, "--config", config, "--model", model,
                   "--warmup", str(warmup), "--hidden", str(hidden)]
        if reference:
            command += ["--reference", reference]
        self.name = name
        # The worker's log goes to a file: a pipe nobody reads would block it when full.
        self.log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log,
                                        text=True, env=env, cwd=ROOT)
        line = self.process.stdout.readline()
        if not line.startswith("ready"):
            self.log.seek(0)
            error = self.log.read()[-3000:]
            raise RuntimeError(f"worker {name} ({model}) failed to start:\n{error}")
        self.setup_seconds = float(line.split()[1])

    def time(self, steps):
        self.process.stdin.write(f"time {steps}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())["seconds_per_step"]

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            self.process.wait(timeout=120)
        self.log.close()


def measure(model, names, reference, blocks, steps, warmup, hidden):
    """Per configuration: setup seconds, seconds per step of every block, and the
    per-block speed-up over the reference (when it runs)."""
    workers = []
    try:
        for name in names:
            print(f"  building {name} ({model}) ...", flush=True)
            workers.append(Worker(name, model, reference, warmup, hidden))
        times = {w.name: [] for w in workers}
        for block in range(blocks):
            shift = block % len(workers)
            for worker in workers[shift:] + workers[:shift]:
                times[worker.name].append(worker.time(steps))
            print(f"  block {block + 1}/{blocks}: " + ", ".join(
                f"{n} {1000 * t[-1]:.0f} ms" for n, t in times.items()), flush=True)
    finally:
        for worker in workers:
            worker.close()
    results = {}
    for worker in workers:
        own = times[worker.name]
        entry = {"what": CONFIGS[worker.name][0], "setup_seconds": worker.setup_seconds,
                 "seconds_per_step": own, "median_seconds": statistics.median(own)}
        if "reference" in times:
            entry["speedup_vs_reference"] = statistics.median(
                r / t for r, t in zip(times["reference"], own))
        results[worker.name] = entry
    return results


def _versions():
    import importlib.metadata

    found = {}
    for package in ("tensorflow", "tf-keras", "larq", "keras", "jax", "jaxlib", "torch",
                    "numpy"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in results["models"] if "reference" in results["models"][m]]
    if not models:
        return
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        rows = [(n, e["speedup_vs_reference"]) for n, e in results["models"][model].items()
                if n != "reference"]
        ax.barh([n for n, _ in rows], [s for _, s in rows], color="tab:blue")
        ax.axvline(1.0, color="black", lw=1)
        ax.set_xlabel("speed-up over the PyTorch reference (median of blocks)")
        ax.set_title(f"{model}, paper recipe, {results['cpu']['model']}", fontsize=9)
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default=None,
                        help="a checkout of github.com/intellhave/AdaSTE (needs torch)")
    parser.add_argument("--models", nargs="+", default=["mlp", "vgg16"],
                        choices=["mlp", "vgg16"])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--steps", type=int, default=None,
                        help="steps per block (default 10 for the MLP, 2 for VGG-16)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=2048, help="the MLP's width")
    parser.add_argument("--output", default=os.path.join(HERE, "results"))
    parser.add_argument("--name", default=None, help="results file stem")
    parser.add_argument("--smoke", action="store_true",
                        help="a narrow MLP, three configurations, two blocks: checks the script")
    args = parser.parse_args(argv)
    if args.reference and not os.path.exists(
            os.path.join(args.reference, "optimizers", "FenBPOpt.py")):
        parser.error(f"--reference {args.reference}: no optimizers/FenBPOpt.py there; "
                     "git clone https://github.com/intellhave/AdaSTE")
    names = [n for n in args.configs if n != "reference" or args.reference]
    if args.smoke:
        args.models, args.blocks, args.warmup, args.hidden = ["mlp"], 2, 1, 64
        names = [n for n in names if n in ("reference", "larq", "jax")]
    names = [n for n in names if any(m in CONFIGS[n][3] for m in args.models)]
    stem = args.name or ("reference_speed_smoke" if args.smoke else "reference_speed")
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "command": " ".join(["python", "benchmarks/reference_speed.py",
                                    *(sys.argv[1:] if argv is None else argv)]),
               "cpu": cpu_description(), "versions": _versions(), "blocks": args.blocks,
               "mlp_hidden": args.hidden,
               "models": {}}
    for model in args.models:
        steps = args.steps or (1 if args.smoke else (10 if model == "mlp" else 2))
        runs_here = [n for n in names if model in CONFIGS[n][3]]
        print(f"{model}: {', '.join(runs_here)}; {args.blocks} blocks of {steps} steps")
        results["models"][model] = measure(model, runs_here, args.reference, args.blocks,
                                           steps, args.warmup, args.hidden)
        os.makedirs(args.output, exist_ok=True)
        with open(os.path.join(args.output, stem + ".json"), "w") as f:  # after each model
            json.dump(results, f, indent=2)
    plot(results, os.path.join(args.output, stem + ".png"))
    for model, entries in results["models"].items():
        print(f"\n{model} ({results['cpu']['model']}, {', '.join(results['cpu']['vector_flags'])})")
        for name, entry in entries.items():
            speedup = entry.get("speedup_vs_reference")
            print(f"  {name:15s} {1000 * entry['median_seconds']:8.1f} ms/step"
                  + (f"  {speedup:5.2f}x the reference" if speedup else ""))


if __name__ == "__main__":
    main()
