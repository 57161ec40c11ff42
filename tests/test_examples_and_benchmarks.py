"""Smoke versions of the examples and benchmarks: they run and write what they promise."""

import importlib.util
import json
import os


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
