"""The `keras-bilevel` command end to end, on the offline digits."""

import csv
import json
import os
import subprocess
import sys

import pytest

from keras_bilevel import data, recipes
from keras_bilevel.cli import keras2_commands
from keras_bilevel.cli import workflow as cli
from keras_bilevel.core import cpu_defaults


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("run")
    status = cli.main(["train", "--epochs", "2", "--hidden-units", "64",
                       "--output", str(output)])
    assert status == 0
    return output


class TestTrain:
    def test_writes_every_file(self, trained_run):
        for name in ["history.csv", "metrics.json", "model.keras", "curves.png"]:
            assert (trained_run / name).stat().st_size > 0, name

    def test_metrics_json(self, trained_run):
        metrics = json.loads((trained_run / "metrics.json").read_text())
        assert {"test_accuracy", "test_loss", "dataset", "model", "method", "config",
                "seconds_per_epoch"} <= set(metrics)
        assert (metrics["dataset"], metrics["model"], metrics["method"]) == (
            "digits", "mlp", "adaste")
        assert 0.0 <= metrics["test_accuracy"] <= 1.0
        assert len(metrics["seconds_per_epoch"]) == 2
        assert metrics["config"]["epochs"] == 2 and metrics["config"]["hidden_units"] == 64

    def test_history_has_train_and_validation_and_mu(self, trained_run):
        with open(trained_run / "history.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 2
        assert {"loss", "accuracy", "val_loss", "val_accuracy", "mu"} <= set(rows[0])

    def test_prints_accuracy(self, tmp_path, capsys):
        assert cli.main(["train", "--epochs", "1", "--hidden-units", "32", "--method", "ste",
                         "--output", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "Test accuracy of the binary network:" in out

    def test_adastes_learning_rate_follows_the_hidden_units(self, trained_run, tmp_path):
        metrics = json.loads((trained_run / "metrics.json").read_text())
        assert "= 0.01 for width 64" in metrics["recipe_sources"]["optimizer"]
        assert cli.main(["train", "--epochs", "1", "--hidden-units", "256",
                         "--output", str(tmp_path)]) == 0
        metrics = json.loads((tmp_path / "metrics.json").read_text())
        assert "= 0.0025 for width 256" in metrics["recipe_sources"]["optimizer"]

    def test_a_long_mlp_run_is_compiled_by_default(self, tmp_path, capsys, monkeypatch):
        # A run of at least COMPILE_MIN_STEPS steps; 1 makes this one-epoch run long.
        monkeypatch.setattr(cpu_defaults, "COMPILE_MIN_STEPS", 1)
        assert cli.main(["train", "--epochs", "1", "--hidden-units", "32",
                         "--output", str(tmp_path)]) == 0
        assert "XLA on" in capsys.readouterr().out
        assert json.loads((tmp_path / "metrics.json").read_text())["config"]["jit"] is True

    @pytest.mark.parametrize("method", ["adaste-reference", "bop", "full-precision"])
    def test_every_method_runs(self, tmp_path, method):
        assert cli.main(["train", "--epochs", "1", "--hidden-units", "32", "--method",
                         method, "--output", str(tmp_path)]) == 0
        metrics = json.loads((tmp_path / "metrics.json").read_text())
        assert metrics["method"] == method

    def test_evaluate(self, trained_run, capsys):
        assert cli.main(["evaluate", str(trained_run / "model.keras"),
                         "--dataset", "digits"]) == 0
        out = capsys.readouterr().out
        metrics = json.loads((trained_run / "metrics.json").read_text())
        assert f"accuracy {metrics['test_accuracy']:.4f}" in out


class TestDefaultJit:
    """XLA by default on a GPU, and on a CPU only where it pays: a long one-worker run
    of a model without convolutions."""

    LONG = cpu_defaults.COMPILE_MIN_STEPS

    @pytest.mark.parametrize("model,steps,workers,gpu,expected", [
        ("mlp", LONG, 1, False, True),
        ("mlp", LONG - 1, 1, False, False),
        ("mlp", None, 1, False, False),
        ("mlp", LONG, 2, False, False),
        ("vgg16", LONG, 1, False, False),
        ("resnet18", 10 * LONG, 1, False, False),
        ("vgg16", 1, 2, True, True),
        ("mlp", None, 1, True, True),
    ])
    def test_default(self, model, steps, workers, gpu, expected, monkeypatch):
        monkeypatch.setattr(keras2_commands.tf.config, "list_physical_devices",
                            lambda kind=None: ["GPU:0"] if gpu else [])
        assert keras2_commands.default_jit(model, None, steps, workers) is expected

    @pytest.mark.parametrize("requested", [True, False])
    def test_a_request_wins(self, requested):
        assert keras2_commands.default_jit("vgg16", requested, 1) is requested
        assert keras2_commands.default_jit("mlp", requested, self.LONG) is requested

    def test_xla_with_several_cpu_workers_is_refused_in_one_line(self, monkeypatch):
        monkeypatch.setattr(keras2_commands.tf.config, "list_physical_devices",
                            lambda kind=None: [])
        with pytest.raises(ValueError, match=r"^--jit with 2 workers on a CPU: .*"
                                             r"leave out --jit$"):
            keras2_commands.default_jit("mlp", True, self.LONG, 2)
        assert keras2_commands.default_jit("mlp", False, self.LONG, 2) is False


class TestExport:
    @pytest.mark.parametrize("fmt,suffix", [("tflite", ".tflite"),
                                            ("tflite-int8", ".int8.tflite")])
    def test_export_writes_a_checked_file(self, trained_run, fmt, suffix, capsys):
        model_path = trained_run / "model.keras"
        assert cli.main(["export", str(model_path), "--format", fmt]) == 0
        written = trained_run / ("model" + suffix)
        assert written.stat().st_size > 0
        out = capsys.readouterr().out
        assert str(written) in out

    def test_int8_is_smaller(self, trained_run):
        float_file = trained_run / "model.tflite"
        int8_file = trained_run / "model.int8.tflite"
        for fmt in ("tflite", "tflite-int8"):
            cli.main(["export", str(trained_run / "model.keras"), "--format", fmt])
        # A 64-wide MLP: file overhead is a larger share than for the reference MLP,
        # whose 0.27x target is tested in test_export.py.
        assert int8_file.stat().st_size < 0.5 * float_file.stat().st_size

    def test_export_of_a_missing_model_is_one_line(self, capsys):
        assert cli.main(["export", "/nonexistent.keras"]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


class TestErrors:
    @pytest.mark.parametrize("argv,fragment", [
        (["train", "--epochs", "0"], "--epochs"),
        (["train", "--dataset", "imagenet"], "--dataset"),
        (["train", "--method", "magic"], "--method"),
        (["train", "--batch-size", "x"], "--batch-size"),
        (["evaluate", "/nonexistent/model.keras"], "no model file"),
        (["frobnicate"], "invalid choice"),
    ])
    def test_one_clear_line(self, argv, fragment, capsys):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("keras-bilevel: error:"), err
        assert fragment in err[0]

    def test_missing_data_is_one_line(self, tmp_path, capsys, monkeypatch):
        monkeypatch.chdir(tmp_path)
        assert cli.main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path),
                         "--epochs", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "mnist" in err[0], err
        assert not (tmp_path / "runs").exists()  # nothing written for a run that never began

    def test_console_script_help(self):
        result = subprocess.run([sys.executable, "-m", "keras_bilevel", "train", "--help"],
                                capture_output=True, text=True, timeout=120,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert result.returncode == 0 and "--method" in result.stdout


MODEL_FORMATS = "MODEL must be a .keras file, a .h5/.hdf5 file or a SavedModel directory"


class TestModelFiles:
    """MODEL is checked before anything is loaded: what is not a model gets one line."""

    @pytest.mark.parametrize("command", ["evaluate", "export"])
    @pytest.mark.parametrize("name,content,fragment", [
        ("README.md", b"# a readme", "is not a model"),
        ("model.keras", b"not a zip", "its contents are not that format"),
        ("model.h5", b"not hdf5", "its contents are not that format"),
        ("saved", None, "is a directory without saved_model.pb"),
    ])
    def test_not_a_model(self, tmp_path, capsys, command, name, content, fragment):
        path = tmp_path / name
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)
        assert cli.main([command, str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("keras-bilevel: error:"), err
        assert fragment in err[0] and MODEL_FORMATS in err[0], err

    def test_real_formats_pass_the_check(self, tmp_path):
        import h5py
        import tensorflow as tf

        with h5py.File(tmp_path / "weights.hdf5", "w") as f:
            f["x"] = [1.0]
        tf.saved_model.save(tf.Module(), str(tmp_path / "saved"))
        for path in ("weights.hdf5", "saved"):
            cli.check_model_path(str(tmp_path / path))


class TestImports:
    def test_the_parser_knows_the_package_names(self):
        assert cli.DATASETS == data.DATASETS
        assert cli.METHODS == tuple(sorted(recipes.METHODS))

    def test_parsing_loads_no_tensorflow(self):
        code = ("import sys; import keras_bilevel.cli as cli; cli.build_parser().parse_args("
                "['train', '--method', 'ste']); print(sorted({m.split('.')[0] for m in "
                "sys.modules} & {'tensorflow', 'larq', 'tf_keras'}))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[]"
