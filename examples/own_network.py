# examples/own_network.py: a hand-written 1-D and 2-D network, from ordinary DataLoaders to accuracy and energy per
# exit on reram and pcm chips through both backends, joined on each exit's one name; then save and reload.
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from wxy_hw.checkpoint import load_model, save_checkpoint
from wxy_hw.hardware import ChipConfig, chip_report, evaluate_chips, join_exits, summarize_chips
from wxy_hw.models import attach_exits, evaluate
from wxy_hw.train import fit


class Keywords(nn.Module):  # 1-D: a keyword-spotting-style CNN over (channels, time)
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.block1, self.block2 = nn.Conv1d(1, 8, 5, padding=2), nn.Conv1d(8, 16, 5, stride=2, padding=2)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.block2(F.relu(self.block1(x)))).mean(2))


class Images(nn.Module):  # 2-D: a small image CNN
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv2(F.relu(self.conv1(x)))).mean((2, 3)))


def signals(n: int, seed: int, shape: tuple[int, ...]) -> DataLoader:  # three frequencies on noise
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    t = torch.arange(shape[-1]).float()
    wave = torch.sin(t * (0.3 + 0.6 * y[:, None].float()))
    x = wave.view(n, 1, *([1] * (len(shape) - 2)), shape[-1]).expand(n, *shape) + 0.3 * torch.randn(n, *shape, generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=seed == 0, generator=g)


results = {}
for name, net, shape, exit_at in (("1-D", Keywords(), (1, 32), ["block1"]), ("2-D", Images(), (1, 12, 12), ["conv1"])):
    torch.manual_seed(0)
    train, val = signals(96, 0, shape), signals(48, 1, shape)
    model = attach_exits(net, at=exit_at, num_classes=3, input_shape=shape)
    result = fit(model, "self_distillation", train, val, epochs=8, out=f"runs/own_network_{name}", overwrite=True,
                 lr=0.1, progress=False)
    print(f"{name}: digital accuracy per exit {dict(zip(result.val.names, result.val.accuracy))}")
    for device in ("reram", "pcm"):
        cost = chip_report(model, ChipConfig(device=device), calibration=train)["exits"]
        for backend in ("native", "aihwkit"):
            rows = summarize_chips(evaluate_chips(model, device, val, seeds=range(3), backend=backend))
            results[name, device, backend] = join_exits(rows, cost)
            for r in results[name, device, backend]:
                print(f"  {device:5s} {backend:7s} exit {r['exit']:6s}: {r['accuracy_mean']:5.1f} ± "
                      f"{r['accuracy_std']:4.1f} %, {r['energy_pJ'] / 1e3:.2f} nJ")
    save_checkpoint(f"runs/own_network_{name}.pt", model)
    again = load_model(f"runs/own_network_{name}.pt", model=type(net)())  # exits re-attached from the record
    assert evaluate(again, val).accuracy == evaluate(model, val).accuracy
