"""What every Keras 3 data set's splits have: `ArraySplits` and `StreamedSplits` extend it.

No Keras, no tensor library.
"""

import dataclasses
import math
from typing import Tuple

__all__ = ["Splits"]


@dataclasses.dataclass(frozen=True)
class Splits:
    """A data set's description and its epochs of training batches.

    # Attributes
        name, input_shape, classes, batch_size, seed, mean, std: as in
            `keras_bilevel.keras2.data.DataSplits`.
        augment: whether training batches are augmented (CIFAR's crops and flips, the
            streamed sets' random-resized crops and flips).

    A subclass gives `num_train` and `epoch_batches(epoch)`.
    """

    name: str
    input_shape: Tuple[int, ...]
    classes: int
    batch_size: int
    seed: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    augment: bool

    @property
    def steps_per_epoch(self):
        """Training batches per epoch, `ceil(num_train / batch_size)`."""
        return math.ceil(self.num_train / self.batch_size)

    def train_epochs(self, initial_epoch, epochs):
        """The batches of epochs `initial_epoch, ..., epochs - 1`, one after the other;
        pass `steps_per_epoch` to `fit` with them."""
        if not 0 <= initial_epoch <= epochs:
            raise ValueError("`initial_epoch` must be in [0, epochs], got initial_epoch="
                             f"{initial_epoch!r} with epochs={epochs!r}.")
        for epoch in range(initial_epoch, epochs):
            yield from self.epoch_batches(epoch)
