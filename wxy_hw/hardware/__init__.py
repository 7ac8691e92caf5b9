"""Simulated hardware: device files, the native (W+σ) engine, the aihwkit backend, the cost model, Monte Carlo."""
from .chip import ChipConfig, chip_report, load_technology
from .engine import AnalogConv2d, AnalogLinear, analog_layers, calibrate_converters, deploy, realizations, weight_errors
from .montecarlo import BACKENDS, deploy_on, evaluate_chips, summarize_chips
from .physics import is_ideal, program_weight
from .spec import DeviceSpec, DeviceSpecError, available_devices, load_device

__all__ = ["AnalogConv2d", "AnalogLinear", "BACKENDS", "ChipConfig", "DeviceSpec", "DeviceSpecError", "analog_layers",
           "calibrate_converters", "chip_report", "load_technology",
           "available_devices", "deploy", "deploy_on", "evaluate_chips", "is_ideal", "load_device",
           "program_weight", "realizations", "summarize_chips", "weight_errors"]
