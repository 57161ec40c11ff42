"""Export a Keras 3 binary network to a TFLite file, from any backend, checked.

`to_tflite(model, path, weights="float32" | "int8")` is the Keras 3 twin of
`keras_bilevel.export.to_tflite`: same arguments, same `ExportReport`, same self-check
(the file run by LiteRT's interpreter on sample inputs and compared with the model's own
outputs, within 1e-4 of the output scale), same int8 storage of binary weights (+-1
int8 with a float32 scale per channel and a `DEQUANTIZE` op; every op computes in
float32). Only the file-level steps are shared: `keras_bilevel.export.tflite_file`
(int8 storage, inspection), `.check` and `.report`, which know neither Larq nor Keras 2.

The route, whatever the backend:

1. `plain_model(model)`: an inference-only copy made of plain Keras 3 layers, the binary
   kernels (the kernel quantizer applied to the latent weights) in place of the latent
   ones, binary input quantizers (`"ste_sign"`, `"ada_ste"`) as `BinarySign` layers, no
   `mu` and no quantizer objects;
2. the reference outputs: the ORIGINAL model's `predict` on the samples, on its own
   backend;
3. on the TensorFlow backend: Keras 3's own LiteRT export
   (`plain.export(..., format="litert")`), int8 storage, the self-check, all in this
   process. On JAX and PyTorch, which cannot write TFLite (Keras' LiteRT export needs
   the TensorFlow backend, or the `litert-torch` package on PyTorch, which cannot hold
   the model's sign ops and has no int8 storage of our kind): the plain model is saved
   as a `.keras` file (portable across backends) with the samples and the reference
   outputs, and a Python subprocess with `KERAS_BACKEND=tensorflow` loads it and does
   step 3. `TF_USE_LEGACY_KERAS` is removed from that process's environment, so its
   `tf.keras` stays Keras 3.

`to_lce(model, path)` writes a Larq Compute Engine file: the plain copy is rebuilt from
Larq layers in a process of the Larq stack and exported by the Larq path's `to_lce`
(`keras_bilevel.keras3._lce`, `keras_bilevel.export.keras3_rebuild`).

This module imports TensorFlow only on the TensorFlow backend, when exporting.

!!! example
    ```python
    from keras_bilevel.keras3 import export, models
    model = models.binary_mlp()
    ...  # train, on any backend
    report = export.to_tflite(model, "mlp.tflite", weights="int8")
    assert report.passed and report.size_vs_float32 < 0.27
    ```
"""

import os
import pickle
import tempfile

import keras
import numpy as np

from keras_bilevel.core import stacks
from keras_bilevel.export.report import ExportError
from keras_bilevel.keras3 import _lce, subprocess_jobs
from keras_bilevel.keras3.backends import current as backend
from keras_bilevel.keras3.plain_model import BinarySign, plain_model

__all__ = ["BinarySign", "plain_model", "to_lce", "to_tflite"]

WEIGHT_STORAGE = ("float32", "int8")
def _inputs_and_reference(what, model, weights, samples, num_samples, seed, tolerance,
                          require):
    """Arguments of an export checked (`require()` raises what is not installed);
    returns the sample inputs, the model's outputs on them and the tolerance."""
    from keras_bilevel.export import check  # no Larq, no tf.keras

    input_shape = _check_arguments(model, weights, what)
    require()
    tolerance = check.DEFAULT_TOLERANCE if tolerance is None else tolerance
    x = check.sample_inputs(input_shape, samples, num_samples, seed)
    reference = np.asarray(_reference_model(model).predict(x, batch_size=256, verbose=0),
                           np.float32)
    return x, reference, tolerance


def _reference_model(model):
    """The model a file must match: `model`, or where a layer runs Keras's int8 Dense call
    (which rounds the activations to int8), its plain copy: files compute in float with
    the same stored -1/+1 kernels, exactly the network before `quantize`."""
    if any(isinstance(layer, keras.layers.Dense) and layer.quantization_mode == "int8"
           for layer in model._flatten_layers()):
        return plain_model(model)
    return model


def _check_arguments(model, weights, what="to_tflite"):
    if weights not in WEIGHT_STORAGE:
        raise ValueError(f'`weights` must be "float32" or "int8", got {weights!r}.')
    if not isinstance(model, keras.Model) or len(model.inputs or ()) != 1 or (
        len(model.outputs or ()) != 1
    ):
        raise ValueError(
            f"{what}: `model` must be a built keras.Model with one input and one "
            f"output, got {model!r}."
        )
    shape = tuple(model.inputs[0].shape[1:])
    if any(size is None for size in shape):
        raise ValueError(
            f"{what}: the model's input shape must be known except for the batch "
            f"axis, got {tuple(model.inputs[0].shape)}. Fix: build the model with "
            "`keras.Input(shape)` of known sizes."
        )
    return shape


# What writing and checking a TFLite file needs, whatever the backend of the model.
_CONVERTER_MODULES = ("tensorflow", "ai_edge_litert")


def _require_converter():
    """Raise ImportError, one line naming the extra, unless TensorFlow (the converter) and
    LiteRT (the interpreter that checks the file) are installed."""
    missing = [name for name in _CONVERTER_MODULES if not stacks.is_installed(name)]
    if missing:
        raise ImportError(
            f"exporting a Keras 3 model to TFLite needs TensorFlow's converter and LiteRT's "
            f"interpreter ({', '.join(missing)} not installed): "
            f"{stacks.install_hint('tensorflow')}")


def to_tflite(
    model,
    path,
    weights="float32",
    *,
    samples=None,
    num_samples=None,
    seed=0,
    tolerance=None,
    verbose=True,
):
    """Writes a TFLite file of a Keras 3 binary network (any backend) and checks it.

    The plain copy of the model (`plain_model`) is converted by Keras 3's LiteRT export
    on the TensorFlow backend (in a subprocess when the model's backend is JAX or
    PyTorch); the converter folds BatchNorm into the kernels, so each binary kernel
    becomes +-s per channel. A network with binary activations, where the Larq stack is
    installed, is instead rebuilt from Larq layers and exported by the Larq path's
    `to_tflite` (as `to_lce` does), whose check tells a binary activation that flipped
    within rounding of the threshold (no error, `report.flips`) from a departure;
    without the Larq stack its outputs are compared as they are, and one such flip can
    fail the check. `weights="int8"` then stores every binary weight tensor as
    int8 +-1 with that scale and a `DEQUANTIZE` op (about 4x smaller, outputs of the
    float32 file). The file is written, run by LiteRT's interpreter on the samples and
    compared with the original model's `predict` on its own backend (with the float
    network it stands for after `model.quantize("int8")`: `plain_model`).

    # Arguments
        model: a built Keras 3 model with one input (shape known but for the batch
            axis) and one output, made of `keras_bilevel.keras3.layers` and Keras layers.
        path: the `.tflite` file to write (its folder is created).
        weights: `"float32"` or `"int8"` (binary weights stored as int8).
        samples: inputs to compare on, shape `(N, *input_shape)`; None to draw
            `num_samples` standard normal inputs with `seed`.
        num_samples, seed: see `keras_bilevel.export.check.sample_inputs`.
        tolerance: the largest accepted difference relative to the output scale
            (None: `keras_bilevel.export.check.DEFAULT_TOLERANCE`, 1e-4).
        verbose: print the report.

    # Returns
        The `ExportReport` (`keras_bilevel.export.ExportReport`).

    # Raises
        ExportError: the file's outputs differ by more than `tolerance` (the file is
            left at `path`; `error.report` holds the measurements).
        ValueError: a wrong argument, or a model that cannot be made plain.
        RuntimeError: the TensorFlow subprocess failed (its error output is included).
    """
    x, reference, tolerance = _inputs_and_reference(
        "to_tflite", model, weights, samples, num_samples, seed, tolerance,
        _require_converter)
    plain = plain_model(model)
    if _lce.has_binary_activations(plain) and not stacks.missing_modules("larq"):
        # Binary activations may flip within rounding of the threshold: the Larq path's
        # check tells flips from departures, so the file is made there, if it can be.
        try:
            report = _lce.export_rebuilt(model, plain, path, weights, x, reference,
                                         tolerance, format="tflite")
        except _lce.NotRebuildable:
            pass
        else:
            if verbose:
                print(report)
            return report
    job = dict(path=os.fspath(path), weights=weights, x=x, reference=reference,
               tolerance=tolerance)
    if backend.CONVERTS_TO_TFLITE:
        outcome = _convert_and_check(plain, **job)
    else:
        outcome = _in_tensorflow_process(plain, job)
    report = outcome["report"]
    if verbose:
        print(report)
    if "error" in outcome:
        raise ExportError(outcome["error"], report)
    return report


def _convert_and_check(plain, path, weights, x, reference, tolerance):
    """Step 3 of the module docstring, on the TensorFlow backend: `{"report", "error"?}`."""
    from keras_bilevel.export import check, tflite_file

    with tempfile.TemporaryDirectory() as folder:
        float_path = os.path.join(folder, "float32.tflite")
        plain.export(float_path, format="litert", verbose=False)
        with open(float_path, "rb") as file:
            float_content = file.read()
    content = float_content
    if weights == "int8":
        content = tflite_file.store_binary_weights_int8(float_content)
    tflite_file.write(path, content)
    try:
        report = check.check_file(path, content, x, reference, format=f"tflite-{weights}",
                                  float32_size_bytes=len(float_content),
                                  tolerance=tolerance, verbose=False)
    except ExportError as error:
        return {"report": error.report, "error": str(error)}
    return {"report": report}


def _in_tensorflow_process(plain, job):
    """Runs `_convert_and_check` in a Python subprocess on the TensorFlow backend
    (`TF_USE_LEGACY_KERAS` removed: tf.keras must stay Keras 3 there)."""
    return subprocess_jobs.run_job(
        ["-c", "import sys; from keras_bilevel.keras3 import export; "
               "export._tensorflow_worker(sys.argv[1])"],
        subprocess_jobs.python_env(drop=("TF_USE_LEGACY_KERAS",), KERAS_BACKEND="tensorflow"), job,
        "to_tflite: the TensorFlow-backend subprocess that converts the model",
        prepare=lambda folder: plain.save(os.path.join(folder, subprocess_jobs.PLAIN_FILE)))


def _tensorflow_worker(folder):
    """Entry point of the subprocess: reads the job from `folder`, writes the outcome."""
    if not backend.CONVERTS_TO_TFLITE:
        raise RuntimeError("The export worker must run with KERAS_BACKEND=tensorflow.")
    plain = keras.saving.load_model(os.path.join(folder, subprocess_jobs.PLAIN_FILE), compile=False)
    with open(os.path.join(folder, subprocess_jobs.ARGS_FILE), "rb") as file:
        job = pickle.load(file)
    outcome = _convert_and_check(plain, **job)
    with open(os.path.join(folder, subprocess_jobs.RESULT_FILE), "wb") as file:
        pickle.dump(outcome, file)


def to_lce(
    model,
    path,
    weights="float32",
    *,
    samples=None,
    num_samples=None,
    seed=0,
    tolerance=None,
    verbose=True,
):
    """Writes a Larq Compute Engine file of a Keras 3 binary network (any backend).

    LCE converts Larq models, so the plain copy of `model` (`plain_model`) is described
    layer by layer and rebuilt from Larq layers in a Python process with the Larq stack
    (`keras_bilevel.export.keras3_rebuild`): a quantized convolution or dense layer
    whose input quantizer is binary (`"ste_sign"`, `"ada_ste"`) becomes Larq's
    `QuantConv2D`/`QuantDense` with `input_quantizer="ste_sign"` and its +-1 kernel,
    the other layers their Keras 2 twins. The rebuilt model must give `model.predict`'s
    outputs on the samples, then the Larq path's `keras_bilevel.export.to_lce` writes
    and checks the file: convolutions with binary inputs and weights become `LceBconv2d`
    (bit-packed weights); LCE has no binary dense op, so dense layers, binary or not,
    stay float (or int8 storage with `weights="int8"`); BatchNorm and ReLU after a
    binary convolution are folded into it as LCE folds them. The file runs in LCE's
    interpreter on the samples; flips of binary activations within rounding of the
    threshold are counted, a departure is refused naming the layer, as for Larq models.

    Needs the Larq stack and LCE in this environment (`pip install
    "keras-bilevel[lce]"`; with Keras 3 beside it, as in the test stack): Larq pins
    numpy < 2.

    # Arguments
        model, path, samples, num_samples, seed, tolerance, verbose: as for `to_tflite`.
        weights: `"float32"` or `"int8"`: storage of the binary weights LCE does not
            bit-pack.

    # Returns
        The `ExportReport` (`format` `"lce-float32"` or `"lce-int8"`).

    # Raises
        ImportError: the Larq stack or LCE is not installed.
        ValueError: a layer LCE cannot run here or an input quantizer that is not a
            sign (both named), or a wrong argument.
        ExportError: the file departs from the model (the layer named).

    !!! example
        ```python
        model = models.vgg_small(kernel_quantizer="ada_ste")  # then binary inputs ...
        report = export.to_lce(model, "vgg.lce.tflite")
        print(report.ops["LceBconv2d"])
        ```
    """
    return _to_lce(model, path, weights, samples=samples, num_samples=num_samples,
                   seed=seed, tolerance=tolerance, verbose=verbose)


def _to_lce(model, path, weights, *, samples, num_samples, seed, tolerance, verbose,
            plant=None):
    x, reference, tolerance = _inputs_and_reference(
        "to_lce", model, weights, samples, num_samples, seed, tolerance, _lce.require_lce)
    report = _lce.export_rebuilt(model, plain_model(model), path, weights, x, reference,
                                 tolerance, plant=plant)
    if verbose:
        print(report)
    return report
