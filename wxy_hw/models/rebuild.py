"""Rebuild a model from the config stored in its checkpoint (quantized again if it was)."""
from __future__ import annotations

from typing import Any, cast

from .multi_exit import MultiExitNet
from .quant import quantize_model


def model_from_config(config: dict[str, Any]) -> MultiExitNet:
    """Rebuild a model from ``model.config`` (as stored in checkpoints), re-quantized if it was."""
    config = dict(config)
    quant = config.pop("quant", None)
    model = MultiExitNet(**config)
    if not quant:
        return model  # Brevitas is imported only when quantizing
    return cast(MultiExitNet, quantize_model(model, quant))  # a model with a stem comes back as a copy of its class
