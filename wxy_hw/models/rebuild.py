"""Rebuild a model from the config stored in its checkpoint (quantized again if it was)."""
from __future__ import annotations

from typing import Any

from .multi_exit import MultiExitNet
from .quant import quantize_model


def model_from_config(config: dict[str, Any]) -> MultiExitNet:
    """Rebuild a model from ``model.config`` (as stored in checkpoints), re-quantized if it was."""
    config = dict(config)
    quant = config.pop("quant", None)
    model = MultiExitNet(**config)
    return quantize_model(model, quant) if quant else model  # Brevitas is imported only when quantizing
