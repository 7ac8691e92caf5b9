"""Shared fixtures: tiny synthetic data and models that train in seconds on a CPU."""
from __future__ import annotations

import pytest
import torch

from wxy_hw.data import load_dataset
from wxy_hw.models import build_model

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def synthetic():
    """Synthetic 10-class 28-px dataset (600 train images before the validation split)."""
    return load_dataset("synthetic", seed=0)


@pytest.fixture
def tiny_model():
    """A 4-exit ResNet-8 at width 1/8 for 28-px grey images."""
    torch.manual_seed(0)
    return build_model("resnet8", num_classes=10, in_channels=1, width=0.125, image_size=28)
