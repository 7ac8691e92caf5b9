# examples/any_model.py: a hand-written CNN → exits → self-distillation → ReRAM chips → cost → 4-bit → reload
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from wxy_hw.checkpoint import load_model, save_checkpoint
from wxy_hw.hardware import evaluate_chips, join_exits, summarize_chips
from wxy_hw.hardware import ChipConfig, chip_report
from wxy_hw.models.quant import quantize_model
from wxy_hw.models import attach_exits
from wxy_hw.train import fit


class CNN(nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.conv3, self.fc = nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv3(F.relu(self.conv2(torch.relu(self.conv1(x))))))
        return self.fc(x.mean((2, 3)))


def textures(n: int, seed: int) -> DataLoader:  # 12×12 row / column stripes, checkerboard, flat, on noise
    r, c = torch.meshgrid(torch.arange(12), torch.arange(12), indexing="ij")
    y = torch.arange(n) % 4
    x = torch.stack([r % 2, c % 2, (r + c) % 2, 0 * r]).float()[y, None] * 1.5
    x = x + 0.3 * torch.randn(n, 1, 12, 12, generator=torch.Generator().manual_seed(seed))
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=seed == 0)


torch.manual_seed(0)
train, val = textures(96, 0), textures(48, 1)
net = attach_exits(CNN(), at=["conv1", "conv2"], num_classes=4, input_shape=(1, 12, 12))
result = fit(net, "self_distillation", train, val, epochs=3, out="runs/any_model", overwrite=True, lr=0.2,
             progress=False)  # overwrite: a rerun replaces this run's own outputs, nothing else
rows = summarize_chips(evaluate_chips(net, "reram", val, seeds=range(5)))  # per exit, over 5 chips
cost = chip_report(net, ChipConfig(device="reram"), (1, 12, 12), calibration=train)["exits"]  # per exit
q = quantize_model(net, {"weight_bits": 4, "act_bits": 8}, calibration=val)
save_checkpoint("runs/any_model_4bit.pt", q)                                      # beside the run, not in it
again = load_model("runs/any_model_4bit.pt", model=CNN())                         # exits rebuilt from the record
for r in join_exits(rows, cost):  # accuracy and cost of each exit, joined on its one name
    print(f"exit {r['exit']}: {r['accuracy_mean']:.1f} ± {r['accuracy_std']:.1f} % on reram chips, "
          f"{r['energy_pJ'] / 1e3:.2f} nJ, {r['latency_ns']:.0f} ns per image")
