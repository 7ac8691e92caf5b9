"""Shared fixtures: tiny synthetic data and models that train in seconds on a CPU."""
from __future__ import annotations

import os

import pytest
import torch

from wxy_hw.data import load_dataset
from wxy_hw.models import build_model

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

# what a script's main() sets for the rest of its process (train_zoo.py --zoo → WXY_ZOO): put back after every
# test, so that one test's zoo never becomes the shipped zoo of the tests after it
_PROCESS_SETTINGS = ("WXY_ZOO", "WXY_DATA")


@pytest.fixture(autouse=True)
def _process_settings_restored():
    before = {k: os.environ.get(k) for k in _PROCESS_SETTINGS}
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def synthetic():
    """Synthetic 10-class 28-px dataset (600 train images before the validation split)."""
    return load_dataset("synthetic", seed=0)


def train_tiny(data, method: str, epochs: int, run_dir):
    """A 4-exit ResNet-8 (width 1/8) trained on ``data`` with ``method``, in eval mode."""
    from wxy_hw.methods import build_method
    from wxy_hw.train import TrainConfig, Trainer

    torch.manual_seed(0)
    model = build_model("resnet8", 10, 1, 0.125, 28)
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=0.05, torch_device="cpu", progress=False)
    Trainer(model, build_method(method), data, cfg, run_dir).fit()
    return model.eval()


@pytest.fixture(scope="session")
def trained_dsn(synthetic, tmp_path_factory):
    """DSN-trained tiny model shared by the hardware-facing tests (trained once per session)."""
    return train_tiny(synthetic, "dsn", 6, tmp_path_factory.mktemp("dsn"))


@pytest.fixture
def tiny_model():
    """A 4-exit ResNet-8 at width 1/8 for 28-px grey images."""
    torch.manual_seed(0)
    return build_model("resnet8", num_classes=10, in_channels=1, width=0.125, image_size=28)
