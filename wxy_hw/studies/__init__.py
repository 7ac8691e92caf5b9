"""The studies, one file each, on one spine (``spine``): open a checkpoint once, start the run directory, run, write.

Each study's settings are one config dataclass, written into its run directory as config.toml.
"""
from .calibrator_adapt import CalibratorConfig, calibrator_adapt_run
from .chip_study import ChipStudyConfig, chip_study_run, pareto_front
from .chip_validation import validate, validation_rows
from .config import StudyConfig
from .early_exit_energy import EarlyExitConfig, early_exit_run
from .noise_sweep import NoiseSweepConfig, noise_sweep_run
from .quant_sweep import QuantSweepConfig, quant_sweep_run
from .corruption_robustness import DEFAULT_CORRUPTIONS, DEFAULT_METHODS, RobustnessConfig, corruption_robustness_run
from .spine import (DEFAULT_BUDGET, EARLY_EXIT_VARIANT, Checkpoint, Opened, StudyResult, cached_checkpoint,
                    check_checkpoint_dataset, open_checkpoint, resolve_checkpoints, start_run)
from .compare_methods import CompareConfig, compare_methods, compare_methods_run
from .train import TrainRunConfig, continue_flags, train_run

__all__ = ["CalibratorConfig", "ChipStudyConfig", "Checkpoint", "CompareConfig", "DEFAULT_BUDGET",
           "EARLY_EXIT_VARIANT", "DEFAULT_CORRUPTIONS", "DEFAULT_METHODS", "EarlyExitConfig", "NoiseSweepConfig",
           "Opened", "QuantSweepConfig", "RobustnessConfig", "StudyConfig", "StudyResult", "TrainRunConfig",
           "cached_checkpoint", "calibrator_adapt_run", "check_checkpoint_dataset", "chip_study_run",
           "compare_methods", "compare_methods_run", "continue_flags", "corruption_robustness_run", "early_exit_run",
           "noise_sweep_run", "open_checkpoint", "pareto_front", "quant_sweep_run", "resolve_checkpoints",
           "start_run", "train_run", "validate", "validation_rows"]
