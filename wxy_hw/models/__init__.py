"""Backbones, exit heads and the MultiExitNet that every method and backend consumes."""
from .attach import AttachedExits, HookedExits, VectorHead, attach_exits, plain_config
from .backbones import available_archs, build_backbone
from .cost import ExitCost, exit_costs, exit_path_macs, total_params
from .evaluation import ExitMetrics, evaluate, exit_labels
from .heads import HEADS, BottleneckHead, LinearHead, build_head
from .multi_exit import MultiExitNet, MultiExitOutput, build_model
from .rebuild import model_from_config
from .scan import ScanHead  # registers the "scan" exit head
from .wrappers import PixelSpaceClassifier

__all__ = ["PixelSpaceClassifier", "ScanHead", "AttachedExits", "HookedExits", "VectorHead", "attach_exits",
           "plain_config", "BottleneckHead", "ExitCost", "HEADS", "LinearHead", "MultiExitNet", "MultiExitOutput",
           "available_archs", "build_backbone", "build_head", "build_model", "exit_costs", "exit_path_macs",
           "model_from_config", "total_params", "ExitMetrics", "evaluate", "exit_labels"]
