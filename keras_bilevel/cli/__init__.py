"""The `keras-bilevel` command line.

- `workflow`: the parser (`build_parser`) and the workflow every front end shares: check the
  arguments, set the logging and the Keras backend up before either loads, hand the
  command to a front end, start local workers, turn failures into one-line errors;
- `keras2_commands`: the commands on the Larq front end (`--backend larq`);
- `keras3_commands`: the commands on Keras 3 (`--backend jax`, `tensorflow`, `torch`);
- `local_workers`: `--workers N`, N worker processes on this machine.

Importing this package loads neither TensorFlow nor Keras.
"""

from keras_bilevel.cli.workflow import build_parser, entry_point, main

__all__ = ["build_parser", "entry_point", "main"]
