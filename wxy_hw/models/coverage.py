"""Which layers a conversion leaves as they were: one warning naming them, never a silent skip."""
from __future__ import annotations

import warnings

import torch.nn as nn

# Normalisation is digital periphery on every chip we model (folded or computed next to the array).
_DIGITAL_BY_DESIGN = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def untouched_layers(model: nn.Module, handled: tuple[type[nn.Module], ...]) -> list[str]:
    """``name (Type)`` of every module owning weights that is neither ``handled`` nor a norm layer.

    Brevitas' quantizer internals (their learned scales) are part of a handled layer, not layers.
    """
    out = []
    for name, m in model.named_modules():
        if isinstance(m, handled) or isinstance(m, _DIGITAL_BY_DESIGN) or type(m).__module__.startswith("brevitas"):
            continue
        if any(True for _ in m.parameters(recurse=False)):
            out.append(f"{name or '<model>'} ({type(m).__name__})")
    return out


def warn_untouched(what: str, names: list[str], why: str) -> None:
    """One warning listing the layers ``what`` left as they were (nothing when the list is empty)."""
    if names:
        shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
        warnings.warn(f"{what}: {len(names)} layer(s) {why}: {shown}", UserWarning, stacklevel=3)
