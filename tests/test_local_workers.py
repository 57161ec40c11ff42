"""`keras-bilevel train --workers N`'s launcher (`keras_bilevel.cli.local_workers`), with
stand-in workers: small Python programs that read their index from the settings the
launcher gives them and then succeed, fail, sleep or kill themselves."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from keras_bilevel.cli import local_workers

# A stand-in worker: does what STAND_IN says for its index ("ok", "exit N", "error",
# "kill", "sleep"), printing a line on stdout and one on stderr first; the sleepers write
# their process id to PID_FILE + index, and the others act once all sleepers have.
STAND_IN = r"""
import json, os, signal, sys, time
if os.environ.get("TF_CONFIG"):
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
else:
    index = int(os.environ["JAX_PROCESS_ID"])
print(f"out of worker {index}", flush=True)
print(f"warning from worker {index}", file=sys.stderr, flush=True)
plan = json.loads(os.environ["STAND_IN"])
what = plan.get(str(index), "ok")
if what != "sleep":  # fail or finish once every sleeper is asleep
    sleepers = [os.environ["PID_FILE"] + i for i, w in plan.items() if w == "sleep"]
    deadline = time.monotonic() + 60
    while not all(os.path.exists(p) for p in sleepers) and time.monotonic() < deadline:
        time.sleep(0.05)
if what.startswith("exit"):
    sys.exit(int(what.split()[1]))
if what == "error":
    print(f"keras-bilevel: error: worker {index} found no data", file=sys.stderr)
    sys.exit(2)
if what == "kill":
    time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGKILL)
if what == "sleep":
    with open(os.environ["PID_FILE"] + str(index) + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(os.environ["PID_FILE"] + str(index) + ".tmp",
               os.environ["PID_FILE"] + str(index))
    time.sleep(600)
"""
COMMAND = (sys.executable, "-c", STAND_IN)


def _run(backend, count, plan, tmp_path, **kwargs):
    environ = {**os.environ, "STAND_IN": json.dumps(plan),
               "PID_FILE": str(tmp_path / "pid")}
    announced = []
    result = local_workers.run_local_workers(backend, count, ["train"], command=COMMAND,
                                              environ=environ, announce=announced.append,
                                              **kwargs)
    return result, announced


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (ended, not yet reaped by its parent) counts as ended.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.parametrize("backend,engine", [("larq", "MultiWorkerMirroredStrategy"),
                                            ("tensorflow", "MultiWorkerMirroredStrategy"),
                                            ("jax", "jax.distributed")])
def test_every_worker_finishes(tmp_path, capfd, backend, engine):
    (status, line), announced = _run(backend, 3, {}, tmp_path)
    assert (status, line) == (0, None)
    assert len(announced) == 1 and announced[0].startswith("Starting 3 local workers (")
    assert engine in announced[0] and "127.0.0.1:" in announced[0]
    out, err = capfd.readouterr()
    # The chief's output passes through (its stderr once it has finished); the others'
    # is kept back.
    assert out.splitlines() == ["out of worker 0"]
    assert err.splitlines() == ["warning from worker 0"]


def test_a_failed_worker_is_named_and_the_others_are_stopped(tmp_path):
    start = time.monotonic()
    (status, line), _ = _run("larq", 3, {"0": "sleep", "1": "exit 3", "2": "sleep"},
                             tmp_path, grace_seconds=2)
    assert time.monotonic() - start < 30  # not the sleepers' 600 s
    assert status == 1
    assert line == ("worker 1 of 3 failed (exit status 3): warning from worker 1; "
                    "stopped the other workers")
    for index in (0, 2):  # the sleepers were stopped, not left behind
        pid = int((tmp_path / f"pid{index}").read_text())
        assert not _alive(pid)


def test_a_killed_worker_is_named(tmp_path):
    (status, line), _ = _run("jax", 2, {"0": "sleep", "1": "kill"}, tmp_path,
                             grace_seconds=2)
    assert status == 1
    assert line == "worker 1 of 2 was killed by SIGKILL; stopped the other workers"


def test_a_usage_error_keeps_its_line_and_status(tmp_path):
    (status, line), _ = _run("tensorflow", 2, {"0": "error", "1": "sleep"}, tmp_path,
                             grace_seconds=2)
    assert status == 2
    assert line == ("worker 0 of 2 failed (exit status 2): worker 0 found no data; "
                    "stopped the other workers")


def test_the_killed_worker_is_blamed_before_the_others_reaction():
    """When a worker is killed, the others soon fail too (their collectives lose a
    peer); the launcher names the killed one, whatever their order."""

    class Ended:
        def __init__(self, returncode):
            self.returncode = returncode

    assert local_workers._first_failure([Ended(1), Ended(-9), Ended(None)]) == 1
    assert local_workers._first_failure([Ended(0), Ended(2), Ended(1)]) == 1
    assert local_workers._first_failure([Ended(0), Ended(None)]) is None


def _launcher_with_two_sleepers(tmp_path, script):
    """A launcher process running `script`, once both its stand-in workers sleep;
    returns the launcher and the workers' process ids."""
    env = {**os.environ, "STAND_IN": json.dumps({"0": "sleep", "1": "sleep"}),
           "PID_FILE": str(tmp_path / "pid")}
    launcher = subprocess.Popen([sys.executable, "-c", script], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"pid{i}").exists() for i in (0, 1)):
        assert time.monotonic() < deadline and launcher.poll() is None
        time.sleep(0.1)
    return launcher, [int((tmp_path / f"pid{i}").read_text()) for i in (0, 1)]


def test_ctrl_c_stops_every_worker(tmp_path):
    """SIGINT to the launcher (as Ctrl-C sends to the foreground job): the workers are
    stopped and the launcher raises KeyboardInterrupt, so the command ends with 130.

    The launcher takes Python's own SIGINT handler first: started from a background job
    of a shell without job control (`nohup .ci/run &`), it inherits SIGINT ignored, and
    Python then installs none (no Ctrl-C reaches such a job anyway)."""
    script = ("import signal, sys\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "from keras_bilevel.cli import local_workers\n"
              "try:\n"
              f"    local_workers.run_local_workers('larq', 2, ['train'], command={COMMAND!r},"
              " announce=None, grace_seconds=2)\n"
              "except KeyboardInterrupt:\n"
              "    sys.exit(130)\n")
    launcher, pids = _launcher_with_two_sleepers(tmp_path, script)
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(timeout=30) == 130
    assert not any(_alive(pid) for pid in pids)


def test_workers_die_with_a_killed_launcher(tmp_path):
    """A launcher killed with SIGKILL (it cannot clean up) leaves no worker behind."""
    script = ("from keras_bilevel.cli import local_workers\n"
              f"local_workers.run_local_workers('jax', 2, ['train'], command={COMMAND!r},"
              " announce=None)\n")
    launcher, pids = _launcher_with_two_sleepers(tmp_path, script)
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "a worker outlived its launcher"
        time.sleep(0.1)


@pytest.mark.parametrize("returncode,stderr,expected", [
    (-9, "", "worker 1 of 2 was killed by SIGKILL"),
    (-15, "", "worker 1 of 2 was killed by SIGTERM"),
    (1, "Traceback\nValueError: bad\n", "worker 1 of 2 failed (exit status 1): "
                                         "ValueError: bad"),
    (2, "noise\nkeras-bilevel: error: no data\nmore noise\n",
     "worker 1 of 2 failed (exit status 2): no data"),
    (3, "", "worker 1 of 2 failed (exit status 3)"),
])
def test_describe_ending(tmp_path, returncode, stderr, expected):
    path = tmp_path / "err"
    path.write_text(stderr)
    assert local_workers.describe_ending(1, 2, returncode, str(path)) == expected
