"""Fast defaults on a CPU: what must be chosen before a library loads, and how long a
run must be for compiling its step to pay; imports none.

TensorFlow turns its oneDNN kernels on by default only on CPUs with AVX-512-class
features; on an AVX2-only x86 CPU (an AMD EPYC) `TF_ENABLE_ONEDNN_OPTS=1` made a VGG-16
training step 2.7x faster, and on AVX-512 CPUs it is what TensorFlow does anyway
(BENCHMARKS.md, "Fast defaults"). TensorFlow reads the variable once, when it loads, so
the front ends call `prefer_onednn()` before they import TensorFlow or Keras. The user's
own setting (any value, `0` included) always wins, and nothing changes once TensorFlow
is loaded.

Compiling a training step costs seconds once per process and saves milliseconds a step,
so the front ends compile by default on a CPU only runs of `COMPILE_MIN_STEPS` steps or
more (`compiles_by_default`).

!!! example
    ```python
    from keras_bilevel.core import cpu_defaults
    cpu_defaults.prefer_onednn()   # before `import tensorflow`
    cpu_defaults.compiles_by_default(500 * 469)   # True: the paper's CIFAR-10 run
    ```
"""

import os
import platform
import sys

__all__ = ["COMPILE_MIN_STEPS", "ONEDNN_VARIABLE", "compiles_by_default", "prefer_onednn"]

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
"""The environment variable TensorFlow reads, once as it loads, to turn oneDNN on."""
COMPILE_MIN_STEPS = 10_000
"""Runs of at least this many training steps compile their step by default on a CPU
where compiling pays off at all (`torch.compile` on PyTorch; XLA for models without
convolutions on the Larq path): compiling costs seconds (XLA) to tens of seconds
(`torch.compile`) once per process and saves a few milliseconds a step."""
_X86 = ("x86_64", "amd64", "i386", "i686")


def prefer_onednn():
    """Set `TF_ENABLE_ONEDNN_OPTS=1` unless it is set or TensorFlow is already loaded, on
    x86 CPUs (where oneDNN is TensorFlow's fast CPU path). Returns whether it was set."""
    if ONEDNN_VARIABLE in os.environ or "tensorflow" in sys.modules:
        return False
    if platform.machine().lower() not in _X86:
        return False
    os.environ[ONEDNN_VARIABLE] = "1"
    return True


def compiles_by_default(steps):
    """Whether a run of `steps` training steps (None: unknown) is long enough for a CPU
    default to compile its step: `steps >= COMPILE_MIN_STEPS`."""
    return steps is not None and steps >= COMPILE_MIN_STEPS
