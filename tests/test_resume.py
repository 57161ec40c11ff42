"""`keras-bilevel train --resume`: an interrupted run continues exactly, in-process.

The interruption is a real SIGINT (Ctrl-C) sent to this process by the run itself at a
chosen batch (the test-only hook `keras_bilevel.keras2.runs.INTERRUPT_ENV`); the resumed run
must end with the weights (mu included), optimizer state, history and test metrics of an
uninterrupted run with the same arguments. tests/test_cli_kill.py kills a separate
process with SIGKILL.
"""

import csv
import json
import shutil
import signal

import numpy as np
import pytest
import tensorflow as tf

from keras_bilevel import data
from keras_bilevel.cli import workflow as cli
from keras_bilevel.callbacks import adaste_quantizers
from keras_bilevel.keras2.runs import INTERRUPT_ENV

TINY = ["--hidden-units", "16", "--batch-size", "256"]


def train_args(output, method="adaste", epochs=2, *extra):
    return ["train", "--method", method, "--epochs", str(epochs), *TINY,
            "--output", str(output), *extra]


def history_rows(run):
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def assert_same_run(run, reference, atol=1e-6):
    """Two finished runs have the same weights, optimizer state, history and metrics."""
    models = [tf.keras.models.load_model(r / "model.keras") for r in (run, reference)]
    # In weight order (the layer names' counters differ between runs in one process).
    # AdaSTE's mu is saved with the model but not listed in `weights`.
    weights = [[(w.name.split("/")[-1], w.numpy()) for w in m.weights]
               + [("mu", q.mu.numpy()) for q in adaste_quantizers(m)] for m in models]
    assert [n for n, _ in weights[0]] == [n for n, _ in weights[1]]
    if "mu" in history_rows(run)[0]:
        assert "mu" in dict(weights[0])
    for (name, got), (_, expected) in zip(*weights):
        np.testing.assert_allclose(got, expected, rtol=0, atol=atol, err_msg=name)
    # The final checkpoints: the same tensors under the same object paths (weights, mu,
    # optimizer slots and step count, epochs done), all but the epochs' durations.
    readers = [tf.train.load_checkpoint(str(r / "checkpoint")) for r in (run, reference)]
    keys = [set(r.get_variable_to_shape_map()) - {"_CHECKPOINTABLE_OBJECT_GRAPH"}
            for r in readers]
    assert keys[0] == keys[1]
    assert any(key.startswith("optimizer/") for key in keys[0])
    for key in sorted(keys[0]):
        if not key.startswith("seconds/"):
            np.testing.assert_allclose(readers[0].get_tensor(key), readers[1].get_tensor(key),
                                       rtol=0, atol=atol, err_msg=key)
    rows = [history_rows(r) for r in (run, reference)]
    assert len(rows[0]) == len(rows[1])
    for got, expected in zip(*rows):
        assert got.keys() == expected.keys()
        for key in got:
            np.testing.assert_allclose(float(got[key]), float(expected[key]), rtol=0,
                                       atol=atol, err_msg=key)
    metrics = [json.loads((r / "metrics.json").read_text()) for r in (run, reference)]
    for key in ("test_loss", "test_accuracy"):
        np.testing.assert_allclose(metrics[0][key], metrics[1][key], rtol=0, atol=atol)
    assert len(metrics[0]["seconds_per_epoch"]) == len(rows[0])


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Uninterrupted runs, by method."""
    found = {}

    def reference(method, epochs=2):
        if (method, epochs) not in found:
            output = tmp_path_factory.mktemp(f"reference-{method}")
            assert cli.main(train_args(output, method, epochs)) == 0
            found[method, epochs] = output
        return found[method, epochs]

    return reference


def interrupt(monkeypatch, output, at, method="adaste", epochs=2):
    """Run until SIGINT at `at` = (epoch, batch); returns the exit status.

    SIGINT raises KeyboardInterrupt (Ctrl-C) for the run even where the test process
    started with it ignored, as a background job of a shell without job control does
    (`nohup ... &`); the handler the process had is restored afterwards.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with monkeypatch.context() as patch:
            patch.setenv(INTERRUPT_ENV, f"{at[0]},{at[1]},INT")
            return cli.main(train_args(output, method, epochs))
    finally:
        signal.signal(signal.SIGINT, previous)


class TestResumeIsExact:
    # adaste: Adam (built before restoring) and AnnealMu; bop: a legacy optimizer whose
    # slots are restored when created; the others are the same paths again.
    @pytest.mark.parametrize("method", [
        "adaste", "bop", pytest.param("adaste-reference", marks=pytest.mark.slow),
        pytest.param("ste", marks=pytest.mark.slow)])
    def test_ctrl_c_mid_epoch_then_resume(self, tmp_path, monkeypatch, capsys, references,
                                          method):
        assert interrupt(monkeypatch, tmp_path, (1, 2), method) == 130
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "interrupted" in err[0] and "add --resume" in err[0], err
        assert len(history_rows(tmp_path)) == 1  # epoch 0 finished, epoch 1 cut short
        assert not (tmp_path / "model.keras").exists()
        # As if killed after history.csv got epoch 1's row but before its checkpoint: the
        # resumed run drops the row and writes it again.
        with open(tmp_path / "history.csv", "a") as f:
            f.write(",".join(["1"] + ["0.5"] * (len(history_rows(tmp_path)[0]) - 1)) + "\n")
        assert cli.main(train_args(tmp_path, method) + ["--resume"]) == 0
        assert "Resuming at epoch 2 of 2" in capsys.readouterr().out
        assert_same_run(tmp_path, references(method))

    @pytest.mark.slow
    def test_interrupted_in_the_first_epoch(self, tmp_path, monkeypatch, references):
        assert interrupt(monkeypatch, tmp_path, (0, 3)) == 130
        history = tmp_path / "history.csv"
        assert not history.exists() or history_rows(tmp_path) == []  # no epoch finished
        assert cli.main(train_args(tmp_path) + ["--resume"]) == 0
        assert_same_run(tmp_path, references("adaste"))

    def test_killed_after_the_last_epoch(self, tmp_path, references):
        # All epochs checkpointed, killed while evaluating or writing the files.
        run = tmp_path / "run"
        shutil.copytree(references("adaste"), run)
        (run / "metrics.json").unlink()
        (run / "model.keras").unlink()
        recorded = json.loads((run / "checkpoint" / "run.json").read_text())
        (run / "checkpoint" / "run.json").write_text(json.dumps({**recorded,
                                                                 "finished": False}))
        assert cli.main(train_args(run) + ["--resume"]) == 0
        assert_same_run(run, references("adaste"))

    def test_mu_is_saved_and_follows_the_epoch(self, references):
        run = references("adaste")
        model = tf.keras.models.load_model(run / "model.keras")
        mus = [q.mu.numpy() for q in adaste_quantizers(model)]
        assert len(mus) == 4 and np.allclose(mus, 1e-2 * 1.05 ** 2)  # AnnealMu, 2 epochs
        np.testing.assert_allclose([float(r["mu"]) for r in history_rows(run)],
                                   [1e-2 * 1.05, 1e-2 * 1.05 ** 2], rtol=1e-6)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run stopped by Ctrl-C in its second epoch (the tests below leave it as it is)."""
    output = tmp_path_factory.mktemp("interrupted")
    with pytest.MonkeyPatch.context() as patch:
        assert interrupt(patch, output, (1, 1)) == 130
    return output


class TestRefusals:
    @pytest.mark.parametrize("change,fragment", [
        (["--method", "ste"], "was started with --method adaste, not --method ste"),
        (["--epochs", "3"], "was started with --epochs 2, not --epochs 3"),
        (["--seed", "1"], "was started with --seed 0, not --seed 1"),
        (["--no-jit"], "was started with no --jit, not --no-jit"),
    ])
    def test_a_different_configuration(self, interrupted, capsys, change, fragment):
        # The change comes last: argparse keeps the last value of an option.
        assert cli.main(train_args(interrupted) + ["--resume"] + change) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("keras-bilevel: error: --resume:"), err
        assert fragment in err[0], err

    def test_a_finished_run(self, references, capsys):
        assert cli.main(train_args(references("adaste")) + ["--resume"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "finished run" in err[0], err

    def test_an_empty_directory(self, tmp_path, capsys):
        assert cli.main(train_args(tmp_path) + ["--resume"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no interrupted run" in err[0], err

    def test_resume_needs_output(self, capsys):
        assert cli.main(["train", "--resume"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--resume needs --output" in err[0], err

    def test_a_new_run_does_not_overwrite_an_interrupted_one(self, interrupted, capsys):
        assert cli.main(train_args(interrupted)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "1 of 2 epochs done" in err[0] and "--resume" in err[0]
        assert len(history_rows(interrupted)) == 1


class TestEpochBatches:
    """`DataSplits.train_epochs`: epoch e's batches are a function of (seed, e) only."""

    @staticmethod
    def labels(dataset):
        return np.concatenate([y.numpy() for _, y in dataset])

    def test_epoch_e_is_the_same_whichever_epoch_the_stream_starts_at(self):
        splits = data.load("digits", batch_size=100, seed=3)
        n = splits.num_train
        whole = self.labels(splits.train_epochs(0, 3))
        assert len(whole) == 3 * n
        np.testing.assert_array_equal(self.labels(splits.train_epochs(2, 3)), whole[2 * n:])
        np.testing.assert_array_equal(self.labels(splits.train_epochs(1, 2)),
                                      whole[n:2 * n])
        assert not np.array_equal(whole[:n], whole[n:2 * n])  # reshuffled every epoch
        np.testing.assert_array_equal(np.sort(whole[:n]), np.sort(whole[n:2 * n]))

    @pytest.mark.parametrize("global_seed", [None, 0, 7])
    def test_independent_of_the_global_seed_and_of_other_loads(self, global_seed):
        expected = self.labels(data.load("digits", batch_size=64, seed=1).train_epochs(1, 2))
        if global_seed is not None:
            tf.random.set_seed(global_seed)
        splits = data.load("digits", batch_size=64, seed=1)
        np.testing.assert_array_equal(self.labels(splits.train_epochs(1, 2)), expected)
        other = data.load("digits", batch_size=64, seed=2).train_epochs(1, 2)
        assert not np.array_equal(self.labels(other), expected)

    def test_cardinality_and_batch_sizes(self):
        splits = data.load("digits", batch_size=500, seed=0)
        stream = splits.train_epochs(1, 3)
        assert int(stream.cardinality()) == 2 * splits.steps_per_epoch
        assert [int(y.shape[0]) for _, y in stream] == [500, 500, 294] * 2

    def test_cifar_crops_depend_on_the_epoch(self, mocked):
        splits = data.load("cifar10", batch_size=4, data_dir=mocked, seed=5)
        images = [np.concatenate([x.numpy() for x, _ in splits.train_epochs(e, e + 1)])
                  for e in (0, 1, 1)]
        np.testing.assert_array_equal(images[1], images[2])
        assert not np.array_equal(images[0], images[1])
        whole = np.concatenate([x.numpy() for x, _ in splits.train_epochs(0, 2)])
        np.testing.assert_array_equal(whole[len(images[0]):], images[1])

    @pytest.mark.parametrize("initial_epoch,epochs", [(-1, 3), (4, 3)])
    def test_bad_epochs(self, initial_epoch, epochs):
        splits = data.load("digits")
        with pytest.raises(ValueError, match="`initial_epoch` must be in"):
            splits.train_epochs(initial_epoch, epochs)

