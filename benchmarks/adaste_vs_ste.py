"""Does `--method adaste` lose to `--method ste`? The command line's own runs, both front ends.

Sweep mode runs `keras-bilevel train` (in a subprocess, as a user would) for every
(backend, data set, width, epochs, method, seed) not yet in the results file, and
appends each finished run at once (`benchmarks/results/adaste_vs_ste.json` by default):
a killed sweep loses nothing and a rerun continues. Each record keeps the final
validation and test accuracy and Adam's learning rate as the run's `recipe_sources`
state it. Report mode writes the markdown table (mean ± std over the seeds, and
`adaste` minus `ste` paired by seed with its standard error) and a plot of that
difference per cell (`adaste_vs_ste.png`).

    python benchmarks/adaste_vs_ste.py sweep --data-dir /tmp/tfds_offline \
        --backends larq jax --cells 1024:6 64:10 --seeds 0 1 2
    python benchmarks/adaste_vs_ste.py report --map benchmarks/results/adaste_map.json
    python benchmarks/adaste_vs_ste.py sweep --smoke --results /tmp/x.json   # CI

The methods are the command line's `--method adaste` and `--method ste`, with nothing
tuned here: this is the comparison a user gets. The MLP is `--model mlp` with
`--hidden-units WIDTH` (depth 3). Long runs are benchmarks, not tests: only `--smoke`
(digits, width 16, 1 epoch) runs in CI.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from adaste_map import append_run, read_runs  # noqa: E402  (one locked results file format)
from reference_speed import cpu_description  # noqa: E402

DEFAULT_RESULTS = os.path.join(HERE, "results", "adaste_vs_ste.json")
METHODS = ("adaste", "ste")


def _key(run):
    return (run["backend"], run["dataset"], run["width"], run["epochs"], run["method"],
            run["seed"])


def _cell(text):
    """`WIDTH:EPOCHS` -> (width, epochs)."""
    match = re.fullmatch(r"(\d+):(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected WIDTH:EPOCHS such as 1024:6, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def learning_rate(sources):
    """Adam's initial learning rate as a recipe's `sources["optimizer"]` states it."""
    match = (re.search(r"= ([0-9.e-]+) for width", sources)  # the width rule's
             or re.search(r"learning rate ([0-9.e-]+)", sources))
    return float(match.group(1)) if match else None


def train_one(backend, dataset, width, epochs, method, seed, data_dir):
    """One `keras-bilevel train` run in a subprocess; returns its record."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if backend != "larq":
        env.pop("TF_USE_LEGACY_KERAS", None)  # the Keras 3 front end chooses its own
    with tempfile.TemporaryDirectory() as output:
        command = [sys.executable, "-m", "keras_bilevel.cli", "train", "--backend", backend,
                   "--dataset", dataset, "--model", "mlp", "--hidden-units", str(width),
                   "--method", method, "--epochs", str(epochs), "--seed", str(seed),
                   "--output", output]
        if data_dir:
            command += ["--data-dir", data_dir]
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n"
                             f"{done.stderr[-3000:]}")
        with open(os.path.join(output, "metrics.json")) as handle:
            metrics = json.load(handle)
    return {
        "backend": backend, "dataset": dataset, "width": width, "epochs": epochs,
        "method": method, "seed": seed,
        "learning_rate": learning_rate(metrics["recipe_sources"].get("optimizer", "")),
        "val_accuracy": metrics["final"].get("val_accuracy"),
        "test_accuracy": metrics["test_accuracy"],
        "seconds": time.perf_counter() - start,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def sweep(args):
    done = {_key(run) for run in read_runs(args.results)}
    for seed in args.seeds:
        for width, epochs in args.cells:
            for backend in args.backends:
                for method in args.methods:
                    key = (backend, args.dataset, width, epochs, method, seed)
                    if key in done:
                        continue
                    run = train_one(backend, args.dataset, width, epochs, method, seed,
                                    args.data_dir)
                    append_run(args.results, run, key=_key, benchmark="adaste_vs_ste")
                    print(f"{backend:10s} {args.dataset} w{width} e{epochs} s{seed} "
                          f"{method:7s} lr {run['learning_rate']:.4g} "
                          f"val {100 * (run['val_accuracy'] or 0):.2f} "
                          f"test {100 * run['test_accuracy']:.2f} ({run['seconds']:.0f} s)",
                          flush=True)


def compare(runs):
    """Per (backend, dataset, width, epochs): both methods' test and validation accuracy
    over the seeds both have, and `adaste - ste` paired by seed (mean, standard error)."""
    cells = {}
    for run in runs:
        cell = (run["backend"], run["dataset"], run["width"], run["epochs"])
        cells.setdefault(cell, {}).setdefault(run["method"], {})[run["seed"]] = run
    rows = []
    for cell, by_method in sorted(cells.items()):
        seeds = sorted(set.intersection(*(set(by_method.get(m, {})) for m in METHODS)))
        if not seeds:
            continue
        row = {"cell": cell, "seeds": seeds}
        for split in ("test", "val"):
            for method in METHODS:
                row[f"{method}_{split}"] = [100 * by_method[method][s][f"{split}_accuracy"]
                                            for s in seeds]
            diffs = [a - b for a, b in zip(row[f"adaste_{split}"], row[f"ste_{split}"])]
            row[f"diff_{split}"] = statistics.mean(diffs)
            row[f"diff_{split}_se"] = (statistics.stdev(diffs) / len(diffs) ** 0.5
                                       if len(diffs) > 1 else float("nan"))
        row["adaste_lr"] = by_method["adaste"][seeds[0]]["learning_rate"]
        rows.append(row)
    return rows


def map_runs(path):
    """The `adaste` and `ste-lr1e-3` (`--method ste`) runs of `benchmarks/adaste_map.py`
    (Larq, its own training loop) as runs of this benchmark, under the front end
    "larq (map)"; the data set names the model where it is not the MLP."""
    from keras_bilevel.core.recipes import adaste_learning_rate  # pure Python

    runs = []
    for run in read_runs(path) if os.path.exists(path) else []:
        method = {"adaste": "adaste", "ste-lr1e-3": "ste"}.get(run["method"])
        if method is None:
            continue
        model = run.get("model", "mlp")
        runs.append({
            "backend": "larq (map)", "width": run["width"], "epochs": run["epochs"],
            "dataset": run["dataset"] + ("" if model == "mlp" else f", {model}"),
            "method": method, "seed": run["seed"],
            "val_accuracy": run["val_accuracy"], "test_accuracy": run["test_accuracy"],
            "learning_rate": (adaste_learning_rate(run["width"] if model == "mlp" else None)
                              if method == "adaste" else 1e-3)})
    return runs


def _mean_std(values):
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def report(args):
    rows = compare(read_runs(args.results) + (map_runs(args.map) if args.map else []))
    lines = ["| front end | data | width | epochs | seeds | `adaste` (lr) | `ste` (lr 1e-3) | "
             "adaste − ste, test (± s.e.) | adaste − ste, validation (± s.e.) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        backend, dataset, width, epochs = row["cell"]
        lines.append(
            f"| {backend} | {dataset} | {width} | {epochs} | {len(row['seeds'])} | "
            f"{_mean_std(row['adaste_test'])} ({row['adaste_lr']:.4g}) | "
            f"{_mean_std(row['ste_test'])} | {row['diff_test']:+.2f} ± "
            f"{row['diff_test_se']:.2f} | {row['diff_val']:+.2f} ± {row['diff_val_se']:.2f} |")
    print("\n".join(lines))
    if rows:
        plot(rows, args.plot or os.path.splitext(args.results)[0] + ".png")
    return rows


def plot(rows, path, clip=1.5):
    """Horizontal bars of `adaste - ste` (test and validation, ± standard error) per
    cell; a bar beyond `clip` points is cut there and labelled with its value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{b}: {d} {w}{'' if ',' in d else 'x3'}, {e} ep."  # "digits, vgg_small 128"
              for b, d, w, e in (row["cell"] for row in rows)]
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.32 * len(rows)))
    for offset, split in enumerate(("test", "val")):
        positions = [i + 0.4 * offset for i in range(len(rows))]
        values = [row[f"diff_{split}"] for row in rows]
        errors = [0 if row[f"diff_{split}_se"] != row[f"diff_{split}_se"]
                  else row[f"diff_{split}_se"] for row in rows]
        ax.barh(positions, [min(v, clip) for v in values], height=0.4,
                xerr=[e if v <= clip else 0 for v, e in zip(values, errors)], capsize=2,
                label="validation" if split == "val" else "test")
        for y, value in zip(positions, values):
            if value > clip:
                ax.annotate(f"{value:+.1f}", (clip, y), va="center", ha="right",
                            fontsize=7, color="white")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks([i + 0.2 for i in range(len(rows))], labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(-0.5, clip)
    ax.set_xlabel("adaste − ste (accuracy points; mean ± s.e. over seeds)")
    machine = cpu_description()
    ax.set_title(f"--method adaste minus --method ste; one {machine['cores']}-core "
                 f"{machine['model']}", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    run = sub.add_parser("sweep")
    run.add_argument("--dataset", default="mnist")
    run.add_argument("--data-dir", default=None)
    run.add_argument("--backends", nargs="+", default=["larq"],
                     choices=("larq", "jax", "tensorflow", "torch"))
    run.add_argument("--cells", nargs="+", type=_cell, default=[(1024, 6), (64, 10)],
                     metavar="WIDTH:EPOCHS")
    run.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    run.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    run.add_argument("--smoke", action="store_true",
                     help="digits, width 16, 1 epoch, seed 0 (checks that it runs)")
    run.add_argument("--results", default=DEFAULT_RESULTS)
    rep = sub.add_parser("report")
    rep.add_argument("--results", default=DEFAULT_RESULTS)
    rep.add_argument("--plot", default=None, help="default: next to the results file")
    rep.add_argument("--map", default=None, metavar="ADASTE_MAP_JSON",
                     help="also report the adaste and ste-lr1e-3 runs of "
                          "benchmarks/adaste_map.py's results file")
    args = parser.parse_args(argv)
    if args.mode == "report":
        return report(args)
    if args.smoke:
        args.dataset, args.cells, args.seeds = "digits", [(16, 1)], [0]
    sweep(args)
    return None


if __name__ == "__main__":
    main()
