"""`python -m keras_bilevel` runs the `keras-bilevel` command."""

from keras_bilevel.cli import entry_point

entry_point()
