"""The multi-worker settings (`keras_bilevel.core.workers`): TF_CONFIG and JAX's, read and written."""

import json

import numpy as np
import pytest

from keras_bilevel.core import workers


def _tf_config(cluster, kind, index):
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind,
                                                                   "index": index}})}


@pytest.mark.parametrize("cluster,kind,index,expected", [
    ({"worker": ["a:1", "b:1"]}, "worker", 0, (2, 0, True)),
    ({"worker": ["a:1", "b:1"]}, "worker", 1, (2, 1, False)),
    ({"chief": ["c:1"], "worker": ["a:1", "b:1"]}, "chief", 0, (3, 0, True)),
    ({"chief": ["c:1"], "worker": ["a:1", "b:1"]}, "worker", 1, (3, 2, False)),
])
@pytest.mark.parametrize("backend", ["larq", "tensorflow"])
def test_tf_config(backend, cluster, kind, index, expected):
    setup = workers.worker_setup(backend, environ=_tf_config(cluster, kind, index))
    assert (setup.engine, setup.count, setup.index, setup.is_chief) == ("tensorflow",
                                                                       *expected)


@pytest.mark.parametrize("environ,words", [
    ({"TF_CONFIG": "{not json"}, "must be JSON"),
    ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"]}})}, "must be JSON"),
    (_tf_config({"worker": ["a:1"]}, "worker", 1), "is not in its cluster"),
    (_tf_config({"worker": ["a:1"], "ps": ["p:1"]}, "ps", 0), "is not in its cluster"),
    (_tf_config({"chief": ["a:1", "b:1"]}, "chief", 0), "at most one"),
])
def test_bad_tf_config_is_one_line(environ, words):
    with pytest.raises(ValueError, match=words) as raised:
        workers.worker_setup("larq", environ=environ)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("backend", ["larq", "tensorflow", "jax", "torch"])
def test_no_settings_is_a_single_process_run(backend):
    assert workers.worker_setup(backend, environ={"TF_CONFIG": ""}) is None


def test_jax_from_arguments_and_from_variables():
    by_arguments = workers.worker_setup("jax", "10.0.0.1:1234", 4, 3, environ={})
    assert by_arguments == workers.WorkerSetup("jax", 4, 3, "10.0.0.1:1234")
    by_variables = workers.worker_setup("jax", environ={
        "JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
        "JAX_PROCESS_ID": "0"})
    assert by_variables.is_chief and by_variables.count == 4
    # An argument wins over its variable.
    mixed = workers.worker_setup("jax", process_id=2, environ={
        "JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "0"})
    assert mixed.index == 2


@pytest.mark.parametrize("arguments,words", [
    (("h:1", 2, None), "missing: process_id"),
    ((None, 2, 0), "missing: coordinator"),
    (("h:1", 2, 2), r"not in \[0, 2\)"),
    (("h:1", "two", 0), "must be integers"),
    (("no-port", 2, 0), "HOST:PORT"),
])
def test_bad_jax_settings_are_one_line(arguments, words):
    with pytest.raises(ValueError, match=words):
        workers.worker_setup("jax", *arguments, environ={})


def test_torch_refuses_several_workers():
    with pytest.raises(ValueError, match="no distribution API for PyTorch"):
        workers.worker_setup("torch", "h:1", 2, 0, environ={})
    with pytest.raises(ValueError, match="no distribution API for PyTorch"):
        workers.local_cluster("torch", 2, [1, 2])


@pytest.mark.parametrize("backend", ["larq", "tensorflow", "jax"])
def test_local_cluster_is_read_back_as_its_workers(backend):
    ports = workers.free_ports(3)
    assert len(set(ports)) == 3 and all(0 < p < 65536 for p in ports)
    environments = workers.local_cluster(backend, 3, ports)
    setups = [workers.worker_setup(backend, environ=env) for env in environments]
    assert [(s.count, s.index) for s in setups] == [(3, 0), (3, 1), (3, 2)]
    if backend == "jax":
        assert {s.coordinator for s in setups} == {f"127.0.0.1:{ports[0]}"}
    else:
        cluster = json.loads(environments[0]["TF_CONFIG"])["cluster"]["worker"]
        assert cluster == [f"127.0.0.1:{p}" for p in ports]


@pytest.mark.parametrize("rows,replicas,expected", [
    (128, 2, [(0, 64), (64, 128)]),
    (14, 2, [(0, 7), (7, 14)]),                     # a last batch that splits evenly
    (13, 2, [(0, 13), (0, 13)]),                    # one that does not: every replica
    (12, 4, [(0, 3), (3, 6), (6, 9), (9, 12)]),
    (10, 4, [(0, 10)] * 4),
    (5, 1, [(0, 5)]),
])
def test_replica_rows(rows, replicas, expected):
    assert [workers.replica_rows(rows, replicas, r) for r in range(replicas)] == expected


@pytest.mark.parametrize("rows,replicas", [(128, 2), (13, 2), (10, 4), (7, 3), (1, 2)])
def test_replica_rows_give_the_batch_its_own_mean(rows, replicas):
    """What the rule promises: the replicas' losses (each the mean over its rows, divided
    by the number of replicas) add up to the mean over the batch, and the rows the
    replicas take together have the batch's mean and variance (BatchNorm's statistics)."""
    values = np.random.default_rng(rows).standard_normal(rows)
    parts = [values[slice(*workers.replica_rows(rows, replicas, r))] for r in range(replicas)]
    assert sum(p.mean() / replicas for p in parts) == pytest.approx(values.mean(), abs=1e-12)
    together = np.concatenate(parts)
    assert together.mean() == pytest.approx(values.mean(), abs=1e-12)
    assert together.var() == pytest.approx(values.var(), abs=1e-12)
    assert len({len(p) for p in parts}) == 1  # equal shares: the engines need them


def test_replica_rows_refuses_a_replica_out_of_range():
    with pytest.raises(ValueError, match=r"not in \[0, 2\)"):
        workers.replica_rows(8, 2, 2)


def test_check_batch_size():
    workers.check_batch_size(128, 2)
    with pytest.raises(ValueError, match="--batch-size 129 does not split evenly over the 2 "
                                         "replicas of this run: use a multiple of 2"):
        workers.check_batch_size(129, 2)
