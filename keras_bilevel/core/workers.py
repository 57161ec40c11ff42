"""Which worker of a multi-worker run this process is, read from the engines' own settings.

Multi-worker training uses the engines that exist: TensorFlow's
`MultiWorkerMirroredStrategy`, configured by the `TF_CONFIG` variable as TensorFlow
documents it, for `--backend larq` and `--backend tensorflow`; `jax.distributed` for
`--backend jax`, configured by a coordinator address, the number of processes and this
process's index (arguments, else `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`,
`JAX_PROCESS_ID`). Keras 3 has no distribution API for PyTorch. This module reads and
writes those settings and holds the rule that gives each replica its rows of a global
batch (`replica_rows`); it imports no TensorFlow, JAX or Keras.

!!! example
    ```python
    setup = worker_setup("larq", environ={"TF_CONFIG": json.dumps({
        "cluster": {"worker": ["host-a:2222", "host-b:2222"]},
        "task": {"type": "worker", "index": 1}})})
    setup.count, setup.index, setup.is_chief      # 2, 1, False
    local_cluster("jax", 2, ports=[5000])[1]["JAX_PROCESS_ID"]   # "1"
    replica_rows(128, replicas=2, replica=1)     # (64, 128)
    replica_rows(13, replicas=2, replica=1)      # (0, 13): the whole batch
    ```
"""

import dataclasses
import json
import os
import shutil
import socket
import tempfile
from typing import Optional

__all__ = ["ENGINES", "TENSORFLOW_LOST_WORKER_ERRORS", "WorkerFiles", "WorkerLost",
           "WorkerSetup", "check_batch_size", "free_ports", "local_cluster",
           "no_engine_message", "replica_rows", "train_as", "worker_setup"]

# The engine that runs several workers, per backend; PyTorch has none in Keras 3.
ENGINES = {"larq": "tensorflow", "tensorflow": "tensorflow", "jax": "jax"}
# The `tf.errors` a collective operation raises when a peer is gone or the job aborted.
TENSORFLOW_LOST_WORKER_ERRORS = ("UnavailableError", "CancelledError",
                                 "DeadlineExceededError", "AbortedError")
_JAX_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


class WorkerLost(RuntimeError):
    """Another worker of this run stopped answering (killed, crashed, unreachable)."""


def no_engine_message(backend):
    """The one-line refusal of several workers for a backend without an engine."""
    return (f"--backend {backend} cannot train on several workers: Keras 3 has no "
            "distribution API for PyTorch; use --backend jax, tensorflow or larq")


@dataclasses.dataclass(frozen=True)
class WorkerSetup:
    """One worker of a multi-worker run.

    # Attributes
        engine: "tensorflow" (`MultiWorkerMirroredStrategy`) or "jax" (`jax.distributed`).
        count: the number of workers, >= 1.
        index: this worker's index in [0, count); worker 0 is the chief, the only one
            that writes the run directory.
        coordinator: "host:port" of JAX's coordinator (process 0); None for TensorFlow,
            whose cluster is all of `TF_CONFIG`.
    """

    engine: str
    count: int
    index: int
    coordinator: Optional[str] = None

    @property
    def is_chief(self):
        return self.index == 0


def _tf_setup(text):
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        kind, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError("TF_CONFIG must be JSON with \"cluster\" and \"task\" "
                         "({\"type\": ..., \"index\": ...}), as TensorFlow documents; got "
                         f"{text[:200]!r} ({type(error).__name__}: {error})") from None
    chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
    if len(chiefs) > 1:
        raise ValueError(f"TF_CONFIG names {len(chiefs)} chiefs; a cluster has at most one")
    # TensorFlow's order: the chief (if any) is worker 0, then the workers.
    tasks = {"chief": chiefs, "worker": workers}
    if kind not in tasks or not 0 <= index < len(tasks[kind]):
        raise ValueError(f"TF_CONFIG's task {{type: {kind!r}, index: {index}}} is not in its "
                         f"cluster (chief: {len(chiefs)}, worker: {len(workers)}); this "
                         "trainer runs chief and worker tasks only")
    offset = len(chiefs) if kind == "worker" else 0
    return WorkerSetup("tensorflow", len(chiefs) + len(workers), offset + index)


def _jax_setup(coordinator, num_processes, process_id):
    given = {"coordinator": coordinator, "num_processes": num_processes,
             "process_id": process_id}
    missing = [name for name, value in given.items() if value in (None, "")]
    if len(missing) == 3:
        return None
    if missing:
        raise ValueError("a JAX multi-process run needs the coordinator address, the number "
                         f"of processes and this process's index; missing: "
                         f"{', '.join(missing)} (--coordinator, --num-processes, "
                         f"--process-id, or {', '.join(_JAX_VARIABLES)})")
    try:
        count, index = int(num_processes), int(process_id)
    except ValueError:
        raise ValueError(f"the number of processes ({num_processes!r}) and the process "
                         f"index ({process_id!r}) must be integers") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"process index {index} is not in [0, {count}) for {count} "
                         "processes")
    host, _, port = str(coordinator).rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"the coordinator address must be HOST:PORT, got {coordinator!r}")
    return WorkerSetup("jax", count, index, coordinator=str(coordinator))


def worker_setup(backend, coordinator=None, num_processes=None, process_id=None,
                 environ=None):
    """This process's `WorkerSetup` for `backend`, or None for a single-process run.

    For "larq" and "tensorflow": from `TF_CONFIG` (None when it is unset or empty).
    For "jax": from the arguments, each falling back to its `JAX_*` variable (None when
    none is set). For "torch": None, unless multi-worker settings were given, which is
    refused.

    # Raises
        ValueError: settings that are malformed or incomplete, in one line.
    """
    environ = os.environ if environ is None else environ
    if ENGINES.get(backend) == "tensorflow":
        text = environ.get("TF_CONFIG", "").strip()
        return _tf_setup(text) if text else None
    jax_given = [coordinator, num_processes, process_id]
    if backend == "jax":
        values = [value if value not in (None, "") else environ.get(variable)
                  for value, variable in zip(jax_given, _JAX_VARIABLES)]
        return _jax_setup(*values)
    if any(value is not None for value in jax_given):
        raise ValueError(no_engine_message(backend))
    return None


def free_ports(count):
    """`count` distinct TCP ports free on 127.0.0.1 now (held open together, then let go)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def local_cluster(backend, count, ports):
    """The environment variables of each of `count` workers on this machine, a list of
    dicts: `TF_CONFIG` with one loopback port per worker (TensorFlow; `ports` has
    `count` entries), or the `JAX_*` variables with the coordinator on `ports[0]`."""
    engine = ENGINES.get(backend)
    if engine is None:
        raise ValueError(no_engine_message(backend))
    if engine == "tensorflow":
        cluster = {"worker": [f"127.0.0.1:{port}" for port in ports[:count]]}
        return [{"TF_CONFIG": json.dumps({"cluster": cluster,
                                          "task": {"type": "worker", "index": index}})}
                for index in range(count)]
    return [{"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{ports[0]}",
             "JAX_NUM_PROCESSES": str(count), "JAX_PROCESS_ID": str(index)}
            for index in range(count)]


def replica_rows(batch_rows, replicas, replica):
    """`(start, stop)`: the rows of a global batch of `batch_rows` examples that replica
    `replica` of `replicas` trains on.

    An even split when the batch divides evenly, `replica` taking the `replica`-th of
    `replicas` equal parts; otherwise (the last, partial batch of an epoch) every replica
    takes the whole batch. Both give each step the gradient and the BatchNorm
    statistics of exactly this batch, as one device computes them: the loss of each
    replica is the mean over its rows divided by `replicas`, so the replicas' gradients
    sum to the gradient of the mean over the batch, and copies of one batch have the
    mean, the variance and the mean loss of the batch itself. The engines need
    replicas of equal size (JAX shards a global array evenly), hence copies rather
    than an uneven split.
    """
    if not 0 <= replica < replicas:
        raise ValueError(f"replica {replica} is not in [0, {replicas})")
    if batch_rows % replicas:
        return 0, batch_rows
    share = batch_rows // replicas
    return replica * share, (replica + 1) * share


def check_batch_size(batch_size, replicas):
    """Refuse, in one line, a global batch that does not split evenly over `replicas`."""
    if batch_size % replicas:
        raise ValueError(f"--batch-size {batch_size} does not split evenly over the "
                         f"{replicas} replicas of this run: use a multiple of {replicas} "
                         "(the batch size is the global batch, shared by all workers)")


class WorkerFiles:
    """Where a worker writes: the chief (index 0) writes the run's own paths; another
    worker, which must still save (saving is a collective operation on both engines),
    the same names in a scratch directory of its own. Mixed into the front ends'
    `MultiWorker` classes, which set `index` and say which errors mean a lost worker."""

    index = 0
    _scratch = None

    @property
    def is_chief(self):
        return self.index == 0

    def lost_worker(self, error):
        """Whether `error` is a collective operation failing for a worker that is gone."""
        return False

    def writable(self, path):
        """`path` on the chief; on another worker the same name in its scratch directory
        (removed by `close`)."""
        if self.is_chief:
            return path
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix=f"keras-bilevel-worker{self.index}-")
        return os.path.join(self._scratch, os.path.basename(os.path.normpath(path)))

    def close(self):
        """Remove this worker's scratch directory."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def train_as(cluster, train, args):
    """`train(args, cluster)`: a collective operation that failed because another
    worker is gone ends it with `WorkerLost` (one line); the scratch directory goes."""
    try:
        return train(args, cluster)
    except Exception as error:
        if not cluster.lost_worker(error):
            raise
        raise WorkerLost(f"worker {cluster.index} of {cluster.count}: another worker "
                         f"stopped answering ({type(error).__name__})") from error
    finally:
        cluster.close()
