"""Which stack is installed, what the command line picks, and the CPU defaults.

`keras_bilevel.core.stacks` is tested with the installed modules faked (a fresh install of
each extra is tested for real by `.ci/run`, in `tests_install/`); the CPU defaults are
tested in fresh processes, since TensorFlow reads them once, when it loads.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_bilevel.core import cpu_defaults, stacks
from keras_bilevel.cli import workflow as cli

ENV = {k: v for k, v in os.environ.items()
       if k not in ("TF_ENABLE_ONEDNN_OPTS", "KERAS_BACKEND", "TF_USE_LEGACY_KERAS")}
ENV["TF_CPP_MIN_LOG_LEVEL"] = "3"


@pytest.fixture
def installed(monkeypatch):
    """`installed(*modules)`: make exactly these top-level modules look installed."""

    def fake(*modules):
        monkeypatch.setattr(stacks, "is_installed", lambda name: name in modules)

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    return fake


LARQ = ("tensorflow", "tf_keras", "larq", "keras")


@pytest.mark.parametrize("modules,env,expected", [
    (LARQ, None, "larq"),
    (LARQ + ("jax", "torch"), "jax", "larq"),              # Larq first where it is there
    (("keras", "jax"), None, "jax"),
    (("keras", "torch"), None, "torch"),
    (("keras", "tensorflow"), None, "tensorflow"),         # Keras 3 on TF, no tf-keras
    (("keras", "jax", "torch"), None, "jax"),
    (("keras", "jax", "torch"), "torch", "torch"),         # the user's KERAS_BACKEND
    (("keras", "jax"), "torch", "jax"),                    # ... only if it is installed
    (("jax",), None, None),                                # no Keras: nothing to run
    ((), None, None),
])
def test_default_backend(installed, monkeypatch, modules, env, expected):
    installed(*modules)
    if env:
        monkeypatch.setenv("KERAS_BACKEND", env)
    assert stacks.default_backend() == expected


@pytest.mark.parametrize("backend,modules,message", [
    ("larq", ("keras", "jax"),
     '--backend larq (Larq on Keras 2) needs tensorflow, tf_keras, larq, which are not '
     'installed: pip install "keras-bilevel[larq]"'),
    ("torch", ("keras", "jax"),
     '--backend torch (Keras 3 on PyTorch) needs torch, which is not installed: '
     'pip install "keras-bilevel[torch]"'),
    ("jax", (), '--backend jax (Keras 3 on JAX) needs keras, jax, which are not installed: '
                'pip install "keras-bilevel[jax]"'),
])
def test_a_missing_backend_is_one_line_naming_its_extra(installed, backend, modules, message):
    installed(*modules)
    with pytest.raises(ImportError) as caught:
        stacks.require_backend(backend)
    assert str(caught.value) == message


def _train_args(**kwargs):
    return argparse.Namespace(**{"command": "train", "backend": None, "method": "adaste",
                                 **kwargs})


def test_train_without_backend_uses_the_installed_keras3_backend(installed):
    installed("keras", "torch")
    args = _train_args()
    cli._check_backend(args)
    assert args.backend == "torch" and args.backend_note == "the Larq stack is not installed"


def test_train_without_any_stack_names_every_extra(installed):
    installed()
    with pytest.raises(cli.UsageError, match=r'no front end is installed .*keras-bilevel\[larq\]'
                                             r'.*\[jax\].*\[torch\].*\[tensorflow\]'):
        cli._check_backend(_train_args())


def test_a_named_backend_that_is_not_installed_is_refused(installed):
    installed(*LARQ)
    with pytest.raises(cli.UsageError, match=r'keras-bilevel\[jax\]'):
        cli._check_backend(_train_args(backend="jax"))


def test_main_refuses_a_missing_backend_in_one_line_and_writes_nothing(installed, tmp_path,
                                                                      capsys):
    installed(*LARQ)
    status = cli.main(["train", "--backend", "torch", "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "keras-bilevel[torch]" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command,modules,expected", [
    ("evaluate", ("keras", "jax", "torch"), "jax"),
    ("evaluate", ("keras", "torch"), "torch"),
    ("export", ("keras", "tensorflow", "jax"), "tensorflow"),
    ("export", ("keras", "jax"), "jax"),   # then the export names the [tensorflow] extra
])
def test_a_keras3_file_is_opened_on_an_installed_backend(installed, command, modules, expected):
    installed(*modules)
    assert cli._default_keras3_backend(command) == expected


class TestChooseKerasBackend:
    """`keras_bilevel.keras3` picks an installed backend only where Keras' would fail."""

    @pytest.fixture(autouse=True)
    def _no_keras_yet(self, monkeypatch, tmp_path):
        monkeypatch.delitem(sys.modules, "keras", raising=False)
        monkeypatch.setenv("KERAS_HOME", str(tmp_path))
        self.home = tmp_path

    def _configure(self, backend):
        (self.home / "keras.json").write_text(json.dumps({"backend": backend}))

    @pytest.mark.parametrize("modules,configured,expected", [
        (("keras", "jax"), None, "jax"),
        (("keras", "jax"), "tensorflow", "jax"),        # keras.json names what is missing
        (("keras", "torch"), None, "torch"),
        (("keras", "jax", "torch"), "torch", None),     # keras.json's choice is there
        (("keras", "tensorflow", "jax"), None, None),   # Keras' default is there
    ])
    def test_choice(self, installed, monkeypatch, modules, configured, expected):
        installed(*modules)
        if configured:
            self._configure(configured)
        assert stacks.choose_keras_backend() == expected
        assert os.environ.get("KERAS_BACKEND") == expected

    def test_the_users_variable_wins(self, installed, monkeypatch):
        installed("keras", "jax")
        monkeypatch.setenv("KERAS_BACKEND", "torch")
        assert stacks.choose_keras_backend() is None
        assert os.environ["KERAS_BACKEND"] == "torch"


def _python(code, **env):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**ENV, **env}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


ONEDNN_SEEN = ("import os, {module}; import tensorflow as tf; "
               "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))")


@pytest.mark.parametrize("module", ["keras_bilevel", "keras_bilevel.keras3"])
def test_onednn_is_on_by_default_before_tensorflow_loads(module):
    assert _python(ONEDNN_SEEN.format(module=module),
                   KERAS_BACKEND="tensorflow").split()[-1] == "1"


def test_the_users_onednn_setting_wins():
    assert _python(ONEDNN_SEEN.format(module="keras_bilevel"),
                   TF_ENABLE_ONEDNN_OPTS="0").split()[-1] == "0"


def test_nothing_changes_once_tensorflow_is_loaded(monkeypatch):
    monkeypatch.delenv(cpu_defaults.ONEDNN_VARIABLE, raising=False)
    assert "tensorflow" in sys.modules  # this test process runs the Larq path
    assert cpu_defaults.prefer_onednn() is False
    assert cpu_defaults.ONEDNN_VARIABLE not in os.environ


# A binary CNN's loss at its initial weights (AdaSTE with the paper's recipe: relaxed
# forward, +-10 init) and the losses of three training steps with the default `adaste`
# method (Adam); then the forward and backward passes of the ops oneDNN replaces, each on
# its own fixed inputs and upstream gradient (a convolution and a matrix product with
# +-1 weights, a training-mode fused BatchNorm, a max-pooling): all as .npz bytes.
ONE_STEP = """
import io, sys
import numpy as np
import keras_bilevel, tensorflow as tf
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 16, 16, 3)).astype(np.float32); y = rng.integers(0, 10, 64)
loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
def build(method):
    tf.keras.utils.set_random_seed(0)
    recipe = keras_bilevel.recipes.make(method, 512, 5, 8, batch_size=64)
    return recipe, keras_bilevel.models.vgg_small((16, 16, 3), classes=10,
        kernel_quantizer=recipe.kernel_quantizer, kernel_initializer=recipe.kernel_initializer,
        kernel_constraint=recipe.kernel_constraint)
_, model = build("adaste-reference")
loss = loss_fn(y, model(x, training=True))
recipe, model = build("adaste")
model.compile(recipe.optimizer, loss_fn)
history = model.fit(x, y, batch_size=64, epochs=3, verbose=0, shuffle=False)
out = {"loss": loss.numpy(), "losses": np.array(history.history["loss"])}
def normal(*shape):
    return rng.standard_normal(shape).astype(np.float32)
def signs(*shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)
def passes(name, op, *inputs):
    inputs = [tf.Variable(value) for value in inputs]
    with tf.GradientTape() as tape:
        result = op(*inputs)
        upstream = tf.constant(normal(*result.shape))
        product = tf.reduce_sum(result * upstream)
    out[name + "|forward"] = result.numpy()
    for i, grad in enumerate(tape.gradient(product, inputs)):
        out[f"{name}|grad{i}"] = grad.numpy()
passes("conv2d", lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"), normal(16, 16, 16, 32),
       signs(3, 3, 32, 64))
passes("matmul", tf.matmul, normal(64, 512), signs(512, 256))
passes("batch_norm", lambda x, g, b: tf.compat.v1.nn.fused_batch_norm(
    x, g, b, is_training=True)[0], normal(16, 8, 8, 64), normal(64), normal(64))
passes("max_pool", lambda x: tf.nn.max_pool2d(x, 2, 2, "VALID"), normal(16, 8, 8, 64))
buffer = io.BytesIO()
np.savez(buffer, **out)
sys.stdout.buffer.write(buffer.getvalue())
"""


def _one_step(onednn):
    result = subprocess.run([sys.executable, "-c", ONE_STEP], capture_output=True,
                            env={**ENV, "TF_ENABLE_ONEDNN_OPTS": onednn}, timeout=600)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    import io

    return dict(np.load(io.BytesIO(result.stdout)))


def test_onednn_computes_what_the_default_kernels_compute():
    """oneDNN reorders float sums: the binary CNN's loss, the loss of its first training
    step, and every forward and backward pass of the ops it replaces agree with
    TensorFlow's own kernels within float32 rounding of the sums.

    A whole network's gradients are not compared element by element: they are not a
    continuous function of the rounding. Of the million pre-activations of a layer here,
    about one lies within rounding of 0 (a ReLU) or of its max-pooling window's
    runner-up, and the two float orders send its gradient different ways. On a 2-core
    AMD EPYC (AVX-512) this moved the first kernel gradient of `vgg_small` by 0.4% (L2,
    straight-through) and up to 8% with AdaSTE, whose thresholds on the gradient
    amplify it, while every pass below agreed within 1.1e-6 of its scale. (Later steps
    are not compared either: Adam turns a gradient that is 0 up to rounding into a step
    of full size, so two float orders of one binary network part after a few steps.)"""
    on, off = _one_step("1"), _one_step("0")
    assert set(on) == set(off) and len(on) > 10
    np.testing.assert_allclose(on["loss"], off["loss"], rtol=1e-5)
    np.testing.assert_allclose(on["losses"][0], off["losses"][0], rtol=1e-5)
    for name in set(on) - {"loss", "losses"}:
        scale = max(float(np.abs(off[name]).max()), 1e-12)
        np.testing.assert_allclose(on[name], off[name], rtol=0, atol=1e-5 * scale,
                                   err_msg=name)
