"""Training-step speed of every backend against the public PyTorch AdaSTE code.

Side by side, in one run on one machine, with the paper's recipe (AdaSTE, reference
variant, LatentMomentum, relaxed forward; the reference's own `FenBPOpt` for it): the
MNIST MLP 784-Wx3-10 at batch 100 for every width W of `--widths`, and VGG-16 and
ResNet-18 in their CIFAR forms at batch 128, on every front end in its default
configuration (`--configs` adds others). Each configuration runs in a worker process of
its own (`reference_speed_worker.py`; Keras and TensorFlow read their settings once per
process), all built first, then timed in turn, block after block, the order rotating, so
that no two ever run at once. A run has `--epochs` epochs of `--blocks` timed blocks;
between two epochs every worker does what its training loop does there (mu or beta
annealed, an evaluation with a smaller last batch), so that a slowdown that starts
after the first epoch shows. Reported per configuration and epoch: the median seconds
per step over blocks and the median over blocks of the reference's time divided by its
own in the same block (the speed-up; above 1 is faster than the reference), and the
worst epoch's speed-up. The CPU model and its vector extensions are recorded with the
results.

The reference is not part of this project: pass a checkout of it,

    git clone https://github.com/intellhave/AdaSTE /tmp/AdaSTE     # needs torch
    python benchmarks/reference_speed.py --reference /tmp/AdaSTE
    python benchmarks/reference_speed.py --reference /tmp/AdaSTE --models mlp --widths 2048
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
# what `keras-bilevel train` does on a CPU; XLA is left out of the CNNs (about 7x slower
# for convolutions on a CPU), which the Larq path's default also does.
ALL = ("mlp", "vgg16", "resnet18")
CONFIGS = {
    "reference": ("public PyTorch code (FenBPOpt), eager", "reference", {}, ALL),
    "larq": ("Larq path, default (XLA for the MLP, graph for CNNs; oneDNN on)", "larq",
             {}, ALL),
    "larq-no-onednn": ("Larq path, TF_ENABLE_ONEDNN_OPTS=0", "larq",
                       {"TF_ENABLE_ONEDNN_OPTS": "0"}, ALL),
    "larq-xla": ("Larq path, XLA (--jit)", "larq-xla", {}, ("mlp",)),
    "larq-graph": ("Larq path, graph (--no-jit)", "larq-graph", {}, ALL),
    "jax": ("Keras 3 JAX, default (jit)", "keras3-default", {"KERAS_BACKEND": "jax"},
            ALL),
    "tensorflow": ("Keras 3 TensorFlow, default (graph, AdaSTE math under XLA)",
                   "keras3-default", {"KERAS_BACKEND": "tensorflow"}, ALL),
    "tensorflow-xla": ("Keras 3 TensorFlow, XLA (--jit)", "keras3-jit",
                       {"KERAS_BACKEND": "tensorflow"}, ("mlp",)),
    "torch": ("Keras 3 PyTorch, default for this run (torch.compile from 10,000 steps)",
              "keras3-default", {"KERAS_BACKEND": "torch"}, ALL),
    "torch-eager": ("Keras 3 PyTorch, eager (the default below 10,000 steps)",
                    "keras3-eager", {"KERAS_BACKEND": "torch"}, ALL),
}
# NAME-ste_sign: configuration NAME with Larq's ste_sign in place of AdaSTE, the rest of
# the recipe unchanged; when both run, NAME's entry gets `adaste_over_ste_sign`, the
# median over blocks of its step time divided by this one's in the same block.
for _name in ("larq", "jax", "tensorflow", "torch"):
    _what, _config, _env, _models = CONFIGS[_name]
    CONFIGS[_name + "-ste_sign"] = (_what + ", ste_sign in place of AdaSTE",
                                    _config + "+ste_sign", _env, _models)
DEFAULTS = ("reference", "larq", "jax", "tensorflow", "torch")
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
                   "--warmup", str(warmup)] + (["--hidden", str(hidden)] if hidden else [])
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

    def _ask(self, line, key):
        """Send `line`; the value of `key` in the worker's JSON answer."""
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            self.log.seek(0)
            raise RuntimeError(f"worker {self.name} ended on {line!r}:\n"
                               + self.log.read()[-3000:])
        return json.loads(answer)[key]

    def time(self, steps):
        return self._ask(f"time {steps}", "seconds_per_step")

    def end_epoch(self, epoch):
        return self._ask(f"epoch {epoch}", "epoch_seconds")

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            self.process.wait(timeout=120)
        self.log.close()


def measure(model, names, reference, blocks, steps, warmup, hidden, epochs=1):
    """Per configuration: setup seconds, and per epoch the seconds per step of every
    block, their median and the median over blocks of the speed-up over the reference
    (when it runs); `worst_epoch_speedup` is the smallest of those. Between epochs every
    worker does what a training loop does there (`Worker.end_epoch`)."""
    workers = []
    try:
        for name in names:
            print(f"  building {name} ({model}) ...", flush=True)
            workers.append(Worker(name, model, reference, warmup, hidden))
        times = {w.name: [[] for _ in range(epochs)] for w in workers}
        boundary = {w.name: [] for w in workers}
        for epoch in range(epochs):
            for block in range(blocks):
                shift = (epoch * blocks + block) % len(workers)
                for worker in workers[shift:] + workers[:shift]:
                    times[worker.name][epoch].append(worker.time(steps))
                print(f"  epoch {epoch + 1}/{epochs}, block {block + 1}/{blocks}: "
                      + ", ".join(f"{n} {1000 * t[epoch][-1]:.0f} ms"
                                  for n, t in times.items()), flush=True)
            if epoch + 1 < epochs:
                for worker in workers:
                    boundary[worker.name].append(worker.end_epoch(epoch))
    finally:
        for worker in workers:
            worker.close()
    results = {}
    for worker in workers:
        entry = {"what": CONFIGS[worker.name][0], "setup_seconds": worker.setup_seconds,
                 "epoch_end_seconds": boundary[worker.name], "epochs": []}
        for epoch, own in enumerate(times[worker.name]):
            row = {"seconds_per_step": own, "median_seconds": statistics.median(own)}
            if "reference" in times:
                row["speedup_vs_reference"] = statistics.median(
                    r / t for r, t in zip(times["reference"][epoch], own))
            entry["epochs"].append(row)
        entry["median_seconds"] = statistics.median(
            t for row in entry["epochs"] for t in row["seconds_per_step"])
        if "reference" in times:
            entry["worst_epoch_speedup"] = min(
                row["speedup_vs_reference"] for row in entry["epochs"])
        baseline = times.get(worker.name + "-ste_sign")
        if baseline:
            entry["adaste_over_ste_sign"] = statistics.median(
                t / b for own, base in zip(times[worker.name], baseline)
                for t, b in zip(own, base))
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
    """A panel per measure, a group per network. Speed-up over the reference: a bar per
    configuration for its worst epoch, a dot per epoch, dashed lines at the goals (2x the
    MLP, 1.5x the CNNs). AdaSTE over ste_sign: a bar per backend, the goal 1.05 dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for key, label, goals in (
            ("worst_epoch_speedup", "speed-up over the reference\n(bar: worst epoch; "
             "dots: each epoch)", lambda model: 2.0 if model.startswith("mlp") else 1.5),
            ("adaste_over_ste_sign", "AdaSTE step / ste_sign step", lambda model: 1.05)):
        models = [m for m, entries in results["models"].items()
                  if any(key in e for e in entries.values())]
        if models:
            panels.append((key, label, goals, models))
    if not panels:
        return
    fig, axes = plt.subplots(len(panels), 1, figsize=(
        max(6.0, 1.3 * max(len(p[3]) for p in panels) + 2), 4 * len(panels)), squeeze=False)
    for ax, (key, label, goal, models) in zip(axes[:, 0], panels):
        names = [n for n in CONFIGS if any(key in results["models"][m].get(n, {})
                                           for m in models)]
        width = 0.8 / len(names)
        for k, name in enumerate(names):
            xs, heights, dots = [], [], []
            for i, model in enumerate(models):
                entry = results["models"][model].get(name, {})
                if key in entry:
                    x = i + (k - (len(names) - 1) / 2) * width
                    xs.append(x)
                    heights.append(entry[key])
                    if key == "worst_epoch_speedup":
                        dots += [(x, e["speedup_vs_reference"]) for e in entry["epochs"]]
            ax.bar(xs, heights, width=width, label=name)
            if dots:
                ax.plot([x for x, _ in dots], [y for _, y in dots], "k.", ms=3)
        for i, model in enumerate(models):
            ax.hlines(goal(model), i - 0.45, i + 0.45, colors="black", linestyles="dashed",
                      lw=1)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xticks(range(len(models)), models)
        ax.set_ylabel(label)
        ax.legend(fontsize=7, ncol=2)
    axes[0, 0].set_title(f"Paper recipe, {results['epochs']} epochs, dashed: goal; "
                         f"{results['cpu']['cores']}-core {results['cpu']['model']}",
                         fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default=None,
                        help="a checkout of github.com/intellhave/AdaSTE (needs torch)")
    parser.add_argument("--models", nargs="+", default=["mlp", "vgg16", "resnet18"],
                        choices=["mlp", "vgg16", "resnet18"])
    parser.add_argument("--configs", nargs="+", default=list(DEFAULTS), choices=list(CONFIGS),
                        help=f"default: every backend's default ({' '.join(DEFAULTS)})")
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs, each --blocks blocks of --steps steps, with what a "
                             "training loop does between epochs in between")
    parser.add_argument("--blocks", type=int, default=5, help="timed blocks per epoch")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps per block (default 10 for the MLP, 2 for the CNNs)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--widths", nargs="+", type=int, default=[512, 1024, 2048, 4096],
                        help="the MLP's widths, each a network of its own (mlp-WIDTH)")
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
        args.models, args.blocks, args.warmup, args.widths = ["mlp"], 2, 1, [64]
        args.epochs = 2
        names = [n for n in ("reference", "larq", "larq-ste_sign", "jax")
                 if n != "reference" or args.reference]
    names = [n for n in names if any(m in CONFIGS[n][3] for m in args.models)]
    stem = args.name or ("reference_speed_smoke" if args.smoke else "reference_speed")
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "command": " ".join(["python", "benchmarks/reference_speed.py",
                                    *(sys.argv[1:] if argv is None else argv)]),
               "cpu": cpu_description(), "versions": _versions(), "epochs": args.epochs,
               "blocks": args.blocks, "models": {}}
    networks = [(f"mlp-{w}", "mlp", w) for w in args.widths if "mlp" in args.models]
    networks += [(m, m, None) for m in args.models if m != "mlp"]
    for key, model, hidden in networks:
        steps = args.steps or (1 if args.smoke else (10 if model == "mlp" else 2))
        runs_here = [n for n in names if model in CONFIGS[n][3]]
        print(f"{key}: {', '.join(runs_here)}; {args.epochs} epochs of {args.blocks} "
              f"blocks of {steps} steps")
        results["models"][key] = measure(model, runs_here, args.reference, args.blocks,
                                         steps, args.warmup, hidden, args.epochs)
        os.makedirs(args.output, exist_ok=True)
        with open(os.path.join(args.output, stem + ".json"), "w") as f:  # after each model
            json.dump(results, f, indent=2)
    plot(results, os.path.join(args.output, stem + ".png"))
    for model, entries in results["models"].items():
        print(f"\n{model} ({results['cpu']['model']}, {', '.join(results['cpu']['vector_flags'])})")
        for name, entry in entries.items():
            speedups = [e.get("speedup_vs_reference") for e in entry["epochs"]]
            ratio = entry.get("adaste_over_ste_sign")
            print(f"  {name:20s} {1000 * entry['median_seconds']:8.1f} ms/step"
                  + ("  epochs: " + ", ".join(f"{s:.2f}x" for s in speedups)
                     if None not in speedups else "")
                  + (f"  AdaSTE / ste_sign {ratio:.3f}" if ratio else ""))


if __name__ == "__main__":
    main()
