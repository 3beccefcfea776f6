"""Where training images come from.

- ``catalogue``: the data sets, their channels, and cheap checks of a choice (DataError);
- ``readers``: each data set's files read into uint8 tensors, and resizing;
- ``sources``: the endless batch sources a run trains from;
- ``labelled``: labelled images with a fixed train / held-out split, for the quality metrics.

The names callers use are re-exported here: ``from bench import data; data.X``.
"""

from bench.data.catalogue import (
    DATASETS,
    LABELLED_DATASETS,
    MNIST_FULL_EXTRA,
    NEEDS_DATA_DIR,
    DataError,
    check_dataset,
    check_mnist_full,
    dataset_channels,
)
from bench.data.labelled import LabelledImages, load_labelled
from bench.data.sources import BatchSource, build_batch_source, check_readable

__all__ = [
    "DATASETS",
    "LABELLED_DATASETS",
    "MNIST_FULL_EXTRA",
    "NEEDS_DATA_DIR",
    "BatchSource",
    "DataError",
    "LabelledImages",
    "build_batch_source",
    "check_dataset",
    "check_mnist_full",
    "check_readable",
    "dataset_channels",
    "load_labelled",
]
