"""What a finished training run saved, read without Keras or any tensor library."""

import os
import zipfile
from io import BytesIO

import h5py

__all__ = ["saved_weights"]


def saved_weights(run):
    """Every variable of a run's model.keras, by its path in the file, as NumPy arrays
    (the same layout for a Keras 2 and a Keras 3 file)."""
    with zipfile.ZipFile(os.path.join(run, "model.keras")) as archive:
        data = archive.read("model.weights.h5")
    found = {}
    with h5py.File(BytesIO(data), "r") as f:
        f["layers"].visititems(lambda name, item: found.__setitem__(name, item[()])
                               if isinstance(item, h5py.Dataset) else None)
    return found
