"""Analyses of trained multi-exit models: flatness of each exit's minimum and gradient norms."""
from .flatness import (GradientMonitor, expected_loss_increase, filter_normalized_direction,
                       gaussian_weight_noise_loss, loss_landscape_1d, top_hessian_eigenvalue, weight_layers)

__all__ = ["GradientMonitor", "expected_loss_increase", "filter_normalized_direction",
           "gaussian_weight_noise_loss", "loss_landscape_1d", "top_hessian_eigenvalue", "weight_layers"]
