"""What an export wrote and how closely the file reproduces the model it came from.

`ExportReport` (printed after each export), `WeightInfo` (one binary weight tensor of the
file), `ActivationCheck` (one binary activation of the file compared with the model's)
and `ExportError` (the file's outputs differ from the model's). Plain data: this
module imports neither TensorFlow nor Larq, and both front ends (Larq on Keras 2, and
Keras 3) report with it.
"""

import collections
import dataclasses

__all__ = ["ActivationCheck", "ExportError", "ExportReport", "WeightInfo"]


class ExportError(RuntimeError):
    """The written file does not compute what the Keras model computes.

    `report` holds the measurements (`ExportReport`); the file is left at `report.path`.
    `report` is None where no file was checked (`to_lce`: the stripped model itself
    differs from the model, a bug of keras_bilevel).

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
class ActivationCheck:
    """One binary activation of an exported file, compared with the model's.

    A decision of the file that differs from the model's is a *flip* where the input
    `x` of the activation lies within `margin * scale` of the threshold (float rounding:
    no error of the file), a *departure* elsewhere (the file computes `x` differently).
    See `keras_bilevel.export.flips`.

    !!! example
        ```python
        report = keras_bilevel.export.to_lce(model, "model.tflite")
        {check.name: check.flips for check in report.activations if check.flips}
        ```

    # Attributes
        name: the binary activation (layer name, e.g. `"conv2d_1_input_sign"`).
        source: the layer that computes its input.
        values: how many binary values it gave on all samples.
        flips: differing decisions within `margin * scale` of the threshold.
        departures: differing decisions farther from it.
        largest_flip: the largest `|x| / scale` among the flips (0 if none).
        largest_departure: the largest `|x| / scale` among the departures (0 if none).
        scale: the largest `|x|` of the layer on the samples.
        margin: the flip margin, relative to `scale`.
    """

    name: str
    source: str
    values: int
    flips: int
    departures: int
    largest_flip: float
    largest_departure: float
    scale: float
    margin: float


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
        activations: one `ActivationCheck` per binary activation, where the check
            compared them (LCE files of networks with binary activations); else empty.
        max_rel_diff_given_flips: with `activations`: the largest difference between
            the file's outputs and the model's computed with the file's binary decisions,
            relative to `output_scale` (must be <= `tolerance`); else None.

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
    activations: list = dataclasses.field(default_factory=list)
    max_rel_diff_given_flips: float | None = None

    @property
    def flips(self):
        """Binary activations of the file within rounding of the threshold that took the
        other value than in the model (0 where the activations were not compared)."""
        return sum(check.flips for check in self.activations)

    @property
    def departing_layer(self):
        """The first binary activation whose input the file computes differently from
        the model (`ActivationCheck`), or None."""
        return next((check for check in self.activations if check.departures), None)

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
        """Whether the file reproduces the model within `tolerance`.

        With `activations`: no departure, and the outputs within `tolerance` of the
        model's computed with the file's binary decisions (flips accepted)."""
        if self.max_rel_diff_given_flips is not None:
            return bool(
                self.departing_layer is None
                and self.max_rel_diff_given_flips <= self.tolerance
            )
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
            *self._activation_rows(),
            ("check", "passed" if self.passed else "FAILED"),
        ]
        rows += [("warning", text) for text in self.warnings]
        width = max(len(key) for key, _ in rows)
        lines = [f"Export report: {self.path} ({self.format})"]
        lines += [f"  {key:<{width}}  {value}" for key, value in rows]
        return "\n".join(lines)

    def _activation_rows(self):
        if self.max_rel_diff_given_flips is None:
            return []
        values = sum(check.values for check in self.activations)
        flipped = [check for check in self.activations if check.flips]
        largest = max((check.largest_flip for check in flipped), default=0.0)
        margin = self.activations[0].margin if self.activations else 0.0
        rows = [
            ("binary activations",
             f"{len(self.activations)} layers, {values:,} values compared; {self.flips:,} "
             f"flips within rounding of the threshold (|x| <= {margin:.0e} of the "
             f"layer's scale; largest {largest:.2g}) in {len(flipped)} layers"),
            ("diff given flips",
             f"{self.max_rel_diff_given_flips:.3g} of the output scale (the model "
             "computed with the file's binary activations)"),
        ]
        departing = self.departing_layer
        if departing is not None:
            rows.append(
                ("departs at",
                 f"{departing.name} (input computed by {departing.source}): "
                 f"{departing.departures:,} of {departing.values:,} values take the "
                 f"other value with |x| up to {departing.largest_departure:.3g} of the "
                 "layer's scale")
            )
        return rows
