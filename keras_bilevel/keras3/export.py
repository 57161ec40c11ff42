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
import subprocess
import sys
import tempfile

import keras
import numpy as np
from keras import ops

from keras_bilevel import _stacks
from keras_bilevel.export.report import ExportError
from keras_bilevel.keras3 import layers as quant_layers
from keras_bilevel.keras3 import quantizers

__all__ = ["BinarySign", "plain_model", "to_lce", "to_tflite"]

WEIGHT_STORAGE = ("float32", "int8")
# The plain Keras layer each quantized layer becomes (the first base class it has).
_PLAIN_BASES = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
)
# Files the TensorFlow subprocess reads and writes in its work folder.
_PLAIN_FILE, _ARGS_FILE, _RESULT_FILE = "plain.keras", "args.pkl", "result.pkl"


@keras.saving.register_keras_serializable(package="keras_bilevel")
class BinarySign(keras.layers.Layer):
    r"""The inference form of a binary input quantizer: the sign with `sign(0) = +1`.

    \\[ y = \mathrm{sgn}(\mathrm{sgn}(x) + 0.1) \\]

    written, as `larq.math.sign`, with two sign ops (the pattern LCE recognises); the
    values are those of `"ste_sign"` and `"ada_ste"` at inference. No weights.

    !!! example
        ```python
        BinarySign()(np.array([-2.0, 0.0, 3.0]))  # [-1., 1., 1.]
        ```
    """

    def call(self, inputs):
        return ops.sign(ops.sign(inputs) + 0.1)

    def compute_output_shape(self, input_shape):
        return input_shape


def _is_binary_sign(quantizer):
    """Whether a quantizer is `sign(x)` (sign(0) = +1) at inference."""
    return isinstance(quantizer, (quantizers.AdaSTE, quantizers.SteSign))


def _plain_layer(layer):
    """The plain Keras 3 layer computing what quantized `layer` computes at inference."""
    base = next(cls for cls in _PLAIN_BASES if isinstance(layer, cls))
    config = layer.get_config()
    config.pop("input_quantizer", None)
    config.pop(layer._quantizer_arg, None)
    config[layer._constraint_arg] = None
    return base.from_config(config)


def _check_nested(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model) and any(
            isinstance(inner, quant_layers._Quantized) for inner in layer._flatten_layers()
        ):
            raise ValueError(
                f"plain_model: layer {layer.name!r} is a model holding quantized layers; "
                "nested models are not supported. Build the network as one functional or "
                "Sequential model (e.g. call the inner model's layers directly)."
            )


def plain_model(model):
    """An inference-only copy of `model` made of plain Keras 3 layers.

    Every quantized layer of `keras_bilevel.keras3.layers` becomes the Keras layer it
    extends (`QuantDense` -> `Dense`, ...) whose kernel is the quantized kernel
    `kernel_quantizer(theta, training=False)` (+-1 for AdaSTE and `"ste_sign"`); biases,
    BatchNorm statistics and the other layers are copied as they are. A binary
    `input_quantizer` (`"ste_sign"`, `"ada_ste"`) becomes a `BinarySign` layer named
    `<layer>_input_sign` before it. The copy computes what `model` computes with
    `training=False`, has no quantizer, constraint or `mu`, and loads without
    keras_bilevel objects other than `BinarySign`.

    # Arguments
        model: a built functional or Sequential Keras 3 model with one input.

    # Returns
        A functional `keras.Model` on the same backend.

    # Raises
        ValueError: a nested model holds quantized layers, or an input quantizer is not
            a sign at inference.
    """
    if not isinstance(model, keras.Model) or not model.built or not model.inputs:
        raise ValueError(
            f"plain_model: `model` must be a built functional or Sequential keras.Model "
            f"with known inputs, got {model!r}. Fix: build it with `keras.Input(...)`."
        )
    _check_nested(model)
    if isinstance(model, keras.Sequential):
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    sources = {}  # id(new layer) -> the layer it copies
    signs = {}  # id(new layer) -> the BinarySign layer before it

    def clone(layer):
        if not isinstance(layer, quant_layers._Quantized):
            new = layer.__class__.from_config(layer.get_config())
        else:
            new = _plain_layer(layer)
            if layer.input_quantizer is not None:
                if not _is_binary_sign(layer.input_quantizer):
                    raise ValueError(
                        f"plain_model: layer {layer.name!r} has input_quantizer "
                        f"{layer.input_quantizer!r}; only binary sign quantizers "
                        "('ste_sign', 'ada_ste') can be exported."
                    )
                signs[id(new)] = BinarySign(name=f"{layer.name}_input_sign")
        sources[id(new)] = (new, layer)
        return new

    def call(layer, *args, **kwargs):
        if id(layer) in signs:
            args = (signs[id(layer)](args[0]), *args[1:])
        return layer(*args, **kwargs)

    plain = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for new, old in sources.values():
        new.set_weights(_inference_weights(old))
    return plain


def _inference_weights(layer):
    """The weights of `layer` with its latent kernel replaced by the quantized one."""
    values = [ops.convert_to_numpy(variable) for variable in layer.weights]
    if isinstance(layer, quant_layers._Quantized):
        latent = layer._latent_kernel
        kernel = ops.convert_to_numpy(layer._quantized_kernel(latent, training=False))
        values = [kernel if variable is latent else value
                  for variable, value in zip(layer.weights, values)]
    return values


def _inputs_and_reference(what, model, weights, samples, num_samples, seed, tolerance,
                          require):
    """Arguments of an export checked (`require()` raises what is not installed);
    returns the sample inputs, the model's outputs on them and the tolerance."""
    from keras_bilevel.export import check  # no Larq, no tf.keras

    input_shape = _check_arguments(model, weights, what)
    require()
    tolerance = check.DEFAULT_TOLERANCE if tolerance is None else tolerance
    x = check.sample_inputs(input_shape, samples, num_samples, seed)
    reference = np.asarray(model.predict(x, batch_size=256, verbose=0), np.float32)
    return x, reference, tolerance


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
    missing = [name for name in _CONVERTER_MODULES if not _stacks.is_installed(name)]
    if missing:
        raise ImportError(
            f"exporting a Keras 3 model to TFLite needs TensorFlow's converter and LiteRT's "
            f"interpreter ({', '.join(missing)} not installed): "
            f"{_stacks.install_hint('tensorflow')}")


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
    compared with the original model's `predict` on its own backend.

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
    from keras_bilevel.keras3 import _lce

    if _lce.has_binary_activations(plain) and not _stacks.missing_modules("larq"):
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
    if keras.backend.backend() == "tensorflow":
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


def python_env(drop=(), **values):
    """This process's environment for a Python subprocess that imports keras_bilevel:
    `drop` removed, `values` set, TensorFlow's C++ log quiet unless set, the package's
    folder on `PYTHONPATH`."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(values)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (package_root, env.get("PYTHONPATH")) if part
    )
    return env


def run_job(arguments, env, job, what, prepare=None):
    """Runs `python ARGUMENTS FOLDER`, where FOLDER holds `job` (pickled, `_ARGS_FILE`)
    and whatever `prepare(folder)` writes; returns what the process pickled into
    `_RESULT_FILE`. RuntimeError with the end of its error output (`what` names the
    process) if it wrote nothing or failed."""
    with tempfile.TemporaryDirectory() as folder:
        if prepare is not None:
            prepare(folder)
        with open(os.path.join(folder, _ARGS_FILE), "wb") as file:
            pickle.dump(job, file)
        done = subprocess.run([sys.executable, *arguments, folder], env=env,
                              capture_output=True, text=True)
        result = os.path.join(folder, _RESULT_FILE)
        if done.returncode != 0 or not os.path.exists(result):
            raise RuntimeError(
                f"{what} failed (exit status {done.returncode}). Its error output ends "
                f"with:\n{done.stderr[-4000:]}"
            )
        with open(result, "rb") as file:
            return pickle.load(file)


def _in_tensorflow_process(plain, job):
    """Runs `_convert_and_check` in a Python subprocess on the TensorFlow backend
    (`TF_USE_LEGACY_KERAS` removed: tf.keras must stay Keras 3 there)."""
    return run_job(
        ["-c", "import sys; from keras_bilevel.keras3 import export; "
               "export._tensorflow_worker(sys.argv[1])"],
        python_env(drop=("TF_USE_LEGACY_KERAS",), KERAS_BACKEND="tensorflow"), job,
        "to_tflite: the TensorFlow-backend subprocess that converts the model",
        prepare=lambda folder: plain.save(os.path.join(folder, _PLAIN_FILE)))


def _tensorflow_worker(folder):
    """Entry point of the subprocess: reads the job from `folder`, writes the outcome."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("The export worker must run with KERAS_BACKEND=tensorflow.")
    plain = keras.saving.load_model(os.path.join(folder, _PLAIN_FILE), compile=False)
    with open(os.path.join(folder, _ARGS_FILE), "rb") as file:
        job = pickle.load(file)
    outcome = _convert_and_check(plain, **job)
    with open(os.path.join(folder, _RESULT_FILE), "wb") as file:
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
    from keras_bilevel.keras3 import _lce

    x, reference, tolerance = _inputs_and_reference(
        "to_lce", model, weights, samples, num_samples, seed, tolerance, _lce.require_lce)
    report = _lce.export_rebuilt(model, plain_model(model), path, weights, x, reference,
                                 tolerance, plant=plant)
    if verbose:
        print(report)
    return report
