"""Worker of `reference_speed.py`: one training-step configuration, timed on request.

Builds one configuration (`--config`) of one network (`--model mlp|vgg16|resnet18`)
with the paper's recipe, prints `ready`, then answers every line `time STEPS` with one
JSON line `{"seconds_per_step": ...}`, every line `epoch N` with `{"epoch_seconds": ...}`
after doing what a training loop does between epochs N and N + 1, and ends on `quit`.
Between epochs: the reference raises its beta by the reference scripts' 1.05 and
evaluates; the Keras front ends run the recipe's callbacks' `on_epoch_end` (AnnealMu)
and `evaluate` (on JAX after writing the step's state back into the model, as `fit`
does). The validation set is one and a half batches, so evaluation also meets a batch
of another size. The backend and the CPU settings come from the environment
the parent gives it (`KERAS_BACKEND`, `TF_ENABLE_ONEDNN_OPTS`), as Keras and TensorFlow
read them once per process.

Configurations:
- `reference`: the public PyTorch AdaSTE code (`optimizers/FenBPOpt.py` and the models
  of `models/models.py` of a checkout given by `--reference`, imported from there, never
  copied): `FenBPOpt.step(closure)` as its training loop calls it;
- `larq`, `larq-xla`, `larq-graph`: `keras_bilevel` (Larq) with
  `recipes.make("adaste-reference")`, `jit_compile` as `keras-bilevel train` chooses it
  on this machine (`cli.keras2_commands.default_jit`), on or off;
- `keras3-default`, `keras3-jit`, `keras3-eager`: `keras_bilevel.keras3` on the
  backend of `KERAS_BACKEND`, `jit_compile` as `keras-bilevel train` chooses it for the
  paper's 500-epoch run (`cli.keras3_commands.default_jit`), on (torch.compile on PyTorch)
  or off.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# The networks of the comparison: the reference's MNIST MLP (784-2048x3-10, batch 100)
# and its CIFAR VGG-16 (batch 128), with the paper's data set sizes.
MODELS = {
    "mlp": dict(input_shape=(784,), batch=100, train_size=60_000),
    "vgg16": dict(input_shape=(32, 32, 3), batch=128, train_size=50_000),
    "resnet18": dict(input_shape=(32, 32, 3), batch=128, train_size=50_000),
}
EPOCHS = 500  # the paper's protocol; sets the recipe's schedules, not the timing
HIDDEN = 2048  # the MLP's width (`--hidden`, smaller for the smoke run)


def _batch(model_name, seed=0, rows=None):
    spec = MODELS[model_name]
    rows = rows or spec["batch"]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, *spec["input_shape"])).astype(np.float32)
    return x, rng.integers(0, 10, rows).astype(np.int64)


def _validation(model_name):
    """One and a half batches: evaluation meets a full batch and a smaller one."""
    return _batch(model_name, seed=1, rows=MODELS[model_name]["batch"] * 3 // 2)


def reference_step(model_name, checkout, hidden=HIDDEN):
    """One FenBPOpt step of the reference code on a fixed batch, and its epoch end."""
    import torch

    sys.path.insert(0, checkout)
    import models as reference_models  # the checkout's package
    from optimizers.FenBPOpt import FenBPOpt

    torch.manual_seed(0)
    if model_name == "mlp":
        model = reference_models.MLPBinaryConnect(784, 10, num_units=hidden)
    elif model_name == "vgg16":
        model = reference_models.VGG16(3, 10)
    else:
        model = reference_models.ResNet18(3, 32, 10)
    spec = MODELS[model_name]
    # The reference's defaults for the AdaSTE runs (main.py and its scripts).
    optimizer = FenBPOpt(model, train_set_size=spec["train_size"], lr=1e-4, betas=0.0,
                         delta=1e-6, use_STE=False, fenbp_beta=0.01, fenbp_alpha=0.01)

    def tensors(arrays):
        x, y = (torch.as_tensor(a) for a in arrays)
        if x.ndim == 4:  # PyTorch's convolutions take NCHW
            x = x.permute(0, 3, 1, 2).contiguous()
        return x, y

    x, y = tensors(_batch(model_name))
    x_val, y_val = tensors(_validation(model_name))
    criterion = torch.nn.CrossEntropyLoss()
    model.train()

    def closure():
        optimizer.zero_grad()
        output = model.forward(x)
        return criterion(output, y), output

    def step():
        loss, _ = optimizer.step(closure)
        return {"loss": loss}

    def end_epoch(epoch):
        # The reference's loop: beta *= beta_inc_rate (1.05), capped at 1 / alpha; test.
        optimizer.beta = min(optimizer.beta * 1.05, 1 / optimizer.alpha)
        model.eval()
        with torch.no_grad():
            for start in range(0, len(x_val), spec["batch"]):
                model(x_val[start:start + spec["batch"]]).argmax(dim=1)
        model.train()

    return step, end_epoch


def _steps_per_epoch(model_name):
    spec = MODELS[model_name]
    return -(-spec["train_size"] // spec["batch"])


def larq_step(model_name, jit, hidden=HIDDEN, quantizer=None):
    """One compiled training step of the Larq path with the paper's recipe, and its
    epoch end."""
    import keras_bilevel  # Keras 2 mode first
    import tensorflow as tf

    from keras_bilevel.cli import keras2_commands

    # None: what `train` chooses for the paper's run
    steps = EPOCHS * _steps_per_epoch(model_name)
    jit = keras2_commands.default_jit(model_name, jit, steps=steps)
    print(f"jit_compile={jit}", file=sys.stderr, flush=True)
    tf.keras.utils.set_random_seed(0)
    spec = MODELS[model_name]
    recipe = keras_bilevel.recipes.make("adaste-reference", spec["train_size"], EPOCHS,
                                        _steps_per_epoch(model_name), batch_size=spec["batch"])
    model = _build(keras_bilevel.models, model_name, recipe, hidden, quantizer)
    model.compile(recipe.optimizer,
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit)
    x, y = _batch(model_name)
    iterator = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    train = model.make_train_function()
    return (lambda: train(iterator)), _epoch_end(model, recipe, model_name)


def keras3_step(model_name, jit, hidden=HIDDEN, quantizer=None):
    """One training step of the Keras 3 front end with the paper's recipe, and its
    epoch end."""
    import keras
    from keras3_step_worker import CompiledStep

    from keras_bilevel.keras3 import methods, models
    from keras_bilevel.cli import keras3_commands

    keras.utils.set_random_seed(0)
    spec = MODELS[model_name]
    recipe = methods.make("adaste-reference", spec["train_size"], EPOCHS,
                          _steps_per_epoch(model_name), batch_size=spec["batch"])
    model = _build(models, model_name, recipe, hidden, quantizer)
    if jit is None:  # what `keras-bilevel train` chooses for this run
        jit = keras3_commands.default_jit(None, steps=EPOCHS * _steps_per_epoch(model_name))
    model.compile(recipe.optimizer,
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit)
    x, y = _batch(model_name)
    print(f"jit_compile={jit}", file=sys.stderr, flush=True)
    step = CompiledStep(model, x, y.astype(np.int32))
    return step, _epoch_end(model, recipe, model_name, step.sync_to_model,
                            step.reload_from_model)


def _epoch_end(model, recipe, model_name, before=lambda: None, after=lambda: None):
    """What `fit` does between epochs N and N + 1, as a function of N: the recipe's
    callbacks end epoch N (they began the training and epoch 0 here), the model is
    evaluated, epoch N + 1 begins (AnnealMu raises mu). `before` and `after` bracket it
    (JAX: the step's state written back into the model, then taken up again)."""
    callbacks = recipe.callbacks
    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin({})
        callback.on_epoch_begin(0, {})
    after()
    x_val, y_val = _validation(model_name)

    def end_epoch(epoch):
        before()
        for callback in callbacks:
            callback.on_epoch_end(epoch, {})
        model.evaluate(x_val, y_val.astype(np.int32), batch_size=MODELS[model_name]["batch"],
                       verbose=0)
        for callback in callbacks:
            callback.on_epoch_begin(epoch + 1, {})
        after()

    return end_epoch


def _build(models, model_name, recipe, hidden, quantizer=None):
    """The network with the recipe's quantizer, or `quantizer` in its place (the rest of
    the recipe unchanged: `ste_sign` measures what AdaSTE's own arithmetic costs)."""
    kwargs = dict(input_shape=MODELS[model_name]["input_shape"], classes=10,
                  kernel_quantizer=quantizer or recipe.kernel_quantizer,
                  kernel_initializer=recipe.kernel_initializer,
                  kernel_constraint=recipe.kernel_constraint)
    if model_name == "mlp":
        return models.binary_mlp(hidden_units=hidden, **kwargs)
    return getattr(models, model_name)(**kwargs)


KERAS3_JIT = {"keras3-default": None, "keras3-jit": True, "keras3-eager": False}
LARQ_JIT = {"larq": None, "larq-xla": True, "larq-graph": False}


def make_step(config, model_name, reference=None, hidden=HIDDEN):
    """`(step, end_epoch)` of configuration `config`; `NAME+QUANTIZER` (for example
    `larq+ste_sign`) is configuration NAME with QUANTIZER in place of the recipe's."""
    config, _, quantizer = config.partition("+")
    if config == "reference" and not quantizer:
        return reference_step(model_name, reference, hidden)
    if config in LARQ_JIT:
        return larq_step(model_name, LARQ_JIT[config], hidden, quantizer or None)
    if config in KERAS3_JIT:
        return keras3_step(model_name, KERAS3_JIT[config], hidden, quantizer or None)
    raise SystemExit(f"unknown --config {config!r}")


def _loss_value(logs):
    loss = logs["loss"]
    return float(loss.detach()) if hasattr(loss, "detach") else float(loss)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--model", default="mlp", choices=sorted(MODELS))
    parser.add_argument("--reference", default=None)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    step, end_epoch = make_step(args.config, args.model, args.reference, args.hidden)
    for _ in range(args.warmup):
        logs = step()
    _loss_value(logs)
    print(f"ready {time.perf_counter() - start:.1f}", flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[:1] == ["quit"]:
            break
        if command[0] == "epoch":
            begin = time.perf_counter()
            end_epoch(int(command[1]))
            print('{"epoch_seconds": %.3f}' % (time.perf_counter() - begin), flush=True)
            continue
        count = int(command[1])
        begin = time.perf_counter()
        for _ in range(count):
            logs = step()
        _loss_value(logs)  # wait for the result
        print('{"seconds_per_step": %.6f}' % ((time.perf_counter() - begin) / count),
              flush=True)


if __name__ == "__main__":
    main()
