"""Training on several worker processes, on each engine, with real processes on 127.0.0.1.

Engines: TensorFlow's `MultiWorkerMirroredStrategy` (`--backend larq`, `--backend
tensorflow`) and `jax.distributed` (`--backend jax`). The workers are real processes:
`keras-bilevel train --workers N` starts them (`keras_bilevel.cli.local_workers`), or the
tests start them with the engine's own settings, as on a cluster.

What a run on two workers must be is the single-device algorithm on the global batch
(docs/method.md, section 7). Float32 arithmetic in another order is all that may
differ. How far that goes is measured here, not assumed:

- The library helper, on a small network trained with LatentMomentum (no amplification
  of rounding) on batches with an uneven last one, trains what one device trains, within
  1e-5; a per-worker AdaSTE rule or per-worker BatchNorm trains something else (> 1e-3).
- `keras-bilevel train --workers 2` against `--workers 1` with the default AdaSTE
  recipe (Adam): after 3 epochs every BatchNorm statistic and mu agree within 1e-5 (or
  1e-6 of their value), and so do the latent kernels but for a few weights, within 5e-3
  (half of one Adam step at the learning rate 1e-2); the test accuracy is the same.

Two things make those few weights, not the algorithm. (1) The input layer: many of the
digits' pixels are (almost) always 0, a constant that the following BatchNorm removes,
so their rows' gradients are sums that cancel to rounding noise; Adam divides each
gradient by its own running magnitude (g / (sqrt(v) + 1e-7)), which turns that noise,
different for any other summation order, into a step of up to ~1e-5 each: one step
already differs by 6e-6 there and every other layer by 5e-7 (measured). (2) AdaSTE's rule
is discontinuous in g (its sign test, and its dead band |g| < 1e-3): a gradient within
rounding of a threshold is scaled one way in one order and the other way in another,
and Adam carries that step on (measured: 1 of 8,832 hidden and output weights, Keras 3
on TensorFlow, 64 hidden units). Hence at most 1 in 1,000 of those may leave 1e-5.
Measured at this test's size (16 hidden units, batch 256): the input layer within 1e-4
(3.2e-3 on JAX 0.10), every other tensor within 7e-6.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_bilevel.cli import local_workers
from keras_bilevel.core.run_files import INTERRUPT_ENV

from tests.saved_runs import saved_weights
from tests.test_resume import history_rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "multi_worker_script.py")
CLI = [sys.executable, "-m", "keras_bilevel.cli"]
ENGINES = ["larq", "tensorflow", "jax"]
# 1,294 training digits: 6 global batches of 256 per epoch, the last of 14. A small
# network and few steps: in float32, two summation orders of a binary network part when
# a weight within rounding of a sign change or of AdaSTE's thresholds goes either way,
# and the more weights and steps, the likelier that is (at 64 units and batch 128, JAX
# 0.10 on one device parted from JAX 0.7 and from two workers in epoch 2).
TRAIN = ["train", "--epochs", "3", "--hidden-units", "16", "--batch-size", "256"]
INPUT_KERNEL = "quant_dense/vars/0"
EXACT = 1e-5
ROUNDING_UNDER_ADAM = 5e-3  # half of one Adam step (learning rate 1e-2)
APART = 1e-3


def _environ(backend, **extra):
    """The environment of a run on `backend`: no inherited Keras or worker settings."""
    drop = {"TF_CONFIG", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
            "KERAS_BACKEND", "XLA_FLAGS", INTERRUPT_ENV}
    if backend != "larq":
        drop.add("TF_USE_LEGACY_KERAS")  # the Larq front end's setting
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=ROOT, **extra)
    if backend != "larq":
        env["KERAS_BACKEND"] = backend
    return env


def _train(backend, output, *extra, workers=None, interrupt=None, env=None):
    argv = [*TRAIN, "--backend", backend, "--output", str(output), *extra]
    if workers:
        argv += ["--workers", str(workers)]
    environ = env or _environ(backend)
    if interrupt:
        environ[INTERRUPT_ENV] = interrupt
    start = time.monotonic()
    result = subprocess.run(CLI + argv, capture_output=True, text=True, env=environ,
                            cwd=ROOT, timeout=600)
    result.seconds = time.monotonic() - start
    return result


def _metrics(run):
    with open(os.path.join(run, "metrics.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Finished runs by (backend, workers), each trained once."""
    done = {}

    def run(backend, workers):
        if (backend, workers) not in done:
            output = tmp_path_factory.mktemp(f"{backend}-{workers}-workers")
            result = _train(backend, output, workers=workers)
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
            done[backend, workers] = output, result
        return done[backend, workers]

    return run


def _first_batch_loss(stdout):
    """The loss on the progress bar's first line of the first epoch (Keras 2 or 3)."""
    for line in re.split(r"[\r\n]+", re.sub(r"\x1b\[[0-9;]*m", "", stdout)):
        match = re.search(r"\b1/\d+ .*?loss: ([0-9.]+)", line)
        if match:
            return float(match.group(1))
    raise AssertionError(f"no progress bar in {stdout[-2000:]!r}")


@pytest.mark.parametrize("backend", ENGINES)
def test_two_workers_train_what_one_trains(runs, backend):
    (one, _), (two, result) = runs(backend, 1), runs(backend, 2)
    first_lines = [line for line in result.stdout.splitlines() if line.strip()][:2]
    assert first_lines[0].startswith("Starting 2 local workers (")
    assert "worker 0 of 2, 2 replicas" in first_lines[1]
    assert result.stderr.strip() == "", result.stderr  # nothing but our lines and Keras'
    a, b = saved_weights(one), saved_weights(two)
    assert a.keys() == b.keys() and INPUT_KERNEL in a
    kernels = [name for name in a if name.startswith("quant_dense") and
               name.endswith("/vars/0")]
    moved = total = 0
    for name in a:
        difference = np.abs(a[name] - b[name])
        if name in kernels:
            assert difference.max() <= ROUNDING_UNDER_ADAM, (name, difference.max())
            if name != INPUT_KERNEL:
                moved += int((difference > EXACT).sum())
                total += difference.size
        else:  # BatchNorm statistics (variances of ~15), AdaSTE's mu
            assert (difference <= EXACT + 1e-6 * np.abs(a[name])).all(), (
                name, difference.max())
    assert moved <= total / 1000, (moved, total)
    metrics = [_metrics(one), _metrics(two)]
    assert [m["workers"] for m in metrics] == [1, 2]
    assert metrics[0]["test_accuracy"] == metrics[1]["test_accuracy"]
    assert metrics[0]["test_loss"] == pytest.approx(metrics[1]["test_loss"], rel=1e-4)
    histories = [history_rows(one), history_rows(two)]
    assert len(histories[0]) == len(histories[1]) == 3
    for row_one, row_two in zip(*histories):
        for key in row_one:
            assert float(row_one[key]) == pytest.approx(float(row_two[key]), rel=1e-3,
                                                        abs=1e-5), key
    # The progress bar's first batch (always shown) reports the same loss: each step's
    # metrics once, not summed over the workers.
    first_losses = [_first_batch_loss(runs(backend, n)[1].stdout) for n in (1, 2)]
    assert first_losses[0] == pytest.approx(first_losses[1], rel=1e-3), first_losses
    # Only the chief wrote: no other worker's files anywhere in the run directory.
    assert sorted(os.listdir(two)) == ["checkpoint", "curves.png", "history.csv",
                                       "metrics.json", "model.keras"]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_helper_trains_what_one_device_trains(engine, tmp_path):
    """Two processes through the public helper, against one device in the same process;
    the controls show what a per-worker rule (or per-worker BatchNorm) trains instead."""
    result_path = tmp_path / "result.json"
    status, line = local_workers.run_local_workers(
        engine, 2, [SCRIPT, engine, str(result_path)], command=(sys.executable,),
        environ=_environ(engine), announce=None)
    assert status == 0, line
    result = json.loads(result_path.read_text())
    assert (result["workers"], result["replicas"]) == (2, 2)
    assert result["parallel"] < EXACT, result
    assert result["per_worker_rule"] > APART, result
    if engine != "jax":  # JAX's global program has no per-worker BatchNorm to switch on
        assert result["per_worker_batch_norm"] > APART, result
    assert result["skipped_steps"] == 0


def _assert_one_line(stderr, *fragments):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("backend", [
    "larq", pytest.param("tensorflow", marks=pytest.mark.slow),
    pytest.param("jax", marks=pytest.mark.slow)])
def test_a_killed_worker_loses_at_most_an_epoch(runs, backend, tmp_path):
    """SIGKILL to worker 1 in the middle of epoch 2 (batch 4 of 11): the run ends at once
    with one line naming it; `--resume` ends where an uninterrupted run ends."""
    output = tmp_path / "run"
    killed = _train(backend, output, workers=2, interrupt="1,3,KILL,1")
    assert killed.returncode == 1, killed.stderr[-3000:]
    _assert_one_line(killed.stderr, "worker 1 of 2 was killed by SIGKILL; stopped the "
                     "other workers", f"every finished epoch is saved in {output}: add "
                     "--resume to the same command to continue")
    assert killed.seconds < 120
    assert len(history_rows(output)) == 1  # epoch 1 saved, epoch 2 lost
    assert not (output / "model.keras").exists()
    resumed = _train(backend, output, "--resume", workers=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming at epoch 2 of 3 epochs" in resumed.stdout
    reference, _ = runs(backend, 2)
    a, b = saved_weights(reference), saved_weights(output)
    assert a.keys() == b.keys()
    for name in a:
        assert float(np.abs(a[name] - b[name]).max()) <= EXACT, name
    assert _metrics(output)["test_accuracy"] == _metrics(reference)["test_accuracy"]
    assert [list(r.values()) for r in history_rows(output)] == [
        list(r.values()) for r in history_rows(reference)]


def _cluster(backend, output, count, interrupt):
    """`count` workers started by hand with the engine's settings, as on several hosts."""
    settings = local_workers.local_cluster(
        backend, count, local_workers.free_ports(count if backend != "jax" else 1))
    processes = []
    for index in range(count):
        env = _environ(backend, **settings[index])
        env[INTERRUPT_ENV] = interrupt
        processes.append(subprocess.Popen(
            CLI + [*TRAIN, "--backend", backend, "--output", str(output)], env=env,
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    return processes


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["larq", "jax"])
def test_on_a_cluster_the_others_end_by_themselves(backend, tmp_path):
    """No launcher: when worker 1 is killed, worker 0's next collective operation fails
    (TensorFlow's gRPC, JAX's gloo), and it ends by itself with one line, at once (it
    does not wait at JAX's shutdown barrier for the lost worker)."""
    bound = 60
    processes = _cluster(backend, tmp_path / "run", 2, "1,3,KILL,1")
    try:
        assert processes[1].wait(timeout=300) == -signal.SIGKILL
        killed_at = time.monotonic()
        processes[0].wait(timeout=bound + 60)
        assert time.monotonic() - killed_at < bound
        stderr = processes[0].stderr.read()
        assert processes[0].returncode != 0
        assert processes[0].returncode == 1, stderr[-3000:]
        _assert_one_line(stderr, "worker 0 of 2: another worker stopped answering",
                         "add --resume")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(tmp_path / "run", ignore_errors=True)
