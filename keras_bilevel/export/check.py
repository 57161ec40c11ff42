"""The self-check of an export: run the written file and compare it with the model.

Takes the file's content, the sample inputs and the outputs the source model gave on
them (its reference outputs), and nothing else: it knows neither Larq nor how the file
was made, so the Larq export and a Keras 3 export check their files the same way.
TFLite files run in the LiteRT interpreter (`ai_edge_litert`, which replaces the
deprecated `tf.lite.Interpreter`), LCE files in Larq Compute Engine's interpreter.

The comparison, with `scale = max |reference|` (1 if the reference is all zeros):

    max_abs_diff = max |file output - reference|
    max_rel_diff = max_abs_diff / scale        (must be <= tolerance)
    argmax_agreement = mean(argmax(file output, -1) == argmax(reference, -1))

With a `probe` (`flips.ActivationProbe`, for networks with binary activations) the file
passes where no binary activation departs from the model (differing decisions only
within rounding of the threshold: flips) and its outputs match the model's computed with
the file's binary decisions within `tolerance` (`max_rel_diff_given_flips`); a departure
names the layer where the file departs. See `keras_bilevel.export.flips`.

!!! example
    ```python
    x = sample_inputs((784,), seed=0)
    reference = model.predict(x)
    report = check_file("model.tflite", content, x, reference,
                        format="tflite-int8", float32_size_bytes=len(float_content))
    ```
"""

import numpy as np

from keras_bilevel.export import flips
from keras_bilevel.export.report import ExportError, ExportReport

__all__ = ["DEFAULT_TOLERANCE", "check_file", "run_lce", "run_tflite", "sample_inputs"]

# Relative to the output scale (the largest |output| of the model on the samples).
DEFAULT_TOLERANCE = 1e-4
# The probe file must give the written file's outputs (relative to the output scale).
_PROBE_AGREEMENT = 1e-6
_INTERPRETERS = ("litert", "lce")


def sample_inputs(input_shape, samples=None, num_samples=None, seed=0):
    """The inputs to compare on: `samples` checked, or standard normal draws.

    # Arguments
        input_shape: the shape of one input, without the batch axis.
        samples: inputs of shape `(N, *input_shape)`, N >= 1; None to draw them.
        num_samples: how many to draw: default 1000 for inputs of at most 1024 values,
            else 64.
        seed: seed of the draws.

    # Returns
        A float32 array of shape `(N, *input_shape)`.
    """
    shape = tuple(input_shape)
    if samples is None:
        if num_samples is None:
            num_samples = 1000 if int(np.prod(shape)) <= 1024 else 64
        rng = np.random.default_rng(seed)
        return rng.standard_normal((num_samples, *shape)).astype(np.float32)
    samples = np.asarray(samples, dtype=np.float32)
    if samples.shape[1:] != shape or len(samples) == 0:
        raise ValueError(
            f"`samples` must be an array of shape (N, {', '.join(map(str, shape))}) with "
            f"N >= 1, got shape {samples.shape}."
        )
    return samples


def tflite_runner(content, num_threads=None):
    """A function running one batch through a TFLite flatbuffer in one LiteRT
    interpreter (kept between calls; the input resized when the batch's shape changes).
    A file with a fixed batch size takes exactly that many inputs."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(content), num_threads=num_threads)
    (input_details,) = interpreter.get_input_details()
    (output_details,) = interpreter.get_output_details()
    current = None

    def run(batch):
        nonlocal current
        if batch.shape != current:
            interpreter.resize_tensor_input(input_details["index"], batch.shape)
            interpreter.allocate_tensors()
            current = batch.shape
        interpreter.set_tensor(input_details["index"], batch)
        interpreter.invoke()
        return interpreter.get_tensor(output_details["index"]).copy()

    run.fixed_batch = int(input_details["shape_signature"][0])
    return run


def run_tflite(content, x, batch_size=256):
    """Outputs of a TFLite flatbuffer on `x` in the LiteRT interpreter, batch by batch.

    A file with a fixed batch size gets its batches padded with zeros (the padding's
    outputs are dropped); otherwise the input is resized to each batch.
    """
    run = tflite_runner(content)
    fixed_batch = run.fixed_batch
    batch_size = fixed_batch if fixed_batch > 0 else batch_size
    outputs = []
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        count = len(batch)
        if fixed_batch > 0 and count < fixed_batch:
            padding = np.zeros((fixed_batch - count, *x.shape[1:]), x.dtype)
            batch = np.concatenate([batch, padding])
        outputs.append(run(batch)[:count])
    return np.concatenate(outputs)


def run_lce(content, x):
    """Outputs of a Larq Compute Engine file on `x` in LCE's interpreter."""
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    return np.asarray(Interpreter(content).predict(x))


def check_file(
    path,
    content,
    samples,
    reference,
    *,
    format,
    float32_size_bytes,
    interpreter="litert",
    tolerance=DEFAULT_TOLERANCE,
    notes=(),
    verbose=True,
    probe=None,
    flip_margin=flips.FLIP_MARGIN,
):
    """Runs an exported file on `samples`, compares it with `reference`, reports.

    # Arguments
        path: where the file was written (named in the report).
        content: the file's bytes.
        samples: the inputs, shape `(N, ...)` (see `sample_inputs`).
        reference: the source model's outputs on `samples`.
        format: the report's format label, e.g. `"tflite-int8"`.
        float32_size_bytes: the size of the float32 TFLite file of the same model.
        interpreter: `"litert"` (TFLite files) or `"lce"` (files with LCE ops).
        tolerance: the largest accepted `max_rel_diff`.
        notes: warnings to carry in the report.
        verbose: print the report.
        probe: a `flips.ActivationProbe` of the model, to compare its binary
            activations with the file's and accept flips within rounding; None to
            compare the outputs only.
        flip_margin: with `probe`: the largest `|x| / max|x|` of a flip.

    # Returns
        The `ExportReport`.

    # Raises
        ExportError: `max_rel_diff > tolerance`, or with `probe` a departing binary
            activation or `max_rel_diff_given_flips > tolerance` (the file stays at
            `path`).
    """
    if interpreter not in _INTERPRETERS:
        raise ValueError(
            f"`interpreter` must be one of {_INTERPRETERS}, got {interpreter!r}."
        )
    run = run_lce if interpreter == "lce" else run_tflite
    reference = np.asarray(reference, np.float32)
    outputs = np.asarray(run(content, samples), np.float32).reshape(reference.shape)
    # Imported here: it loads TensorFlow, which a Keras 3 process on JAX or PyTorch
    # only needs in the subprocess that writes the file.
    from keras_bilevel.export.tflite_file import inspect_flatbuffer

    ops, weights, hybrid = inspect_flatbuffer(content)
    max_abs = float(np.max(np.abs(outputs - reference)))
    scale = float(np.max(np.abs(reference))) or 1.0
    notes = list(notes)
    activations, given = [], None
    if probe is not None:
        activations, given = _compare_with_probe(
            run, probe, samples, outputs, scale, flip_margin, notes
        )
    agreement = None
    if reference.ndim >= 2 and reference.shape[-1] > 1:
        agreement = float(np.mean(np.argmax(outputs, -1) == np.argmax(reference, -1)))
    report = ExportReport(
        path=path,
        format=format,
        size_bytes=len(content),
        float32_size_bytes=float32_size_bytes,
        size_vs_float32=len(content) / float32_size_bytes,
        ops=ops,
        binary_ops=sum(count for name, count in ops.items() if name.startswith("Lce")),
        hybrid_ops=hybrid,
        binary_weights=weights,
        num_samples=len(reference),
        max_abs_diff=max_abs,
        output_scale=scale,
        max_rel_diff=max_abs / scale,
        argmax_agreement=agreement,
        tolerance=tolerance,
        warnings=notes,
        activations=activations,
        max_rel_diff_given_flips=given,
    )
    if verbose:
        print(report)
    if not report.passed:
        raise ExportError(
            f"{path} does not compute what the Keras model computes: {_failure(report)} "
            "(the file is left there for inspection).\n"
            f"{report}",
            report,
        )
    return report


def _compare_with_probe(run, probe, samples, outputs, scale, margin, notes):
    """`(activations, max_rel_diff_given_flips)`; `([], None)` if the probe disagrees."""
    probe_outputs, decisions = flips.split_probe_outputs(probe, run(probe.content, samples))
    disagreement = float(np.max(np.abs(probe_outputs - outputs))) / scale
    if disagreement > _PROBE_AGREEMENT:
        notes.append(
            "binary activations not compared: the probe file (the model with its binary "
            f"activations as outputs) differs from the written file by {disagreement:.3g}"
            " of the output scale, so the check compares the outputs only"
        )
        return [], None
    pre_activations, forced = probe.forced(samples, decisions)
    checks = flips.compare_activations(probe, decisions, pre_activations, margin)
    forced = np.asarray(forced, np.float32).reshape(outputs.shape)
    return checks, float(np.max(np.abs(outputs - forced))) / scale


def _failure(report):
    """Why `report` failed, naming where the file departs from the model."""
    tolerance = f"the tolerance {report.tolerance:g}"
    departing = report.departing_layer
    if departing is not None:
        return (
            f"it departs from the model at the binary activation {departing.name!r}: "
            f"{departing.departures:,} of its {departing.values:,} values take the other "
            f"value than in the model with inputs up to {departing.largest_departure:.3g}"
            f" of the layer's scale from the threshold (beyond the flip margin "
            f"{departing.margin:g}), given the same binary inputs as the file; the file "
            f"computes the input of {departing.name!r} differently, in the ops between "
            f"the previous binary activation and layer {departing.source!r}"
        )
    if report.max_rel_diff_given_flips is not None:
        last = report.activations[-1].name if report.activations else "the input"
        return (
            f"its outputs differ from the model's computed with the file's binary "
            f"activations by {report.max_rel_diff_given_flips:.3g} of the output scale "
            f"{report.output_scale:.4g}, above {tolerance}: the file departs after the "
            f"last binary activation {last!r} ({report.flips:,} flips within rounding "
            "before it)"
        )
    return (
        f"max difference {report.max_abs_diff:.3g} = {report.max_rel_diff:.3g} of the "
        f"output scale {report.output_scale:.4g}, above {tolerance}"
    )
