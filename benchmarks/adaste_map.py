"""Where AdaSTE wins: binary networks of several widths and budgets, every method, one file.

The networks are binary MLPs (`--model mlp`, the default) or VGG-Small (`--model
vgg_small`, for the digits or other small images).

Sweep mode trains every (data set, model, width, epochs, method, seed, batch size) run not yet in the
results file and appends each finished run to it at once (`benchmarks/results/adaste_map.json`
by default), so a killed sweep loses nothing and a rerun continues where it stopped.
Report mode reads that file and writes a markdown table (printed) and a plot of
test accuracy minus the tuned STE baseline against width (`adaste_map.png`), and per data
set a table of `adaste` minus the tuned STE with standard errors, per cell and pooled.

Settings are chosen on validation only (the last 10% of the training set, held out by
`keras_bilevel.data.load`); test accuracy is only reported. The STE baseline is tuned
with a learning-rate sweep (`ste-lr*`), Bop with a threshold sweep (`bop-t*`) and full
precision with a learning-rate sweep (`full-precision-lr*`); the tuned member of a family is
the one with the best validation accuracy on seed 0, then reported over all its seeds.

    python benchmarks/adaste_map.py sweep --dataset mnist --data-dir /tmp/tfds_offline \
        --widths 64 128 --epochs 5 20 --methods adaste adaste-reference ste-lr1e-3 --seeds 0
    python benchmarks/adaste_map.py report            # table + benchmarks/results/adaste_map.png
    python benchmarks/adaste_map.py sweep --dataset digits --model vgg_small --batch-size 32 \
        --widths 128 --epochs 20 --methods adaste ste-lr1e-2 --seeds 0
    python benchmarks/adaste_map.py sweep --smoke     # digits, width 16, 1 epoch (CI)

The methods (`_methods()`, listed by `sweep --methods nonsense`) are the product's recipes (`keras_bilevel.recipes`) plus tuned
baselines, ablations of the AdaSTE reference recipe, and AdaSTE and STE with SGD instead
of Adam (`adaste-sgd-lr*`, `ste-sgd-lr*`: the optimizer that keeps each weight's gradient
size, a diagnostic, not tuned baselines), all built here from public
objects (`keras_bilevel.AdaSTE`, `optimizers.LatentMomentum`, `initializers.RandomSign`,
`callbacks.AnnealMu` / `AnnealMuToBinary`).
"""

import argparse
import fcntl
import json
import os
import platform
import time
from datetime import datetime, timezone

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_RESULTS = os.path.join(HERE, "results", "adaste_map.json")


# ----------------------------------------------------------------------------- methods

def _methods():
    """Every configuration of the map by name: name -> f(train_size, epochs, steps, batch,
    width), width being the MLP's hidden units or None for VGG-Small (it sets `adaste`'s
    learning rate; the other configurations ignore it)."""
    import keras_bilevel  # noqa: F401  (Keras 2 mode before TensorFlow)
    from keras_bilevel import callbacks, initializers, recipes

    def product(name):
        return lambda n, e, s, b, w: recipes.make(name, n, e, s, batch_size=b, width=w)

    def ste(lr):
        return lambda n, e, s, b, w: recipes.ste(n, e, s, learning_rate=lr, batch_size=b)

    def full(lr):
        return lambda n, e, s, b, w: recipes.full_precision(n, e, s, learning_rate=lr,
                                                         batch_size=b)

    def bop(threshold):
        return lambda n, e, s, b, w: recipes.bop(n, e, s, threshold=threshold, batch_size=b)

    def adam_lr(lr):
        return lambda n, e, s, b, w: recipes.adaste_recommended(n, e, s, learning_rate=lr,
                                                             batch_size=b)

    def with_sgd(base, lr):
        """`base` (the `adaste` or `ste` recipe) with its Adam replaced by SGD with
        momentum 0.9 at `lr`, cosine decay: an optimizer that keeps the size of each
        weight's gradient, which Adam divides out (point 2 of the map)."""
        def make(n, e, s, b, w):
            import tensorflow as tf
            recipe = base(n, e, s, batch_size=b)  # its learning rate is replaced
            schedule = tf.keras.optimizers.schedules.CosineDecay(lr, decay_steps=e * s)
            recipe.optimizer = tf.keras.optimizers.SGD(schedule, momentum=0.9)
            return recipe
        return make

    def budget_lr(n, e, s, b, w):
        """A budget-aware alternative to the default (evaluated, not chosen): Adam's
        learning rate from the run's length, T = e * s steps.

        lr = clip(20 / T, 1e-3, 1e-2): the cosine-decayed path length sum_t lr_t ~ lr T / 2
        stays about 10 whatever the budget (1e-2 at 5 MNIST epochs, 2.4e-3 at 20).
        """
        lr = min(1e-2, max(1e-3, 20.0 / (e * s)))
        return recipes.adaste_recommended(n, e, s, learning_rate=lr, batch_size=b)

    def width_sqrt_lr(n, e, s, b, w):
        """A width rule that was evaluated, not chosen: Adam at 1e-2 * sqrt(64 / width),
        clipped to [1e-3, 1e-2] (a step's random flips, not coherent ones, kept constant;
        2.5e-3 at width 1024, against 1e-3 for the chosen 1 / width rule)."""
        lr = 1e-2 if w is None else min(1e-2, max(1e-3, 1e-2 * (64 / w) ** 0.5))
        return recipes.adaste_recommended(n, e, s, learning_rate=lr, batch_size=b)

    def ablation(optimizer="latent", scale=1.0, init=10.0, relaxed=True, mu="x1.05",
                 lr=None, scale_rule=None, momentum=0.9):
        """The reference recipe (variant "reference") with one or more parts swapped.

        optimizer: "latent" (LatentMomentum, (10 N)^2 * scale, `momentum`) or "adam"
            (cosine decay).
        scale_rule: None, or "steps": gradient_scale = (10 B T)^2 * scale with T the
            run's total steps (ties the update size to the budget instead of N).
        init: latent init magnitude (RandomSign) or None for Glorot.
        relaxed: relaxed forward (True, the recipe) or sign forward.
        mu: "x1.05" (AnnealMu per epoch), "const" (mu0 throughout) or "reachR"
            (AnnealMuToBinary reaching 1/alpha at fraction R of the run).
        """
        def make(n, e, s, b, w):
            if optimizer == "latent":
                recipe = recipes.adaste_reference(n, e, s, variant="reference", batch_size=b,
                                                  momentum=momentum,
                                                  **({"learning_rate": lr} if lr else {}))
                if scale_rule == "steps":
                    recipe.optimizer.gradient_scale = float(10 * b * e * s) ** 2 * scale
                else:
                    recipe.optimizer.gradient_scale *= scale
            else:
                recipe = recipes.adaste_recommended(n, e, s, batch_size=b,
                                                    learning_rate=lr or 1e-3)
            recipe.kernel_quantizer = lambda: keras_bilevel.AdaSTE(
                mu=0.01, alpha=0.01, variant="reference", relaxed_forward=relaxed)
            recipe.kernel_initializer = ((lambda: initializers.RandomSign(init)) if init
                                         else (lambda: "glorot_uniform"))
            if mu == "const":
                schedule = []
            elif mu.startswith("reach"):
                schedule = [callbacks.AnnealMuToBinary(e * s, reach=float(mu[5:]))]
            else:
                schedule = [callbacks.AnnealMu(rate=1.05)]
            recipe.callbacks = schedule + [callbacks.NonFiniteSteps()]
            return recipe
        return make

    table = {
        # `adaste` is `--method adaste`: Adam from clip(1e-2 x 64 / width, 1e-3, 1e-2)
        # (earlier defaults were 1e-2 for every width, runs now `adaste-lr1e-2` but at
        # width 64, and before that 1e-3, runs now `adaste-lr1e-3`; see the results
        # file's notes).
        "adaste": product("adaste"),
        "adaste-reference": product("adaste-reference"),
        "adaste-lr1e-3": adam_lr(1e-3),
        "adaste-lr3e-3": adam_lr(3e-3),
        "adaste-lr1e-2": adam_lr(1e-2),
        "adaste-lr3e-2": adam_lr(3e-2),
        "adaste-budget": budget_lr,
        "adaste-width-sqrt": width_sqrt_lr,
        "bop": product("bop"),
        "full-precision": product("full-precision"),
    }
    for lr in ("1e-3", "3e-3", "1e-2", "3e-2"):
        table[f"ste-lr{lr}"] = ste(float(lr))
        table[f"full-precision-lr{lr}"] = full(float(lr))
    for lr in ("1e-1", "1", "10", "100", "300", "1e3", "3e3"):
        table[f"adaste-sgd-lr{lr}"] = with_sgd(recipes.adaste_recommended, float(lr))
        table[f"ste-sgd-lr{lr}"] = with_sgd(recipes.ste, float(lr))
    for threshold in ("1e-8", "1e-7", "1e-6"):
        table[f"bop-t{threshold}"] = bop(float(threshold))
    # Ablations of the reference recipe: one part swapped at a time.
    table.update({
        "ref": ablation(),
        "ref-adam-glorot": ablation(optimizer="adam", init=None),
        "ref-adam": ablation(optimizer="adam"),
        "ref-sign": ablation(relaxed=False),
        "ref-init1": ablation(init=1.0),
        "ref-scale0.1": ablation(scale=0.1),
        "ref-scale10": ablation(scale=10.0),
        "ref-scale-steps": ablation(scale_rule="steps"),
        "ref-mu-const": ablation(mu="const"),
        "ref-mu-reach0.8": ablation(mu="reach0.8"),
        "ref-lr1e-3": ablation(lr=1e-3),
        "ref-lr1e-4": ablation(lr=1e-4),
        "ref-lr3e-3": ablation(lr=3e-3),
        "ref-mom0": ablation(momentum=0.0),
        "ref-sign-lr1e-3": ablation(relaxed=False, lr=1e-3),
    })
    return table


# Families whose best member (on validation) is the tuned baseline in the report.
# `bop` is `bop-t1e-8` and `full-precision` is `full-precision-lr1e-3` (the recipes' defaults).
TUNED = {"ste": ("ste-lr",), "bop": ("bop-t", "bop"),
         "full precision": ("full-precision-lr", "full-precision")}


# ----------------------------------------------------------------------------- results file

def _model(run):
    """The run's architecture: "mlp" (every run before `--model` existed) or "vgg_small"."""
    return run.get("model", "mlp")


def _batch_size(run):
    """The run's batch size (128 for every run before it was recorded)."""
    return run.get("batch_size", 128)


def _key(run):
    return (run["dataset"], _model(run), run["width"], run["depth"], run["epochs"],
            run["method"], run["seed"], _batch_size(run))


def read_runs(path):
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return json.load(handle)["runs"]


def append_run(path, run, key=_key, benchmark="adaste_map"):
    """Add one finished run to the results file (locked, re-read, atomically replaced),
    replacing any run with the same `key`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    lock = os.open(folder, os.O_RDONLY)  # the folder is the lock: parallel sweeps may share a file
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = {"benchmark": benchmark, "runs": []}
        if os.path.exists(path):
            with open(path) as handle:
                record = json.load(handle)  # keeps any other keys (the notes)
        record["runs"] = [r for r in record["runs"] if key(r) != key(run)] + [run]
        tmp = path + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(record, handle, indent=1)
        os.replace(tmp, path)
    finally:
        os.close(lock)


# ----------------------------------------------------------------------------- training

def build_model(keras_bilevel, model, input_shape, width, depth, classes, recipe):
    """The binary network of a run: `binary_mlp` of `width` hidden units and `depth`
    layers, or `vgg_small` whose first convolution has `width` filters (128 = the
    full network; the other layers scale with it)."""
    kernel = dict(kernel_quantizer=recipe.kernel_quantizer,
                  kernel_initializer=recipe.kernel_initializer,
                  kernel_constraint=recipe.kernel_constraint)
    if model == "vgg_small":
        from keras_bilevel.core.architectures import VGG_SMALL_CONVS  # (128, 128, "M", ...)
        return keras_bilevel.models.vgg_small(input_shape, classes=classes,
                                              width=width / VGG_SMALL_CONVS[0], **kernel)
    return keras_bilevel.models.binary_mlp(input_shape, width, depth=depth,
                                           classes=classes, **kernel)


def train_one(method, dataset, width, depth, epochs, seed, data_dir, batch_size=128,
              jit=False, model_name="mlp"):
    """Train one binary network; returns the run record (final validation and test
    accuracy)."""
    import keras_bilevel
    import tensorflow as tf

    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    splits = keras_bilevel.data.load(dataset, batch_size=batch_size, seed=seed,
                                     data_dir=data_dir)
    recipe = _methods()[method](splits.num_train, epochs, splits.steps_per_epoch,
                                batch_size, width if model_name == "mlp" else None)
    model = build_model(keras_bilevel, model_name, tuple(splits.input_shape), width, depth,
                        splits.classes, recipe)
    model.compile(recipe.optimizer,
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=jit)
    start = time.perf_counter()
    history = model.fit(splits.train, epochs=epochs, callbacks=list(recipe.callbacks),
                        verbose=0)
    seconds = time.perf_counter() - start
    return {
        "dataset": dataset, "model": model_name, "width": width, "depth": depth,
        "epochs": epochs, "batch_size": batch_size,
        "method": method, "seed": seed,
        "val_accuracy": float(model.evaluate(splits.validation, verbose=0)[1]),
        "test_accuracy": float(model.evaluate(splits.test, verbose=0)[1]),
        "train_loss": float(history.history["loss"][-1]),
        "seconds": seconds,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "tensorflow": tf.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def sweep(args):
    done = {_key(r) for r in read_runs(args.results)}
    names = _methods()
    for name in args.methods:
        if name not in names:
            raise SystemExit(f"--methods: unknown method {name!r}; choose from {sorted(names)}")
    depth = args.depth if args.model == "mlp" else None  # vgg_small has a fixed depth
    for seed in args.seeds:
        for epochs in args.epochs:
            for width in args.widths:
                for method in args.methods:
                    key = _key({"dataset": args.dataset, "model": args.model,
                                "width": width, "depth": depth, "epochs": epochs,
                                "method": method, "seed": seed,
                                "batch_size": args.batch_size})
                    if key in done:
                        continue
                    if args.stop_at and time.time() > args.stop_at:
                        print("stop time reached; not starting", key, flush=True)
                        return
                    run = train_one(method, args.dataset, width, depth, epochs, seed,
                                    args.data_dir, args.batch_size, args.jit, args.model)
                    append_run(args.results, run)
                    print(f"{args.dataset} {args.model} w{width} e{epochs} s{seed} "
                          f"{method:22s} "
                          f"val {100 * run['val_accuracy']:.2f} "
                          f"test {100 * run['test_accuracy']:.2f} "
                          f"({run['seconds']:.0f} s)", flush=True)


# ----------------------------------------------------------------------------- report

def cells(runs):
    """{(data, width, epochs): {method: [runs]}}; data is the data set, followed by the
    model where it is not the MLP and the batch size where it is not 128 ("digits,
    vgg_small, batch 32")."""
    table = {}
    for run in runs:
        batch = _batch_size(run)
        data = ", ".join([run["dataset"]] + ([_model(run)] if _model(run) != "mlp" else [])
                         + ([f"batch {batch}"] if batch != 128 else []))
        cell = table.setdefault((data, run["width"], run["epochs"]), {})
        cell.setdefault(run["method"], []).append(run)
    return table


def _mean(runs, field):
    return float(np.mean([r[field] for r in runs]))


def tuned(cell, family):
    """The member of a family with the best mean validation accuracy (ties: first name).

    `family` is (prefix, alias...): the methods named prefix* or exactly an alias.
    """
    prefix, *aliases = family
    members = {m: rs for m, rs in cell.items() if m.startswith(prefix) or m in aliases}
    if not members:
        return None
    return max(sorted(members), key=lambda m: _mean(members[m], "val_accuracy"))


def summary(cell, extras=()):
    """Rows of one cell: name -> (method, mean test, std test, mean val, seeds).

    `extras`: further methods to report under their own names (candidate defaults).
    """
    rows = {}

    def add(label, method):
        if method and method in cell:
            rs = cell[method]
            tests = [r["test_accuracy"] for r in rs]
            rows[label] = (method, float(np.mean(tests)), float(np.std(tests)),
                           _mean(rs, "val_accuracy"), len(rs))

    add("adaste", "adaste")
    add("adaste-reference", "adaste-reference")
    for method in extras:
        add(method, method)
    # Tuning picks on seed-0 validation; the tuned member is then reported over its seeds.
    seed0 = {m: [r for r in rs if r["seed"] == 0] or rs for m, rs in cell.items()}
    for label, family in TUNED.items():
        add(f"{label} (tuned)", tuned(seed0, family))
    return rows


def report(args):
    runs = read_runs(args.results)
    table = cells(runs)
    extras = tuple(args.extra)
    shown = ("adaste", "adaste-reference") + extras
    lines = ["| data | width | epochs | " + " | ".join(f"`{m}`" for m in shown) +
             " | ste (tuned) | bop (tuned) | full precision (tuned) | gap closed: " +
             " / ".join(f"`{m}`" for m in shown) + " |",
             "|---" * (len(shown) + 7) + "|"]
    points = []
    for key in sorted(table):
        dataset, width, epochs = key
        rows = summary(table[key], extras)

        def fmt(label):
            if label not in rows:
                return "not measured"
            method, mean, std, _, n = rows[label]
            tag = "" if label in shown else f" `{method}`"
            return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if n > 1 else "") + \
                f" (n={n}){tag}"

        def closed(label):
            try:
                ste, full = rows["ste (tuned)"][1], rows["full precision (tuned)"][1]
                value = rows[label][1]
            except KeyError:
                return "—"
            if full - ste <= 1e-4:
                return "n/a (no gap)"
            return f"{100 * (value - ste) / (full - ste):+.0f}%"

        lines.append(f"| {dataset} | {width} | {epochs} | "
                     + " | ".join(fmt(m) for m in shown)
                     + f" | {fmt('ste (tuned)')} | {fmt('bop (tuned)')} | "
                     f"{fmt('full precision (tuned)')} | "
                     + " / ".join(closed(m) for m in shown) + " |")
        points.append((key, rows))
    text = "\n".join(lines)
    print(text)
    for data in sorted({key[0] for key in table}):
        print()
        print(difference_table(table, data))
    if args.ablations:
        print()
        print(ablation_table(table, args.ablations))
    if points:
        plot(points, args.plot, extras)
        print(f"\nplot: {args.plot}")
    return text


def difference_to_tuned_ste(table, data, method="adaste", min_seeds=3):
    """`method` minus the tuned STE in every cell of `data` where both have `min_seeds`
    seeds and the STE was tuned (two learning rates or more ran), and over those cells
    together.

    Per cell: d = mean(method) - mean(tuned STE) of test accuracy, with the standard error
    se = sqrt(s_a^2 / n_a + s_b^2 / n_b) (sample variances, ddof 1). Pooled: the mean of
    the cells' d, with standard error sqrt(sum se^2) / cells (cells independent).

    Returns ([(width, epochs, d, se), ...], (mean d, its se) or None).
    """
    out = []
    for (cell_data, width, epochs), cell in sorted(table.items()):
        baseline = summary(cell).get("ste (tuned)")
        if cell_data != data or method not in cell or baseline is None:
            continue
        if sum(m.startswith(TUNED["ste"][0]) for m in cell) < 2:
            continue  # one rate: nothing was tuned (the 10-epoch cells)
        a = [r["test_accuracy"] for r in cell[method]]
        b = [r["test_accuracy"] for r in cell[baseline[0]]]
        if min(len(a), len(b)) < max(min_seeds, 2):
            continue
        se = np.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
        out.append((width, epochs, float(np.mean(a) - np.mean(b)), float(se)))
    if not out:
        return out, None
    ses = np.array([se for *_, se in out])
    return out, (float(np.mean([d for _, _, d, _ in out])),
                 float(np.sqrt(np.sum(ses ** 2)) / len(out)))


def difference_table(table, data, method="adaste", min_seeds=3):
    """Markdown: `difference_to_tuned_ste` in points, d / se as t."""
    per_cell, pooled = difference_to_tuned_ste(table, data, method, min_seeds)
    if pooled is None:
        return f"{data}: no cell with {min_seeds} seeds of `{method}` and the tuned STE"
    lines = [f"{data}: `{method}` − tuned STE, test points ({min_seeds}+ seeds each)",
             "| width | epochs | difference | standard error | t |", "|---|---|---|---|---|"]
    lines += [f"| {w} | {e} | {100 * d:+.2f} | {100 * se:.2f} | {d / se:+.1f} |"
              for w, e, d, se in per_cell]
    mean, se = pooled
    lines.append(f"| all {len(per_cell)} cells | | {100 * mean:+.2f} | {100 * se:.2f} | "
                 f"{mean / se:+.1f} |")
    return "\n".join(lines)


def ablation_table(table, selector):
    """Every method of one cell, `DATASET:WIDTH:EPOCHS`, sorted by validation."""
    dataset, width, epochs = selector.split(":")
    out = []
    for key, cell in sorted(table.items()):
        if key[0] != dataset or key[1] != int(width) or key[2] != int(epochs):
            continue
        out += [f"{dataset}, width {width}, {epochs} epochs",
                "| method | validation (%) | test (%) | seeds |", "|---|---|---|---|"]
        for method in sorted(cell, key=lambda m: -_mean(cell[m], "val_accuracy")):
            rs = cell[method]
            out.append(f"| `{method}` | {100 * _mean(rs, 'val_accuracy'):.2f} | "
                       f"{100 * _mean(rs, 'test_accuracy'):.2f} | {len(rs)} |")
    return "\n".join(out)


def plot(points, path, extras=()):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(k[0], k[2]) for k, _ in points})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    styles = {"adaste": ("o-", "C0"), "adaste-reference": ("s-", "C1"),
              "bop (tuned)": ("v:", "C2"), "full precision (tuned)": ("^--", "C3")}
    styles.update({m: ("D-", f"C{4 + i}") for i, m in enumerate(extras)})
    for ax, (dataset, epochs) in zip(axes[0], panels):
        chosen = sorted((k[1], rows) for k, rows in points
                        if k[0] == dataset and k[2] == epochs and "ste (tuned)" in rows)
        for label, (style, color) in styles.items():
            xs = [w for w, rows in chosen if label in rows]
            ys = [100 * (rows[label][1] - rows["ste (tuned)"][1])
                  for w, rows in chosen if label in rows]
            if xs:
                ax.plot(xs, ys, style, color=color, label=label)
        ax.axhline(0, color="k", lw=0.8, label="tuned STE")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("first convolution's filters" if "vgg" in dataset else "hidden width")
        ax.set_title(f"{dataset}, {epochs} epochs", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy − tuned STE (points)")
    handles = {}
    for ax in axes[0]:
        handles.update(zip(*reversed(ax.get_legend_handles_labels())))
    axes[0][-1].legend(list(handles.values()), list(handles), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- command line

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    run = sub.add_parser("sweep", help="train the missing cells, appending each run")
    run.add_argument("--dataset", default="mnist", help="mnist (needs --data-dir) or digits")
    run.add_argument("--data-dir", default=None)
    run.add_argument("--widths", nargs="+", type=int, default=[64, 128])
    run.add_argument("--model", choices=("mlp", "vgg_small"), default="mlp",
                     help="binary_mlp (--widths: hidden units) or vgg_small (--widths: "
                          "the first convolution's filters, 128 = the full network)")
    run.add_argument("--depth", type=int, default=3, help="the MLP's number of hidden layers")
    run.add_argument("--epochs", nargs="+", type=int, default=[5, 20])
    run.add_argument("--methods", nargs="+", default=["adaste", "adaste-reference",
                                                      "ste-lr1e-3", "bop", "full-precision"])
    run.add_argument("--seeds", nargs="+", type=int, default=[0])
    run.add_argument("--batch-size", type=int, default=128)
    run.add_argument("--jit", action="store_true", help="XLA (off by default: slower here)")
    run.add_argument("--stop-at", type=float, default=None,
                     help="Unix time after which no new run starts")
    run.add_argument("--smoke", action="store_true",
                     help="digits, width 16, 1 epoch, adaste only: checks that it runs")
    run.add_argument("--results", default=DEFAULT_RESULTS)
    rep = sub.add_parser("report", help="markdown table and plot of the results file")
    rep.add_argument("--results", default=DEFAULT_RESULTS)
    rep.add_argument("--plot", default=None, help="default: next to the results file")
    rep.add_argument("--extra", nargs="*", default=["adaste-budget", "adaste-lr1e-3"],
                     help="further methods to show as columns and in the plot")
    rep.add_argument("--ablations", default=None, metavar="DATASET:WIDTH:EPOCHS",
                     help="also list every method of that cell, sorted by validation")
    args = parser.parse_args(argv)
    if args.mode == "sweep":
        if args.smoke:
            args.dataset, args.widths, args.epochs = "digits", [16], [1]
            args.methods, args.seeds = ["adaste"], [0]
        if args.dataset != "digits" and args.data_dir is None:
            parser.error("--data-dir is required for MNIST (prepare it with "
                         "scripts/prepare_offline_mnist.py DATA_DIR)")
        sweep(args)
    else:
        if args.plot is None:
            args.plot = os.path.splitext(args.results)[0] + ".png"
        report(args)


if __name__ == "__main__":
    main()
