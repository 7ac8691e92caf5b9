"""Corruptions, the robust training methods (augment, ada, auxiliary, adv) and the robustness metrics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from wxy_hw.analysis.robustness import (adversarial_rows, corruption_errors, corruption_rows, feature_consistency,
                                        pca_2d)
from wxy_hw.checkpoint import load_model, read_checkpoint
from wxy_hw.data.base import Split
from wxy_hw.data.corruptions import (CORRUPTIONS, _disk, _motion_kernel, corrupt, corrupt_split, gaussian_kernel1d,
                                     random_corruption)
from wxy_hw.methods import ADA, Batch, ComposedMethod, build_method
from wxy_hw.models import build_model
from wxy_hw.models.multi_exit import MultiExitOutput
from wxy_hw.train import TrainConfig, Trainer

from helpers import cli, nonempty


def images(n=6, c=1, size=28, seed=0) -> torch.Tensor:
    """Image-like test batch: smooth random shading plus a bright square (edges for blurs to smear)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, c, 5, 5, generator=g) * 0.5
    x = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    x[:, :, 8:20, 8:20] += 0.45
    return x.clamp(0, 1)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- corruptions ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_contract(name):
    x = images(c=3, size=32)
    y = corrupt(x, name, 3, gen(1))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert torch.equal(y, corrupt(x, name, 3, gen(1)))           # deterministic in the seed
    assert torch.equal(corrupt(x, name, 0, gen(1)), x)           # severity 0 is clean
    d1 = float((corrupt(x, name, 1, gen(2)) - x).abs().mean())
    d5 = float((corrupt(x, name, 5, gen(2)) - x).abs().mean())
    assert d5 > d1 > 0                                            # severity means more damage
    with pytest.raises(ValueError, match="severity must be 0"):
        corrupt(x, name, 6, gen())


def test_unknown_corruption_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown corruption.*gaussian_noise"):
        corrupt(images(), "fog", 1)


def test_gaussian_noise_has_the_cifar_c_sigma():
    x = torch.full((64, 1, 28, 28), 0.5)
    assert float((corrupt(x, "gaussian_noise", 1, gen()) - x).std()) == pytest.approx(0.04, rel=0.03)
    assert float((corrupt(x, "gaussian_noise", 5, gen()) - x).std()) == pytest.approx(0.10, rel=0.03)


def test_shot_noise_is_unbiased_and_impulse_hits_the_right_fraction():
    x = torch.full((64, 1, 28, 28), 0.4)
    assert float(corrupt(x, "shot_noise", 5, gen()).mean()) == pytest.approx(0.4, abs=0.005)
    changed = (corrupt(x, "impulse_noise", 5, gen()) != x).float().mean()
    assert float(changed) == pytest.approx(0.07, rel=0.05)


def test_gaussian_blur_matches_scipy():
    x = images(n=2)
    ours = corrupt(x, "gaussian_blur", 5, gen())  # sigma 1.0
    ref = np.stack([ndimage.gaussian_filter(im[0].numpy().astype(np.float64), 1.0, mode="nearest", truncate=4.0)
                    for im in x])
    assert np.allclose(ours[:, 0].numpy(), np.clip(ref, 0, 1), atol=1e-5)
    assert float(gaussian_kernel1d(0.4).sum()) == pytest.approx(1.0)


def test_blur_kernels_preserve_brightness():
    flat = torch.full((2, 1, 28, 28), 0.3)
    for name in ("gaussian_blur", "defocus_blur", "motion_blur", "zoom_blur"):
        assert torch.allclose(corrupt(flat, name, 5, gen()), flat, atol=1e-5), name
    assert float(_disk(1.5, 0.1).sum()) == pytest.approx(1.0, abs=1e-6)
    k = _motion_kernel(6, 1.0, 0.0)
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-6)
    rows, cols = k.nonzero(as_tuple=True)
    assert len(set(rows.tolist())) == 1 and len(cols) == 13  # angle 0: a horizontal line of 2·radius+1 taps
    assert float(k[k.shape[0] // 2, k.shape[1] // 2]) == float(k.max())  # one-sided, heaviest at the pixel itself


def test_rotation_by_multiples_of_90_keeps_pixels():
    x = images(n=1)
    # severity 5 = ±75°: energy is kept up to interpolation and the corners cut off
    y = corrupt(x, "rotation", 5, gen())
    assert 0.5 < float(y.sum() / x.sum()) <= 1.0


def test_random_corruption_labels_each_image():
    x = images(n=32)
    y, kind = random_corruption(x, ["gaussian_noise", "rotation"], gen(), severities=(5,))
    assert set(kind.tolist()) <= {0, 1} and len(set(kind.tolist())) == 2
    assert not torch.equal(y, x)


def test_corrupt_split_is_deterministic_uint8_and_cached(tmp_path):
    split = Split((images(n=10) * 255).round().to(torch.uint8), torch.arange(10) % 3)
    a = corrupt_split(split, "speckle_noise", 4, seed=1, cache_dir=tmp_path)
    files = list(tmp_path.rglob("*.pt"))
    assert len(files) == 1 and a.images.dtype == torch.uint8 and torch.equal(a.labels, split.labels)
    b = corrupt_split(split, "speckle_noise", 4, seed=1, cache_dir=tmp_path)  # read back from the cache
    c = corrupt_split(split, "speckle_noise", 4, seed=1)                       # regenerated: the same images
    assert torch.equal(a.images, b.images) and torch.equal(a.images, c.images)
    assert not torch.equal(a.images, corrupt_split(split, "speckle_noise", 4, seed=2).images)
    assert corrupt_split(split, "speckle_noise", 0) is split


# --- methods ----------------------------------------------------------------------------------
def bound(method, data):
    method.bind_data(data.mean, data.std)
    return method


def test_augment_builds_clean_plus_corrupted_views(synthetic):
    m = bound(build_method("augment"), synthetic)
    x = (torch.rand(8, 1, 28, 28) - synthetic.mean[0]) / synthetic.std[0]
    y = torch.arange(8)
    model = build_model("resnet8", 10, 1, 0.125, 28, multi_exit=False).train()
    b = m.prepare_batch(Batch(x, y), model)
    assert b.x.shape[0] == 16 and b.n_clean == 8 and torch.equal(b.x[:8], x) and torch.equal(b.y, torch.cat([y, y]))
    assert b.domain[:8].eq(0).all() and b.domain[8:].ge(1).all()
    assert not torch.allclose(b.x[8:], x)
    assert m.prepare_batch(Batch(x, y), model.eval()).x is x  # evaluation batches are left alone


def test_ada_relation_terms_vanish_for_identical_views_and_only_move_the_corrupted_view():
    ada = ADA()
    torch.manual_seed(0)
    maps = [torch.randn(4, 8, 5, 5)]
    logits = torch.randn(4, 10)
    same = MultiExitOutput([torch.cat([logits, logits])], [], [torch.cat([maps[0], maps[0]])])
    batch = Batch(torch.zeros(8, 1, 2, 2), torch.zeros(8, dtype=torch.long), n_clean=4)
    terms = ada(same, batch)
    for k in ("feature", "relation", "kl"):
        assert float(terms[k]) == pytest.approx(0.0, abs=1e-6), k
    stage = torch.cat([maps[0], torch.randn(4, 8, 5, 5)]).requires_grad_()
    out = MultiExitOutput([torch.cat([logits, torch.randn(4, 10)])], [], [stage])
    terms = ada(out, batch)
    assert float(terms["feature"].detach()) > 0 and float(terms["relation"].detach()) > 0
    (terms["feature"] + terms["relation"]).backward()
    assert stage.grad[:4].abs().sum() == 0 and stage.grad[4:].abs().sum() > 0  # the clean view is the anchor


def test_auxiliary_selective_bn_keeps_clean_statistics_clean(synthetic, tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet8", 10, 1, 0.125, 28, multi_exit=False)
    method = build_method("auxiliary", merge_start=0.5, merge_weight=5.0)
    model = method.prepare_model(model)
    assert len(method.aux_fc) == 2 and len(method.aux_bn) == 2
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, torch_device="cpu", progress=False, max_steps_per_epoch=3)
    trainer = Trainer(model, method, synthetic, cfg, tmp_path)
    bn_name = next(n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d))
    clean_bn = dict(model.named_modules())[bn_name]
    aux_bn = method.aux_bn[0][bn_name.replace(".", "__")]
    before_clean, before_aux = clean_bn.running_mean.clone(), aux_bn.running_mean.clone()
    trainer.fit()
    # every step updates the clean BN once (clean rows) and each corruption's own BN once
    assert int(clean_bn.num_batches_tracked) == 6 and int(aux_bn.num_batches_tracked) == 6
    assert not torch.equal(clean_bn.running_mean, before_clean) and not torch.equal(aux_bn.running_mean, before_aux)
    assert not torch.allclose(clean_bn.running_mean, aux_bn.running_mean)
    # period 2 has begun: the merge penalty ramps; the saved model is the plain single-exit network
    method.set_epoch(0, 4)
    assert method.merge_lambda == 0.0
    method.set_epoch(3, 4)
    assert method.merge_lambda == pytest.approx(5.0)
    saved = load_model(tmp_path / "best.pt")
    plain = build_model("resnet8", 10, 1, 0.125, 28, multi_exit=False)
    assert sum(p.numel() for p in saved.parameters()) == sum(p.numel() for p in plain.parameters())
    assert "aux_fc.0.weight" in read_checkpoint(tmp_path / "last.pt")["method_state"]


@pytest.mark.slow
def test_auxiliary_merge_penalty_pulls_classifiers_together(synthetic, tmp_path):
    torch.manual_seed(0)
    gaps = {}
    for weight in (0.0, 2.0):
        model = build_model("resnet8", 10, 1, 0.125, 28, multi_exit=False)
        method = build_method("auxiliary", merge_start=0.0, merge_weight=weight)
        model = method.prepare_model(model)
        cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, torch_device="cpu", progress=False, max_steps_per_epoch=5)
        Trainer(model, method, synthetic, cfg, tmp_path / str(weight)).fit()
        gaps[weight] = max(method.classifier_gap())
    assert gaps[2.0] < 0.5 * gaps[0.0]


def test_adversarial_training_batch_lies_in_the_epsilon_ball(synthetic):
    m = bound(build_method("adv", epsilon=0.05, steps=2), synthetic)
    model = build_model("resnet8", 10, 1, 0.125, 28, multi_exit=False).train()
    x = (torch.rand(8, 1, 28, 28) - synthetic.mean[0]) / synthetic.std[0]
    b = m.prepare_batch(Batch(x, torch.arange(8)), model)
    delta = m.to_pixels(b.x) - m.to_pixels(x)
    assert float(delta.abs().max()) <= 0.05 + 1e-5 and float(delta.abs().max()) > 0.01
    assert model.training  # the attack put the model back in training mode
    with pytest.raises(ValueError, match="epsilon is in pixel units"):
        build_method("adv", epsilon=8)


def test_auxiliary_adv_adds_a_pgd_view_with_its_own_bn_and_classifier(synthetic, tmp_path):
    """auxiliary_adv: [clean; corrupted; PGD] per batch, the PGD copy inside the ε ball with domain K + 1, and its
    own BN layers and classifier trained like the corrupted ones."""
    torch.manual_seed(0)
    # selective BN throughout: one epoch is all period 2 (merge_start 0.5 of 1), where the default merges BN
    method = bound(build_method("auxiliary_adv", epsilon=0.05, steps=2, merge_bn=False), synthetic)
    model = method.prepare_model(build_model("resnet8", 10, 1, 0.125, 28, multi_exit=False)).train()
    assert method.input_types == ("gaussian_noise", "gaussian_blur", "pgd_linf")
    assert len(method.aux_fc) == 3 and len(method.aux_bn) == 3
    x = (torch.rand(8, 1, 28, 28) - synthetic.mean[0]) / synthetic.std[0]
    b = method.prepare_batch(Batch(x, torch.arange(8)), model)
    assert len(b.x) == 24 and b.n_clean == 8 and torch.equal(b.y, torch.arange(8).repeat(3))
    assert torch.all(b.domain[:8] == 0) and torch.all((b.domain[8:16] >= 1) & (b.domain[8:16] <= 2))
    assert torch.all(b.domain[16:] == 3)
    delta = method.to_pixels(b.x[16:]) - method.to_pixels(x).clamp(0, 1)
    assert 0.01 < float(delta.abs().max()) <= 0.05 + 1e-5
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.05, torch_device="cpu", progress=False, max_steps_per_epoch=2)
    model = method.prepare_model(build_model("resnet8", 10, 1, 0.125, 28, multi_exit=False))
    Trainer(model, method, synthetic, cfg, tmp_path).fit()
    bn_name = next(n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert int(method.aux_bn[2][bn_name.replace(".", "__")].num_batches_tracked) == 2  # the PGD view's own BN
    with pytest.raises(ValueError, match="epsilon is in pixel units"):
        build_method("auxiliary_adv", epsilon=2)


@pytest.mark.parametrize("method", ["ada", "auxiliary"])
@pytest.mark.slow
def test_robust_methods_resume_bit_identically(synthetic, tmp_path, method):
    def trainer(run):
        torch.manual_seed(0)
        m = build_method(method)
        model = m.prepare_model(build_model("resnet8", 10, 1, 0.125, 28, multi_exit=False))
        cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, torch_device="cpu", progress=False, max_steps_per_epoch=3)
        return Trainer(model, m, synthetic, cfg, tmp_path / run)

    trainer("full").fit()
    trainer("part").fit(stop_after_epoch=1)
    trainer("part").fit(resume=True)
    a = read_checkpoint(tmp_path / "full" / "last.pt")["model_state"]
    b = read_checkpoint(tmp_path / "part" / "last.pt")["model_state"]
    assert all(torch.equal(a[k], b[k]) for k in nonempty(a))


def test_unknown_training_corruption_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown corruption"):
        build_method("ada", corruptions="gaussian_noise,snow")
    assert build_method("augment", corruptions="gaussian_noise,rotation").corruptions == ("gaussian_noise", "rotation")


# --- metrics ----------------------------------------------------------------------------------
def test_mce_matches_a_hand_computation():
    def rows(model, clean, errs):
        out = [dict(method=model, exit="4", corruption="clean", severity=0, accuracy=100 - clean)]
        for c, es in errs.items():
            out += [dict(method=model, exit="4", corruption=c, severity=s + 1, accuracy=100 - e) for s, e in enumerate(es)]
        return out

    data = rows("baseline", 10, {"a": [20, 40], "b": [30, 30]}) + rows("m", 8, {"a": [10, 20], "b": [30, 60]})
    ce = {(r["method"], r["corruption"]): r for r in corruption_errors(data, "baseline", "4")}
    assert ce[("m", "a")]["ce"] == pytest.approx(100 * 30 / 60)
    assert ce[("m", "b")]["ce"] == pytest.approx(100 * 90 / 60)
    assert ce[("m", "mean")]["ce"] == pytest.approx((50 + 150) / 2)
    assert ce[("m", "a")]["relative_ce"] == pytest.approx(100 * (2 + 12) / (10 + 30))
    assert ce[("baseline", "mean")]["ce"] == pytest.approx(100.0)
    assert ce[("m", "mean")]["accuracy"] == pytest.approx(100 - (10 + 20 + 30 + 60) / 4)
    with pytest.raises(ValueError, match="baseline model 'nope'"):
        corruption_errors(data, "nope", "4")
    # a corruption that does not hurt the baseline has no defined relative CE
    flat = rows("baseline", 10, {"a": [10, 10]}) + rows("m", 8, {"a": [9, 9]})
    assert math.isnan(next(r for r in corruption_errors(flat, "baseline", "4") if r["method"] == "m")["relative_ce"])


def test_corruption_rows_and_attacks_on_a_trained_model(trained_dsn, synthetic, tmp_path):
    test = Split(synthetic.test.images[:64], synthetic.test.labels[:64])
    before = {k: v.clone() for k, v in trained_dsn.state_dict().items()}
    rows = corruption_rows(trained_dsn, test, synthetic.mean, synthetic.std, ["gaussian_noise"], (1, 5),
                           cache_dir=tmp_path, method="dsn")
    deep = {(r["corruption"], r["severity"]): r["accuracy"] for r in rows if r["exit"] == "4"}
    assert set(deep) == {("clean", 0), ("gaussian_noise", 1), ("gaussian_noise", 5)}
    adv = adversarial_rows(trained_dsn, test, synthetic.mean, synthetic.std,
                           {"fgsm": dict(eps=1e-6), "pgd_linf": dict(eps=0.3, steps=5)}, method="dsn")
    acc = {r["attack"]: r["accuracy"] for r in adv}
    assert acc["clean"] == pytest.approx(deep[("clean", 0)])  # same images, same deepest exit
    assert acc["fgsm"] == pytest.approx(acc["clean"], abs=2.0)  # a vanishing budget changes (almost) nothing
    assert acc["pgd_linf"] < acc["clean"] - 20  # a large budget breaks an undefended model
    assert not trained_dsn.training
    # attacking must not touch the model (a wrapper left in training mode once updated BN statistics)
    assert all(torch.equal(v, trained_dsn.state_dict()[k]) for k, v in before.items())


def test_feature_geometry_helpers():
    a = torch.randn(20, 6)
    assert feature_consistency(a, a) == pytest.approx(1.0)
    pa, pb = pca_2d(a, a + 0.01)
    assert pa.shape == (20, 2) and torch.allclose(pa, pb, atol=0.05)


def test_published_hendrycks_format_is_read_and_checked_for_alignment(trained_dsn, synthetic, tmp_path):
    from wxy_hw.analysis.robustness import corrupted_view
    from wxy_hw.data import DatasetNotFoundError
    from wxy_hw.data.corruptions import load_hendrycks_c

    n = 20
    clean = Split(synthetic.test.images[:n], synthetic.test.labels[:n])
    blocks = [corrupt_split(clean, "gaussian_noise", s, seed=3).images for s in range(1, 6)]
    np.save(tmp_path / "gaussian_noise.npy", torch.cat(blocks).permute(0, 2, 3, 1).numpy())  # (5n, H, W, C)
    np.save(tmp_path / "labels.npy", clean.labels.repeat(5).numpy().astype(np.uint8))
    s3 = load_hendrycks_c(tmp_path, "gaussian_noise", 3)
    assert torch.equal(s3.images, blocks[2]) and torch.equal(s3.labels, clean.labels)
    half = Split(clean.images[:10], clean.labels[:10])
    assert torch.equal(corrupted_view(half, "gaussian_noise", 5, corrupted_dir=tmp_path).images, blocks[4][:10])
    rows = corruption_rows(trained_dsn, half, synthetic.mean, synthetic.std, ["gaussian_noise"], (2,),
                           corrupted_dir=tmp_path)
    assert {r["corruption"] for r in rows} == {"clean", "gaussian_noise"}
    shuffled = Split(clean.images.flip(0), clean.labels.flip(0))
    if not torch.equal(shuffled.labels, clean.labels):
        with pytest.raises(ValueError, match="does not line up"):
            corrupted_view(shuffled, "gaussian_noise", 1, corrupted_dir=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="shot_noise.npy not found"):
        load_hendrycks_c(tmp_path, "shot_noise", 1)
    # anything but plain arrays is one line naming the file, checked before a study starts, never unpickled
    from wxy_hw.data.base import CorruptDatasetError
    from wxy_hw.data.corruptions import check_hendrycks_dir

    check_hendrycks_dir(tmp_path, ["gaussian_noise"])
    np.save(tmp_path / "shot_noise.npy", np.array([{"a": 1}] * 5, dtype=object), allow_pickle=True)
    with pytest.raises(CorruptDatasetError, match=r"shot_noise.npy is not a plain numeric .npy array \(it holds "
                                                  r"pickled Python objects, which wxy_hw never loads\)"):
        check_hendrycks_dir(tmp_path, ["gaussian_noise", "shot_noise"])
    (tmp_path / "shot_noise.npy").write_bytes(b"not numpy")
    with pytest.raises(CorruptDatasetError, match="shot_noise.npy is not a plain numeric .npy array"):
        load_hendrycks_c(tmp_path, "shot_noise", 1)
    np.save(tmp_path / "shot_noise.npy", np.zeros((5 * n, 4, 4, 1), dtype=np.float32))
    with pytest.raises(CorruptDatasetError, match="expected uint8"):
        check_hendrycks_dir(tmp_path, ["shot_noise"])
    with pytest.raises(DatasetNotFoundError, match="is not a folder"):
        check_hendrycks_dir(tmp_path / "labels.npy", ["gaussian_noise"])
    out = tmp_path / "run"
    assert cli("corruption_robustness")(["--checkpoints", str(tmp_path / "model.pt"), "--corrupted-dir", str(tmp_path),
                                         "--corruptions", "shot_noise", "--out", str(out), "--quiet"]) == 2
    assert not out.exists()  # refused before the run started


def test_auxiliary_merge_bn_routes_period_two_through_the_primary_bn(synthetic, tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet8", 10, 1, 0.125, 28, multi_exit=False)
    method = build_method("auxiliary", merge_start=0.5, merge_bn=True)
    model = method.prepare_model(model)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, torch_device="cpu", progress=False, max_steps_per_epoch=2)
    result = Trainer(model, method, synthetic, cfg, tmp_path).fit()
    assert result.best_epoch == 2  # period 1's model (epoch 1) is never the selected one
    bn_name = next(n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d))
    # period 1 (epoch 1): selective BN — one update of each BN per step; period 2: only the primary BN
    assert int(dict(model.named_modules())[bn_name].num_batches_tracked) == 4
    assert int(method.aux_bn[0][bn_name.replace(".", "__")].num_batches_tracked) == 2


def test_auxiliary_adv_merges_bn_by_default_and_both_select_in_period_two():
    """The talk's auxiliary model lost clean accuracy as adversarial training did: its deployed path saw the
    adversarial images, so auxiliary_adv merges BN in period 2 by default; auxiliary keeps the paper's selective BN.
    Both are selected from period 2 on (round(merge_start · epochs), as the merge schedule starts)."""
    assert build_method("auxiliary_adv").merge_bn and not build_method("auxiliary").merge_bn
    assert build_method("auxiliary").selection_start(15) == 8 and build_method("auxiliary").selection_start(4) == 2
    assert build_method("auxiliary_adv", merge_start=0.0).selection_start(15) == 0
    late = ComposedMethod([build_method("baseline"), build_method("auxiliary", merge_start=0.8)])
    assert late.selection_start(10) == 8  # a composition: its latest part
    assert build_method("baseline").selection_start(15) == 0
