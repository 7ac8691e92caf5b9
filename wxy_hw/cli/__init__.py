"""The command lines: one ``main(argv)`` per study (``wxy_hw.cli.<study>``, also ``experiments/<study>.py`` and
``wxy-hw <study>``), on the shared flag vocabulary (``vocabulary.py``) and one way to run a study from its flags
(``runner.py``). Both are re-exported here: the names every study's command line imports."""
from __future__ import annotations

from .runner import (config_of, fail, INPUT_FLAGS, input_paths, parse, report, run_guard, run_study, USER_ERRORS)
from .vocabulary import (activity, add_checkpoints_arg, add_chip_args, add_chip_settings, add_chips_arg,
    add_data_args, add_dataset_args, add_device_arg, add_device_set_arg, add_models_args, add_output_args,
    add_parallel_args, add_study_args, add_t_inference_arg, add_train_args, array_size, calibrator_blocks, calibrator_width, defaults,
    Deprecated, exit_stage, fraction, HelpFormatter, image_size, KeyValue, MAX_CALIBRATOR_BLOCKS,
    MAX_CALIBRATOR_WIDTH, new_parser, nonneg_float, nonneg_int, parse_method_args, positive_float, positive_int,
    seed_int, severity, torch_device, width_multiplier)

__all__ = ["activity", "add_checkpoints_arg", "add_chip_args", "add_chip_settings", "add_chips_arg", "add_data_args",
           "add_dataset_args", "add_device_arg", "add_device_set_arg", "add_models_args", "add_output_args",
           "add_parallel_args", "add_t_inference_arg", "add_study_args", "add_train_args", "array_size", "calibrator_blocks",
           "calibrator_width", "config_of", "defaults", "Deprecated", "exit_stage", "fail", "fraction",
           "HelpFormatter", "image_size", "INPUT_FLAGS", "input_paths", "KeyValue", "MAX_CALIBRATOR_BLOCKS",
           "MAX_CALIBRATOR_WIDTH", "new_parser", "nonneg_float", "nonneg_int", "parse", "parse_method_args",
           "positive_float", "positive_int", "report", "run_guard", "run_study", "seed_int", "severity",
           "torch_device", "USER_ERRORS", "width_multiplier"]
