"""Datasets (read offline from standard files), splits and batch loaders."""
from .base import CorruptDatasetError, DatasetNotFoundError, DatasetSplits, Split
from .loader import BatchLoader, make_loaders
from .registry import DATASETS, available_datasets, dataset_key, load_dataset

__all__ = ["BatchLoader", "CorruptDatasetError", "DATASETS", "DatasetNotFoundError", "DatasetSplits", "Split", "dataset_key",
           "available_datasets", "load_dataset", "make_loaders"]
