"""The `keras-bilevel` command in a process of its own, as a user runs it.

By default it prints our lines and Keras' progress bars only (no TensorFlow log lines),
`--verbose` shows TensorFlow's; a run killed with SIGKILL, mid-epoch or at any moment,
continues with `--resume` to exactly the end of an uninterrupted run.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from keras_bilevel.keras2.runs import INTERRUPT_ENV

from tests.test_resume import assert_same_run, history_rows

# `python -m keras_bilevel.cli` is what the console script `keras-bilevel` runs
# (keras_bilevel.cli:entry_point).
CLI = [sys.executable, "-m", "keras_bilevel.cli"]
TRAIN = ["train", "--epochs", "3", "--hidden-units", "16"]
OURS = re.compile(r"(Training for \d+ epochs|Resuming at epoch \d+ of \d+ epochs): .*output:"
                  r"|Epoch \d+/\d+$|Evaluating the binary network on the test set$"
                  r"|Test accuracy of the binary network: |\S+ on digits test set: accuracy ")
PROGRESS_BAR = re.compile(r"\s*\d+/\d+ \[[=>.]+\] - ")
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} [\d:. ]+\d+ \S+:\d+\] ", re.MULTILINE)


def run(argv, command=CLI, interrupt=None, background=False):
    """Run the command with no TF_CPP_MIN_LOG_LEVEL set, as a user would; `background`
    returns the running `Popen` instead of waiting."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", INTERRUPT_ENV)}
    if interrupt:
        env[INTERRUPT_ENV] = interrupt
    if background:
        return subprocess.Popen(command + argv, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    return subprocess.run(command + argv, env=env, capture_output=True, text=True,
                          timeout=600)


def unexpected_lines(stdout):
    """The lines of `stdout` that are neither ours nor a progress bar."""
    lines = re.split(r"[\r\n]+", stdout.replace("\b", ""))
    return [line for line in lines
            if line.strip() and not OURS.match(line) and not PROGRESS_BAR.match(line)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run and what it printed."""
    output = tmp_path_factory.mktemp("uninterrupted")
    result = run(TRAIN + ["--output", str(output)])
    assert result.returncode == 0, result.stderr
    return output, result


class TestQuiet:
    def test_only_our_lines_and_progress_bars(self, reference):
        _, result = reference
        assert result.stderr == ""
        assert unexpected_lines(result.stdout) == []
        assert "Test accuracy of the binary network" in result.stdout

    @pytest.mark.slow
    @pytest.mark.parametrize("command", [["evaluate"], ["export", "--format", "tflite"]])
    def test_evaluate_and_export_are_quiet(self, reference, tmp_path, command):
        output, _ = reference
        extra = ["--output", str(tmp_path / "m.tflite")] if command[0] == "export" else []
        result = run([command[0], str(output / "model.keras"), *command[1:], *extra])
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""

    def test_a_file_that_is_no_model_is_one_line(self, tmp_path):
        readme = tmp_path / "README.md"
        readme.write_text("# not a model\n")
        result = run(["export", str(readme)])
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            f"keras-bilevel: error: {readme} is not a model; MODEL must be a .keras file, "
            "a .h5/.hdf5 file or a SavedModel directory"]


class TestKilled:
    def test_sigkill_mid_epoch_then_resume(self, tmp_path, reference):
        argv = TRAIN + ["--output", str(tmp_path)]
        # Killed at batch 5 of the second epoch; --verbose lets TensorFlow's lines through.
        killed = run(argv + ["--verbose"], interrupt="1,5,KILL")
        assert killed.returncode == -signal.SIGKILL
        assert TF_LOG_LINE.search(killed.stderr), killed.stderr
        assert len(history_rows(tmp_path)) == 1
        assert not (tmp_path / "model.keras").exists()
        # Resumed through `python -m keras_bilevel`, quiet as well.
        resumed = run(argv + ["--resume"], command=[sys.executable, "-m", "keras_bilevel"])
        assert resumed.returncode == 0, resumed.stderr
        assert "Resuming at epoch 2 of 3 epochs" in resumed.stdout
        assert_same_run(tmp_path, reference[0])
        assert resumed.stderr == "" and unexpected_lines(resumed.stdout) == []

    @pytest.mark.slow
    @pytest.mark.parametrize("rows", [1, 2])
    def test_sigkill_at_any_moment_then_resume(self, tmp_path, reference, rows):
        """Killed as soon as history.csv has `rows` rows: somewhere in the next epoch,
        its validation, or the writing of the checkpoint."""
        argv = TRAIN + ["--output", str(tmp_path)]
        process = run(argv, background=True)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and process.poll() is None:
                if (tmp_path / "history.csv").exists() and len(history_rows(tmp_path)) >= rows:
                    break
                time.sleep(0.002)
            process.send_signal(signal.SIGKILL)
        finally:
            process.wait(timeout=60)
        if process.returncode == 0:
            pytest.skip("the run finished before it could be killed")
        resumed = run(argv + ["--resume"])
        assert resumed.returncode == 0, resumed.stderr
        assert_same_run(tmp_path, reference[0])
