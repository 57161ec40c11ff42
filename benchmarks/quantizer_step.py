"""Training-step cost of the AdaSTE quantizer against Larq's `ste_sign`.

Builds the same binary MLP (784-H-H-H-10, `keras_bilevel.models.binary_mlp`) once per
quantizer, compiles both with the same optimizer, and times them alternately in one
process: each AdaSTE configuration is paired with its own `ste_sign` model, and each block
runs `--steps` training steps of both in turn (the order alternating between blocks). The
reported figure is the median over blocks of the per-block time ratio (ours / ste_sign).
Writes `benchmarks/results/quantizer_step.json` and a plot next to it.

    python benchmarks/quantizer_step.py                 # the full measurement
    python benchmarks/quantizer_step.py --smoke         # seconds; checks the script runs
    python benchmarks/quantizer_step.py --model vgg16 --blocks 5 --steps 2 --memory

`--model vgg16` times VGG-16 in its CIFAR form at batch 128 instead of the MLP.
`--keras3` times the Keras 3 front end instead (`benchmarks/results/quantizer_step_keras3.json`):
the MLP's AdaSTE and `ste_sign` steps on JAX (`jit_compile=True`) and PyTorch (eager,
and with torch.compile but in `--smoke`),
and the Larq path's under XLA, one worker process per backend (Keras fixes its backend
per process; `keras3_step_worker.py`), whose timed blocks this process alternates.
`--memory` also measures the peak memory of training each model, in a fresh process per
model (peak resident set size minus the size before the first step, after a few steps),
and reports the ratio ours / ste_sign.
"""

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

import keras_bilevel  # noqa: F401  (Keras 2 mode first)
import numpy as np
import tensorflow as tf

QUANTIZERS = {
    "ste_sign": "ste_sign",
    "ada_ste": lambda: keras_bilevel.AdaSTE(),
    "ada_ste_relaxed": lambda: keras_bilevel.AdaSTE(relaxed_forward=True),
}
CANDIDATES = ["ada_ste", "ada_ste_relaxed"]


def _build(model_name, quantizer, hidden):
    if model_name == "vgg16":
        return keras_bilevel.models.vgg16((32, 32, 3), kernel_quantizer=quantizer)
    return keras_bilevel.models.binary_mlp((784,), hidden, kernel_quantizer=quantizer)


INPUT_SHAPES = {"mlp": (784,), "vgg16": (32, 32, 3)}


def _train_function(name, hidden, batch, jit, seed, model_name="mlp"):
    tf.keras.utils.set_random_seed(seed)
    model = _build(model_name, QUANTIZERS[name], hidden)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(1e-3),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *INPUT_SHAPES[model_name])).astype(np.float32)
    y = rng.integers(0, 10, batch)
    iterator = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    step = model.make_train_function()
    return lambda: step(iterator)


def _time_block(step_fn, steps):
    start = time.perf_counter()
    for _ in range(steps):
        logs = step_fn()
    float(logs["loss"])  # wait for the device
    return (time.perf_counter() - start) / steps


def measure_pair(name, hidden, batch, jit, blocks, steps, warmup, model_name="mlp"):
    """Median step time of `name` and of ste_sign, and the median per-block ratio."""
    pair = {n: _train_function(n, hidden, batch, jit, 0, model_name)
            for n in ("ste_sign", name)}
    for fn in pair.values():
        _time_block(fn, warmup)
    times = {n: [] for n in pair}
    for block in range(blocks):
        order = list(pair) if block % 2 == 0 else list(pair)[::-1]
        for n in order:
            times[n].append(_time_block(pair[n], steps))
    ratios = np.array(times[name]) / np.array(times["ste_sign"])
    return {
        "median_step_ms": 1e3 * float(np.median(times[name])),
        "ste_sign_median_step_ms": 1e3 * float(np.median(times["ste_sign"])),
        "median_ratio_vs_ste_sign": float(np.median(ratios)),
        "ratios": [float(r) for r in ratios],
    }


# The Keras 3 comparison: (worker, model) entries timed in every block, and the ratios
# reported (numerator, denominator, goal or None).
KERAS3_ENTRIES = [("jax", "ada_ste"), ("jax", "ste_sign"), ("larq", "ada_ste"),
                  ("larq", "ste_sign"), ("torch", "ada_ste"), ("torch", "ste_sign"),
                  ("torch_compile", "ada_ste"), ("torch_compile", "ste_sign")]
KERAS3_RATIOS = {
    "jax_ada_ste_vs_jax_ste_sign": (("jax", "ada_ste"), ("jax", "ste_sign"), 1.05),
    "jax_ada_ste_vs_larq_ada_ste_xla": (("jax", "ada_ste"), ("larq", "ada_ste"), 1.0),
    "torch_ada_ste_vs_torch_ste_sign": (("torch", "ada_ste"), ("torch", "ste_sign"), 1.2),
    "torch_compile_ada_ste_vs_torch_compile_ste_sign": (
        ("torch_compile", "ada_ste"), ("torch_compile", "ste_sign"), 1.05),
    "larq_ada_ste_vs_larq_ste_sign_xla": (("larq", "ada_ste"), ("larq", "ste_sign"), None),
}


class _Worker:
    """A timing process driven over stdin/stdout (see keras3_step_worker.py)."""

    def __init__(self, name, command, env):
        self.name = name
        self._log = tempfile.TemporaryFile("w+")
        self._process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self._log, text=True)

    def _read(self):
        line = self._process.stdout.readline()
        if not line:
            self._log.seek(0)
            raise RuntimeError(f"the {self.name} worker stopped:\n{self._log.read()[-3000:]}")
        return line.strip()

    def wait_ready(self):
        while self._read() != "ready":
            pass

    def time(self, model, steps):
        self._process.stdin.write(f"time {model} {steps}\n")
        self._process.stdin.flush()
        return json.loads(self._read())["seconds_per_step"]

    def close(self):
        if self._process.poll() is None:
            self._process.stdin.write("quit\n")
            self._process.stdin.close()
        self._process.wait(timeout=60)
        self._log.close()


def _larq_worker(args):
    """The Larq path's side of `--keras3`: its models compiled with XLA."""
    from keras3_step_worker import serve  # run as a script: this folder is on sys.path

    serve({name: _train_function(name, args.hidden, args.batch, True, 0)
           for name in ("ada_ste", "ste_sign")}, args.warmup)


def measure_keras3(args):
    """Median step times and per-block ratios of KERAS3_ENTRIES, blocks alternating."""
    here = os.path.dirname(os.path.abspath(__file__))
    sizes = ["--hidden", str(args.hidden), "--batch", str(args.batch),
             "--warmup", str(args.warmup)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(here),
                                                        os.environ.get("PYTHONPATH")])))
    workers = {}
    try:
        # torch.compile takes half a minute to compile even a small MLP: not in the smoke run.
        kinds = (("jax", "jax", []), ("torch", "torch", []),
                 *(() if args.smoke else (("torch_compile", "torch", ["--jit"]),)))
        for name, backend, jit in kinds:
            workers[name] = _Worker(
                name, [sys.executable, os.path.join(here, "keras3_step_worker.py"), *sizes,
                       *jit], dict(env, KERAS_BACKEND=backend))
        workers["larq"] = _Worker("larq", [sys.executable, os.path.abspath(__file__),
                                           "--larq-worker", *sizes], env)
        for worker in workers.values():
            worker.wait_ready()
        entries = [entry for entry in KERAS3_ENTRIES if entry[0] in workers]
        times = {entry: [] for entry in entries}
        for block in range(args.blocks):
            order = entries if block % 2 == 0 else entries[::-1]
            for worker, model in order:
                steps = args.torch_steps if worker.startswith("torch") else args.steps
                times[(worker, model)].append(workers[worker].time(model, steps))
    finally:
        for worker in workers.values():
            worker.close()
    results = {}
    for name, (top, bottom, goal) in KERAS3_RATIOS.items():
        if top not in times:
            continue
        ratios = np.array(times[top]) / np.array(times[bottom])
        results[name] = {
            "median_step_ms": 1e3 * float(np.median(times[top])),
            "baseline_median_step_ms": 1e3 * float(np.median(times[bottom])),
            "median_ratio": float(np.median(ratios)),
            "goal": goal,
            "ratios": [float(r) for r in ratios],
        }
        print(f"{name:36s} median ratio {results[name]['median_ratio']:.3f} "
              f"({results[name]['median_step_ms']:.1f} ms vs "
              f"{results[name]['baseline_median_step_ms']:.1f} ms per step; "
              f"{args.blocks} blocks)", flush=True)
    return {"keras3": results}


def _peak_memory_child(args):
    """In a fresh process: train a few steps, print the memory growth in bytes as JSON."""
    step = _train_function(args.memory_child, args.hidden, args.batch, args.jit_child, 0,
                           args.model)
    before = _rss_bytes()
    _time_block(step, 3)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"growth_bytes": peak - before}))


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_memory(name, args, jit):
    """Peak training memory of `name` and of ste_sign, each in its own process."""
    growth = {}
    for n in ("ste_sign", name):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", n, "--model", args.model,
             "--hidden", str(args.hidden), "--batch", str(args.batch)]
            + (["--jit-child"] if jit else []),
            capture_output=True, text=True, check=True)
        growth[n] = json.loads(out.stdout.strip().splitlines()[-1])["growth_bytes"]
    return {"peak_growth_bytes": growth[name], "ste_sign_peak_growth_bytes": growth["ste_sign"],
            "memory_ratio_vs_ste_sign": growth[name] / growth["ste_sign"]}


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels, ratios = [], []
    for mode, per_quantizer in results.items():
        for name, r in per_quantizer.items():
            labels.append(f"{name}\n{mode}")
            ratios.append(r["ratios"])
    ax.boxplot(ratios, tick_labels=labels)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.axhline(1.05, color="red", lw=0.8, ls="--", label="goal 1.05")
    ax.set_ylabel("step time / ste_sign step time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", choices=sorted(INPUT_SHAPES))
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=None,
                        help="default: 100 for the MLP, 128 for VGG-16")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory")
    parser.add_argument("--modes", nargs="+", default=["no_xla", "xla"],
                        choices=["no_xla", "xla"])
    parser.add_argument("--candidates", nargs="+", default=CANDIDATES, choices=CANDIDATES)
    parser.add_argument("--name", default=None, help="results file stem")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--jit-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keras3", action="store_true",
                        help="time the Keras 3 front end (JAX, PyTorch) against the Larq path")
    parser.add_argument("--larq-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--torch-steps", type=int, default=2,
                        help="with --keras3: steps per PyTorch block (its steps are slow)")
    parser.add_argument("--blocks", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = parser.parse_args(argv)
    if args.batch is None:
        args.batch = 128 if args.model == "vgg16" else 100
    if args.memory_child:
        return _peak_memory_child(args)
    if args.larq_worker:
        return _larq_worker(args)
    if args.smoke:
        args.hidden, args.blocks, args.steps, args.warmup, args.torch_steps = 32, 2, 2, 1, 1
    results = measure_keras3(args) if args.keras3 else {}
    for mode in [] if args.keras3 else args.modes:
        jit = mode == "xla"
        results[mode] = {}
        for name in args.candidates:
            r = measure_pair(name, args.hidden, args.batch, jit, args.blocks, args.steps,
                             args.warmup, args.model)
            if args.memory:
                r.update(measure_memory(name, args, jit))
            results[mode][name] = r
            print(f"{mode:7s} {name:16s} step ratio vs ste_sign "
                  f"{r['median_ratio_vs_ste_sign']:.3f}  (median of {args.blocks} blocks; "
                  f"ste_sign {r['ste_sign_median_step_ms']:.1f} ms/step)"
                  + (f"; peak memory ratio {r['memory_ratio_vs_ste_sign']:.3f}"
                     if args.memory else ""), flush=True)
    os.makedirs(args.output, exist_ok=True)
    name = args.name or "quantizer_step" + ("" if args.model == "mlp" else f"_{args.model}")
    name += "_keras3" if args.keras3 else ""
    name += "_smoke" if args.smoke else ""
    record = {
        "benchmark": "quantizer_step",
        "config": vars(args),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.platform()}",
        "tensorflow": tf.__version__,
        **({"versions": {package: importlib.metadata.version(package)
                         for package in ("keras", "jax", "torch", "larq", "tf-keras")}}
           if args.keras3 else {}),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "results": results,
    }
    with open(os.path.join(args.output, f"{name}.json"), "w") as f:
        json.dump(record, f, indent=2)
    plot(results, os.path.join(args.output, f"{name}.png"))
    return record


if __name__ == "__main__":
    main()
