"""Print docs/hardware.md's "when analog loses to int8" table: energy, ADC share and latency per exit on reram and
on the int8 reference, for the README's worked-example network (untrained, seeded random inputs) and the default
model (the zoo's self_distillation seed 0: ResNet-18 w0.25, stem stride 2), calibrated on the same 256 training
images every study uses. The costs depend on the architecture, the measured input activity and the cell states.

    python scripts/analog_vs_int8.py
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from wxy_hw.hardware import ChipConfig, chip_report
from wxy_hw.models import attach_exits
from wxy_hw.studies.spine import cached_checkpoint, open_checkpoint


class WorkedExample(nn.Module):  # examples/any_model.py's CNN
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.conv3, self.fc = nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv3(F.relu(self.conv2(torch.relu(self.conv1(x)))))).mean((2, 3)))


def main() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    worked = (attach_exits(WorkedExample(), ["conv1", "conv2"], 4, input_shape=(1, 12, 12)),
              [torch.randn(64, 1, 12, 12, generator=g)])  # built first: its random weights depend on nothing else
    default = open_checkpoint(cached_checkpoint("self_distillation", progress=False), torch_device="cpu")
    networks = {"worked example": worked, "default ResNet-18": (default.model.eval(), default.calibration(seed=0))}
    print("| network, exit | MMAC | reram energy | of which ADC | of which buffers + interconnect | int8 energy | "
          "reram / int8 | reram latency | int8 latency |\n|---|---|---|---|---|---|---|---|---|")
    for name, (net, calibration) in networks.items():
        # 8-bit weights on both (bit-sliced onto reram's 4-bit cells), so the two chips hold the same network
        analog = chip_report(net, ChipConfig(device="reram", weight_bits=8), calibration=calibration)["exits"]
        digital = chip_report(net, ChipConfig(device="digital_int8"), calibration=calibration)["exits"]
        for a, d in zip(analog, digital):
            print(f"| {name}, exit {a['exit']} | {a['macs'] / 1e6:.3g} | {a['energy_pJ'] / 1e3:.1f} nJ | "
                  f"{100 * a['adc_pJ'] / a['energy_pJ']:.0f} % | "
                  f"{100 * (a['buffer_pJ'] + a['interconnect_pJ']) / a['energy_pJ']:.0f} % | {d['energy_pJ'] / 1e3:.1f} nJ | "
                  f"{a['energy_pJ'] / d['energy_pJ']:.2f}× | {a['latency_ns'] / 1e3:.3g} µs | {d['latency_ns'] / 1e3:.3g} µs |")


if __name__ == "__main__":
    main()
