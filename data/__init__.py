"""Data for hpsearch: CIFAR-10 python batches, the synthetic set, the
stratified hold-out, batched augmentation and the Kaggle test file."""

from hpsearch.data.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    AugmentConfig,
    augment_batch,
    normalize,
    prepare_batch,
)
from hpsearch.data.bundle import DATASETS, DataBundle, load_dataset
from hpsearch.data.cifar import CLASSES, default_data_dir, load_cifar10
from hpsearch.data.errors import DataError
from hpsearch.data.kaggle import read_kaggle_test, write_submission
from hpsearch.data.safe_pickle import safe_load_pickle
from hpsearch.data.split import holdout_split, split_digest
from hpsearch.data.synthetic import SYNTHETIC_CLASSES, make_synthetic

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CLASSES",
    "DATASETS",
    "SYNTHETIC_CLASSES",
    "AugmentConfig",
    "DataBundle",
    "DataError",
    "augment_batch",
    "default_data_dir",
    "holdout_split",
    "load_cifar10",
    "load_dataset",
    "make_synthetic",
    "normalize",
    "prepare_batch",
    "read_kaggle_test",
    "safe_load_pickle",
    "split_digest",
    "write_submission",
]
