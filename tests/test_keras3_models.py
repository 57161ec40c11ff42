"""The Keras 3 models have the Larq models' parameter counts, option for option.

The Larq builders (`keras_bilevel.models`, Keras 2) run here, in the main test process;
the Keras 3 builders (`keras_bilevel.keras3.models`) cannot share a process with them, so
one subprocess builds the same configurations and prints their counts (under
`KERAS_BACKEND=torch`, which makes the weights fastest: JAX compiles every initializer
for every new shape; the counts do not depend on the backend). Nothing is hard-coded:
each Keras 3 count is compared with the Larq builder's.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_bilevel import models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (builder, keyword arguments); keyword values must survive JSON.
CONFIGS = {
    "mlp_default": ("binary_mlp", {}),
    "mlp_options": ("binary_mlp", dict(input_shape=[28, 28, 1], hidden_units=100, depth=2,
                                       classes=7, batch_norm_affine=True,
                                       kernel_quantizer="ste_sign",
                                       kernel_constraint="weight_clip")),
    "mlp_linear": ("binary_mlp", dict(input_shape=[5], depth=0, classes=3)),
    "vgg16_input": ("vgg16", dict(input_shape=[64, 48, 1], width=0.25, classes=100)),
    "vgg_small_input": ("vgg_small", dict(input_shape=[16, 16, 1], width=0.1, classes=2)),
    "resnet18_eighth": ("resnet18", dict(input_shape=[16, 16, 3], width=0.125, classes=5)),
    "resnet18_half": ("resnet18", dict(input_shape=[32, 32, 1], width=0.5,
                                       batch_norm_affine=True)),
    "resnet18_tiny_form": ("resnet18", dict(input_shape=[64, 64, 3], classes=200)),
    "resnet18_imagenet_form": ("resnet18", dict(input_shape=[160, 128, 3], width=0.25)),
    "resnet18_forced_form": ("resnet18", dict(input_shape=[64, 64, 3], width=0.25,
                                              form="imagenet")),
    "vgg16_imagenet_head": ("vgg16", dict(input_shape=[128, 128, 3], width=0.125)),
}
FULL_SIZE = {name: (name, {}) for name in ("vgg16", "vgg_small", "resnet18")}

_KERAS3_COUNTS = """
import json, sys
import numpy as np
from keras_bilevel.keras3 import models
counts = {}
for key, (builder, kwargs) in json.loads(sys.argv[1]).items():
    model = getattr(models, builder)(**kwargs)
    counts[key] = [model.count_params(),
                   sum(int(np.prod(w.shape)) for w in model.trainable_weights),
                   sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)]
print("COUNTS " + json.dumps(counts))
"""


def _start_keras3_counts(configs):
    env = dict(os.environ, KERAS_BACKEND="torch", PYTHONPATH=ROOT)
    env.pop("TF_USE_LEGACY_KERAS", None)
    return subprocess.Popen([sys.executable, "-c", _KERAS3_COUNTS, json.dumps(configs)],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _keras3_counts(process):
    stdout, stderr = process.communicate(timeout=600)
    lines = [line for line in stdout.splitlines() if line.startswith("COUNTS ")]
    assert process.returncode == 0 and lines, stderr[-3000:]
    return json.loads(lines[-1][len("COUNTS "):])


def _larq_counts(builder, kwargs):
    kwargs = {key: tuple(value) if key == "input_shape" else value
              for key, value in kwargs.items()}
    model = getattr(models, builder)(**kwargs)
    return [model.count_params(),
            sum(int(np.prod(w.shape)) for w in model.trainable_weights),
            sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)]


def _compare(configs):
    process = _start_keras3_counts(configs)  # runs while the Larq models are built
    larq_counts = {key: _larq_counts(*config) for key, config in configs.items()}
    keras3 = _keras3_counts(process)
    for key, larq in larq_counts.items():
        assert keras3[key] == larq, f"{key}: Keras 3 {keras3[key]} != Larq {larq}"
        assert larq[0] == larq[1] + larq[2] and larq[1] > 0


def test_same_counts_as_larq():
    _compare(CONFIGS)


@pytest.mark.slow
def test_same_counts_as_larq_full_size():
    _compare(FULL_SIZE)
