"""Datasets as normalised in-memory tensors: `load_dataset`, `dataset_info`, `BatchLoader`.

Readers for IDX (MNIST, Fashion-MNIST), CIFAR-10 python batches, class-per-folder images
and scikit-learn's digits all feed one pipeline (seeded stratified subset/val split,
resize, train-statistics normalisation), so every dataset behaves the same downstream.
"""

from edgenas.data.base import BatchLoader, DataInfo, DataSplits, Split
from edgenas.data.datasets import DATASETS, dataset_info, load_dataset

__all__ = ["DATASETS", "BatchLoader", "DataInfo", "DataSplits", "Split", "dataset_info", "load_dataset"]
