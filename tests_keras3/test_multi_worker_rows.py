"""The rows each process of a multi-worker run feeds (`MultiWorker._rows`), for one or
several replicas per process: its replicas' shares of a global batch, in order, or a
copy of the whole batch per replica when the batch does not split evenly."""

import numpy as np
import pytest

from keras_bilevel.keras3.multi_worker import MultiWorker


def _rows(replicas, first, local, rows):
    worker = MultiWorker(None)
    worker.replicas, worker._first, worker._local = replicas, first, local
    images, labels = np.arange(rows * 2).reshape(rows, 2), np.arange(rows)
    return [labels.tolist() for _, labels in worker._rows(lambda: [(images, labels)])]


@pytest.mark.parametrize("replicas,first,local,rows,expected", [
    (1, 0, 1, 5, [0, 1, 2, 3, 4]),                  # one process, one device
    (2, 1, 1, 8, [4, 5, 6, 7]),                     # second of two workers
    (2, 1, 1, 7, [0, 1, 2, 3, 4, 5, 6]),            # uneven: the whole batch
    (4, 2, 2, 8, [4, 5, 6, 7]),                     # second process of two, 2 devices each
    (4, 0, 4, 8, list(range(8))),                   # one process holding every replica
    (4, 2, 2, 6, list(range(6)) * 2),               # uneven: a whole copy per replica
])
def test_rows_of_a_process(replicas, first, local, rows, expected):
    assert _rows(replicas, first, local, rows) == [expected]
