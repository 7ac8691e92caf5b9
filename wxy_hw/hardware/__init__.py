"""Simulated hardware: device files, the native (W+σ) engine, the aihwkit backend, the cost model, Monte Carlo."""
from .chip import Chip, ChipConfig
from .cost import chip_report, exit_energies
from .engine import (AnalogConv1d, AnalogConv2d, AnalogLinear, analog_layers, calibrate_converters, deploy,
                     weight_errors)
from .montecarlo import BACKENDS, chip_ids, deploy_on, evaluate_chips, join_exits, summarize_chips
from .physics import is_ideal, program_weight
from .recalibrate import batchnorm_layers, recalibrate_bn
from .spec import DeviceSpec, DeviceSpecError, available_devices, load_device
from .technology import load_technology

__all__ = ["AnalogConv1d", "AnalogConv2d", "AnalogLinear", "BACKENDS", "Chip", "ChipConfig", "DeviceSpec", "DeviceSpecError",
           "analog_layers", "available_devices", "batchnorm_layers", "calibrate_converters", "chip_ids", "chip_report", "deploy",
           "deploy_on", "evaluate_chips", "exit_energies", "is_ideal", "join_exits", "load_device", "load_technology", "program_weight",
           "recalibrate_bn", "summarize_chips", "weight_errors"]
