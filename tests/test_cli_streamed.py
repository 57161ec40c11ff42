"""`keras-bilevel` on TinyImageNet and image folders, on every front end.

A TinyImageNet tree in the official layout, scaled down (3 classes, 64x64 JPEGs, some
grey), is generated once. On each front end a run is trained (2 epochs, the images
cropped to 16x16), a second one killed in epoch 2 and resumed, which must end at exactly
the first run's files; the saved model is evaluated (the run's test accuracy) and
exported to TFLite. Bad trees end in one line with exit status 2.
"""

import json
import signal

import pytest
import tensorflow_datasets as tfds

from keras_bilevel.cli import workflow as cli
from keras_bilevel.keras2.runs import INTERRUPT_ENV

from . import test_cli_backends as keras3_cli
from .conftest import tfds_metadata
from .image_trees import write_folder, write_tiny_imagenet
from .test_resume import assert_same_run

RUN = ["train", "--dataset", "tiny_imagenet", "--image-size", "16", "--epochs", "2",
       "--batch-size", "4", "--hidden-units", "16"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    write_tiny_imagenet(root, classes=3, per_class=6, val_per_class=2, grey_every=5)
    return root


def _accuracy_line(text):
    line = [ln for ln in text.splitlines() if "test set: accuracy" in ln][0]
    return float(line.split("accuracy ")[1].split(",")[0])


def test_larq_train_resume_evaluate_export(tiny, tmp_path, monkeypatch, capsys):
    argv = RUN + ["--data-dir", str(tiny)]
    reference = tmp_path / "reference"
    assert cli.main(argv + ["--output", str(reference)]) == 0
    metrics = json.loads((reference / "metrics.json").read_text())
    assert metrics["config"]["image_size"] == 16
    # Ctrl-C before the second batch of epoch 2, then --resume.
    resumed = tmp_path / "resumed"
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with monkeypatch.context() as patch:
            patch.setenv(INTERRUPT_ENV, "1,1,INT")
            assert cli.main(argv + ["--output", str(resumed)]) == 130
    finally:
        signal.signal(signal.SIGINT, previous)
    assert cli.main(argv + ["--output", str(resumed), "--resume"]) == 0
    assert_same_run(resumed, reference)
    capsys.readouterr()
    # Evaluated at the model's image size; exported.
    model = str(reference / "model.keras")
    assert cli.main(["evaluate", model, "--dataset", "tiny_imagenet",
                     "--data-dir", str(tiny)]) == 0
    assert _accuracy_line(capsys.readouterr().out) == pytest.approx(
        metrics["test_accuracy"], abs=1e-4)
    assert cli.main(["export", model, "--format", "tflite"]) == 0
    assert (reference / "model.tflite").stat().st_size > 0


# Each is four processes that load Keras 3: 24 s (jax), 30 s (tensorflow), 41 s (torch)
# here.
@pytest.mark.parametrize("backend", ["jax", "tensorflow", "torch"])
def test_keras3_train_resume_evaluate_export(tiny, tmp_path, backend):
    argv = RUN + ["--data-dir", str(tiny), "--backend", backend]
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    result = keras3_cli.keras_bilevel(argv + ["--output", str(reference)])
    assert result.returncode == 0, result.stderr[-3000:]
    killed = keras3_cli.keras_bilevel(argv + ["--output", str(resumed)],
                                      interrupt="1,1,KILL")
    assert killed.returncode == -9, killed.stderr[-3000:]
    result = keras3_cli.keras_bilevel(argv + ["--output", str(resumed), "--resume"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming at epoch 2 of 2 epochs" in result.stdout
    keras3_cli.assert_same_run(resumed, reference)
    model = str(reference / "model.keras")
    result = keras3_cli.keras_bilevel(["evaluate", model, "--dataset", "tiny_imagenet",
                                       "--data-dir", str(tiny), "--backend", backend])
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((reference / "metrics.json").read_text())
    assert _accuracy_line(result.stdout) == pytest.approx(metrics["test_accuracy"],
                                                          abs=1e-4)
    result = keras3_cli.keras_bilevel(["export", model, "--format", "tflite"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (reference / "model.tflite").stat().st_size > 0


def test_larq_on_imagenette_through_tfds(tmp_path, capsys):
    # The mock yields 12 examples per split: 13 in train, 1 held out, leaves 12.
    root = tfds_metadata(tmp_path / "tfds", "imagenette", {"train": 13, "validation": 12})
    with tfds.testing.mock_data(num_examples=12, data_dir=root):
        assert cli.main(["train", "--dataset", "imagenette", "--data-dir", root,
                         "--image-size", "16", "--epochs", "1", "--batch-size", "4",
                         "--hidden-units", "16", "--output", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["dataset"] == "imagenette"
    assert 0 <= metrics["test_accuracy"] <= 1


@pytest.mark.parametrize("backend", ["larq", "jax"])
def test_a_folder_with_a_bad_file_is_one_line(tmp_path, backend, capsys):
    write_folder(tmp_path / "photos", classes=2, per_class=3, test_per_class=1)
    bad = tmp_path / "photos" / "train" / "class1" / "notes.txt"
    bad.write_text("not an image")
    argv = ["train", "--dataset", "folder", "--data-dir", str(tmp_path / "photos"),
            "--backend", backend, "--output", str(tmp_path / "run")]
    if backend == "larq":
        assert cli.main(argv) == 2
        error = capsys.readouterr().err
    else:
        result = keras3_cli.keras_bilevel(argv)
        assert result.returncode == 2, result.stderr[-3000:]
        error = result.stderr
    lines = error.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "not one of .jpeg" in lines[0], lines
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, fragment", [
    (["--dataset", "tiny_imagenet"], "--dataset tiny_imagenet reads files: give their "
                                     "folder with --data-dir DIR"),
    (["--dataset", "digits", "--image-size", "32"], "--image-size is for --dataset "
                                                     "tiny_imagenet, imagenette, folder"),
    (["--dataset", "folder", "--data-dir", "/nonexistent"], "is not a folder"),
])
def test_refused_in_one_line(argv, fragment, tmp_path, capsys):
    assert cli.main(["train", "--output", str(tmp_path / "run"), *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines
