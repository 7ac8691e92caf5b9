"""Dynamic (early-exit) inference and the threshold search that configures it."""
from .early_exit import EarlyExitResult, confidence, early_exit_inference
from .fuse import fold_batchnorm, inference_copy
from .thresholds import ExitTable, exit_table, nsga2_front, search_thresholds, simulate

__all__ = ["EarlyExitResult", "ExitTable", "confidence", "early_exit_inference", "exit_table", "fold_batchnorm",
           "inference_copy", "nsga2_front",
           "search_thresholds", "simulate"]
