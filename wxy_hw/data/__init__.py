"""Datasets (read offline from standard files), splits and batch loaders."""
from .base import CorruptDatasetError, DatasetNotFoundError, DatasetSplits, Split
from .loader import BatchLoader, make_loaders
from .registry import DATASETS, available_datasets, load_dataset

__all__ = ["BatchLoader", "CorruptDatasetError", "DATASETS", "DatasetNotFoundError", "DatasetSplits", "Split",
           "available_datasets", "load_dataset", "make_loaders"]
