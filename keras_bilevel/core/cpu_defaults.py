"""Fast defaults on a CPU that must be chosen before a library loads; imports none.

TensorFlow turns its oneDNN kernels on by default only on CPUs with AVX-512-class
features; on an AVX2-only x86 CPU (an AMD EPYC) `TF_ENABLE_ONEDNN_OPTS=1` made a VGG-16
training step 2.7x faster, and on AVX-512 CPUs it is what TensorFlow does anyway
(BENCHMARKS.md, "Fast defaults"). TensorFlow reads the variable once, when it loads, so
the front ends call `prefer_onednn()` before they import TensorFlow or Keras. The user's
own setting (any value, `0` included) always wins, and nothing changes once TensorFlow
is loaded.

!!! example
    ```python
    from keras_bilevel.core import cpu_defaults
    cpu_defaults.prefer_onednn()   # before `import tensorflow`
    ```
"""

import os
import platform
import sys

__all__ = ["ONEDNN_VARIABLE", "prefer_onednn"]

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
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
