"""`keras-bilevel train` with several workers: what is refused, in one line, before any
worker starts or any tensor library loads; and what each local worker is told to run."""

import json

import pytest

from keras_bilevel.cli import workflow as cli

TF_CONFIG = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                        "task": {"type": "worker", "index": 0}})


@pytest.mark.parametrize("argv,environ,fragment", [
    (["--backend", "torch", "--workers", "2"], {},
     "--backend torch cannot train on several workers: Keras 3 has no distribution API "
     "for PyTorch; use --backend jax, tensorflow or larq"),
    (["--backend", "torch", "--coordinator", "h:1", "--num-processes", "2",
      "--process-id", "0"], {}, "no distribution API for PyTorch"),
    (["--backend", "larq", "--workers", "2"], {"TF_CONFIG": TF_CONFIG},
     "--workers starts its own cluster on this machine, but TF_CONFIG describes another"),
    (["--backend", "jax", "--workers", "2", "--coordinator", "h:1"], {},
     "but --coordinator describes another"),
    (["--backend", "larq", "--coordinator", "h:1"], {},
     "--coordinator configure jax.distributed, for --backend jax; --backend larq reads "
     "its cluster from TF_CONFIG"),
    (["--backend", "larq", "--workers", "2", "--batch-size", "127"], {},
     "--batch-size 127 does not split evenly over the 2 replicas"),
    (["--backend", "larq", "--workers", "0"], {}, "expected a positive integer"),
    (["--backend", "larq"], {"TF_CONFIG": "{not json"}, "TF_CONFIG must be JSON"),
    (["--backend", "jax", "--coordinator", "h:1", "--num-processes", "2"], {},
     "missing: process_id"),
    (["--backend", "jax", "--num-processes", "2", "--process-id", "5",
      "--coordinator", "h:1"], {}, r"process index 5 is not in [0, 2)"),
])
def test_refused_in_one_line(argv, environ, fragment, monkeypatch, tmp_path, capsys):
    for name in ("TF_CONFIG", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
                 "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cli.stacks, "missing_modules", lambda backend: [])  # "installed"
    status = cli.main(["train", *argv, "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert fragment in err[0], err
    assert not (tmp_path / "run").exists()  # nothing written


@pytest.mark.parametrize("argv,expected", [
    (["train", "--workers", "2", "--epochs", "3"], ["train", "--epochs", "3"]),
    (["train", "--workers=2", "--seed", "1"], ["train", "--seed", "1"]),
    (["train", "--epochs", "3", "--workers", "4", "--resume", "--output", "a"],
     ["train", "--epochs", "3", "--resume", "--output", "a"]),
])
def test_each_worker_runs_the_command_without_workers(argv, expected):
    class Args:
        backend, output = "jax", "runs/x"

    assert cli._worker_argv(argv, Args) == expected + ["--backend", "jax",
                                                       "--output", "runs/x"]


def test_a_failed_worker_ends_the_command_with_its_line(monkeypatch, tmp_path, capsys):
    """What the launcher reports becomes the command's one line (status 1, and how to
    resume); a worker's usage error keeps status 2 and gets no resume hint."""
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setattr(cli.stacks, "missing_modules", lambda backend: [])
    reports = iter([(1, "worker 1 of 2 was killed by SIGKILL; stopped the other workers"),
                    (2, "worker 0 of 2 failed (exit status 2): no data; stopped the other "
                        "workers"), (0, None)])
    monkeypatch.setattr(cli.local_workers, "run_local_workers",
                        lambda *args, **kwargs: next(reports))
    argv = ["train", "--backend", "larq", "--workers", "2", "--output", str(tmp_path)]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"keras-bilevel: error: worker 1 of 2 was killed by SIGKILL; stopped the "
                   f"other workers; every finished epoch is saved in {tmp_path}: add "
                   "--resume to the same command to continue"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["keras-bilevel: error: worker 0 of 2 failed (exit status 2): no data; "
                   "stopped the other workers"]
    assert cli.main(argv) == 0
