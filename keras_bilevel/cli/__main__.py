"""`python -m keras_bilevel.cli` runs the `keras-bilevel` command."""

from keras_bilevel.cli.workflow import entry_point

entry_point()
