"""Moved to ``wxy_hw.models.quant`` (models use quantization without reaching up into hardware); kept for imports."""
from ..models.quant import QuantConfig, export_onnx, quantize_model, quantized_weight  # noqa: F401
