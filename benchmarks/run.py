"""Training-speed and memory benchmarks, reported as ratios measured in the same run.

    python benchmarks/run.py                 # default: ResNet-18 width 0.25, batch 128, 28-px grey
    python benchmarks/run.py --width 0.5 --steps 30

1. Time per training step (forward + loss + backward + SGD step) of baseline, self_distillation
   and kd (with a frozen teacher of twice the width), interleaved round-robin so drifting machine
   load hits all methods alike; medians and ratios against the baseline measured in the same run.
   Targets: self_distillation ≤ 1.3× baseline, and faster than kd.
2. Peak resident memory of a default Fashion-MNIST training run (experiments/train.py in a child
   process, capped at a few steps); target ≤ 2 GiB.
3. Noise engine: per chip (deploy one chip instance + forward the same images), the native engine
   and aihwkit's InferenceRPUConfig against the clean digital forward, interleaved. Targets:
   native ≤ 1.5× the clean forward; native ≥ 5× faster than aihwkit.
4. Peak resident memory of the default noise sweep (experiments/noise_sweep.py --device reram on
   the cached default checkpoints, in a child process); target ≤ 2 GiB.
5. Early exit: wall-clock speedup of real early exit (thresholds searched on validation) over
   the full network (backbone + deepest head), against the MAC-ratio speedup, batch 256, on the
   cached default self_distillation model and, interleaved in the same run, on the variant cut for
   CPU early exit (wxy_hw.studies.EARLY_EXIT_VARIANT: stem stride 2, width 0.5, exits after stages
   2-4; trained and cached on first use, ~1 min), both paths on the BN-folded NHWC inference copy
   (wxy_hw.inference.inference_copy; --ee-layout plain for the model as trained), plus the time of
   each stage on one batch. Target: ≥ 0.8 of the MAC ratio.
6. Robust training: time per training step of augment, ada, auxiliary and adv — the full step
   the Trainer runs (building the corrupted / adversarial views, forward, loss, backward, SGD) —
   against baseline, interleaved. augment and ada see twice the images, so ≈ 2× baseline is the
   floor; targets: ada ≤ 1.15× augment (the relation loss is cheap), auxiliary ≤ 1.3× augment
   (selective BN splits the batch into one forward per input type).
7. Batched chips: time per chip of evaluate_chips (deploy + evaluate, K chips in one pass, K chunked
   by the 2 GiB memory budget) for K = 1, 4, 16, 64, and of the one-at-a-time path (deploy + evaluate
   per chip), against one clean evaluation of the same images, interleaved, reram, ResNet-18 w0.25.
   Target: at K = 16, ≤ 1.15× the clean evaluation.
8. Ray: the reram noise sweep (experiments/noise_sweep.py on the cached default checkpoints) with
   --workers 2 against --workers 1 (no Ray), each in a child process; wall-clock ratio and whether
   the CSVs are identical. Target ≥ 1.7× with identical CSVs. --sweep-args narrows the sweep.
Results are printed and written to runs/bench/<timestamp>.json.
"""
from __future__ import annotations

import argparse
import json
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


def step_fn(label: str, arch: str, width: float, teacher_width: float, device: str = "cpu"):
    """Model, method and optimizer for one training step of a method (label "name (heads)" picks heads)."""
    torch.manual_seed(0)
    method_name, _, heads = label.partition(" (")
    heads = heads.split(" ")[0] if heads else "byot"
    kwargs = {}
    if method_name == "kd":
        kwargs["teacher"] = build_model(arch, 10, 1, teacher_width, 28, multi_exit=False).to(device)
    method = build_method(method_name, **kwargs)
    # the Trainer's default layout (channels_last), so the timing is what training costs
    model = build_model(arch, 10, 1, width, 28, heads=heads,
                        multi_exit=method.multi_exit).to(device, memory_format=torch.channels_last)
    method.to(device)
    opt = torch.optim.SGD([p for p in list(model.parameters()) + list(method.parameters()) if p.requires_grad],
                          lr=0.01, momentum=0.9)
    return model, method, opt


def now(device: torch.device | str = "cpu") -> float:
    """perf_counter after the device's queued work is done (CUDA kernels run asynchronously)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def interleaved_median_ms(names: list[str], one, warmup: int, steps: int) -> dict[str, float]:
    """Median ms of ``one(name)`` per name, names run round-robin so machine drift hits all alike."""
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(warmup):
        for n in names:
            one(n)
    for _ in range(steps):
        for n in names:
            times[n].append(one(n))
    return {n: statistics.median(v) * 1000 for n, v in times.items()}


def time_steps(args) -> dict:
    dev = args.torch_device
    x = torch.randn(args.batch_size, 1, 28, 28).to(dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,)).to(dev)
    names = ["baseline", "self_distillation", "self_distillation (byot_light heads)", "kd"]
    setups = {n: step_fn(n, args.arch, args.width, args.teacher_width, dev) for n in names}

    def one(name: str) -> float:
        model, method, opt = setups[name]
        t0 = now(dev)
        out = model(x)
        loss = sum(method(out, Batch(x, y)).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return now(dev) - t0

    med = interleaved_median_ms(names, one, args.warmup, args.steps)
    return {"ms_per_step": med,
            "ratio_vs_baseline": {n: med[n] / med["baseline"] for n in names},
            "self_distillation_vs_kd": med["self_distillation"] / med["kd"]}


def time_robust_steps(args) -> dict:
    """Median ms per full training step (views + forward + loss + backward + SGD), interleaved."""
    torch.manual_seed(0)
    dev = args.torch_device
    x = torch.randn(args.batch_size, 1, 28, 28).clamp(-0.4, 2.0).to(dev)
    y = torch.randint(0, 10, (args.batch_size,)).to(dev)
    names = ["baseline", "augment", "ada", "auxiliary", "adv"]
    setups = {}
    for n in names:
        method = build_method(n)
        method.bind_data((0.286,), (0.353,))
        model = method.prepare_model(build_model(args.arch, 10, 1, args.width, 28, multi_exit=False))
        model = model.to(dev, memory_format=torch.channels_last).train()
        method.to(dev)
        opt = torch.optim.SGD(list(model.parameters()) + list(method.parameters()), lr=0.01, momentum=0.9)
        setups[n] = (model, method, opt)

    def one(name: str) -> float:
        model, method, opt = setups[name]
        t0 = now(dev)
        batch = method.prepare_batch(Batch(x, y), model)
        batch.x = batch.x.contiguous(memory_format=torch.channels_last)
        loss = sum(method(method.model_forward(model, batch.x, batch), batch).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return now(dev) - t0

    med = interleaved_median_ms(names, one, args.warmup, max(args.steps // 2, 5))
    return {"ms_per_step": med, "ratio_vs_baseline": {n: med[n] / med["baseline"] for n in names},
            "ada_vs_augment": med["ada"] / med["augment"], "auxiliary_vs_augment": med["auxiliary"] / med["augment"]}


_WRAPPER = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "sys.stderr.write(p.stderr[-2000:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if p.returncode == 0 else -1)")


def child_peak_rss_mib(cmd: list[str]) -> tuple[float | None, str]:
    """Peak RSS (MiB) of one command, measured in its own wrapper process so runs do not mix."""
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True, cwd=ROOT)
    value = int(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else -1
    return (value / 1024 if value >= 0 else None), proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""


def peak_memory(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(ROOT / "experiments" / "train.py"), "--dataset", "fashion_mnist",
               "--epochs", "1", "--max-steps", str(args.mem_steps), "--quiet", "--out", str(Path(tmp) / "run")]
        t0 = time.time()
        peak, err = child_peak_rss_mib(cmd)
    if peak is None:
        return {"error": err or "failed"}
    return {"command": " ".join(cmd[1:]), "peak_rss_mib": peak, "wall_s": time.time() - t0}


def time_engine(args) -> dict:
    from wxy_hw.hardware import deploy, load_device
    from wxy_hw.hardware.aihwkit_backend import deploy_aihwkit

    torch.manual_seed(0)
    model = build_model(args.arch, 10, 1, args.width, 28).eval()
    x = torch.randn(args.engine_images, 1, 28, 28)
    spec = load_device("reram")
    spec_ai = load_device("reram", {"mapping.levels": 0})  # aihwkit has no conductance levels
    steps = {
        "clean forward": lambda seed: model(x),
        "native deploy+forward": lambda seed: deploy(model, spec, seed)(x),
        "native forward only": None,
        "aihwkit deploy+forward": lambda seed: deploy_aihwkit(model, spec_ai, seed)(x),
    }
    chip = deploy(model, spec, 0)
    steps["native forward only"] = lambda seed: chip(x)
    times: dict[str, list[float]] = {k: [] for k in steps}
    with torch.no_grad():
        for rep in range(args.engine_reps + 1):
            for name, fn in steps.items():
                t0 = time.perf_counter()
                fn(rep)
                if rep:  # the first round warms up
                    times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    return {"ms": med, "native_vs_clean": med["native deploy+forward"] / med["clean forward"],
            "native_forward_vs_clean": med["native forward only"] / med["clean forward"],
            "aihwkit_vs_native": med["aihwkit deploy+forward"] / med["native deploy+forward"],
            "images": args.engine_images}


def sweep_memory(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(ROOT / "experiments" / "noise_sweep.py"), "--device", "reram", "--quiet",
               "--out", str(Path(tmp) / "sweep")]
        t0 = time.time()
        peak, err = child_peak_rss_mib(cmd)
    if peak is None:
        return {"error": err or "failed"}
    return {"command": " ".join(cmd[1:]), "peak_rss_mib": peak, "wall_s": time.time() - t0}


def _early_exit_case(path, args, data, dev) -> dict:
    """One multi-exit checkpoint made ready for the early-exit benchmark: model, thresholds, test batches."""
    from wxy_hw.checkpoint import load_model, read_checkpoint
    from wxy_hw.data import BatchLoader
    from wxy_hw.inference import exit_table, inference_copy, search_thresholds
    from wxy_hw.models import exit_costs, exit_path_macs

    info = read_checkpoint(path)["data"]
    model = load_model(path).eval().to(dev)
    if args.ee_exits:  # a variant: only these exits (1-based, the deepest included), the others' heads removed
        keep = [e - 1 for e in args.ee_exits]
        if keep[-1] != len(model.heads) - 1:
            raise SystemExit("--ee-exits must include the deepest exit")
        model.heads = torch.nn.ModuleList([model.heads[e] for e in keep])
        model.exit_stages = tuple(model.exit_stages[e] for e in keep)
    norm = dict(mean=tuple(info["mean"]), std=tuple(info["std"]))
    val = [(x.to(dev), y.to(dev)) for x, y in BatchLoader(data.val, 256, **norm)]
    test = [(x.to(dev), y.to(dev)) for x, y in BatchLoader(data.test, 256, **norm)]
    pm, full = exit_path_macs(model), exit_costs(model)[-1].macs
    thresholds = search_thresholds(exit_table(model, val, pm, full))["thresholds"]
    if args.ee_layout == "fused":  # BN folded + NHWC, for both paths: the same function, less memory traffic
        model = inference_copy(model)
        test = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in test]
    return dict(path=path, model=model, test=[x for x, _ in test], pm=pm, full=full, thresholds=thresholds,
                t_dyn=[], t_full=[], macs=[])


def _early_exit_pass(case: dict, rep: int, dev) -> None:
    """Time early exit and the full network on every test batch once (interleaved per batch)."""
    from wxy_hw.inference import early_exit_inference

    model, last = case["model"], len(case["model"].heads) - 1
    td = tf = 0.0
    for x in case["test"]:
        t0 = now(dev)
        r = early_exit_inference(model, x, case["thresholds"], path_macs=case["pm"])
        td += now(dev) - t0
        t0 = now(dev)
        model.forward_exit(x, last)
        tf += now(dev) - t0
        if rep == 0:
            case["macs"].append(r.macs)
    if rep:
        case["t_dyn"].append(td)
        case["t_full"].append(tf)


def _early_exit_report(case: dict, args, dev) -> dict:
    model = case["model"]
    mac_ratio = case["full"] / torch.cat(case["macs"]).float().mean().item()
    wall = statistics.median(case["t_full"]) / statistics.median(case["t_dyn"])
    # where the time goes: ms per part on one batch (at full resolution with few channels a convolution
    # is the least efficient per MAC, and early exit runs the stages before the first exit on every sample)
    parts, h = {}, case["test"][0]
    with torch.no_grad():
        for name, mod in [("stem", model.stem)] + [(f"stage {i + 1}", s) for i, s in enumerate(model.stages)]:
            t0 = now(dev)
            for _ in range(3):
                out = mod(h)
            parts[name] = (now(dev) - t0) / 3 * 1000
            h = out
            for e, stage in enumerate(model.exit_stages[:-1]):  # the shallow heads on their stage's output
                if name == f"stage {stage + 1}":
                    t0 = now(dev)
                    for _ in range(3):
                        model.heads[e](h)
                    parts[f"head {e + 1}"] = (now(dev) - t0) / 3 * 1000
    return {"thresholds": case["thresholds"], "mac_speedup": mac_ratio, "wall_speedup": wall,
            "fraction_of_mac_speedup": wall / mac_ratio, "full_ms_per_batch": statistics.median(case["t_full"])
            / len(case["test"]) * 1000, "full_mmacs": case["full"] / 1e6, "batch": 256, "layout": args.ee_layout,
            "checkpoint": str(case["path"]), "torch_device": str(dev), "exits": args.ee_exits, "ms_per_part": parts}


def time_early_exit(args) -> dict[str, dict]:
    """Early exit on the default self_distillation model and on EARLY_EXIT_VARIANT, interleaved in one run
    (or on --ee-checkpoint alone); each model trained and cached on first use."""
    from wxy_hw.data import load_dataset
    from wxy_hw.studies import EARLY_EXIT_VARIANT, cached_checkpoint

    dev = args.torch_device
    if args.ee_checkpoint:
        paths = {"checkpoint": args.ee_checkpoint}
    else:
        paths = {"default": cached_checkpoint("self_distillation", progress=False),
                 "variant": cached_checkpoint("self_distillation", progress=False, **EARLY_EXIT_VARIANT)}
    data = load_dataset("fashion_mnist")
    cases = {name: _early_exit_case(path, args, data, dev) for name, path in paths.items()}
    with torch.no_grad():
        for rep in range(args.engine_reps + 1):
            for case in cases.values():
                _early_exit_pass(case, rep, dev)
    return {name: _early_exit_report(case, args, dev) for name, case in cases.items()}


def time_chips(args) -> dict:
    """Median seconds per chip of evaluate_chips at each K (and one at a time) vs one clean evaluation."""
    from wxy_hw.models.evaluation import evaluate
    from wxy_hw.hardware import deploy, evaluate_chips, load_device

    torch.manual_seed(0)
    dev = args.torch_device
    model = build_model(args.arch, 10, 1, args.width, 28).eval().to(dev)
    data = [(torch.randn(args.engine_images, 1, 28, 28).to(dev), torch.randint(0, 10, (args.engine_images,)).to(dev))]
    spec = load_device("reram")
    ks = [int(k) for k in args.chip_ks]
    steps = {"clean evaluate": (lambda: evaluate(model, data), 1),
             "one at a time (4 chips)": (lambda: [evaluate(deploy(model, spec, s), data) for s in range(4)], 4)}
    for k in ks:
        steps[f"batched K={k}"] = ((lambda k=k: evaluate_chips(model, spec, data, range(k))), k)
    import wxy_hw.hardware.batched as batched
    from wxy_hw.hardware.batched import deploy_chips

    def stacked(grouped: bool) -> None:
        batched.GROUPED_OPS = grouped
        try:
            evaluate_chips(model, spec, data, range(16), layout="stacked")
        finally:
            batched.GROUPED_OPS = True
    steps["K=16 programming only"] = (lambda: deploy_chips(model, spec, range(16)), 16)
    steps["K=16 stacked, grouped ops"] = (lambda: stacked(True), 16)
    steps["K=16 stacked, one op per chip"] = (lambda: stacked(False), 16)
    times: dict[str, list[float]] = {n: [] for n in steps}
    with torch.no_grad():
        for rep in range(args.chip_reps + 1):
            for name, (fn, chips) in steps.items():
                t0 = now(dev)
                fn()
                if rep:  # the first round warms up
                    times[name].append((now(dev) - t0) / chips)
    per_chip = {n: statistics.median(v) * 1000 for n, v in times.items()}
    clean = per_chip["clean evaluate"]
    # the two layouts compute the same chips: the largest logit difference on 4 chips
    x = data[0][0][:256]
    with torch.no_grad():
        stacked, loop = (deploy_chips(model, spec, range(4), layout=lay)(x) for lay in ("stacked", "loop"))
    gap = max((a.logits[-1] - b.logits[-1]).abs().max().item() for a, b in zip(stacked, loop))
    return {"ms_per_chip": per_chip, "ratio_vs_clean": {n: v / clean for n, v in per_chip.items()},
            "images": args.engine_images, "torch_device": str(dev), "stacked_vs_loop_max_abs_logit": gap}


def time_ray_sweep(args) -> dict:
    """Wall time of the reram sweep with --workers 1 and 2 (child processes), and CSV equality."""
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for w in (1, 2):
            cmd = [sys.executable, str(ROOT / "experiments" / "noise_sweep.py"), "--device", "reram", "--quiet",
                   "--no-flat", "--out", str(Path(tmp) / f"w{w}"), "--workers", str(w), *args.sweep_args.split()]
            t0 = time.time()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode:
                return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
            out[f"workers {w} s"] = time.time() - t0
        same = all((Path(tmp) / "w1" / n).read_text() == (Path(tmp) / "w2" / n).read_text()
                   for n in ("sweep.csv", "summary_scale.csv", "summary_time.csv"))
    out.update(speedup=out["workers 1 s"] / out["workers 2 s"], identical_csvs=same, sweep_args=args.sweep_args)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--teacher-width", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--mem-steps", type=int, default=30)
    parser.add_argument("--engine-images", type=int, default=500)
    parser.add_argument("--engine-reps", type=int, default=5)
    parser.add_argument("--ee-layout", choices=["fused", "plain"], default="fused",
                        help="early exit on the BN-folded NHWC inference copy (default) or the model as trained")
    parser.add_argument("--torch-device", default="cpu",
                        help="torch device for benchmarks 1, 5, 6 and 7 (e.g. cuda); CPU numbers are the reference")
    parser.add_argument("--ee-checkpoint", default=None,
                        help="early exit on this multi-exit checkpoint alone instead of the cached default "
                             "self_distillation model and EARLY_EXIT_VARIANT (e.g. one trained with --heads byot_light)")
    parser.add_argument("--ee-exits", nargs="+", type=int, default=None,
                        help="early exit through these exits only (1-based, e.g. 2 3 4: no exit after stage 1)")
    parser.add_argument("--chip-ks", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument("--chip-reps", type=int, default=2)
    parser.add_argument("--sweep-args", default="", help="extra noise_sweep.py flags for benchmark 8 "
                        "(e.g. '--chips 3 --samples 500')")
    parser.add_argument("--only", nargs="+",
                        default=["training", "memory", "engine", "sweep-memory", "early-exit", "robust", "chips", "ray"],
                        choices=["training", "memory", "engine", "sweep-memory", "early-exit", "robust", "chips",
                                 "ray"])
    args = parser.parse_args()
    report: dict = {"config": vars(args), "versions": package_versions(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "threads": torch.get_num_threads(), "torch_device": args.torch_device}
    if torch.device(args.torch_device).type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(args.torch_device)
        print(f"torch device: {args.torch_device} ({report['gpu']})")
    if "sweep-memory" in args.only:
        mem = sweep_memory(args)
        report["sweep_memory"] = mem
        if "peak_rss_mib" in mem:
            print(f"peak RSS of the default noise sweep: {mem['peak_rss_mib']:.0f} MiB in {mem['wall_s']:.0f} s "
                  f"(target ≤ 2048 MiB: {'met' if mem['peak_rss_mib'] <= 2048 else 'NOT met'})")
        else:
            print(f"sweep memory benchmark failed: {mem['error']}")
    if "engine" in args.only:
        eng = time_engine(args)
        report["engine"] = eng
        print(format_table([{"path": k, "ms": v} for k, v in eng["ms"].items()], ["path", "ms"],
                           title=f"Noise engine on reram, {args.arch} width {args.width:g}, {args.engine_images} images "
                                 "(median per chip)"))
        print(f"native / clean = {eng['native_vs_clean']:.2f} (target ≤ 1.5: "
              f"{'met' if eng['native_vs_clean'] <= 1.5 else 'NOT met'}); forward only: "
              f"{eng['native_forward_vs_clean']:.2f}; aihwkit / native = {eng['aihwkit_vs_native']:.1f} "
              f"(target ≥ 5: {'met' if eng['aihwkit_vs_native'] >= 5 else 'NOT met'})")
    if "chips" in args.only:
        ch = time_chips(args)
        report["chips"] = ch
        print(format_table([{"path": n, "ms/chip": v, "× clean": ch["ratio_vs_clean"][n]}
                            for n, v in ch["ms_per_chip"].items()], ["path", "ms/chip", "× clean"],
                           title=f"Chips on reram, {args.arch} width {args.width:g}, {args.engine_images} images "
                                 "(deploy + evaluate, median per chip)"))
        r16 = ch["ratio_vs_clean"].get("batched K=16")
        if r16 is not None:
            print(f"batched K=16 / clean = {r16:.2f} (target ≤ 1.15: {'met' if r16 <= 1.15 else 'NOT met'})")
        print(f"stacked vs loop layout, 4 chips: largest logit difference {ch['stacked_vs_loop_max_abs_logit']:.2e}")
    if "ray" in args.only:
        ray = time_ray_sweep(args)
        report["ray_sweep"] = ray
        if "error" in ray:
            print(f"Ray sweep benchmark failed: {ray['error']}")
        else:
            print(f"reram sweep ({ray['sweep_args'] or 'defaults'}, no flat-minima): workers 1 {ray['workers 1 s']:.0f} s, "
                  f"workers 2 {ray['workers 2 s']:.0f} s = {ray['speedup']:.2f}x (target ≥ 1.7: "
                  f"{'met' if ray['speedup'] >= 1.7 else 'NOT met'}); identical CSVs: {ray['identical_csvs']}")
    if "early-exit" in args.only:
        ee = time_early_exit(args)
        report["early_exit"] = ee
        for name, r in ee.items():
            print(f"early exit, {name} ({r['checkpoint']}; batch 256, thresholds from validation): MAC speedup "
                  f"{r['mac_speedup']:.2f}x, wall-clock {r['wall_speedup']:.2f}x = {r['fraction_of_mac_speedup']:.2f} of "
                  f"the MAC ratio (target ≥ 0.8: {'met' if r['fraction_of_mac_speedup'] >= 0.8 else 'NOT met'}); "
                  f"full network {r['full_mmacs']:.1f} MMAC, {r['full_ms_per_batch']:.1f} ms per batch; "
                  f"{r['layout']} layout; ms per part on one batch: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in r["ms_per_part"].items()))
    if "training" in args.only:
        _training(args, report)
    if "robust" in args.only:
        rob = time_robust_steps(args)
        report["robust"] = rob
        print(format_table([{"method": n, "ms/step": v, "× baseline": rob["ratio_vs_baseline"][n]}
                            for n, v in rob["ms_per_step"].items()], ["method", "ms/step", "× baseline"],
                           title=f"Robust training step (views + forward + loss + backward), {args.arch} width "
                                 f"{args.width:g}, batch {args.batch_size}; adv = 5-step PGD"))
        print(f"ada / augment = {rob['ada_vs_augment']:.2f} (target ≤ 1.15: "
              f"{'met' if rob['ada_vs_augment'] <= 1.15 else 'NOT met'}); auxiliary / augment = "
              f"{rob['auxiliary_vs_augment']:.2f} (target ≤ 1.3: {'met' if rob['auxiliary_vs_augment'] <= 1.3 else 'NOT met'})")
    if "memory" in args.only:
        _memory(args, report)
    out = ROOT / "runs" / "bench" / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {out.relative_to(ROOT)}")


def _training(args, report: dict) -> None:
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
    report["speed"] = speed


def _memory(args, report: dict) -> None:
    mem = peak_memory(args)
    report["memory"] = mem
    if "peak_rss_mib" in mem:
        print(f"peak RSS of a default Fashion-MNIST training run: {mem['peak_rss_mib']:.0f} MiB "
              f"(target ≤ 2048 MiB: {'met' if mem['peak_rss_mib'] <= 2048 else 'NOT met'})")
    else:
        print(f"memory benchmark failed: {mem['error']}")


if __name__ == "__main__":
    main()
