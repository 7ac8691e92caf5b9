"""compare_methods over seeds: per-seed runs, teachers per seed, intervals and the paired column."""
from __future__ import annotations

import csv

import pytest

from wxy_hw.studies.compare_methods import compare_methods

from helpers import script

BUDGET = dict(dataset="synthetic", arch="resnet8", width=0.125, epochs=1, batch_size=64, max_steps_per_epoch=2,
              torch_device="cpu", progress=False)


@pytest.mark.slow
def test_seeds_teachers_intervals_and_reuse(tmp_path):
    table = compare_methods(methods=["baseline", "at"], seeds=[0, 1], out=tmp_path, teacher_arch="resnet8",
                            teacher_width=0.25, **BUDGET)
    for run in ("baseline/s0", "baseline/s1", "at/s0", "at/s1", "teacher/s0", "teacher/s1"):
        assert (tmp_path / run / "results.json").exists(), run
    lines = table.splitlines()
    assert "seeds 0, 1" in lines[0] and "final − baseline (p)" in lines[1]
    at_row = next(line for line in lines if line.startswith("| at "))
    assert at_row.count("±") == 2 and "(" in at_row  # final exit ± CI, and the paired difference ± CI (p)
    assert "Ensemble" in lines[1] and "Final" in lines[1]  # single-exit methods only: one accuracy column
    rows = list(csv.DictReader((tmp_path / "comparison.csv").open()))
    assert sorted((r["method"], r["seed"]) for r in rows) == [("at", "0"), ("at", "1"), ("baseline", "0"),
                                                              ("baseline", "1")]
    stamp = (tmp_path / "at" / "s1" / "results.json").stat().st_mtime_ns
    compare_methods(methods=["baseline", "at"], seeds=[0, 1], out=tmp_path, teacher_arch="resnet8",
                    teacher_width=0.25, **BUDGET)
    assert (tmp_path / "at" / "s1" / "results.json").stat().st_mtime_ns == stamp  # finished runs are reused


def test_teacher_needed_and_duplicate_seeds_are_one_line(tmp_path):
    with pytest.raises(ValueError, match="need a teacher"):
        compare_methods(methods=["baseline", "kd"], seeds=[0], out=tmp_path, **BUDGET)
    with pytest.raises(ValueError, match="lists a seed twice"):
        compare_methods(methods=["baseline"], seeds=[0, 0], out=tmp_path, **BUDGET)
    assert not any(tmp_path.iterdir())  # refused before any work


def test_hardware_aware_methods_fine_tune_from_their_digital_models_of_the_same_seed(tmp_path, capsys):
    """--init-from DIR: hwa starts from DIR/baseline/s<seed>, self_distillation+hwa from DIR/self_distillation;
    an option scoped to one method (METHOD.key) reaches that method only; a missing start is one line."""
    import json

    from wxy_hw.studies.compare_methods import compare_methods_run

    tiny = dict(dataset="synthetic", arch="resnet8", width=0.125, epochs=1, subset=64, batch_size=32,
                max_steps_per_epoch=2, torch_device="cpu")
    compare_methods_run(methods=["baseline", "self_distillation"], seeds=[0], out=tmp_path / "digital",
                        progress=False, retrain=True, **tiny)
    options = {"device": "reram", "self_distillation+hwa.noise_scale": 0.5}
    compare_methods_run(methods=["hwa", "self_distillation+hwa"], seeds=[0], out=tmp_path / "hwa", progress=False,
                        init_from=str(tmp_path / "digital"), method_options=options, **{**tiny, "lr": 0.01})
    for method, start, noise in (("hwa", "baseline", 1.0), ("self_distillation+hwa", "self_distillation", 0.5)):
        manifest = json.loads((tmp_path / "hwa" / method / "s0" / "manifest.json").read_text())
        config = (tmp_path / "hwa" / method / "s0" / "config.toml").read_text()
        assert f'init = "{tmp_path / "digital" / start / "s0" / "best.pt"}"' in config, method
        used = manifest["config"]["method_options"]
        used = used.get("hwa", used)  # a composition records each part's options
        assert (used["noise_scale"], used["device"]) == (noise, "reram"), method
    assert "self_distillation+hwa.noise_scale" in (tmp_path / "hwa" / "config.toml").read_text()
    # a start trained again since (other bytes at the same path): the fine-tune from it is trained again, the other
    # reused; the run records the new start's sha256
    import torch

    from wxy_hw.utils import atomic_torch_save, file_sha256

    start = tmp_path / "digital" / "baseline" / "s0" / "best.pt"
    payload = torch.load(start, weights_only=False)
    name, weights = next((k, v) for k, v in payload["model_state"].items() if v.is_floating_point())
    payload["model_state"][name] = weights + 0.01
    atomic_torch_save(payload, start)
    stamps = {m: (tmp_path / "hwa" / m / "s0" / "best.pt").stat().st_mtime_ns for m in ("hwa", "self_distillation+hwa")}
    compare_methods_run(methods=["hwa", "self_distillation+hwa"], seeds=[0], out=tmp_path / "hwa", progress=False,
                        init_from=str(tmp_path / "digital"), method_options=options, **{**tiny, "lr": 0.01})
    assert (tmp_path / "hwa" / "hwa" / "s0" / "best.pt").stat().st_mtime_ns != stamps["hwa"]
    assert (tmp_path / "hwa" / "self_distillation+hwa" / "s0" / "best.pt").stat().st_mtime_ns == \
        stamps["self_distillation+hwa"]
    manifest = json.loads((tmp_path / "hwa" / "hwa" / "s0" / "manifest.json").read_text())
    assert manifest["init"]["sha256"] == file_sha256(start) and manifest["status"] == "complete"
    # the same for a fine-tune left unfinished: begun from other bytes, it is started again, not resumed
    (tmp_path / "hwa" / "hwa" / "s0" / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    payload["model_state"][name] = weights - 0.01
    atomic_torch_save(payload, start)
    compare_methods_run(methods=["hwa"], seeds=[0], out=tmp_path / "hwa", progress=False,
                        init_from=str(tmp_path / "digital"), method_options={"device": "reram"}, **{**tiny, "lr": 0.01})
    manifest = json.loads((tmp_path / "hwa" / "hwa" / "s0" / "manifest.json").read_text())
    assert manifest["init"]["sha256"] == file_sha256(start) and manifest["status"] == "complete"
    assert "resumed_from" not in manifest and not manifest["config"]["resumed"]
    assert manifest["torch_threads"] == torch.get_num_threads()  # what bit-reproducibility on a CPU depends on
    main = script("experiments/compare_methods.py").main
    for argv, problem in ((["--methods", "hwa", "--init-from", str(tmp_path / "none")], "no "),
                          (["--methods", "hwa", "--method-arg", "scan.alpha=1"], "scan is not one of --methods")):
        assert main([*argv, "--dataset", "synthetic", "--out", str(tmp_path / "x"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert problem in err and err.count("\n") == 1


def test_a_run_that_diverges_advises_a_new_comparison_at_a_lower_lr(tmp_path):
    """A comparison's runs share one learning rate: the advice is a new --out at a lower --lr, not the same command
    (whose finished runs would be refused as trained at another lr)."""
    from wxy_hw.train import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match=r"baseline in .*s0: loss became nan.*lower --lr and a new --out"):
        compare_methods(methods=["baseline"], seeds=[0], out=tmp_path, **{**BUDGET, "lr": 1e12})
