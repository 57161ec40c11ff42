"""The BinaryConnect MLP (784-1024-1024-1024-10) on MNIST with the AdaSTE recipe.

    python scripts/prepare_offline_mnist.py ~/tfds      # once, offline (or --download)
    python examples/mnist_mlp.py --data-dir ~/tfds --epochs 500
    python examples/mnist_mlp.py --data-dir ~/tfds --backend jax    # Keras 3 on JAX, no Larq
"""

from paper_protocol import parse_args, run


def build(models, input_shape, classes, recipe):
    return models.binary_mlp(
        input_shape, hidden_units=1024, classes=classes,
        kernel_quantizer=recipe.kernel_quantizer,
        kernel_initializer=recipe.kernel_initializer)


def main(argv=None):
    return run("mnist", build, parse_args(__doc__.splitlines()[0], argv))


if __name__ == "__main__":
    main()
