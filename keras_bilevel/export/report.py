"""What an export wrote and how closely the file reproduces the model it came from.

`ExportReport` (printed after each export), `WeightInfo` (one binary weight tensor of the
file) and `ExportError` (the file's outputs differ from the model's). Plain data: this
module imports neither TensorFlow nor Larq, and both front ends (Larq on Keras 2, and
Keras 3) report with it.
"""

import collections
import dataclasses

__all__ = ["ExportError", "ExportReport", "WeightInfo"]


class ExportError(RuntimeError):
    """The written file does not compute what the Keras model computes.

    `report` holds the measurements (`ExportReport`); the file is left at `report.path`.

    !!! example
        ```python
        try:
            keras_bilevel.export.to_lce(model, "model.tflite")
        except keras_bilevel.export.ExportError as error:
            print(error.report.max_rel_diff, error.report.argmax_agreement)
        ```
    """

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


@dataclasses.dataclass
class WeightInfo:
    """One binary weight tensor of an exported file and how it is stored.

    !!! example
        ```python
        report = keras_bilevel.export.to_lce(model, "model.tflite")
        bconv = [w for w in report.binary_weights if w.op == "LceBconv2d"]
        sum(w.float32_bytes for w in bconv) / sum(w.stored_bytes for w in bconv)  # ~32
        ```

    # Attributes
        op: the op that uses the weights (`"FULLY_CONNECTED"`, `"LceBconv2d"`, ...).
        name: the tensor's name in the file.
        shape: the shape of the weights as the op sees them (float elements).
        storage: `"float32"`, `"int8"` or `"bitpacked"` (LCE: 32 weights per int32).
        stored_bytes: bytes the tensor takes in the file.
        float32_bytes: bytes it would take as float32.
    """

    op: str
    name: str
    shape: tuple
    storage: str
    stored_bytes: int
    float32_bytes: int


@dataclasses.dataclass
class ExportReport:
    """What an export wrote and how closely the file reproduces the Keras model.

    # Attributes
        path: the file written.
        format: `"tflite-float32"`, `"tflite-int8"`, `"lce-float32"` or `"lce-int8"`.
        size_bytes: the file's size.
        float32_size_bytes: the size of the float32 TFLite file of the same model.
        size_vs_float32: `size_bytes / float32_size_bytes`.
        ops: `collections.Counter` of the op names in the file.
        binary_ops: how many ops compute on bit-packed data (the `Lce*` ops).
        hybrid_ops: ops with int8 weights and float inputs (they quantise activations at
            run time); 0 for every file this module writes.
        binary_weights: one `WeightInfo` per binary weight tensor in the file.
        num_samples: how many sample inputs were compared.
        max_abs_diff: the largest |file output - Keras output|.
        output_scale: the largest |Keras output| on the samples (1 if all are 0).
        max_rel_diff: `max_abs_diff / output_scale`.
        argmax_agreement: the fraction of samples whose argmax over the last axis agrees
            (`None` for outputs with a single value per sample).
        tolerance: the largest `max_rel_diff` accepted.
        warnings: what the user should know about the file (e.g. no binary ops).

    !!! example
        ```python
        report = keras_bilevel.export.to_tflite(model, "mlp.tflite", weights="int8")
        assert report.hybrid_ops == 0 and report.size_vs_float32 < 0.27
        print(report.ops, report.max_rel_diff, report.argmax_agreement)
        ```
    """

    path: str
    format: str
    size_bytes: int
    float32_size_bytes: int
    size_vs_float32: float
    ops: collections.Counter
    binary_ops: int
    hybrid_ops: int
    binary_weights: list
    num_samples: int
    max_abs_diff: float
    output_scale: float
    max_rel_diff: float
    argmax_agreement: float | None
    tolerance: float
    warnings: list = dataclasses.field(default_factory=list)

    @property
    def binary_weight_bytes(self):
        """Bytes the binary weight tensors take in the file."""
        return sum(info.stored_bytes for info in self.binary_weights)

    @property
    def binary_weight_float32_bytes(self):
        """Bytes the binary weight tensors would take as float32."""
        return sum(info.float32_bytes for info in self.binary_weights)

    @property
    def passed(self):
        """Whether the file reproduces the model within `tolerance`."""
        return bool(self.max_rel_diff <= self.tolerance)

    def __str__(self):
        storage = collections.Counter()
        for info in self.binary_weights:
            storage[info.storage] += 1
        if self.binary_weights:
            ratio = self.binary_weight_float32_bytes / max(self.binary_weight_bytes, 1)
            weights = (
                f"{len(self.binary_weights)} tensors ("
                + ", ".join(f"{count} {kind}" for kind, count in sorted(storage.items()))
                + f"), {self.binary_weight_bytes:,} bytes, {ratio:.1f}x smaller than "
                "float32"
            )
        else:
            weights = "none found"
        ops = ", ".join(f"{name} x{count}" for name, count in sorted(self.ops.items()))
        agreement = (
            "n/a (one output value per sample)"
            if self.argmax_agreement is None
            else f"{100 * self.argmax_agreement:.2f}% of {self.num_samples} samples"
        )
        rows = [
            ("file size", f"{self.size_bytes:,} bytes ({self.size_vs_float32:.3f}x the "
                          f"float32 file, {self.float32_size_bytes:,} bytes)"),
            ("binary weights", weights),
            ("ops", ops),
            ("binary ops", f"{self.binary_ops} (hybrid ops: {self.hybrid_ops})"),
            ("max abs difference",
             f"{self.max_abs_diff:.3g} on {self.num_samples} samples"),
            ("max rel difference",
             f"{self.max_rel_diff:.3g} (output scale {self.output_scale:.4g}, "
             f"tolerance {self.tolerance:.0e})"),
            ("argmax agreement", agreement),
            ("check", "passed" if self.passed else "FAILED"),
        ]
        rows += [("warning", text) for text in self.warnings]
        width = max(len(key) for key, _ in rows)
        lines = [f"Export report: {self.path} ({self.format})"]
        lines += [f"  {key:<{width}}  {value}" for key, value in rows]
        return "\n".join(lines)
