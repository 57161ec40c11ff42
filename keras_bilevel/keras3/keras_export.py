"""Keras 3's own export formats (`model.export`) for a binary network, checked.

`model.export(path, format=...)` works on a model of `keras_bilevel.keras3.layers` as on
any Keras model: the traced inference function holds the binary kernels (the quantizers'
forward pass at inference, `sgn(theta)`), or, after `model.quantize`, Keras's quantized
call. `export_checked(model, path, format)` does the same export, but first says in one
line when the format cannot run on this backend or what it needs that is not installed
(Keras would fail later, or with a long trace), and afterwards runs the written artifact
in its own runtime on sample inputs and compares it with `model.predict`, as
`keras_bilevel.keras3.export.to_tflite` does for its files.

| format | writes | from backends | needs | runs in |
|---|---|---|---|---|
| `"tf_saved_model"` | a SavedModel folder | JAX, TensorFlow | tensorflow | TensorFlow Serving, `tf.saved_model.load` |
| `"litert"` | a `.tflite` file | TensorFlow; PyTorch with litert-torch | tensorflow | LiteRT on phones and microcontrollers |
| `"onnx"` | a `.onnx` file | all three | onnx with tf2onnx / jax2onnx / onnxscript | ONNX Runtime, many accelerators |
| `"openvino"` | an `.xml` + `.bin` pair | all three | openvino (and tensorflow from JAX) | Intel CPUs, GPUs and NPUs |
| `"torch"` | a `torch.export` program (`.pt2`) | PyTorch | torch | PyTorch, ExecuTorch |

!!! example
    ```python
    from keras_bilevel.keras3 import keras_export
    report = keras_export.export_checked(model, "served", format="tf_saved_model")
    print(report)  # format, size, largest difference from predict, argmax agreement
    ```
"""

import dataclasses
import os

import keras
import numpy as np

from keras_bilevel.core import stacks
from keras_bilevel.export.report import ExportError
from keras_bilevel.keras3.plain_model import plain_model

__all__ = ["FORMATS", "FormatReport", "check_route", "export_checked"]

FORMATS = ("tf_saved_model", "litert", "onnx", "openvino", "torch")
"""The formats of Keras 3.15's `model.export`."""

# The modules (import names) `model.export` needs to write each format, per backend.
_WRITERS = {
    "tf_saved_model": {"jax": ("tensorflow",), "tensorflow": ("tensorflow",)},
    "litert": {"tensorflow": ("tensorflow",), "torch": ("litert_torch",)},
    "onnx": {"jax": ("jax2onnx", "onnx"), "tensorflow": ("tf2onnx", "onnx"),
             "torch": ("onnx", "onnxscript")},
    "openvino": {"jax": ("openvino", "tensorflow"), "tensorflow": ("openvino",),
                 "torch": ("openvino",)},
    "torch": {"torch": ()},
}

# Where Keras 3.15 has no working route for a format from a backend: what to do instead.
_NO_ROUTE = {
    ("tf_saved_model", "torch"): (
        "Keras 3.15's tf_saved_model export fails on PyTorch for every model (torch.export "
        "rejects the dynamic shapes it is given). Fix: format='torch' or 'onnx' here, or "
        "load the .keras file under KERAS_BACKEND=tensorflow or jax and export there"),
    ("litert", "jax"): (
        "Keras's LiteRT export needs the TensorFlow or PyTorch backend. Fix: "
        "keras_bilevel.keras3.export.to_tflite(model, path) converts from JAX in a "
        "TensorFlow process, or load the .keras file under KERAS_BACKEND=tensorflow"),
    ("torch", "jax"): (
        "format='torch' writes a torch.export program from the PyTorch backend only. "
        "Fix: load the .keras file under KERAS_BACKEND=torch and export there"),
}
_NO_ROUTE[("torch", "tensorflow")] = _NO_ROUTE[("torch", "jax")]

# The runtime each check runs the artifact in (import names; any one of them).
_RUNTIMES = {"tf_saved_model": ("tensorflow",), "litert": ("ai_edge_litert",),
             "onnx": ("onnxruntime",), "openvino": ("openvino",), "torch": ("torch",)}

# Import names whose pip package has another name.
_PIP_NAMES = {"ai_edge_litert": "ai-edge-litert", "litert_torch": "litert-torch"}


def check_route(format, backend=None):
    """Raise, in one line, unless `format` can be written from `backend` and checked here.

    ValueError for an unknown format or one Keras cannot write from this backend (the
    message names the route to use instead); ImportError naming the packages to install.
    """
    backend = backend or keras.backend.backend()
    if format not in FORMATS:
        raise ValueError(f"export format must be one of {FORMATS}, got {format!r}.")
    if (format, backend) in _NO_ROUTE:
        raise ValueError(f"format={format!r} on the {backend} backend: "
                         f"{_NO_ROUTE[(format, backend)]}.")
    needed = list(_WRITERS[format][backend])
    runtimes = _RUNTIMES[format]
    if not any(stacks.is_installed(module) for module in runtimes):
        needed.append(runtimes[0])
    missing = [module for module in dict.fromkeys(needed) if not stacks.is_installed(module)]
    if missing:
        packages = " ".join(_PIP_NAMES.get(module, module) for module in missing)
        raise ImportError(f"format={format!r} on the {backend} backend needs "
                          f"{', '.join(missing)}, not installed. Fix: pip install {packages}")


@dataclasses.dataclass
class FormatReport:
    """What `export_checked` wrote and measured: the artifact against `model.predict`."""

    format: str
    path: str
    size_bytes: int
    samples: int
    max_abs_diff: float
    max_rel_diff: float
    argmax_agreement: float
    tolerance: float

    @property
    def passed(self):
        return self.max_rel_diff <= self.tolerance

    def __str__(self):
        return (f"{self.format} export {self.path}: {self.size_bytes:,} bytes; on "
                f"{self.samples} samples the largest difference from predict is "
                f"{self.max_rel_diff:.2g} of the output scale (tolerance {self.tolerance:g}), "
                f"argmax agreement {100 * self.argmax_agreement:.2f}%"
                f" -> {'passed' if self.passed else 'FAILED'}")


def export_checked(model, path, format="tf_saved_model", *, samples=None, num_samples=None,
                   seed=0, tolerance=None, verbose=False):
    """`model.export(path, format=format)`, then the artifact run and compared with predict.

    # Arguments
        model: a built Keras 3 model with one input (shape known but for the batch axis)
            and one output.
        path: where Keras writes the artifact (a folder for `"tf_saved_model"`).
        format: one of `FORMATS`.
        samples, num_samples, seed: the inputs compared on
            (`keras_bilevel.export.check.sample_inputs`).
        tolerance: the largest accepted difference relative to the output scale (None:
            `keras_bilevel.export.check.DEFAULT_TOLERANCE`, 1e-4).
        verbose: passed to `model.export`; the report is returned, not printed.

    # Returns
        A `FormatReport`.

    # Raises
        ValueError, ImportError: see `check_route`, before anything is written.
        ExportError: the artifact's outputs differ by more than `tolerance` (the
            artifact is left at `path`; `error.report` holds the measurements).
    """
    from keras_bilevel.keras3.export import _inputs_and_reference

    x, reference, tolerance = _inputs_and_reference(
        "export_checked", model, "float32", samples, num_samples, seed, tolerance,
        lambda: check_route(format))
    plain = plain_model(model)
    # One input tensor, not a list of one (what the runtimes are given), and called once
    # (ONNX's export traces a model that has run).
    plain = keras.Model(plain.inputs[0], plain.outputs[0], name=plain.name)
    plain.predict(x[:1], verbose=0)
    plain.export(os.fspath(path), format=format, verbose=verbose)
    outputs = np.asarray(_RUNNERS[format](os.fspath(path), x), np.float32)
    difference = float(np.abs(outputs - reference).max())
    scale = max(float(np.abs(reference).max()), 1e-12)
    report = FormatReport(
        format=format, path=os.fspath(path), size_bytes=_size(os.fspath(path)),
        samples=len(x), max_abs_diff=difference, max_rel_diff=difference / scale,
        argmax_agreement=float(np.mean(outputs.argmax(-1) == reference.argmax(-1))),
        tolerance=tolerance)
    if not report.passed:
        raise ExportError(f"the {format} artifact at {report.path} does not compute what "
                          f"the model computes: {report}", report)
    return report


def _size(path):
    if os.path.isfile(path):
        return os.path.getsize(path) + (os.path.getsize(path[:-4] + ".bin")
                                        if path.endswith(".xml") else 0)
    return sum(os.path.getsize(os.path.join(folder, name))
               for folder, _, names in os.walk(path) for name in names)


def _run_saved_model(path, x):
    import tensorflow as tf

    loaded = tf.saved_model.load(path)  # kept: its functions use its variables
    return loaded.serve(tf.constant(x)).numpy()


def _run_litert(path, x):
    from keras_bilevel.export import check

    with open(path, "rb") as file:
        return check.run_tflite(file.read(), x)


def _run_onnx(path, x):
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _run_openvino(path, x):
    import openvino

    # In float32: on CPUs with bfloat16, OpenVINO computes in bfloat16 unless told not to.
    compiled = openvino.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled(x)[compiled.output(0)]


def _run_torch(path, x):
    import torch

    program = torch.export.load(path).module()
    with torch.no_grad():
        return np.concatenate([program(torch.from_numpy(x[i:i + 1])).cpu().numpy()
                               for i in range(len(x))])


_RUNNERS = {"tf_saved_model": _run_saved_model, "litert": _run_litert, "onnx": _run_onnx,
            "openvino": _run_openvino, "torch": _run_torch}
