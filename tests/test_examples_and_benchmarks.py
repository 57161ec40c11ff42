"""Smoke versions of the examples and benchmarks: they run and write what they promise."""

import argparse
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np

import pytest

from tests.conftest import MOCK_EXAMPLES


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(relative_path):
    path = os.path.join(ROOT, relative_path)
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_trains_a_binary_network(capsys):
    accuracy = _load("examples/quickstart.py").main(["--epochs", "5"])
    assert 0.8 < accuracy <= 1.0
    assert "Binary network (every weight +-1): test accuracy" in capsys.readouterr().out


def test_quantizer_step_benchmark_smoke(tmp_path):
    record = _load("benchmarks/quantizer_step.py").main(["--smoke", "--output", str(tmp_path)])
    with open(tmp_path / "quantizer_step_smoke.json") as f:
        saved = json.load(f)
    assert saved["results"] == record["results"]
    for mode in ("no_xla", "xla"):
        for name in ("ada_ste", "ada_ste_relaxed"):
            assert saved["results"][mode][name]["median_ratio_vs_ste_sign"] > 0
    assert (tmp_path / "quantizer_step_smoke.png").stat().st_size > 1000


@pytest.mark.slow  # three worker processes (JAX, PyTorch, Larq) start and compile: ~1 min
def test_quantizer_step_benchmark_keras3_smoke(tmp_path):
    record = _load("benchmarks/quantizer_step.py").main(
        ["--keras3", "--smoke", "--output", str(tmp_path)])
    saved = json.loads((tmp_path / "quantizer_step_keras3_smoke.json").read_text())
    assert saved["results"] == record["results"]
    ratios = saved["results"]["keras3"]
    assert set(ratios) == {"jax_ada_ste_vs_jax_ste_sign", "jax_ada_ste_vs_larq_ada_ste_xla",
                           "torch_ada_ste_vs_torch_ste_sign",
                           "larq_ada_ste_vs_larq_ste_sign_xla"}
    for result in ratios.values():
        assert len(result["ratios"]) == 2 and result["median_ratio"] > 0
    assert (tmp_path / "quantizer_step_keras3_smoke.png").stat().st_size > 1000


@pytest.mark.parametrize("model", [
    "mlp", pytest.param("vgg16", marks=pytest.mark.slow)])  # VGG-16's processes: ~1 min
def test_quantizer_step_benchmark_memory_smoke(tmp_path, model):
    record = _load("benchmarks/quantizer_step.py").main(
        ["--smoke", "--model", model, "--batch", "2", "--modes", "no_xla", "--memory",
         "--output", str(tmp_path)])
    result = record["results"]["no_xla"]["ada_ste"]
    assert result["memory_ratio_vs_ste_sign"] > 0 and result["peak_growth_bytes"] > 0
    stem = "quantizer_step_smoke" if model == "mlp" else f"quantizer_step_{model}_smoke"
    assert (tmp_path / f"{stem}.json").exists()


@pytest.mark.parametrize("script", ["mnist_mlp", "cifar10_vgg16", "cifar10_resnet18"])
def test_paper_examples_one_step_on_mock_data(script, mocked, monkeypatch, capsys):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "examples"))
    accuracy = _load(f"examples/{script}.py").main(
        ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "4",
         "--data-dir", mocked])
    assert 0.0 <= accuracy <= 1.0
    assert "test accuracy of the binary network" in capsys.readouterr().out


# The MNIST example on Keras 3 (JAX) in a process of its own, TFDS mocked there.
KERAS3_ON_MOCK_DATA = """
import sys
import tensorflow_datasets as tfds
sys.path.insert(0, "examples")
import mnist_mlp
with tfds.testing.mock_data(num_examples={examples}, data_dir={data_dir!r}):
    accuracy = mnist_mlp.main(["--backend", "jax", "--epochs", "1", "--steps-per-epoch", "1",
                               "--batch-size", "4", "--data-dir", {data_dir!r}])
assert 0.0 <= accuracy <= 1.0, accuracy
"""


def test_paper_example_on_keras3_jax_on_mock_data(metadata_dir):
    code = KERAS3_ON_MOCK_DATA.format(examples=MOCK_EXAMPLES, data_dir=metadata_dir)
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_USE_LEGACY_KERAS", "KERAS_BACKEND")}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "binary_mlp on mnist (jax): test accuracy of the binary network" in result.stdout


@pytest.mark.slow  # a process that loads Keras 3 on JAX and trains 5 epochs: ~30 s
def test_keras3_quickstart_trains_a_binary_network():
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    result = subprocess.run(
        [sys.executable, "examples/keras3_quickstart.py", "5"], cwd=ROOT,
        env=dict(env, KERAS_BACKEND="jax"), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    accuracy = float(result.stdout.split("on jax: test accuracy ")[1].split()[0])
    assert 0.8 < accuracy <= 1.0


def test_adaste_map_smoke_appends_resumes_and_reports(tmp_path):
    """One tiny run (digits, width 16, 1 epoch); a rerun trains nothing; report plots."""
    adaste_map = _load("benchmarks/adaste_map.py")
    results = str(tmp_path / "map.json")
    adaste_map.main(["sweep", "--smoke", "--results", results])
    (run,) = json.loads(open(results).read())["runs"]
    assert (run["dataset"], run["width"], run["epochs"], run["method"]) == \
        ("digits", 16, 1, "adaste")
    assert 0.0 <= run["test_accuracy"] <= 1.0 and 0.0 <= run["val_accuracy"] <= 1.0
    stamp = os.path.getmtime(results)
    adaste_map.main(["sweep", "--smoke", "--results", results])  # resumes: nothing to do
    assert os.path.getmtime(results) == stamp
    adaste_map.main(["report", "--results", results])
    assert (tmp_path / "map.png").stat().st_size > 1000


def test_adaste_map_tunes_baselines_on_validation_not_test():
    adaste_map = _load("benchmarks/adaste_map.py")

    def run(method, val, test):
        return {"dataset": "d", "width": 8, "depth": 3, "epochs": 1, "method": method,
                "seed": 0, "val_accuracy": val, "test_accuracy": test}

    runs = [run("ste-lr1e-3", 0.90, 0.95), run("ste-lr1e-2", 0.92, 0.80),
            run("full-precision-lr1e-3", 0.99, 0.97), run("adaste", 0.93, 0.86),
            run("bop", 0.91, 0.90), run("bop-t1e-7", 0.89, 0.93)]
    (cell,) = adaste_map.cells(runs).values()
    rows = adaste_map.summary(cell)
    assert rows["ste (tuned)"][0] == "ste-lr1e-2"  # best validation, worse test
    assert rows["full precision (tuned)"][0] == "full-precision-lr1e-3"
    assert rows["bop (tuned)"][0] == "bop"  # the default threshold is a family member
    assert rows["adaste"][1] == 0.86


def test_adaste_map_difference_to_tuned_ste_per_cell_and_pooled():
    """Exact values: cell 1, adaste {0.90, 0.92} vs tuned STE {0.89, 0.89} (picked over
    a worse-validation member): d = 0.02, se = sqrt(2e-4 / 2 + 0) = 0.01; cell 2, d =
    -0.01, se = sqrt(0 + 8e-4 / 2) = 0.02; pooled d = 0.005, se = sqrt(5e-4) / 2. A cell
    with one seed is left out, and so is one where the STE ran at one rate (not tuned)."""
    adaste_map = _load("benchmarks/adaste_map.py")

    def run(width, method, seed, test, val=0.5):
        return {"dataset": "d", "width": width, "depth": 3, "epochs": 1, "method": method,
                "seed": seed, "val_accuracy": val, "test_accuracy": test}

    runs = [run(8, "adaste", 0, 0.90), run(8, "adaste", 1, 0.92),
            run(8, "ste-lr1e-2", 0, 0.89, val=0.6), run(8, "ste-lr1e-2", 1, 0.89),
            run(8, "ste-lr1e-3", 0, 0.99, val=0.4), run(8, "ste-lr1e-3", 1, 0.99),
            run(16, "adaste", 0, 0.95), run(16, "adaste", 1, 0.95),
            run(16, "ste-lr1e-2", 0, 0.94), run(16, "ste-lr1e-2", 1, 0.98),
            run(16, "ste-lr1e-3", 0, 0.50, val=0.4), run(16, "ste-lr1e-3", 1, 0.50),
            run(24, "adaste", 0, 0.90), run(24, "adaste", 1, 0.90),
            run(24, "ste-lr1e-3", 0, 0.80), run(24, "ste-lr1e-3", 1, 0.80),
            run(32, "adaste", 0, 0.95), run(32, "ste-lr1e-2", 0, 0.90)]
    per_cell, (mean, se) = adaste_map.difference_to_tuned_ste(
        adaste_map.cells(runs), "d", min_seeds=2)
    assert [(w, e) for w, e, _, _ in per_cell] == [(8, 1), (16, 1)]
    np.testing.assert_allclose([d for _, _, d, _ in per_cell], [0.02, -0.01], atol=1e-12)
    np.testing.assert_allclose([s for *_, s in per_cell], [0.01, 0.02], rtol=1e-9)
    np.testing.assert_allclose([mean, se], [0.005, np.sqrt(5e-4) / 2], rtol=1e-9)
    table = adaste_map.difference_table(adaste_map.cells(runs), "d", min_seeds=2)
    assert table.splitlines()[-1] == "| all 2 cells | | +0.50 | 1.12 | +0.4 |"
    assert "no cell" in adaste_map.difference_table(adaste_map.cells(runs), "d")  # 3 seeds


def test_adaste_map_vgg_small_run_is_its_own_cell(tmp_path):
    """`--model vgg_small` trains VGG-Small (first convolution 8 filters here) on the
    digits, records the model and batch size, and reports it apart from the MLP of the
    same width."""
    adaste_map = _load("benchmarks/adaste_map.py")
    results = str(tmp_path / "map.json")
    args = ["sweep", "--dataset", "digits", "--epochs", "1", "--widths", "8",
            "--methods", "ste-lr1e-2", "--results", results]
    adaste_map.main(args + ["--model", "vgg_small", "--batch-size", "64"])
    adaste_map.main(args)
    runs = json.loads(open(results).read())["runs"]
    assert sorted((r["model"], r["depth"], r["batch_size"]) for r in runs) == \
        [("mlp", 3, 128), ("vgg_small", None, 64)]
    assert sorted(adaste_map.cells(runs)) == [("digits", 8, 1),
                                              ("digits, vgg_small, batch 64", 8, 1)]
    text = adaste_map.report(argparse.Namespace(results=results, extra=[], ablations=None,
                                                plot=str(tmp_path / "map.png")))
    assert "| digits, vgg_small, batch 64 | 8 | 1 |" in text and "| digits | 8 | 1 |" in text


def test_adaste_vs_ste_smoke_runs_the_command_line_and_resumes(tmp_path):
    """Both methods through `keras-bilevel train` (digits, width 16, 1 epoch): each run
    recorded with the learning rate its recipe states; a rerun trains nothing."""
    bench = _load("benchmarks/adaste_vs_ste.py")
    results = str(tmp_path / "vs.json")
    bench.main(["sweep", "--smoke", "--results", results])
    runs = json.loads(open(results).read())["runs"]
    assert sorted((r["backend"], r["width"], r["method"], r["learning_rate"])
                  for r in runs) == [("larq", 16, "adaste", 1e-2), ("larq", 16, "ste", 1e-3)]
    assert all(0 <= r["val_accuracy"] <= 1 and 0 <= r["test_accuracy"] <= 1 for r in runs)
    stamp = os.path.getmtime(results)
    bench.main(["sweep", "--smoke", "--results", results])
    assert os.path.getmtime(results) == stamp
    (row,) = bench.main(["report", "--results", results])
    assert row["cell"] == ("larq", "digits", 16, 1)
    assert (tmp_path / "vs.png").stat().st_size > 1000


def test_adaste_vs_ste_pairs_seeds_and_reads_the_learning_rate():
    """Exact values: seeds 0 and 1 in both methods (seed 2 only in adaste is left out):
    differences 1.0 and 3.0 points, mean 2.0, standard error 1.0."""
    bench = _load("benchmarks/adaste_vs_ste.py")

    def run(method, seed, test):
        return {"backend": "jax", "dataset": "mnist", "width": 1024, "epochs": 6,
                "method": method, "seed": seed, "test_accuracy": test,
                "val_accuracy": 0.5, "learning_rate": 1e-3}

    (row,) = bench.compare([run("adaste", 0, 0.91), run("adaste", 1, 0.93),
                            run("adaste", 2, 0.10), run("ste", 0, 0.90),
                            run("ste", 1, 0.90)])
    assert row["seeds"] == [0, 1]
    np.testing.assert_allclose([row["diff_test"], row["diff_test_se"], row["diff_val"]],
                               [2.0, 1.0, 0.0], atol=1e-9)
    assert bench.learning_rate("Adam, learning rate clip(1e-2 x 64 / width, 1e-3, 1e-2) "
                               "= 0.0025 for width 256 with cosine decay") == 2.5e-3
    assert bench.learning_rate("Adam, learning rate 0.001 with cosine decay") == 1e-3


@pytest.mark.parametrize("swap", ["swap_to_ada_ste", "swap_in_place"])
def test_lce_zoo_swaps_every_binary_kernel_quantizer_to_ada_ste(swap):
    """Both ways the zoo survey puts AdaSTE in a fully binary Larq model (no larq_zoo
    needed): binary kernels replaced and counted, inputs' quantizers kept, inference
    unchanged (AdaSTE's inference forward is the sign), training through AdaSTE's
    backward pass, and mu trained by AnnealMu."""
    import larq
    import numpy as np
    import tensorflow as tf

    import keras_bilevel
    from keras_bilevel.callbacks import AnnealMu

    lce_zoo = _load("benchmarks/lce_zoo.py")
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((6, 6, 2))
    x = larq.layers.QuantConv2D(4, 3, padding="same", kernel_quantizer="ste_sign",
                                input_quantizer="ste_sign", use_bias=False)(inputs)
    x = larq.layers.QuantSeparableConv2D(
        4, 3, depthwise_quantizer="ste_sign", pointwise_quantizer="ste_sign",
        input_quantizer="ste_sign", use_bias=False)(x)
    x = tf.keras.layers.Flatten()(x)
    outputs = larq.layers.QuantDense(3, kernel_quantizer="ste_sign",
                                     input_quantizer="ste_sign")(x)
    model = tf.keras.Model(inputs, outputs)
    images = np.random.default_rng(0).standard_normal((8, 6, 6, 2)).astype(np.float32)

    def twin(network, quantizer):
        """The same network built from its config with every kernel quantizer named."""
        config = network.get_config()
        for layer in config["layers"]:
            for key in lce_zoo.KERNEL_QUANTIZERS:
                if layer["config"].get(key):
                    layer["config"][key] = quantizer
        copy = tf.keras.Model.from_config(config)
        copy.set_weights(network.get_weights())
        return copy

    def kernel_gradients(network):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(network(images, training=True) ** 2)
        latent = [v for v in network.trainable_variables if "kernel" in v.name]
        return [g.numpy() for g in tape.gradient(loss, latent)]

    with_ste, with_ada_ste = twin(model, "ste_sign"), twin(model, "ada_ste")
    before = model.predict(images, verbose=0)
    if swap == "swap_in_place":
        swapped, replaced = model, lce_zoo.swap_in_place(model)
    else:
        swapped, replaced = lce_zoo.swap_to_ada_ste(model, custom_objects={})
        swapped.set_weights(model.get_weights())
    assert replaced == {"SteSign": 4}
    quantized = [layer for layer in swapped.layers if hasattr(layer, "input_quantizer")]
    kernels = [getattr(layer, key) for layer in quantized
               for key in lce_zoo.KERNEL_QUANTIZERS if getattr(layer, key, None)]
    assert len(kernels) == 4 and all(isinstance(q, keras_bilevel.AdaSTE) for q in kernels)
    assert all(type(layer.input_quantizer).__name__ == "SteSign" for layer in quantized)
    np.testing.assert_array_equal(swapped.predict(images, verbose=0), before)
    # Training sees AdaSTE's backward pass, not ste_sign's.
    for ours, expected, shipped in zip(kernel_gradients(swapped),
                                       kernel_gradients(with_ada_ste),
                                       kernel_gradients(with_ste)):
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
        assert np.max(np.abs(ours - shipped)) > 1e-3
    swapped.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    swapped.fit(images, np.arange(8) % 3, epochs=2, verbose=0, callbacks=[AnnealMu(1.05)])
    assert {round(float(q.mu.numpy()), 6) for q in kernels} == {round(0.01 * 1.05 ** 2, 6)}


def test_mnist_accuracy_benchmark_smoke(tmp_path):
    record = _load("benchmarks/mnist_accuracy.py").main(
        ["--smoke", "--output", str(tmp_path), "--methods", "adaste", "ste"])
    saved = json.loads((tmp_path / "mnist_accuracy_smoke.json").read_text())
    assert set(saved["results"]) == {"adaste", "ste"} == set(record["results"])
    for summary in saved["results"].values():
        assert len(summary["runs"][0]["test_accuracy_per_epoch"]) == 1
    assert (tmp_path / "mnist_accuracy_smoke.png").stat().st_size > 1000


def test_gpu_throughput_refuses_without_a_gpu(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    module = _load("benchmarks/gpu_throughput.py")
    monkeypatch.setattr(module._tensorflow().config, "list_physical_devices",
                        lambda kind=None: [])
    with pytest.raises(SystemExit, match="no GPU"):
        module.main([])


# The two peak-memory processes (each builds VGG-16 again; null on a CPU) only in the
# slow run: ~15 s per backend without them on an idle 2-core machine.
@pytest.mark.parametrize("backend, extra", [
    ("jax", ["--no-memory"]), ("torch", ["--no-memory"]),
    pytest.param("torch", [], marks=pytest.mark.slow, id="torch-with-memory-processes")])
def test_gpu_throughput_keras3_smoke_without_tensorflow(backend, extra, tmp_path):
    # A tiny VGG-16 on the CPU, one fresh process per backend (Keras fixes its backend per
    # process); the Keras 3 path must import neither TensorFlow nor Larq (the GPU machine
    # has neither).
    args = ["--backend", backend, "--width", "0.125", "--batch", "8", "--blocks", "2",
            "--steps", "1", "--warmup", "0", "--output", str(tmp_path), *extra]
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import gpu_throughput; "
            f"gpu_throughput.main({args!r}); "
            "assert not {'tensorflow', 'larq'} & set(sys.modules), 'TensorFlow/Larq imported'")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_USE_LEGACY_KERAS", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    name = f"gpu_throughput_keras3_{backend}"
    (result,) = json.loads((tmp_path / f"{name}.json").read_text())["results"].values()
    assert len(result["ratios"]) == 2 and result["median_ratio_vs_ste_sign"] > 0
    assert result["images_per_second"] > 0 and result["ste_sign_images_per_second"] > 0
    assert result["peak_bytes"] is None and result["memory_ratio_vs_ste_sign"] is None
    assert (tmp_path / f"{name}.png").stat().st_size > 1000


# A stand-in for a checkout of the public PyTorch AdaSTE code, with the interface the
# benchmark uses (`models.MLPBinaryConnect`, `models.VGG16`, `optimizers.FenBPOpt.FenBPOpt`
# whose `step(closure)` returns the loss and predictions, with `beta` and `alpha`): plain
# SGD on sign weights.
STAND_IN_MODELS = '''
import torch
class MLPBinaryConnect(torch.nn.Sequential):
    def __init__(self, in_features, out_features, num_units=2048, **kwargs):
        super().__init__(torch.nn.Linear(in_features, num_units), torch.nn.ReLU(),
                         torch.nn.Linear(num_units, out_features))
VGG16 = None
'''
STAND_IN_OPTIMIZER = '''
import torch
class FenBPOpt(torch.optim.SGD):
    def __init__(self, model, train_set_size, lr=1e-4, **kwargs):
        super().__init__(model.parameters(), lr=lr)
        self.beta, self.alpha = 0.01, 0.01
    def step(self, closure):
        loss, output = closure()
        loss.backward()
        super().step()
        return loss, [output]
'''


def test_reference_speed_benchmark_smoke(tmp_path):
    checkout = tmp_path / "AdaSTE"
    (checkout / "models").mkdir(parents=True)
    (checkout / "optimizers").mkdir()
    (checkout / "models" / "__init__.py").write_text(STAND_IN_MODELS)
    (checkout / "optimizers" / "__init__.py").write_text("")
    (checkout / "optimizers" / "FenBPOpt.py").write_text(STAND_IN_OPTIMIZER)
    benchmark = _load("benchmarks/reference_speed.py")
    benchmark.main(["--smoke", "--reference", str(checkout), "--output", str(tmp_path)])
    saved = json.loads((tmp_path / "reference_speed_smoke.json").read_text())
    runs = saved["models"]["mlp-64"]
    assert set(runs) == {"reference", "larq", "larq-ste_sign", "jax"}
    assert saved["epochs"] == 2 and runs["larq"]["adaste_over_ste_sign"] > 0
    for name, entry in runs.items():
        assert [len(e["seconds_per_step"]) for e in entry["epochs"]] == [2, 2]
        assert entry["median_seconds"] > 0 and len(entry["epoch_end_seconds"]) == 1
        speedups = [e["speedup_vs_reference"] for e in entry["epochs"]]
        assert min(speedups) > 0 and entry["worst_epoch_speedup"] == min(speedups)
    assert saved["cpu"]["model"] and "vector_flags" in saved["cpu"]
    assert (tmp_path / "reference_speed_smoke.png").stat().st_size > 1000
    with pytest.raises(SystemExit):  # a folder that is no checkout is refused
        benchmark.main(["--reference", str(tmp_path), "--output", str(tmp_path)])


def test_tinyimagenet_example_on_a_generated_tree(tmp_path, monkeypatch, capsys):
    from tests.image_trees import write_tiny_imagenet

    write_tiny_imagenet(tmp_path, classes=3, per_class=4, val_per_class=2)
    monkeypatch.syspath_prepend(os.path.join(ROOT, "examples"))
    example = _load("examples/tinyimagenet_resnet18.py")
    accuracy = example.main(["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "4",
                             "--image-size", "16", "--data-dir", str(tmp_path)])
    assert 0.0 <= accuracy <= 1.0
    assert "resnet18 on tiny_imagenet (larq): test accuracy" in capsys.readouterr().out
    args = _load("examples/paper_protocol.py").parse_args("", [], epochs=700, mu_rate=1.009)
    assert (args.epochs, args.mu_rate) == (700, 1.009)


def test_tinyimagenet_example_on_keras3_jax(tmp_path):
    from tests.image_trees import write_tiny_imagenet

    write_tiny_imagenet(tmp_path, classes=3, per_class=4, val_per_class=2)
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_USE_LEGACY_KERAS", "KERAS_BACKEND")}
    result = subprocess.run(
        [sys.executable, "examples/tinyimagenet_resnet18.py", "--backend", "jax",
         "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "4", "--image-size",
         "16", "--data-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resnet18 on tiny_imagenet (jax): test accuracy" in result.stdout


def test_jax_cpu_convolution_benchmark_smoke(tmp_path):
    benchmark = _load("benchmarks/jax_cpu_convolution.py")
    benchmark.main(["--smoke", "--output", str(tmp_path)])
    saved = json.loads((tmp_path / "jax_cpu_convolution_smoke.json").read_text())
    (convolution,) = saved["results"]["convolutions"].values()
    assert convolution["max_relative_difference"] < 1e-5
    assert convolution["xla_with_gradients_ms"] > 0 and convolution["patches_forward_ms"] > 0
    (pool,) = saved["results"]["pools"].values()
    assert pool["same_gradient"] is True
    assert (tmp_path / "jax_cpu_convolution_smoke.png").stat().st_size > 1000


def test_input_pipeline_benchmark_smoke(tmp_path):
    record = _load("benchmarks/input_pipeline.py").main(["--smoke", "--output",
                                                          str(tmp_path)])
    for front_end in ("larq", "keras3"):
        result = record["results"][front_end]
        assert result["median_pipeline_images_per_second"] > 0
        assert result["median_step_images_per_second"] > 0
        assert result["bound_by"] in ("training step", "input pipeline")
    assert record["machine"]["model"]
    assert (tmp_path / "input_pipeline_smoke.png").stat().st_size > 1000
    assert json.loads((tmp_path / "input_pipeline_smoke.json").read_text())["results"]


def test_multi_worker_throughput_benchmark_smoke(tmp_path):
    record = _load("benchmarks/multi_worker_throughput.py").main(["--smoke", "--output",
                                                                   str(tmp_path)])
    result = record["results"]["larq"]
    assert result["median_ratio_2_over_1"] > 0 and result["blocks"] == 1
    assert (tmp_path / "multi_worker_throughput_smoke.png").stat().st_size > 1000


def test_keras3_exports_benchmark_smoke(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_USE_LEGACY_KERAS", "KERAS_BACKEND")}
    result = subprocess.run(
        [sys.executable, "benchmarks/keras3_exports.py", "--smoke", "--output",
         str(tmp_path)], cwd=ROOT, env=dict(env, KERAS_BACKEND="tensorflow"),
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((tmp_path / "keras3_exports_smoke.json").read_text())
    cnn = saved["results"]["binary_cnn"]
    assert cnn["lce"]["lce_bconv2d"] == 5  # every convolution but the first
    assert cnn["lce"]["size_vs_float32"] < cnn["tflite-int8"]["size_vs_float32"] < 0.5
    for fmt in ("tflite-float32", "tflite-int8", "lce"):
        assert cnn[fmt]["max_rel_diff"] < 1e-4 and set(cnn[fmt]["latency_ms"]) == {"1", "2"}
    assert (tmp_path / "keras3_exports_smoke.png").stat().st_size > 1000


@pytest.mark.slow  # one process per Keras 3 backend trains three small models: ~3 min
def test_keras_quantization_benchmark_smoke(tmp_path):
    record = _load("benchmarks/keras_quantization.py").main(
        ["--smoke", "--backends", "jax", "--out", str(tmp_path)])
    rows = record["results"]["jax"]
    assert set(rows) == {f"{model}/{mode}" for model in ("mlp", "vgg_small", "keras_dense")
                         for mode in ("int8", "int4")}
    assert rows["mlp/int4"]["largest_difference"] == 0.0  # weight-only, -1/+1 exact
    assert 0.2 < rows["mlp/int8"]["size_vs_float"] < 0.3
    assert (tmp_path / "keras_quantization_smoke.png").stat().st_size > 1000
