"""Smoke versions of the examples and benchmarks: they run and write what they promise."""

import importlib.util
import json
import os

import pytest


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


def test_quantizer_step_benchmark_vgg16_memory_smoke(tmp_path):
    record = _load("benchmarks/quantizer_step.py").main(
        ["--smoke", "--model", "vgg16", "--batch", "2", "--modes", "no_xla", "--memory",
         "--output", str(tmp_path)])
    result = record["results"]["no_xla"]["ada_ste"]
    assert result["memory_ratio_vs_ste_sign"] > 0 and result["peak_growth_bytes"] > 0
    assert (tmp_path / "quantizer_step_vgg16_smoke.json").exists()


@pytest.mark.parametrize("script", ["mnist_mlp", "cifar10_vgg16", "cifar10_resnet18"])
def test_paper_examples_one_step_on_mock_data(script, mocked, monkeypatch, capsys):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "examples"))
    accuracy = _load(f"examples/{script}.py").main(
        ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "4",
         "--data-dir", mocked])
    assert 0.0 <= accuracy <= 1.0
    assert "test accuracy of the binary network" in capsys.readouterr().out


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
    monkeypatch.setattr(module.tf.config, "list_physical_devices", lambda kind=None: [])
    with pytest.raises(SystemExit, match="no GPU"):
        module.main([])
