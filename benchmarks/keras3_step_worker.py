"""Worker of `quantizer_step.py --keras3`: times Keras 3 training steps on one backend.

Keras reads its backend once per process, so `quantizer_step.py` starts one of these per
backend (`KERAS_BACKEND=jax|torch`) and drives them in turn over stdin/stdout, so that
their timed blocks alternate and never overlap. It imports neither TensorFlow nor Larq.

Protocol (`serve`, also used by the Larq path's worker): the worker builds its models,
prints `ready`, then answers every line `time NAME STEPS` with one JSON line
`{"seconds_per_step": ...}` (the mean over STEPS steps of NAME's compiled training step);
`quit` ends it. Keras is imported inside the functions, so that the Larq worker can
import `serve` without loading Keras 3.

    KERAS_BACKEND=jax python benchmarks/keras3_step_worker.py --hidden 1024 --batch 100
"""

import argparse
import json
import sys
import time

import numpy as np

QUANTIZERS = ("ada_ste", "ste_sign")


def _step_function(name, hidden, batch, jit, seed=0):
    """A zero-argument function running one training step of model `name`, as `fit` does."""
    import keras

    from keras_bilevel.keras3 import AdaSTE, models

    keras.utils.set_random_seed(seed)
    quantizer = (lambda: AdaSTE()) if name == "ada_ste" else name
    model = models.binary_mlp((784,), hidden, kernel_quantizer=quantizer)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    return CompiledStep(model, x, y)


class CompiledStep:
    """One compiled training step of the compiled Keras 3 `model` on the fixed batch
    (x, y), as `fit` runs it: call it for a step (it returns the step's logs). On JAX
    the step passes its state from call to call, as `fit` does within an epoch;
    `sync_to_model()` writes that state back into the model's variables (as `fit` does at
    the end of an epoch) and `reload_from_model()` takes the variables up again, so that
    callbacks and `evaluate` can run in between. Both do nothing on other backends.
    Runs `train_on_batch` once first (it builds the optimizer and the metrics, and
    compiles the step)."""

    def __init__(self, model, x, y):
        import keras

        model.train_on_batch(x, y)
        model.make_train_function()
        self.model = model
        self.jax = keras.backend.backend() == "jax"
        # (x, y, sample_weight) as train_on_batch passes it: JAX then reuses its step.
        self.data = (keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y), None)
        self.state = None
        self.reload_from_model()

    def __call__(self):
        if not self.jax:
            return self.model.train_function([self.data])
        logs, self.state = self.model.train_function(self.state, iter([self.data]))
        return logs

    def sync_to_model(self):
        if self.jax:
            names = ("trainable_variables", "non_trainable_variables",
                     "optimizer_variables", "metrics_variables")
            self.model._jax_state = dict(zip(names, self.state))
            self.model._jax_state_synced = False
            self.model.jax_state_sync()

    def reload_from_model(self):
        if self.jax:
            self.state = self.model._get_jax_state(
                trainable_variables=True, non_trainable_variables=True,
                optimizer_variables=True, metrics_variables=True)


def time_block(step, steps):
    """Mean seconds per call of `step` over `steps` calls, waiting for the last result."""
    start = time.perf_counter()
    for _ in range(steps):
        logs = step()
    float(logs["loss"])  # wait for the device
    return (time.perf_counter() - start) / steps


def serve(steps, warmup):
    """Warm every step function up, then answer the parent's `time` lines until `quit`."""
    for step in steps.values():
        time_block(step, warmup)
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[:1] == ["quit"]:
            break
        _, name, count = command
        print(json.dumps({"seconds_per_step": time_block(steps[name], int(count))}),
              flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                        help="jit_compile (default: on for JAX and TensorFlow, off for "
                             "PyTorch, where it means torch.compile)")
    args = parser.parse_args(argv)
    import keras

    jit = keras.backend.backend() in ("jax", "tensorflow") if args.jit is None else args.jit
    serve({name: _step_function(name, args.hidden, args.batch, jit) for name in QUANTIZERS},
          args.warmup)


if __name__ == "__main__":
    main()
