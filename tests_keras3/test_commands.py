"""The defaults `keras-bilevel train` chooses on this backend, and its torch.compile fallback."""

import json

import keras
import pytest

from keras_bilevel.cli import keras3_commands, workflow as cli
from keras_bilevel.keras3.backends import current as backend
from tests_keras3.conftest import BACKEND


def _args(tmp_path, *extra):
    args = cli.build_parser().parse_args(
        ["train", "--epochs", "1", "--hidden-units", "16", "--batch-size", "256",
         "--output", str(tmp_path / "run"), *extra])
    args.backend = BACKEND
    return args


def test_a_requested_jit_always_wins():
    assert keras3_commands.default_jit(True) is True and keras3_commands.default_jit(False) is False


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's default")
def test_tensorflow_compiles_on_a_gpu_only():
    import tensorflow as tf

    assert keras3_commands.default_jit() is bool(tf.config.list_physical_devices("GPU"))


@pytest.mark.skipif(BACKEND != "torch", reason="PyTorch's default")
@pytest.mark.parametrize("steps,expected", [(None, False), (9_999, False), (10_000, True)])
def test_torch_compiles_long_runs_only(steps, expected):
    assert backend.COMPILE_MIN_STEPS == 10_000
    assert keras3_commands.default_jit(steps=steps) is expected


@pytest.mark.skipif(BACKEND != "jax", reason="JAX's default")
def test_jax_always_compiles_and_warns_of_cpu_convolutions(tmp_path):
    assert keras3_commands.default_jit() is True
    assert backend.slow_convolutions_note(_args(tmp_path).model) is None  # the MLP
    note = backend.slow_convolutions_note(_args(tmp_path, "--model", "vgg16").model)
    assert note.startswith("Note: JAX runs convolutions slowly on a CPU (vgg16: ")
    assert "--backend larq or --backend torch is faster here" in note


def test_no_convolution_note_on_the_other_backends(tmp_path):
    if BACKEND == "jax":
        pytest.skip("JAX prints it")
    assert backend.slow_convolutions_note(_args(tmp_path, "--model", "vgg16").model) is None


def test_train_sets_adastes_learning_rate_from_the_hidden_units(tmp_path):
    metrics = keras3_commands.train(_args(tmp_path, "--hidden-units", "256"))
    assert metrics["config"]["hidden_units"] == 256
    assert "= 0.0025 for width 256" in metrics["recipe_sources"]["optimizer"]


def _compile_error(message):
    """An exception of the kind torch.compile raises (its class lives in torch._dynamo)."""
    error_class = type("BackendCompilerFailed", (RuntimeError,), {})
    error_class.__module__ = "torch._dynamo.exc"
    return error_class(message)


@pytest.mark.skipif(BACKEND != "torch", reason="torch.compile")
def test_a_step_torch_compile_cannot_compile_runs_again_eagerly(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(backend, "COMPILE_MIN_STEPS", 1)  # the default compiles
    real_fit, calls = keras3_commands._fit, []

    def fit(model, *rest):
        calls.append(model.jit_compile)
        if len(calls) == 1:
            raise RuntimeError("while compiling") from _compile_error("no C++ compiler")
        return real_fit(model, *rest)

    monkeypatch.setattr(keras3_commands, "_fit", fit)
    args = _args(tmp_path)
    metrics = keras3_commands.train(args)
    out = capsys.readouterr().out
    assert calls == [True, False]
    assert ("torch.compile could not compile the training step (RuntimeError: while "
            "compiling); training eagerly instead (--no-jit)") in out
    assert metrics["config"]["jit"] is False
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["config"]["jit"] is False and len(saved["seconds_per_epoch"]) == 1


@pytest.mark.skipif(BACKEND != "torch", reason="torch.compile")
@pytest.mark.parametrize("extra,error", [
    ((), ValueError("a bad batch")),                    # not a compile error
    (("--jit",), _compile_error("no C++ compiler")),   # --jit asked for: no fallback
])
def test_other_failures_are_not_hidden(tmp_path, monkeypatch, extra, error):
    monkeypatch.setattr(backend, "COMPILE_MIN_STEPS", 1)

    def fit(*args):
        raise error

    monkeypatch.setattr(keras3_commands, "_fit", fit)
    with pytest.raises(type(error)):
        keras3_commands.train(_args(tmp_path, *extra))
    assert keras.backend.backend() == "torch"
