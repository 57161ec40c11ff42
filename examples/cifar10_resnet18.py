"""ResNet-18 (CIFAR form, every weight binary) on CIFAR-10 with the AdaSTE recipe.

    python examples/cifar10_resnet18.py --download --epochs 500  # on a machine with internet
    python examples/cifar10_resnet18.py --backend jax ...        # Keras 3 on JAX, no Larq
"""

from paper_protocol import parse_args, run


def build(models, input_shape, classes, recipe):
    return models.resnet18(
        input_shape, classes=classes, kernel_quantizer=recipe.kernel_quantizer,
        kernel_initializer=recipe.kernel_initializer)


def main(argv=None):
    return run("cifar10", build, parse_args(__doc__.splitlines()[0], argv))


if __name__ == "__main__":
    main()
