"""Tests of the file-level export parts (tflite_file, check) and of the interpreter used.

These parts take a plain Keras model or a flatbuffer, sample inputs and reference
outputs, and know nothing of Larq: a Keras 3 export reuses them.
"""

import ast
import pathlib
import warnings

import keras_bilevel  # noqa: F401  (Keras 2 mode first)
import numpy as np
import pytest
import tensorflow as tf

from keras_bilevel import export, models
from keras_bilevel.export import check, tflite_file

EXPORT_DIR = pathlib.Path(export.__file__).parent
DEPRECATED_INTERPRETER = "tf.lite.Interpreter is deprecated"


def _plain_binary_model(seed=0):
    """A plain tf.keras MLP whose first kernel is +-1 times a per-unit scale."""
    rng = np.random.default_rng(seed)
    inputs = tf.keras.Input((64,))
    x = tf.keras.layers.Dense(32, use_bias=False, activation="relu")(inputs)
    outputs = tf.keras.layers.Dense(3)(x)  # real-valued: stays float32
    model = tf.keras.Model(inputs, outputs)
    signs = np.where(rng.standard_normal((64, 32)) >= 0, 1.0, -1.0)
    scales = rng.uniform(0.5, 2.0, (1, 32))
    model.layers[1].set_weights([(signs * scales).astype(np.float32)])
    return model


def _deprecations(records):
    return [
        record
        for record in records
        if issubclass(record.category, (DeprecationWarning, PendingDeprecationWarning,
                                        FutureWarning))
        or "deprecated" in str(record.message).lower()
    ]


@pytest.mark.parametrize("weights", ["float32", "int8"])
def test_export_emits_no_deprecation_warning(weights, tmp_path, capfd):
    tf.keras.utils.set_random_seed(3)
    model = models.binary_mlp((64,), hidden_units=32, depth=1)
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        report = export.to_tflite(model, tmp_path / "m.tflite", weights=weights,
                                  num_samples=20, verbose=False)
    captured = capfd.readouterr()
    assert report.passed
    assert _deprecations(records) == []
    assert DEPRECATED_INTERPRETER not in captured.out + captured.err

    # The same recording does see the deprecated interpreter's warning.
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        tf.lite.Interpreter(model_content=(tmp_path / "m.tflite").read_bytes())
    assert any(DEPRECATED_INTERPRETER in str(r.message) for r in _deprecations(records))


def test_plain_keras_model_int8_file_and_check(tmp_path):
    model = _plain_binary_model()
    float_content = tflite_file.convert_keras_model(model)
    content = tflite_file.store_binary_weights_int8(float_content)
    ops, binary, hybrid = tflite_file.inspect_flatbuffer(content)
    assert ops == {"DEQUANTIZE": 1, "FULLY_CONNECTED": 2} and hybrid == 0
    assert [(w.shape, w.storage, w.stored_bytes) for w in binary] == [((32, 64), "int8", 2048)]

    path = tflite_file.write(tmp_path / "sub" / "plain.tflite", content)
    assert pathlib.Path(path).read_bytes() == bytes(content)
    x = check.sample_inputs((64,), num_samples=40, seed=1)
    assert x.shape == (40, 64) and x.dtype == np.float32
    reference = model.predict(x, verbose=0)
    report = check.check_file(path, content, x, reference, format="tflite-int8",
                              float32_size_bytes=len(float_content), verbose=False)
    assert report.max_rel_diff <= 1e-6 and report.argmax_agreement == 1.0
    assert report.size_bytes < report.float32_size_bytes - 2 * 2048  # 8192 -> 2048 + scales

    with pytest.raises(export.ExportError, match="does not compute"):
        check.check_file(path, content, x, reference + 1.0, format="tflite-int8",
                         float32_size_bytes=len(float_content), verbose=False)
    with pytest.raises(ValueError, match="`interpreter` must be one of"):
        check.check_file(path, content, x, reference, format="x",
                         float32_size_bytes=1, interpreter="tf.lite")


def test_store_int8_without_binary_weights():
    inputs = tf.keras.Input((4,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(inputs))
    content = tflite_file.convert_keras_model(model)
    with pytest.raises(ValueError, match="no binary weight tensors"):
        tflite_file.store_binary_weights_int8(content)
    assert tflite_file.store_binary_weights_int8(content, require=False) == content


@pytest.mark.parametrize("module", ["report", "check", "tflite_file", "flips"])
def test_file_level_modules_know_neither_larq_nor_tf_keras(module):
    source = (EXPORT_DIR / f"{module}.py").read_text()
    imported, tf_keras = set(), []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "keras":
            tf_keras.append(ast.unparse(node))
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert not {name for name in imported if name.split(".")[0] == "larq"}
    assert "keras_bilevel.keras2.legacy_keras" not in imported
    assert not {name for name in imported if name.startswith("keras_bilevel.export.")
                and name.split(".")[-1] not in ("report", "check", "tflite_file", "flips")}
    assert tf_keras == [] and not {name for name in imported if "keras" in name.split(".")
                                   and not name.startswith("keras_bilevel")}


def test_public_api_and_module_sizes():
    from keras_bilevel.export import strip_latent, to_lce, to_tflite  # noqa: F401

    assert set(export.__all__) <= set(dir(export))
    assert export.DEFAULT_TOLERANCE == check.DEFAULT_TOLERANCE == 1e-4
    for path in EXPORT_DIR.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 500, path
