"""The model zoo: a trained model put in the zoo is what a study gets (no training), checked by sha256; a changed
file is refused and retrained; --retrain skips the zoo; half precision reloads within rounding."""
from __future__ import annotations

import argparse
import json
import tomllib

import pytest
import torch

from wxy_hw.checkpoint import model_from_payload, read_checkpoint
from wxy_hw.run_dir import OutputDirError, claim_run_dir, release_run_dir
from wxy_hw.studies import zoo
from wxy_hw.studies.spine import cached_checkpoint, other_settings

from helpers import script, snapshot

TINY = dict(arch="resnet8", width=0.125, epochs=1, subset=64, batch_size=32, max_steps_per_epoch=2)


def test_a_zoo_model_is_used_instead_of_training(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "zoo"
    trained = cached_checkpoint("baseline", "synthetic", seed=0, cache_dir=tmp_path / "train", progress=False,
                                torch_device="cpu", **TINY)
    entry = zoo.add(trained.parent, trained.parent.parent.name, "baseline", 50.0, folder=folder)
    assert (folder / entry.file).is_file() and (folder / f"{entry.id}.metrics.csv").is_file()
    assert [m.id for m in zoo.read_index(folder)] == [entry.id]
    zoo.add(trained.parent, trained.parent.parent.name, "baseline", 51.0, folder=folder)  # replaced, not doubled
    assert [m.test_accuracy for m in zoo.read_index(folder)] == [51.0]
    monkeypatch.setenv("WXY_ZOO", str(folder))
    capsys.readouterr()
    got = cached_checkpoint("baseline", "synthetic", seed=0, cache_dir=tmp_path / "empty", progress=False,
                            torch_device="cpu", **TINY)
    assert got == folder / entry.file and not (tmp_path / "empty").exists()  # nothing trained
    assert "training" not in capsys.readouterr().out
    # half precision: the weights reload within fp16 rounding, as float32
    half = model_from_payload(read_checkpoint(got, data=True))
    full = model_from_payload(read_checkpoint(trained, data=True))
    assert next(half.parameters()).dtype == torch.float32
    for a, b in zip(half.state_dict().values(), full.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), rtol=2e-3, atol=1e-4)
    # --retrain skips the zoo
    again = cached_checkpoint("baseline", "synthetic", seed=0, cache_dir=tmp_path / "fresh", progress=False,
                              torch_device="cpu", retrain=True, **TINY)
    assert again.parent.parent.parent == tmp_path / "fresh"
    # a changed zoo file is never loaded: one line, then training
    data = bytearray((folder / entry.file).read_bytes())
    data[-20] ^= 1
    (folder / entry.file).write_bytes(bytes(data))
    capsys.readouterr()
    retrained = cached_checkpoint("baseline", "synthetic", seed=0, cache_dir=tmp_path / "other", progress=False,
                                  torch_device="cpu", **TINY)
    assert retrained.parent.parent.parent == tmp_path / "other"
    assert "does not match its sha256" in capsys.readouterr().out


def test_compare_methods_adopts_the_zoo_model_trained_with_its_settings(tmp_path, monkeypatch, capsys):
    """A comparison whose run has exactly a zoo model's settings evaluates that model (no training) into a finished
    run that says where it came from; other settings, or --retrain, train."""
    from wxy_hw.studies.compare_methods import compare_methods_run
    import json

    read_json = lambda path: json.loads(path.read_text())  # noqa: E731

    folder = tmp_path / "zoo"
    trained = cached_checkpoint("baseline", "synthetic", seed=0, cache_dir=tmp_path / "train", progress=False,
                                torch_device="cpu", **TINY)
    entry = zoo.add(trained.parent, trained.parent.parent.name, "baseline", 50.0, folder=folder)
    monkeypatch.setenv("WXY_ZOO", str(folder))
    same = dict(methods=["baseline"], seeds=[0], dataset="synthetic", stem_stride=2, torch_device="cpu", **TINY)
    capsys.readouterr()
    compare_methods_run(out=tmp_path / "cmp", progress=True, **same)
    assert "evaluated, not retrained" in capsys.readouterr().out
    run = tmp_path / "cmp" / "baseline" / "s0"
    results = read_json(run / "results.json")
    # where it came from, and its training time (what reproduce --plan counts for a model not trained here)
    assert results["adopted_from"] == {"zoo": entry.id, "sha256": entry.sha256, "train_seconds": entry.train_seconds}
    assert entry.train_seconds > 0
    assert read_json(run / "manifest.json")["status"] == "complete" and not (run / "last.pt").exists()
    original = read_json(trained.parent / "results.json")["test"]["exits"]
    assert results["test"]["exits"] == pytest.approx(original, abs=5.0)  # fp16 weights: a few images may flip
    assert (run / "best.pt").read_bytes() == (folder / entry.file).read_bytes()
    for other, settings in (("epochs", {**same, "epochs": 2}), ("retrain", {**same, "retrain": True})):
        compare_methods_run(out=tmp_path / other, progress=False, **settings)
        assert "adopted_from" not in read_json(tmp_path / other / "baseline" / "s0" / "results.json")
        assert (tmp_path / other / "baseline" / "s0" / "last.pt").exists()  # trained here


def test_zoo_match_compares_every_training_setting(tmp_path):
    folder = tmp_path / "zoo"
    folder.mkdir()
    (folder / "m.pt").write_bytes(b"weights")
    (folder / "m.config.toml").write_text('method = "baseline"\nmethod_options = {}\narch = "resnet8"\nwidth = 0.5\n'
                                          'epochs = 3\nseed = 1\ntorch_device = "cpu"\n')
    zoo._write_index([zoo.ZooModel("m", "k", "baseline", zoo.file_sha256(folder / "m.pt"), 1.0, 1.0)], folder)
    asked = dict(method="baseline", method_options={}, arch="resnet8", width=0.5, epochs=3, seed=1, heads=None,
                 torch_device="cuda", data_dir="/elsewhere")  # where it runs does not matter
    assert zoo.match(asked, folder)[1] == folder / "m.pt"
    for key, value in (("seed", 2), ("width", 0.25), ("heads", "linear"), ("method_options", {"device": "pcm"})):
        assert zoo.match({**asked, key: value}, folder) is None, key
    # a fine-tune: its starting checkpoint (recorded as the checkout named it) is compared by content
    (folder / "start.pt").write_bytes(b"digital")
    (tmp_path / "copy.pt").write_bytes(b"digital")
    (tmp_path / "other.pt").write_bytes(b"another")
    (folder / "m.config.toml").write_text((folder / "m.config.toml").read_text() + 'init = "zoo/start.pt"\n')
    assert zoo.match(asked, folder) is None  # asked from scratch
    assert zoo.match({**asked, "init": str(tmp_path / "copy.pt")}, folder)[1] == folder / "m.pt"
    assert zoo.match({**asked, "init": str(tmp_path / "other.pt")}, folder) is None
    (folder / "m.pt").write_bytes(b"changed")
    assert zoo.match({**asked, "init": str(tmp_path / "copy.pt")}, folder) is None  # a changed file is never adopted
    # a teacher: compared by content for a method that learns from one, and ignored for one that does not
    same = lambda recorded, asked_: zoo.same_model(recorded, asked_, lambda k, a, b: a == b)  # noqa: E731
    base = dict(method="baseline", arch="resnet8", seed=1)
    assert same({**base, "teacher": "t.pt"}, base) and same(base, {**base, "teacher": "t.pt"})
    kd = {**base, "method": "kd"}
    assert not same({**kd, "teacher": "t.pt"}, kd) and not same({**kd, "teacher": "t.pt"}, {**kd, "teacher": "u.pt"})
    assert same({**kd, "teacher": "t.pt"}, {**kd, "teacher": "t.pt"})


def test_a_zoo_model_trained_before_its_methods_default_changed_is_not_adopted(tmp_path):
    """A zoo checkpoint records its method's options: one that took a default since changed (auxiliary_adv's
    merge_bn was False) is another model, unless that value is asked for."""
    from wxy_hw.checkpoint import save_checkpoint
    from wxy_hw.methods import build_method
    from wxy_hw.models import build_model

    folder = tmp_path / "zoo"
    folder.mkdir()
    (folder / "m.config.toml").write_text('method = "auxiliary_adv"\nmethod_options = {}\narch = "resnet8"\nseed = 0\n')
    asked = dict(method="auxiliary_adv", method_options={}, arch="resnet8", seed=0)
    model = build_model("resnet8", 10, 1, 0.125, 28, multi_exit=False)
    for merge_bn, found in ((True, True), (False, False)):
        options = {**build_method("auxiliary_adv").options(), "merge_bn": merge_bn}
        save_checkpoint(folder / "m.pt", model, method="auxiliary_adv", method_options=options)
        zoo._write_index([zoo.ZooModel("m", "k", "auxiliary_adv", zoo.file_sha256(folder / "m.pt"), 1.0, 1.0)], folder)
        assert (zoo.match(asked, folder) is not None) is found, merge_bn
    (folder / "m.config.toml").write_text('method = "auxiliary_adv"\nmethod_options = {merge_bn = false}\n'
                                          'arch = "resnet8"\nseed = 0\n')
    assert zoo.match({**asked, "method_options": {"merge_bn": False}}, folder) is not None  # asked for: that model
    assert "method_options" in zoo.KEPT_FIELDS  # what zoo.add keeps of a run's checkpoint


def _asked_again_after(edit, run, method, kw, capsys) -> str:
    """Edit the cached ``run``'s manifest with ``edit``, ask for the model again (the same path comes back): what
    cached_checkpoint said."""
    manifest = json.loads((run / "manifest.json").read_text())
    edit(manifest)
    (run / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert cached_checkpoint(method, "synthetic", **kw) == run / "best.pt"
    return capsys.readouterr().out


def test_a_cached_model_trained_with_defaults_since_changed_is_trained_again(tmp_path, monkeypatch, capsys):
    """The cache is the tool's own: a model whose method took a default since changed is set aside (kept) and
    trained again, in one line naming the option."""
    monkeypatch.setenv("WXY_ZOO", str(tmp_path / "no_zoo"))
    kw = dict(seed=0, cache_dir=tmp_path / "cache", progress=False, torch_device="cpu", **TINY)
    run = cached_checkpoint("dsn", "synthetic", **kw).parent
    said = _asked_again_after(lambda m: m["config"]["method_options"].update(exit_weight=0.5),  # as if the default
                              run, "dsn", kw, capsys)
    assert "trained with defaults since changed (exit_weight: run has 0.5, now 1.0): trained again" in said, said
    assert (run.parent / f"{run.name}.stale").is_dir()
    assert json.loads((run / "manifest.json").read_text())["config"]["method_options"]["exit_weight"] == 1.0
    capsys.readouterr()
    cached_checkpoint("dsn", "synthetic", **kw)
    assert "trained again" not in capsys.readouterr().out  # now it is the model asked for


def test_a_cached_model_trained_with_another_recipe_under_the_same_name_is_trained_again(tmp_path, monkeypatch,
                                                                                           capsys):
    """A cache name says method, budget and shape, not every setting: a run trained when the default recipe was
    another (a stem stride, a learning rate) is set aside (kept) and trained again, in one line naming the setting."""
    monkeypatch.setenv("WXY_ZOO", str(tmp_path / "no_zoo"))
    kw = dict(seed=0, cache_dir=tmp_path / "cache", progress=False, torch_device="cpu", **TINY)
    run = cached_checkpoint("baseline", "synthetic", **kw).parent
    assert json.loads((run / "manifest.json").read_text())["config"]["stem_stride"] == 2  # the default recipe's
    said = _asked_again_after(lambda m: m["config"].update(stem_stride=1),  # trained when the default was 1
                              run, "baseline", kw, capsys)
    assert "trained with other settings than asked (stem_stride: run has 1, asked 2): trained again" in said, said
    assert (run.parent / f"{run.name}.stale").is_dir()
    capsys.readouterr()
    cached_checkpoint("baseline", "synthetic", **kw)
    cached_checkpoint("baseline", "synthetic", heads=None, **kw)  # codesign asks a single-exit design so
    assert "trained again" not in capsys.readouterr().out  # now it is the model asked for
    # a run another process is writing now is never moved aside under it: one line, nothing moved
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"]["lr"] = 0.05
    (run / "manifest.json").write_text(json.dumps(manifest))
    kept = snapshot(run)
    claim_run_dir(run, resume=True)  # as the other process's training holds it
    try:
        with pytest.raises(OutputDirError, match=r"is being written by pid \d+ .*not moved aside: wait"):
            cached_checkpoint("baseline", "synthetic", **kw)
    finally:
        release_run_dir(run)
    assert snapshot(run) == kept and not (run.parent / f"{run.name}.stale2").exists()
    # an interrupted run begun at another learning rate is not resumed into a model of two recipes
    said = _asked_again_after(lambda m: (m.update(status="interrupted"), m["config"].update(lr=0.05)),
                              run, "baseline", kw, capsys)
    assert "(lr: run has 0.05, asked 0.1): trained again" in said
    assert json.loads((run / "manifest.json").read_text())["config"]["lr"] == 0.1
    assert other_settings({"config": {"lr": 0.1, "exit_stages": [2, 3, 4]}}, {"lr": 0.1, "exit_stages": (2, 3, 4),
                                                                          "torch_device": "cpu"}) == []
    assert other_settings({}, {"lr": 0.1}) == []  # no record: nothing to compare (an unfinished run)


def test_a_model_at_zero_accuracy_or_with_quotes_in_its_name_keeps_the_index_readable(tmp_path):
    trained = cached_checkpoint("baseline", "synthetic", seed=0, cache_dir=tmp_path / "train", progress=False,
                                torch_device="cpu", **TINY)
    folder = tmp_path / "zoo"
    zoo.add(trained.parent, 'key"with\\odd', "baseline", 0.0, folder=folder)
    zoo.add(trained.parent, "other", "baseline", 50.0, folder=folder)  # a later add reads the index back
    models = {m.key: m for m in zoo.read_index(folder)}
    assert models['key"with\\odd'].test_accuracy == 0.0 and models["other"].test_accuracy == 50.0


def test_a_damaged_index_is_one_line(tmp_path):
    (tmp_path / "index.toml").write_text("[[model]]\nid = 3\n")
    with pytest.raises(ValueError, match="cannot be read") as info:
        zoo.read_index(tmp_path)
    assert "\n" not in str(info.value)
    assert zoo.read_index(tmp_path / "none") == []


def test_train_zoo_script_fills_a_zoo_from_scratch_and_prints_its_table(tmp_path, monkeypatch, capsys):
    train_zoo = script("scripts/train_zoo.py")
    monkeypatch.setenv("WXY_ZOO", str(tmp_path / "unused"))
    small = ["--dataset", "synthetic", "--seeds", "0", "--epochs", "1", "--subset", "64", "--zoo", str(tmp_path / "zoo"),
             "--torch-device", "cpu"]
    assert train_zoo.main([*small, "--methods", "baseline", "--cache", str(tmp_path / "runs")]) == 0
    (model,) = zoo.read_index(tmp_path / "zoo")
    assert model.name == "baseline" and model.key.endswith("_e1_n64_s0") and 0 <= model.test_accuracy <= 100
    # retraining does not take the zoo's own model: it trains into --cache, from scratch
    assert train_zoo.main([*small, "--methods", "baseline", "--cache", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / model.key / "baseline" / "best.pt").is_file()
    # --from-zoo: a hardware-aware model is fine-tuned from the zoo's digital model, which is not retrained
    assert train_zoo.main([*small, "--methods", "hwa", "--from-zoo", "--cache", str(tmp_path / "ft")]) == 0
    config = (tmp_path / "ft" / model.key / "hwa@reram_ft1" / "config.toml").read_text()
    assert f'init = "{tmp_path / "zoo" / model.file}"' in config and not (tmp_path / "ft" / model.key / "baseline").exists()
    capsys.readouterr()
    assert train_zoo.main(["--table", "--zoo", str(tmp_path / "zoo")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| key | model | seed 0 |") and len(table) == 4
    assert table[2].split(" | ")[1] == "baseline" and table[2].endswith(f"| {model.val_accuracy:.2f} |")
    assert table[3].split(" | ")[1] == "hwa@reram_ft1"


def test_self_distillation_hwa_fine_tunes_through_its_default_noise(tmp_path):
    """The default noise of a hardware-aware method (spine.HWA_DEFAULT_NOISE, chosen on validation) is trained
    with and named; an explicit hwa_noise of 1 is the device's own noise, with the plain name."""
    from wxy_hw.studies.spine import HWA_DEFAULT_NOISE

    scale = HWA_DEFAULT_NOISE["self_distillation+hwa"]
    got = cached_checkpoint("self_distillation+hwa", "synthetic", seed=0, cache_dir=tmp_path, progress=False,
                            torch_device="cpu", **TINY)
    assert got.parent.name == f"self_distillation+hwa@reram_noise{scale:g}_ft1"
    assert tomllib.loads((got.parent / "config.toml").read_text())["method_options"] == {"device": "reram",
                                                                                         "noise_scale": scale}
    full = cached_checkpoint("self_distillation+hwa", "synthetic", seed=0, cache_dir=tmp_path, progress=False,
                             torch_device="cpu", hwa_noise=1.0, **TINY)
    assert full.parent.name == "self_distillation+hwa@reram_ft1"


def test_a_hardware_aware_model_is_its_digital_model_fine_tuned(tmp_path):
    """hwa = the same budget's baseline, trained (or found) first, then fine-tuned through the device's noise for
    min(HWA_FINETUNE epochs, the budget's) at HWA_FINETUNE's learning rate; the cache name says so."""
    from wxy_hw.studies.spine import HWA_FINETUNE

    hwa = cached_checkpoint("hwa", "synthetic", seed=0, cache_dir=tmp_path, progress=False, torch_device="cpu", **TINY)
    assert hwa.parent.name == "hwa@reram_ft1"  # TINY trains 1 epoch: the fine-tune is never longer
    config = read_checkpoint(hwa)["train_config"]
    digital = hwa.parent.parent / "baseline" / "best.pt"
    assert config["lr"] == HWA_FINETUNE["lr"] and config["epochs"] == 1 and digital.is_file()
    manifest = (hwa.parent / "config.toml").read_text()
    assert f'init = "{digital}"' in manifest


def test_zoo_remove_takes_a_method_out_index_first(tmp_path):
    trained = cached_checkpoint("baseline", "synthetic", seed=0, cache_dir=tmp_path / "train", progress=False,
                                torch_device="cpu", **TINY)
    key = trained.parent.parent.name
    kept = zoo.add(trained.parent, key, "baseline", 50.0, folder=tmp_path / "zoo")
    old = zoo.add(trained.parent, key, "hwa@reram", 40.0, folder=tmp_path / "zoo")
    assert zoo.remove("hwa@reram", tmp_path / "zoo") == [old.id]
    assert [m.id for m in zoo.read_index(tmp_path / "zoo")] == [kept.id]
    assert sorted(p.name for p in (tmp_path / "zoo").iterdir() if old.id in p.name) == []


def test_zoo_add_waits_for_the_index_lock_and_keeps_every_entry(tmp_path):
    # two train_zoo runs (one per device) share one index: an add made while another holds the lock waits for it,
    # then writes the index with both entries instead of dropping the first
    import threading

    trained = cached_checkpoint("baseline", "synthetic", seed=0, cache_dir=tmp_path / "train", progress=False,
                                torch_device="cpu", **TINY)
    key = trained.parent.parent.name
    folder = tmp_path / "zoo"
    zoo.add(trained.parent, key, "hwa@pcm", 40.0, folder=folder)
    adder = threading.Thread(target=zoo.add, args=(trained.parent, key, "hwa@reram", 41.0), kwargs={"folder": folder})
    with zoo._index_locked(folder):
        adder.start()
        adder.join(timeout=0.5)
        assert adder.is_alive()  # blocked on the lock (a missing lock would let it finish)
        assert [m.name for m in zoo.read_index(folder)] == ["hwa@pcm"]
    adder.join()
    assert sorted(m.name for m in zoo.read_index(folder)) == ["hwa@pcm", "hwa@reram"]
    assert not (folder / zoo.INDEX_LOCK).read_bytes()  # the lock file holds nothing and is git-ignored


def test_a_zoo_fine_tune_is_retrained_from_the_shipped_digital_model(tmp_path, monkeypatch):
    # train_zoo --from-zoo (use_zoo="start"): the hardware-aware model is trained even when the zoo has one, its
    # start is the zoo's half-precision digital model (so a study can match it by content), never a training run's
    trained = cached_checkpoint("hwa", "synthetic", seed=0, cache_dir=tmp_path / "first", progress=False,
                                torch_device="cpu", **TINY)
    key = trained.parent.parent.name
    folder = tmp_path / "zoo"
    base = zoo.add(trained.parent.parent / "baseline", key, "baseline", 50.0, folder=folder)
    zoo.add(trained.parent, key, "hwa@reram_ft1", 40.0, folder=folder)
    monkeypatch.setenv("WXY_ZOO", str(folder))
    assert cached_checkpoint("hwa", "synthetic", seed=0, cache_dir=tmp_path / "study", progress=False,
                             torch_device="cpu", **TINY).parent == folder  # a study takes the shipped one
    again = cached_checkpoint("hwa", "synthetic", seed=0, cache_dir=tmp_path / "retrain", progress=False,
                              torch_device="cpu", use_zoo="start", **TINY)
    assert again.parent.parent.parent == tmp_path / "retrain"  # trained, not taken from the zoo
    assert f'init = "{folder / base.file}"' in (again.parent / "config.toml").read_text()
    assert not (tmp_path / "retrain" / key / "baseline").exists()  # its start was not retrained



def _fine_tune_and_shipped_start(tmp_path, monkeypatch):
    """As train_zoo leaves a seed: hwa and its digital start trained in the cache, the start shipped in a zoo that
    WXY_ZOO points to. (cache, the fine-tune's best.pt, cache key, zoo folder, the shipped start's entry)."""
    cache = tmp_path / "zoo_train"
    trained = cached_checkpoint("hwa", "synthetic", seed=0, cache_dir=cache, progress=False, torch_device="cpu", **TINY)
    key = trained.parent.parent.name
    folder = tmp_path / "zoo"
    base = zoo.add(trained.parent.parent / "baseline", key, "baseline", 50.0, folder=folder)
    monkeypatch.setenv("WXY_ZOO", str(folder))
    return cache, trained, key, folder, base


def test_a_zoo_fine_tune_starts_from_the_shipped_file_even_where_the_cache_holds_its_start(tmp_path, monkeypatch):
    # train_zoo trains a seed's digital model into its cache, ships it, then fine-tunes with --from-zoo: the start
    # must be the shipped half-precision file, not the cache's full-precision run (which no study can match), and a
    # cached fine-tune that started from the cache's run is trained again, once
    cache, trained, key, folder, base = _fine_tune_and_shipped_start(tmp_path, monkeypatch)
    again = cached_checkpoint("hwa", "synthetic", seed=0, cache_dir=cache, progress=False, torch_device="cpu",
                              use_zoo="start", **TINY)
    assert again == trained and f'init = "{folder / base.file}"' in (again.parent / "config.toml").read_text()
    stamp = again.stat().st_mtime_ns
    assert cached_checkpoint("hwa", "synthetic", seed=0, cache_dir=cache, progress=False, torch_device="cpu",
                             use_zoo="start", **TINY).stat().st_mtime_ns == stamp  # started right: reused
    assert (cache / key / "baseline" / "best.pt").is_file()  # the cache's digital run is kept


def test_an_unfinished_fine_tune_from_another_start_is_started_afresh_not_resumed(tmp_path, monkeypatch):
    # resuming it would finish a run begun from the cache's file while its config.toml names the zoo's
    cache = tmp_path / "zoo_train"
    trained = cached_checkpoint("hwa", "synthetic", seed=0, cache_dir=cache, progress=False, torch_device="cpu", **TINY)
    manifest = trained.parent / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"status": "complete"', '"status": "running"'))
    key = trained.parent.parent.name
    base = zoo.add(trained.parent.parent / "baseline", key, "baseline", 50.0, folder=tmp_path / "zoo")
    monkeypatch.setenv("WXY_ZOO", str(tmp_path / "zoo"))
    stamp = trained.stat().st_mtime_ns
    again = cached_checkpoint("hwa", "synthetic", seed=0, cache_dir=cache, progress=False, torch_device="cpu",
                              use_zoo="start", **TINY)
    assert again.stat().st_mtime_ns != stamp and '"status": "complete"' in manifest.read_text()
    assert f'init = "{tmp_path / "zoo" / base.file}"' in (again.parent / "config.toml").read_text()


def test_a_zoo_file_replaced_in_place_invalidates_the_fine_tune_cached_from_its_old_content(tmp_path, monkeypatch):
    # a retrained zoo writes its digital model to the same path: the fine-tune begun from the old file must be told
    # apart by the content it started from (recorded in its manifest), not by the file now at that path
    from wxy_hw.utils import file_sha256

    cache, trained, key, folder, base = _fine_tune_and_shipped_start(tmp_path, monkeypatch)
    tuned = cached_checkpoint("hwa", "synthetic", seed=0, cache_dir=cache, progress=False, torch_device="cpu",
                              use_zoo="start", **TINY)
    recorded = json.loads((tuned.parent / "manifest.json").read_text())["init"]
    assert recorded == {"path": str(folder / base.file), "sha256": base.sha256}
    stamp = tuned.stat().st_mtime_ns
    replaced = zoo.add(trained.parent, key, "baseline", 50.0, folder=folder)  # other weights, the same file name
    assert replaced.file == base.file and replaced.sha256 != base.sha256
    again = cached_checkpoint("hwa", "synthetic", seed=0, cache_dir=cache, progress=False, torch_device="cpu",
                              use_zoo="start", **TINY)
    assert again.stat().st_mtime_ns != stamp  # trained again, from the new content
    assert json.loads((again.parent / "manifest.json").read_text())["init"]["sha256"] == \
        file_sha256(folder / base.file) == replaced.sha256


def test_an_adopted_fine_tune_records_the_start_it_stands_for(tmp_path):
    # a zoo fine-tune adopted where a study names its digital start: the start's content goes into the manifest, so a
    # start trained again later (other bytes at that path) makes the study make the fine-tune again
    from wxy_hw.studies.train import TrainRunConfig, adopt_run
    from wxy_hw.utils import file_sha256

    trained = cached_checkpoint("baseline", "synthetic", seed=0, cache_dir=tmp_path / "train", progress=False,
                                torch_device="cpu", **TINY)
    conf = TrainRunConfig.make(method="baseline", dataset="synthetic", seed=0, torch_device="cpu", init=str(trained),
                               **{k: v for k, v in TINY.items() if k != "progress"})
    adopt_run(conf, trained, tmp_path / "adopted", {"zoo": "z"})
    manifest = json.loads((tmp_path / "adopted" / "manifest.json").read_text())
    assert manifest["init"] == {"path": str(trained), "sha256": file_sha256(trained)}



def test_a_reproductions_teacher_and_student_are_shelved_then_adopted_not_retrained(tmp_path, monkeypatch, capsys):
    """train_zoo --reproduce puts each run of a reproduction's methods step on the zoo's reproduce/ shelf as it
    finishes; the same step run again adopts them all, the student through the zoo's half-precision copy of the
    teacher it learnt from, and trains nothing."""
    train_zoo = script("scripts/train_zoo.py")
    monkeypatch.setenv("WXY_ZOO", str(tmp_path / "unused"))
    folder = tmp_path / "zoo"
    ask = ["--reproduce", "smoke", "--methods", "kd", "--seeds", "0", "--zoo", str(folder), "--torch-device", "cpu"]
    assert train_zoo.main([*ask, "--cache", str(tmp_path / "first")]) == 0
    assert not (folder / zoo.INDEX).exists()  # the main shelf is the main job's: nothing of a reproduction on it
    shelf = {m.name: m for m in zoo.read_index(folder / zoo.REPRODUCE_SHELF)}
    assert set(shelf) == {"baseline", "kd"} and "_w0.5_" in shelf["baseline"].key  # the smoke budget's teacher
    teacher_run = tmp_path / "first" / "teacher" / "s0" / "best.pt"
    assert shelf["baseline"].source_sha256 == zoo.file_sha256(teacher_run) != shelf["baseline"].sha256
    assert shelf["kd"].teacher_sha256 == shelf["baseline"].source_sha256  # it learnt from the full-precision file
    # said before a comparison starts: both are trained already (the student through the teacher's shelf copy)
    from wxy_hw.studies.compare_methods import plan_comparison, trained_already
    conf = train_zoo.reproduction_config("smoke", argparse.Namespace(methods=["kd"], seeds=[0], cache=tmp_path / "x",
                                                                     torch_device="cpu", workers=1))
    assert trained_already(plan_comparison(conf, tmp_path / "new", progress=False)) == (2, 2)
    monkeypatch.setenv("WXY_ZOO", str(tmp_path / "unused"))
    assert trained_already(plan_comparison(conf, tmp_path / "new", progress=False)) == (0, 2)
    monkeypatch.setenv("WXY_ZOO", str(folder))
    capsys.readouterr()
    assert train_zoo.main([*ask, "--cache", str(tmp_path / "again")]) == 0
    out = capsys.readouterr().out
    assert "0 model(s) put on" in out and "trained in" not in out
    for run in ("teacher", "kd"):
        adopted = json.loads((tmp_path / "again" / run / "s0" / "results.json").read_text())["adopted_from"]
        assert adopted["zoo"] == shelf["baseline" if run == "teacher" else "kd"].id
    # --finished-in shelves what a folder finished with the budget's settings: here nothing new (the same
    # checkpoints are on the shelf, their files left as they are); of another budget, nothing
    index = (folder / zoo.REPRODUCE_SHELF / zoo.INDEX).read_bytes()
    assert train_zoo.main([*ask, "--finished-in", str(tmp_path / "first")]) == 0
    assert "2 of the 2 runs" in capsys.readouterr().out
    assert (folder / zoo.REPRODUCE_SHELF / zoo.INDEX).read_bytes() == index
    assert train_zoo.main(["--reproduce", "small", "--methods", "kd", "--seeds", "0", "--finished-in",
                           str(tmp_path / "first"), "--zoo", str(folder)]) == 0
    assert "0 of the 2 runs" in capsys.readouterr().out
    assert train_zoo.main([*ask, "--finished-in", str(tmp_path / "none")]) == 2
    assert "no comparison there" in capsys.readouterr().err
    # --table shows the shelf apart (the main shelf here is empty)
    assert train_zoo.main(["--table", "--zoo", str(folder)]) == 0
    table = capsys.readouterr().out
    assert table.startswith("(no models)") and "reproduce/ shelf" in table
    assert len([line for line in table.splitlines() if line.startswith("| synthetic_")]) == 2
    # the main shelf's recipe flags are not a reproduction's: refused in one line, not ignored
    assert train_zoo.main([*ask, "--epochs", "2"]) == 2
    assert "--epochs: the main shelf's recipe" in capsys.readouterr().err
    # a student whose teacher the zoo does not hold is refused: no study could ever match it; so is one that
    # recorded no sha256 of its teacher
    with pytest.raises(ValueError, match="add the teacher's run first"):
        zoo.add_finished(tmp_path / "first" / "kd" / "s0", tmp_path / "empty", zoo.REPRODUCE_SHELF)
    manifest = tmp_path / "first" / "kd" / "s0" / "manifest.json"
    manifest.write_text(json.dumps({k: v for k, v in json.loads(manifest.read_text()).items() if k != "teacher"}))
    with pytest.raises(ValueError, match="recorded no sha256 of its teacher"):
        zoo.add_finished(tmp_path / "first" / "kd" / "s0", folder, zoo.REPRODUCE_SHELF)


def test_a_zoo_student_matches_its_own_teacher_only(tmp_path):
    """The teacher asked for is the student's when it is the file the student learnt from or the zoo's copy of that
    file; any other teacher, or none, is another model (and a model that learnt from none wants none)."""
    for name, content in (("full", b"teacher"), ("half", b"teacher, half precision"), ("other", b"another")):
        (tmp_path / f"{name}.pt").write_bytes(content)
    sha = {name: zoo.file_sha256(tmp_path / f"{name}.pt") for name in ("full", "half", "other")}
    teacher = zoo.ZooModel("t", "k", "baseline", sha["half"], 1.0, 1.0, source_sha256=sha["full"])
    student = zoo.ZooModel("s", "k", "kd", "x", 1.0, 1.0, teacher_sha256=sha["full"])
    alone = zoo.ZooModel("b", "k", "baseline", "y", 1.0, 1.0)
    for asked, expected in (("full", True), ("half", True), ("other", False)):
        assert zoo._same_teacher(student, str(tmp_path / f"{asked}.pt"), [teacher, student]) is expected, asked
    assert not zoo._same_teacher(student, None, [teacher, student])
    assert not zoo._same_teacher(student, str(tmp_path / "missing.pt"), [teacher, student])
    assert zoo._same_teacher(alone, None, [alone]) and not zoo._same_teacher(alone, str(tmp_path / "full.pt"), [alone])
