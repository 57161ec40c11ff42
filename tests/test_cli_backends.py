"""`keras-bilevel --backend jax|tensorflow|torch`: the command line on Keras 3.

Each run is a process of its own (Keras fixes its backend per process, and this test
process runs Larq on Keras 2), started as a user starts it and, where the system allows,
without network (`unshare -n`): the offline quickstart must not touch the network on any
backend. A run killed mid-epoch continues with `--resume` to exactly the files of an
uninterrupted run (compared value by value in the saved model files, optimizer state and
mu included); evaluate and export read which Keras wrote a file; what a backend cannot do
is refused in one line.
"""

import io
import json
import os
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
import tensorflow as tf

from keras_bilevel import data
from keras_bilevel.core import datasets
from keras_bilevel.cli import workflow as cli
from keras_bilevel.core.run_files import INTERRUPT_ENV, RunDirectoryError, RunFiles

RUN = ["train", "--epochs", "2", "--hidden-units", "16", "--batch-size", "256"]
# Runs the command, then prints which of these modules it loaded.
PROBE = ("import sys; from keras_bilevel.cli import main; status = main(sys.argv[1:]); "
         "print('loaded:', sorted(m for m in ('larq', 'tf_keras') if m in sys.modules)); "
         "sys.exit(status)")


def _network_is_off_limits():
    """Why `unshare -n` cannot run here, or None."""
    try:
        result = subprocess.run(["unshare", "-n", "--", "true"], capture_output=True,
                                timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unshare is not available: {error}"
    if result.returncode != 0:
        return ("unshare -n needs root or user namespaces here: "
                f"{result.stderr.decode().strip()}")
    return None


NO_NETWORK = _network_is_off_limits()


def keras_bilevel(argv, offline=False, interrupt=None, probe=False):
    """Run the command in a new process, as a user would (TensorFlow's log level unset)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_USE_LEGACY_KERAS", "KERAS_BACKEND",
                        INTERRUPT_ENV)}
    if interrupt:
        env[INTERRUPT_ENV] = interrupt
    command = [sys.executable] + (["-c", PROBE] if probe else ["-m", "keras_bilevel.cli"])
    if offline:
        command = ["unshare", "-n", "--"] + command
    return subprocess.run(command + list(argv), env=env, capture_output=True, text=True,
                          timeout=600)


def saved_values(path):
    """Every array in a Keras 3 `.keras` file (model variables, mu and the optimizer's)."""
    values = {}
    with zipfile.ZipFile(path) as archive:
        with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
            weights.visititems(lambda name, item: values.__setitem__(name, item[()])
                               if isinstance(item, h5py.Dataset) else None)
    return values


def history(run):
    lines = (run / "history.csv").read_text().splitlines()
    return [line.split(",") for line in lines]


def assert_same_run(run, reference, atol=1e-6):
    """Same final values (weights, mu, optimizer state), history and test metrics."""
    got, expected = saved_values(run / "model.keras"), saved_values(reference / "model.keras")
    assert got.keys() == expected.keys()
    mu = [key for key in got if "kernel_quantizer/vars" in key]  # AdaSTE's mu is saved
    assert mu and all(got[key] == pytest.approx(0.01 * 1.05 ** 2) for key in mu), mu
    assert any(key.startswith("optimizer/") for key in got), sorted(got)
    for key in got:
        np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=atol, err_msg=key)
    rows = [history(r) for r in (run, reference)]
    assert rows[0][0] == rows[1][0] and "mu" in rows[0][0]
    np.testing.assert_allclose(np.array(rows[0][1:], float), np.array(rows[1][1:], float),
                               rtol=0, atol=atol)
    metrics = [json.loads((r / "metrics.json").read_text()) for r in (run, reference)]
    for key in ("test_loss", "test_accuracy"):
        np.testing.assert_allclose(metrics[0][key], metrics[1][key], rtol=0, atol=atol)
    assert len(metrics[0]["seconds_per_epoch"]) == len(rows[0]) - 1


def one_error_line(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-bilevel: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory):
    """An uninterrupted JAX run, started offline where the system allows."""
    output = tmp_path_factory.mktemp("jax-run")
    result = keras_bilevel(RUN + ["--backend", "jax", "--output", str(output)],
                           offline=NO_NETWORK is None, probe=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return output, result


class TestOfflineQuickstartOnEveryBackend:
    def test_jax(self, jax_run):
        output, result = jax_run
        self.check(output, result, "jax")

    @pytest.mark.slow  # a process that loads Keras 3 and compiles: ~30 s each here
    @pytest.mark.parametrize("backend", ["tensorflow", "torch"])
    def test_other_backends(self, tmp_path, backend):
        if NO_NETWORK:
            pytest.skip(NO_NETWORK)
        result = keras_bilevel(RUN + ["--backend", backend, "--output", str(tmp_path)],
                               offline=True, probe=True)
        assert result.returncode == 0, result.stderr[-3000:]
        self.check(tmp_path, result, backend)

    @staticmethod
    def check(output, result, backend):
        for name in ("model.keras", "history.csv", "metrics.json", "curves.png"):
            assert (output / name).stat().st_size > 0, name
        metrics = json.loads((output / "metrics.json").read_text())
        assert metrics["backend"] == metrics["config"]["backend"] == backend
        assert 0 <= metrics["test_accuracy"] <= 1 and len(metrics["seconds_per_epoch"]) == 2
        assert len(history(output)) == 3 and "mu" in history(output)[0]
        assert f"with adaste on {backend} " in result.stdout
        assert "Test accuracy of the binary network: " in result.stdout
        loaded = result.stdout.strip().splitlines()[-1]
        # Neither Larq nor Keras 2 on any Keras 3 backend (Keras 3 itself imports
        # TensorFlow, where installed, to seed it and to save files).
        assert loaded == "loaded: []", loaded
        assert zipfile.is_zipfile(output / "model.keras")
        assert cli.keras_major_version(str(output / "model.keras")) == 3


class TestResumeOnJax:
    def test_killed_mid_epoch_then_resumed_is_exact(self, tmp_path, jax_run):
        reference, _ = jax_run
        argv = RUN + ["--backend", "jax", "--output", str(tmp_path)]
        killed = keras_bilevel(argv, interrupt="1,0,KILL")  # before epoch 2's first batch
        assert killed.returncode == -9, killed.stderr[-3000:]
        assert [p.name for p in (tmp_path / "checkpoint").glob("epoch-*.keras")] == [
            "epoch-0001.keras"]
        resumed = keras_bilevel(argv + ["--resume"])
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "Resuming at epoch 2 of 2 epochs" in resumed.stdout
        assert_same_run(tmp_path, reference)


    def test_the_run_records_its_backend(self, tmp_path):
        class Run(RunFiles):
            def epochs_done(self):
                return 1

        run = Run(tmp_path)
        config = {"backend": "jax", "epochs": 2}
        run.prepare(config, resume=False)
        with pytest.raises(RunDirectoryError, match="interrupted run"):
            run.prepare(config, resume=False)
        with pytest.raises(RunDirectoryError,
                           match="started with --backend jax, not --backend torch"):
            run.prepare(dict(config, backend="torch"), resume=True)
        run.prepare(config, resume=True)


class TestEvaluateAndExportAnyFile:
    @pytest.mark.parametrize("backend", [
        None, pytest.param("torch", marks=pytest.mark.slow)])
    def test_evaluate_gives_the_training_runs_accuracy(self, jax_run, backend):
        output, _ = jax_run
        expected = json.loads((output / "metrics.json").read_text())["test_accuracy"]
        extra = ["--backend", backend] if backend else []
        result = keras_bilevel(["evaluate", str(output / "model.keras")] + extra)
        assert result.returncode == 0, result.stderr[-3000:]
        line = [ln for ln in result.stdout.splitlines() if "test set: accuracy" in ln]
        accuracy = float(line[0].split("accuracy ")[1].split(",")[0])
        assert accuracy == pytest.approx(expected, abs=1e-4), line
        assert line[0].endswith(f"({backend or 'jax'})")  # a Keras 3 file: JAX by default

    @pytest.mark.slow  # TensorFlow's converter and LiteRT: ~40 s here
    def test_export_int8_offline(self, jax_run, tmp_path):
        output, _ = jax_run
        path = tmp_path / "mlp.int8.tflite"
        result = keras_bilevel(["export", str(output / "model.keras"), "--output", str(path)],
                               offline=NO_NETWORK is None)
        assert result.returncode == 0, result.stderr[-3000:]
        assert path.stat().st_size > 0

    def test_the_file_says_which_keras_wrote_it(self, tmp_path):
        model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
        model.save(tmp_path / "keras2.keras")
        assert cli.keras_major_version(str(tmp_path / "keras2.keras")) == 2
        with zipfile.ZipFile(tmp_path / "odd.keras", "w") as archive:
            archive.writestr("config.json", "{}")
        with pytest.raises(cli.UsageError, match="without Keras' metadata.json"):
            cli.keras_major_version(str(tmp_path / "odd.keras"))


class TestRefusals:
    @pytest.mark.parametrize("backend", ["jax", "torch", "tensorflow"])
    def test_bop_is_larq_only(self, backend, tmp_path):
        result = keras_bilevel(["train", "--backend", backend, "--method", "bop",
                                "--output", str(tmp_path)])
        one_error_line(result, "--method bop is Larq-only", "--backend larq")
        assert not list(tmp_path.iterdir())

    def test_a_keras3_file_with_larq(self, jax_run):
        path = str(jax_run[0] / "model.keras")
        one_error_line(keras_bilevel(["evaluate", path, "--backend", "larq"]),
                       "is a Keras 3 file", "--backend jax")

    def test_a_keras3_file_to_lce(self, jax_run, tmp_path):
        """Rebuilt from Larq layers (keras_bilevel.keras3.export.to_lce); the MLP has
        binary weights only, so the file computes in float, and says so."""
        output = tmp_path / "mlp.lce.tflite"
        result = keras_bilevel(["export", str(jax_run[0] / "model.keras"), "--format",
                                "lce", "--output", str(output)])
        assert result.returncode == 0, result.stderr[-3000:]
        assert output.stat().st_size > 0
        assert "(lce-float32)" in result.stdout and "check               passed" in (
            result.stdout)
        assert "rebuilt from Larq layers" in result.stdout

    def test_a_keras2_file_with_a_keras3_backend(self, tmp_path):
        model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
        model.save(tmp_path / "larq.keras")
        one_error_line(keras_bilevel(["evaluate", str(tmp_path / "larq.keras"),
                                      "--backend", "jax"]),
                       "is a Keras 2 (Larq) model", "--backend larq")

    @pytest.mark.slow  # a process that loads Keras 3: ~10 s
    def test_method_names_match_the_keras3_methods(self):
        code = ("from keras_bilevel.core import registry; "
                "from keras_bilevel.keras3 import methods; "
                "print(set(methods.METHODS) == "
                "set(registry.names(registry.METHODS, front_end='keras3')))")
        env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env=dict(env, KERAS_BACKEND="jax"), timeout=300)
        assert result.stdout.strip() == "True", result.stderr[-3000:]


@pytest.mark.slow  # one JAX process per method: ~25 s each here
@pytest.mark.parametrize("method", ["adaste-reference", "ste", "full-precision"])
def test_every_keras3_method_trains_on_jax(tmp_path, method):
    result = keras_bilevel(RUN + ["--backend", "jax", "--method", method,
                                  "--output", str(tmp_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "metrics.json").read_text())["method"] == method


def test_both_front_ends_split_and_standardise_alike():
    """keras_bilevel.core.datasets (Keras 3's source) holds keras_bilevel.data's values."""
    assert datasets.CHANNEL_STATS == data.CHANNEL_STATS
    assert datasets.DATASETS == data.DATASETS == cli.DATASETS
    for got, expected in zip(datasets.load_digits(), data.load_digits()):
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)
    splits = data.load("digits")
    assert (splits.num_train, splits.num_validation) == (
        1438 - datasets.validation_size("digits", 1438, 0.1),
        datasets.validation_size("digits", 1438, 0.1))
