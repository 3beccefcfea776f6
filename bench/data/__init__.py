"""Where training images come from: the data sets, their batch sources and labelled splits."""

from bench.data.sources import (
    DATASETS,
    LABELLED_DATASETS,
    MNIST_FULL_EXTRA,
    NEEDS_DATA_DIR,
    BatchSource,
    DataError,
    LabelledImages,
    build_batch_source,
    check_dataset,
    check_mnist_full,
    check_readable,
    dataset_channels,
    load_labelled,
)

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
