"""The Keras 3 install (`pip install -e ".[jax]"`): today's stack, no Larq stack.

`.ci/run` runs these in a fresh virtual environment installed with `.[jax]` only; they
check what that install holds and that each front end behaves there as the README says
(the Keras 3 front end works, the Larq front end and missing backends are refused in one
line naming the extra to install). Each command runs in its own process.
"""

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ENV = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "KERAS_BACKEND")}
ENV["TF_CPP_MIN_LOG_LEVEL"] = "3"


def _version(name):
    return tuple(int(p) for p in importlib.metadata.version(name).split(".")[:2])


def _run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=600,
                            **kwargs)
    return result.returncode, result.stdout, result.stderr


def _cli(*args, **kwargs):
    return _run([sys.executable, "-m", "keras_bilevel", *args], **kwargs)


@pytest.mark.parametrize("module", ["tensorflow", "tf_keras", "larq", "torch",
                                    "larq_compute_engine"])
def test_the_install_has_no_other_stack(module):
    assert importlib.util.find_spec(module) is None, f"{module} is installed"


def test_the_install_has_numpy_2_and_a_current_jax():
    assert _version("numpy") >= (2, 0)
    assert _version("jax") >= (0, 9) and _version("jaxlib") >= (0, 9)
    assert _version("keras")[:1] == (3,)


def test_the_larq_front_end_is_refused_in_one_clear_line():
    status, _, err = _run([sys.executable, "-c", "import keras_bilevel"])
    last = err.strip().splitlines()[-1]
    assert status != 0 and last.startswith("ImportError: keras_bilevel (the Larq front end"), err
    assert 'pip install "keras-bilevel[larq]"' in last and "keras_bilevel.keras3" in last


def test_the_keras3_front_end_imports_and_trains_a_step():
    code = """
import numpy as np
from keras_bilevel.keras3 import AdaSTE, models  # before Keras: picks JAX, the one there
import keras
from keras_bilevel.keras3.dense_product import uses_transposed_backward
assert keras.backend.backend() == "jax"
assert not uses_transposed_backward()  # jaxlib >= 0.9.0: XLA's own product is fast
model = models.binary_mlp((8,), 16, classes=3, kernel_quantizer=lambda: AdaSTE())
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
before = [np.array(w) for w in model.get_weights()]
model.fit(np.random.rand(32, 8), np.random.randint(0, 3, 32), epochs=1, verbose=0)
assert any(np.any(a != np.array(b)) for a, b in zip(before, model.get_weights()))
print("OK")
"""
    status, out, err = _run([sys.executable, "-c", code])
    assert status == 0 and "OK" in out, err[-3000:]


def test_train_picks_the_installed_backend_and_says_so(tmp_path):
    output = tmp_path / "run"
    status, out, err = _cli("train", "--epochs", "1", "--output", str(output))
    assert status == 0, err[-3000:]
    first = out.strip().splitlines()[0]
    assert first.startswith("Training for 1 epochs: mlp on digits with adaste on jax "
                            "(the Larq stack is not installed)"), first
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["backend"] == "jax" and metrics["test_accuracy"] > 0.5


def test_two_workers_train_what_one_trains_on_a_current_jax(tmp_path):
    """`--workers 2` on today's JAX: the run is written once, by the chief, and is the
    one-worker run (tests/test_multi_worker.py has the tolerances and why)."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.saved_runs import saved_weights

    train = ["train", "--epochs", "3", "--hidden-units", "16", "--batch-size", "256"]
    runs = {}
    for workers in (1, 2):
        runs[workers] = tmp_path / f"{workers}"
        status, out, err = _cli(*train, "--workers", str(workers), "--output",
                                str(runs[workers]))
        assert status == 0, err[-3000:]
    assert "worker 0 of 2, 2 replicas" in out
    one, two = saved_weights(runs[1]), saved_weights(runs[2])
    for name in one:
        bound = 5e-3 if name.endswith("/vars/0") and name.startswith("quant_dense/") else (
            1e-5 + 1e-6 * np.abs(one[name]))
        assert (np.abs(one[name] - two[name]) <= bound).all(), name
    metrics = [json.loads((runs[w] / "metrics.json").read_text()) for w in (1, 2)]
    assert metrics[0]["test_accuracy"] == metrics[1]["test_accuracy"]
    assert [m["workers"] for m in metrics] == [1, 2]


@pytest.mark.parametrize("backend,extra", [("larq", "larq"), ("torch", "torch"),
                                           ("tensorflow", "tensorflow")])
def test_a_backend_that_is_not_installed_is_refused_naming_its_extra(backend, extra, tmp_path):
    status, out, err = _cli("train", "--backend", backend, "--output", str(tmp_path / "r"))
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith(f"keras-bilevel: error: --backend {backend} ") and \
        f'pip install "keras-bilevel[{extra}]"' in err
    assert not (tmp_path / "r").exists()


def test_exporting_without_tensorflow_is_one_line_naming_the_extra(tmp_path):
    code = f"""
from keras_bilevel.keras3 import models
models.binary_mlp((8,), 16, classes=3).save({str(tmp_path / "m.keras")!r})
"""
    assert _run([sys.executable, "-c", code])[0] == 0
    status, _, err = _cli("export", str(tmp_path / "m.keras"))
    assert status == 2 and err.count("\n") == 1, err
    assert "needs TensorFlow's converter" in err and 'pip install "keras-bilevel[tensorflow]"' in err
    assert not (tmp_path / "m.int8.tflite").exists()
    # LCE rebuilds the model from Larq layers: the Larq stack and LCE, the `lce` extra.
    status, _, err = _cli("export", str(tmp_path / "m.keras"), "--format", "lce")
    assert status == 2 and err.count("\n") == 1, err
    assert "needs the Larq stack and Larq Compute Engine" in err and \
        'pip install "keras-bilevel[lce]"' in err
    assert not (tmp_path / "m.lce.tflite").exists()
