"""`keras-bilevel train --workers N`: N worker processes of one run on this machine.

Each worker is the same `keras-bilevel train` command in a process of its own, with the
engine's settings of a cluster on free loopback ports (`keras_bilevel.core.workers.
local_cluster`: `TF_CONFIG` for TensorFlow, the `JAX_*` variables for JAX), so that what
runs here is what runs on several machines. Worker 0 (the chief) prints as a single run
does; the others' output is kept in temporary files and shown only if they fail. The
launcher watches them: when one ends with an error or is killed, it stops the others
at once (SIGTERM, then SIGKILL after a grace period) and says which worker ended and
how, in one line. Nothing here imports TensorFlow, JAX or Keras.

!!! example
    ```python
    status, message = run_local_workers("jax", 2, ["train", "--epochs", "3",
                                                    "--backend", "jax", "--output", "runs/a"])
    # (0, None) when every worker finished; else (1 or 2, "worker 1 of 2 was killed by
    # SIGKILL; stopped the other workers")
    ```
"""

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time

from keras_bilevel.core.workers import ENGINES, free_ports, local_cluster

__all__ = ["WORKER_COMMAND", "describe_ending", "run_local_workers"]

# What a worker runs: the console script's module, with the worker's arguments after it.
WORKER_COMMAND = (sys.executable, "-m", "keras_bilevel.cli")
_ERROR_PREFIX = "keras-bilevel: error: "
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """In the child, before exec: be killed if the launcher dies (Linux), so that a
    launcher killed with SIGKILL leaves no worker behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the launcher's own handling remains
        pass


def _last_error_line(path):
    """The worker's own one-line error (`keras-bilevel: error: ...`, without the
    prefix), else the last non-empty line it wrote to stderr, else ''."""
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    ours = [line[len(_ERROR_PREFIX):] for line in lines if line.startswith(_ERROR_PREFIX)]
    return (ours or lines or [""])[-1][:300]


def describe_ending(index, count, returncode, stderr_path=None):
    """One line saying how worker `index` of `count` ended (`returncode` as Popen gives
    it: negative for a signal), with its own error line where it wrote one."""
    if returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    else:
        how = f"failed (exit status {returncode})"
    detail = _last_error_line(stderr_path) if stderr_path and returncode > 0 else ""
    return f"worker {index} of {count} {how}" + (f": {detail}" if detail else "")


def _stop(processes, grace):
    """SIGTERM every running process, then SIGKILL those still running after `grace` s."""
    running = [p for p in processes if p.poll() is None]
    for p in running:
        with contextlib.suppress(ProcessLookupError):
            p.terminate()
    deadline = time.monotonic() + grace
    for p in running:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait()


def _first_failure(processes):
    """Index of the worker whose ending caused the failure, or None: a worker killed by
    a signal before one that exited with an error (which is usually the others'
    reaction to it), then the lowest index."""
    ended = [(i, p.returncode) for i, p in enumerate(processes)
             if p.returncode not in (None, 0)]
    if not ended:
        return None
    return min(ended, key=lambda item: (item[1] >= 0, item[0]))[0]


def run_local_workers(backend, count, argv, command=WORKER_COMMAND, environ=None,
                      poll_seconds=0.2, grace_seconds=5.0, announce=print):
    """Run `command + argv` as `count` local workers of `backend`'s engine and wait.

    # Arguments
        backend: "larq", "tensorflow" or "jax" (`keras_bilevel.core.workers.ENGINES`).
        count: the number of workers, >= 1.
        argv: the worker's arguments (`train ...` with `--backend` and `--output`).
        command: what a worker runs before `argv` (tests put a stand-in here).
        environ: the workers' base environment (default: this process's).
        announce: called with the line that says what starts (None: say nothing).

    # Returns
        `(0, None)` when every worker exited with status 0; else `(status, line)`:
        status 2 when the failing worker reported a usage error (its own exit status
        2), 130 when the workers were interrupted (Ctrl-C), else 1; `line` says which
        worker ended and how.

    # Raises
        KeyboardInterrupt: Ctrl-C in the launcher; the workers are stopped first.
    """
    engine = ENGINES[backend]
    ports = free_ports(count if engine == "tensorflow" else 1)
    settings = local_cluster(backend, count, ports)
    base = dict(os.environ if environ is None else environ)
    if announce:
        where = ", ".join(f"127.0.0.1:{p}" for p in ports)
        engine_name = ("TensorFlow's MultiWorkerMirroredStrategy" if engine == "tensorflow"
                       else "jax.distributed")
        announce(f"Starting {count} local worker{'s' if count > 1 else ''} ({engine_name}, "
                 f"{where}); worker 0's output follows")
    with tempfile.TemporaryDirectory(prefix="keras-bilevel-workers-") as logs:
        stderr_paths = [os.path.join(logs, f"worker-{i}.err") for i in range(count)]
        processes = []
        try:
            for i in range(count):
                env = {**base, **settings[i]}
                with open(stderr_paths[i], "w") as stderr:
                    stdout = None if i == 0 else open(
                        os.path.join(logs, f"worker-{i}.out"), "w")
                    try:
                        processes.append(subprocess.Popen(
                            [*command, *argv], env=env, stdout=stdout, stderr=stderr,
                            preexec_fn=_die_with_parent))
                    finally:
                        if stdout is not None:
                            stdout.close()
            while True:
                codes = [p.poll() for p in processes]
                failed = _first_failure(processes)
                if failed is not None:
                    break
                if all(code == 0 for code in codes):
                    _show(stderr_paths[0])
                    return 0, None
                time.sleep(poll_seconds)
        except KeyboardInterrupt:
            _stop(processes, grace_seconds)
            raise
        _stop(processes, grace_seconds)
        code = processes[failed].returncode
        if code == 130:  # the workers took a Ctrl-C meant for the whole job
            return 130, None
        line = describe_ending(failed, count, code, stderr_paths[failed])
        return (2 if code == 2 else 1), line + "; stopped the other workers"


def _show(path):
    """Pass what the chief wrote to stderr (warnings) on to ours."""
    with open(path, errors="replace") as f:
        text = f.read()
    if text.strip():
        sys.stderr.write(text)
