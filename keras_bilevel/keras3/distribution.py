"""Data parallelism for the Keras 3 front end: the gradient of the whole global batch.

AdaSTE's backward rule and the non-finite test of `LatentMomentum` are nonlinear in the
gradient, so under data parallelism they must see the gradient of the whole global batch
(docs/method.md, section 7), not one replica's part of it.

- JAX (`keras.distribution.DataParallel`): the training step is one program over the
  global batch, which XLA partitions; every gradient is already the global one and
  `replica_sum` returns None.
- TensorFlow under a `tf.distribute` strategy (`MirroredStrategy`, ...): the step runs
  once per replica on its share of the batch; `replica_sum` all-reduces a per-replica
  value inside that step.
- PyTorch, or one replica: None.

This module holds no formula and no Keras object; what each backend does is its module's
in `keras_bilevel.keras3.backends`.

!!! example
    ```python
    from keras_bilevel.keras3.distribution import replica_sum
    total = replica_sum(g)       # inside a backward pass or an optimizer's apply
    g_total = g if total is None else total
    ```
"""

from keras_bilevel.keras3.backends import current as _backend

__all__ = ["replica_sum"]


def replica_sum(value):
    r"""`value` summed over the replicas in sync of a `tf.distribute` strategy, or None.

    \\[ \mathrm{replica\_sum}(g_r) = \sum_{r'=1}^{R} g_{r'} \\]

    computed on every replica (an all-reduce), for a tensor or a (nested) list of
    tensors. Returns None, and adds no operation, where there is nothing to sum: another
    backend than TensorFlow (JAX's sharded step already differentiates the global batch),
    outside a replica context (cross-replica or default strategy with no step running),
    or with one replica.

    Call it where every replica runs it, in the same order (a backward pass or an
    optimizer's `apply` inside the training step): it is a collective operation.

    !!! example
        ```python
        with strategy.scope():  # tf.distribute.MirroredStrategy, 2 replicas
            ...
        # inside the step, on replica r:  replica_sum(g_r) == g_0 + g_1
        ```
    """
    return _backend.replica_sum(value)
