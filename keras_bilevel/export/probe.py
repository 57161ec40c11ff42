"""The activation probe of a stripped Keras 2 model (see `flips` for what it is for).

`build_probe(plain, convert)` finds the binary activations `strip_latent` wrote (the
`Lambda` layers `<layer>_input_sign` and `<layer>_input_heaviside`), converts the model
with them as extra outputs (one concatenated output, so that no converter reorders
them) and builds the model that takes the file's binary decisions in their place. It
knows tf.keras graphs, not Larq; it writes no files.

!!! example
    ```python
    probe = build_probe(plain, larq_compute_engine.convert_keras_model)
    report = check.check_file(path, content, x, reference, ..., probe=probe)
    ```
"""

import keras_bilevel.keras2.legacy_keras  # noqa: F401  (Keras 2 mode before TensorFlow)

import numpy as np
import tensorflow as tf

from keras_bilevel.export.flips import ActivationProbe
from keras_bilevel.export.strip import replay_graph

__all__ = ["build_probe"]

_SUFFIXES = {"_input_sign": False, "_input_heaviside": True}  # suffix: is a step


def _activation_kind(layer):
    """None for other layers, else whether the binary activation is a step."""
    if not isinstance(layer, tf.keras.layers.Lambda):
        return None
    return next(
        (step for suffix, step in _SUFFIXES.items() if layer.name.endswith(suffix)), None
    )


def _call_graph(model, inputs, on_activation):
    """Calls `model`'s layers on `inputs` again, nested models included, with
    `on_activation(layer, pre_activation, source)` in place of each binary activation."""

    def call_node(node, args, kwargs):
        layer = node.layer
        if isinstance(layer, tf.keras.Model):
            return _call_graph(layer, args[0], on_activation)
        if _activation_kind(layer) is not None:
            source = node.call_args[0]._keras_history.layer.name
            return on_activation(layer, args[0], source)
        return layer(*args, **kwargs)

    return replay_graph(model, inputs, call_node)


def _call_name(layer, taken):
    """`layer.name`, or `name#k` for the k-th further call of a shared activation."""
    calls = taken.count(layer.name)
    taken.append(layer.name)
    return f"{layer.name}#{calls}" if calls else layer.name


def build_probe(plain, convert, batch_size=64):
    """The `ActivationProbe` of a stripped model, or None without binary activations.

    # Arguments
        plain: the model `strip_latent` gave (one input, one output).
        convert: the converter of the written file (e.g.
            `larq_compute_engine.convert_keras_model`), applied to the probe model.
        batch_size: batch size of the forced evaluation.
    """
    inputs = tf.keras.Input(plain.inputs[0].shape[1:], name="probe_input")
    taps, taken = [], []  # (name, source, step, output)

    def tap(layer, pre_activation, source):
        output = layer(pre_activation)
        taps.append((_call_name(layer, taken), source, _activation_kind(layer), output))
        return output

    output = _call_graph(plain, inputs, tap)
    if not taps:
        return None
    # Named here: a model whose own layers were named explicitly (a Keras 3 model
    # rebuilt for LCE has a "flatten") would clash with Keras' automatic names.
    flat = [tf.keras.layers.Flatten(name=f"probe_flatten_{i}")(tensor)
            for i, tensor in enumerate([output] + [t[3] for t in taps])]
    probe_model = tf.keras.Model(
        inputs, tf.keras.layers.Concatenate(name="probe_outputs")(flat),
        name=f"{plain.name}_probe"
    )

    forced_inputs = [tf.keras.Input(plain.inputs[0].shape[1:], name="forced_input")]
    pre_activations = []

    def force(layer, pre_activation, source):
        decision = tf.keras.Input(pre_activation.shape[1:], name=f"{layer.name}_decision")
        forced_inputs.append(decision)
        pre_activations.append(pre_activation)
        return decision

    forced_output = _call_graph(plain, forced_inputs[0], force)
    forced_model = tf.keras.Model(
        forced_inputs, [*pre_activations, forced_output], name=f"{plain.name}_forced"
    )

    def forced(x, decisions):
        values = forced_model.predict([x, *decisions], batch_size=batch_size, verbose=0)
        return [np.asarray(v) for v in values[:-1]], np.asarray(values[-1])

    return ActivationProbe(
        content=convert(probe_model),
        names=[t[0] for t in taps],
        sources=[t[1] for t in taps],
        shapes=[tuple(t[3].shape[1:]) for t in taps],
        steps=[t[2] for t in taps],
        output_shape=tuple(output.shape[1:]),
        forced=forced,
    )
