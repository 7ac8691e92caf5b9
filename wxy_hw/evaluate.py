"""Moved to ``wxy_hw.models.evaluate`` (hardware evaluates chips without reaching up a floor); kept for imports."""
from .models.evaluate import ExitMetrics, evaluate, evaluate_chip_batch, model_device  # noqa: F401
