"""Training-speed and memory benchmarks, reported as ratios measured in the same run.

    python benchmarks/run.py                 # default: ResNet-18 width 0.25, batch 128, 28-px grey
    python benchmarks/run.py --width 0.5 --steps 30

1. Time per training step (forward + loss + backward + SGD step) of baseline, self_distillation
   and kd (with a frozen teacher of twice the width), interleaved round-robin so drifting machine
   load hits all methods alike; medians and ratios against the baseline measured in the same run.
   Targets: self_distillation ≤ 1.3× baseline, and faster than kd.
2. Peak resident memory of a default Fashion-MNIST training run (experiments/train.py in a child
   process, capped at a few steps); target ≤ 2 GiB.
Results are printed and written to runs/bench/<timestamp>.json.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wxy_hw.methods import Batch, build_method  # noqa: E402
from wxy_hw.models import build_model  # noqa: E402
from wxy_hw.results import format_table, package_versions  # noqa: E402


def step_fn(method_name: str, arch: str, width: float, teacher_width: float):
    """A closure running one training step of a method on a fixed batch."""
    torch.manual_seed(0)
    kwargs = {}
    if method_name == "kd":
        kwargs["teacher"] = build_model(arch, 10, 1, teacher_width, 28, multi_exit=False)
    method = build_method(method_name, **kwargs)
    model = build_model(arch, 10, 1, width, 28, multi_exit=method.multi_exit)
    opt = torch.optim.SGD([p for p in list(model.parameters()) + list(method.parameters()) if p.requires_grad],
                          lr=0.01, momentum=0.9)
    return model, method, opt


def time_steps(args) -> dict:
    x = torch.randn(args.batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch_size,))
    names = ["baseline", "self_distillation", "kd"]
    setups = {n: step_fn(n, args.arch, args.width, args.teacher_width) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}

    def one(name: str) -> float:
        model, method, opt = setups[name]
        t0 = time.perf_counter()
        out = model(x)
        loss = sum(method(out, Batch(x, y)).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    for _ in range(args.warmup):
        for n in names:
            one(n)
    for _ in range(args.steps):
        for n in names:
            times[n].append(one(n))
    med = {n: statistics.median(v) * 1000 for n, v in times.items()}
    return {"ms_per_step": med,
            "ratio_vs_baseline": {n: med[n] / med["baseline"] for n in names},
            "self_distillation_vs_kd": med["self_distillation"] / med["kd"]}


def peak_memory(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(ROOT / "experiments" / "train.py"), "--dataset", "fashion_mnist",
               "--epochs", "1", "--max-steps", str(args.mem_steps), "--quiet", "--out", str(Path(tmp) / "run")]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"command": " ".join(cmd[1:]), "peak_rss_mib": peak_kib / 1024, "wall_s": time.time() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--teacher-width", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--mem-steps", type=int, default=30)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()

    speed = time_steps(args)
    rows = [{"method": n, "ms/step": speed["ms_per_step"][n], "× baseline": speed["ratio_vs_baseline"][n]}
            for n in speed["ms_per_step"]]
    print(format_table(rows, ["method", "ms/step", "× baseline"],
                       title=f"Training step, {args.arch} width {args.width:g}, batch {args.batch_size}, "
                             f"{torch.get_num_threads()} threads (kd teacher width {args.teacher_width:g})"))
    sd = speed["ratio_vs_baseline"]["self_distillation"]
    print(f"self_distillation / baseline = {sd:.2f} (target ≤ 1.3: {'met' if sd <= 1.3 else 'NOT met'}); "
          f"self_distillation / kd = {speed['self_distillation_vs_kd']:.2f} "
          f"(target < 1: {'met' if speed['self_distillation_vs_kd'] < 1 else 'NOT met'})")
    report = {"config": vars(args), "speed": speed, "versions": package_versions(),
              "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if not args.skip_memory:
        mem = peak_memory(args)
        report["memory"] = mem
        if "peak_rss_mib" in mem:
            print(f"peak RSS of a default Fashion-MNIST training run: {mem['peak_rss_mib']:.0f} MiB "
                  f"(target ≤ 2048 MiB: {'met' if mem['peak_rss_mib'] <= 2048 else 'NOT met'})")
        else:
            print(f"memory benchmark failed: {mem['error']}")
    out = ROOT / "runs" / "bench" / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
