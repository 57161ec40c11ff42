"""Export trained binary networks to files that compute what the Keras model computes.

A binary network is trained with latent real-valued weights; on a device only their signs
matter. This module writes those signs into TFLite and Larq Compute Engine (LCE) files and
checks every file it writes against the Keras model before it reports success:

- `strip_latent(model)`: an inference-only Keras model made of plain `tf.keras` layers,
  with the +-1 (binary) kernels in place of the latent ones, no `mu` and no Larq or
  keras_bilevel objects. Binary activations (`input_quantizer="ste_sign"` and the like)
  become `Lambda` layers computing `tf.sign(tf.sign(x) + 0.1)`, the pattern of
  `larq.math.sign` that LCE turns into bit-packing ops.
- `to_tflite(model, path, weights="float32" | "int8")`: a TFLite file computing in
  float32. With `weights="int8"` each binary weight tensor is stored as int8 (+-1, with a
  float32 scale per output channel where the converter folded BatchNorm into the kernel)
  and a `DEQUANTIZE` op rebuilds the float kernel when the interpreter prepares the
  model. Every op still computes in float, so the file is about 4x smaller and gives the
  float32 file's outputs. TFLite's own dynamic-range quantisation is *not* used: its
  hybrid kernels quantise the activations at run time as well, which changes the
  network (measured on a small binary MLP: 1% of the argmax predictions changed).
- `to_lce(model, path, weights="float32" | "int8")`: a Larq Compute Engine file (needs
  the optional `larq-compute-engine` package). Convolutions whose inputs *and* weights
  are binary become `LceBconv2d` ops with bit-packed weights (32 weights per int32 word);
  other binary weights stay float32 or, with `weights="int8"`, int8 as above. Networks
  with binary weights only (the AdaSTE paper's setting: real-valued ReLU activations) get
  no binary ops from LCE: the file is a plain float file, and `to_lce` warns about it.
  Export such networks with `to_tflite(..., weights="int8")`.

Each export runs the written file (the LiteRT interpreter of `ai_edge_litert`, or LCE's
interpreter for LCE files) on sample inputs, compares it with `model.predict` and returns
an `ExportReport` (printed unless `verbose=False`): file size and size relative to the
float32 file, the op list with the binary ops counted, the binary weight tensors and how
they are stored, the largest difference and the argmax agreement. A difference above
`tolerance` raises `ExportError` (the file is left in place for inspection).

Binary activations: the converters fold BatchNorm into the kernels, so the file rounds
differently from Keras, and a pre-activation within float rounding of the sign threshold
can take the other sign in the file (a flip), which then propagates through the
following binary layers. That is not an error of the file. For files with binary
activations, `to_lce` also writes a probe file that outputs every binary activation, runs
the Keras model with the file's decisions forced in, and accepts the file when the only
differences are flips within `flip_margin` of their threshold (counted in the report);
a decision farther from the threshold is a departure, and the `ExportError` names the
activation and the layer that feeds it. See `flips` and `probe`.

The package, one concern per module (the last three know neither Larq nor tf.keras, so
that a Keras 3 export reuses them with its own plain model and reference outputs):

- `strip`: `strip_latent` and the checks on Larq models (Keras 2).
- `tflite`, `lce`: `to_tflite` and `to_lce`, the Larq front ends.
- `tflite_file`: float32 conversion of a plain Keras model, int8 storage of binary
  weights, inspection of a TFLite flatbuffer.
- `check`: sample inputs, running a file (LiteRT or LCE interpreter), the comparison.
- `report`: `ExportReport`, `ActivationCheck`, `WeightInfo`, `ExportError`.
- `flips`: binary activations of the model and of the file compared, flips told from
  departures (arrays only).
- `probe`: the probe model that outputs every binary activation (Keras 2).

`strip_latent`, `to_tflite` and `to_lce` load their modules (and Larq) on first use.
"""

import importlib

from keras_bilevel.export.report import (
    ActivationCheck,
    ExportError,
    ExportReport,
    WeightInfo,
)

__all__ = [
    "ActivationCheck",
    "ExportError",
    "ExportReport",
    "WeightInfo",
    "strip_latent",
    "to_lce",
    "to_tflite",
]

# Public names defined in submodules that import TensorFlow or Larq: loaded when used.
_LAZY = {
    "DEFAULT_TOLERANCE": "check",
    "strip_latent": "strip",
    "to_lce": "lce",
    "to_tflite": "tflite",
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_LAZY})
