"""ResNet-18 (TinyImageNet form, every weight binary) on TinyImageNet with the AdaSTE recipe.

The public AdaSTE code's TinyImageNet protocol (its `scripts/RESNET18_tinyimg.sh` and
`main_tinyimg.py`): 64x64 images, random-resized crops and flips for training, the
ImageNet mean and std, the val split as the test split, batch 128, learning rate 3e-4
with a cosine decay, momentum 0.9, mu grown by 1.009 per epoch over 700 epochs.
ResNet-18 takes its TinyImageNet form (a 3x3 stem with stride 2) from the 64x64 input.
DIR is the folder that tiny-imagenet-200.zip (http://cs231n.stanford.edu) unpacks in.

    python examples/tinyimagenet_resnet18.py --data-dir DIR
    python examples/tinyimagenet_resnet18.py --data-dir DIR --backend torch   # Keras 3
"""

from paper_protocol import parse_args, run


def build(models, input_shape, classes, recipe):
    return models.resnet18(
        input_shape, classes=classes, kernel_quantizer=recipe.kernel_quantizer,
        kernel_initializer=recipe.kernel_initializer)


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv, epochs=700, mu_rate=1.009)
    return run("tiny_imagenet", build, args)


if __name__ == "__main__":
    main()
