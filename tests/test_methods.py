"""Loss terms of every method, checked against hand computations on fixed tensors."""
from __future__ import annotations

import json
import math

import pytest
import torch

from wxy_hw.methods import Batch, build_method, changed_defaults, changed_options, feature_l2, kd_kl
from wxy_hw.models import MultiExitOutput, build_model

LOGITS = [torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]]),
          torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]]),
          torch.tensor([[3.0, -1.0, 0.0], [-1.0, 1.0, 2.0]])]
FEATS = [torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.5, 0.5], [1.0, 1.0]]),
         torch.tensor([[1.0, 1.0], [0.0, 0.0]])]
Y = torch.tensor([0, 2])


def outputs(requires_grad: bool = False) -> MultiExitOutput:
    logits = [z.clone().requires_grad_(requires_grad) for z in LOGITS]
    feats = [f.clone().requires_grad_(requires_grad) for f in FEATS]
    return MultiExitOutput(logits, feats)


def ce(logits, y):
    """Cross-entropy by hand: mean of log-sum-exp minus the true logit."""
    return sum(math.log(sum(math.exp(v) for v in row)) - row[t] for row, t in zip(logits.tolist(), y.tolist())) / len(y)


def kl_by_hand(student, teacher, T):
    total = 0.0
    for s, t in zip(student.tolist(), teacher.tolist()):
        ps = [math.exp(v / T) for v in s]
        pt = [math.exp(v / T) for v in t]
        ps = [p / sum(ps) for p in ps]
        pt = [p / sum(pt) for p in pt]
        total += sum(b * math.log(b / a) for a, b in zip(ps, pt))
    return total / len(student)


def test_kd_kl_and_feature_l2_by_hand():
    assert kd_kl(LOGITS[0], LOGITS[2], 3.0).item() == pytest.approx(kl_by_hand(LOGITS[0], LOGITS[2], 3.0), rel=1e-5)
    assert kd_kl(LOGITS[1], LOGITS[1], 2.0).item() == pytest.approx(0.0, abs=1e-7)
    # (1-1)^2 + (0-1)^2 = 1 and (0-0)^2 + (2-0)^2 = 4  → mean 2.5
    assert feature_l2(FEATS[0], FEATS[2]).item() == pytest.approx(2.5)


def test_baseline_and_dsn():
    assert build_method("baseline")(outputs(), Batch(None, Y))["ce"].item() == pytest.approx(ce(LOGITS[2], Y), rel=1e-6)
    terms = build_method("dsn")(outputs(), Batch(None, Y))
    assert list(terms) == ["ce1", "ce2", "ce3"]
    for i in range(3):
        assert terms[f"ce{i + 1}"].item() == pytest.approx(ce(LOGITS[i], Y), rel=1e-6)


def test_self_distillation_official_defaults_by_hand():
    terms = build_method("self_distillation")(outputs(), Batch(None, Y))
    assert terms["ce3"].item() == pytest.approx(ce(LOGITS[2], Y), rel=1e-6)
    for i in range(2):
        assert terms[f"ce{i + 1}"].item() == pytest.approx(0.7 * ce(LOGITS[i], Y), rel=1e-6)
        assert terms[f"kd{i + 1}"].item() == pytest.approx(0.3 * kl_by_hand(LOGITS[i], LOGITS[2], 3.0), rel=1e-5)
        hint = sum(sum((a - b) ** 2 for a, b in zip(r1, r2)) for r1, r2 in zip(FEATS[i].tolist(), FEATS[2].tolist())) / 2
        assert terms[f"hint{i + 1}"].item() == pytest.approx(0.03 * hint, rel=1e-6)
    assert "kd3" not in terms and "hint3" not in terms


def test_self_distillation_paper_preset_and_t2():
    terms = build_method("self_distillation", preset="paper")(outputs(), Batch(None, Y))
    assert terms["ce1"].item() == pytest.approx(ce(LOGITS[0], Y), rel=1e-6)
    assert terms["kd1"].item() == pytest.approx(kl_by_hand(LOGITS[0], LOGITS[2], 1.0), rel=1e-5)
    scaled = build_method("self_distillation", t2_scaling=True)(outputs(), Batch(None, Y))
    assert scaled["kd1"].item() == pytest.approx(9 * 0.3 * kl_by_hand(LOGITS[0], LOGITS[2], 3.0), rel=1e-5)


def test_self_distillation_teacher_is_detached():
    out = outputs(requires_grad=True)
    terms = build_method("self_distillation")(out, Batch(None, Y))
    (terms["kd1"] + terms["hint1"]).backward()
    assert out.logits[2].grad is None and out.features[2].grad is None  # the deepest exit is not pulled
    assert out.logits[0].grad.abs().sum() > 0 and out.features[0].grad.abs().sum() > 0


def test_kd_with_teacher_and_hint():
    torch.manual_seed(0)
    teacher = build_model("resnet8", 3, 1, 0.125, 28, multi_exit=False)
    student = build_model("resnet8", 3, 1, 0.125, 28, multi_exit=False)
    x = torch.randn(2, 1, 28, 28)
    method = build_method("kd", teacher=teacher, alpha=0.5, temperature=2.0, hint_weight=0.1,
                          student_features=student.stage_channels[-1])
    out = student(x)
    terms = method(out, Batch(x, Y))
    t_logits = teacher.eval()(x).final
    assert terms["ce"].item() == pytest.approx(0.5 * ce(out.final.detach(), Y), rel=1e-5)
    assert terms["kd"].item() == pytest.approx(0.5 * 4 * kl_by_hand(out.final.detach(), t_logits.detach(), 2.0), rel=1e-4)
    assert "hint" in terms and len(list(method.parameters())) == 2  # only the regressor is trainable
    assert all(not p.requires_grad for p in teacher.parameters())


def test_build_method_errors():
    with pytest.raises(ValueError, match="unknown method 'byot'"):
        build_method("byot")
    with pytest.raises(ValueError, match=r"has no option\(s\) \['beta'\]"):
        build_method("self_distillation", beta=1)
    with pytest.raises(ValueError, match="needs a teacher"):
        build_method("kd")


def test_hwa_trains_through_device_noise_with_straight_through_gradients():
    torch.manual_seed(0)
    model = build_model("resnet8", 3, 1, 0.125, 28, multi_exit=False).train()
    method = build_method("hwa", device="reram")
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 0])
    noisy = method.model_forward(model, x)
    clean = model(x)
    assert not torch.allclose(noisy.final, clean.final)  # the forward saw programmed weights
    terms = method(noisy, Batch(x, y))
    terms["ce"].backward()
    assert all(p.grad is not None for p in model.parameters() if p.dim() > 1)  # gradients reach the clean W
    model.eval()
    assert torch.equal(method.model_forward(model, x).final, model(x).final)  # evaluation stays clean


def test_composition_self_distillation_plus_hwa():
    method = build_method("self_distillation+hwa", device="subthreshold_cmos", temperature=4.0)
    assert method.name == "self_distillation+hwa" and method.multi_exit
    assert method.parts[0].temperature == 4.0 and method.parts[1].device == "subthreshold_cmos"
    terms = method(outputs(), Batch(None, Y))
    assert set(terms) == set(build_method("self_distillation")(outputs(), Batch(None, Y)))  # hwa adds no CE
    with pytest.raises(ValueError, match="no option"):
        build_method("dsn+hwa", temperature=2.0)
    with pytest.raises(ValueError, match="each change the forward"):
        build_method("hwa+hwa")


def test_attention_map_and_distance_by_hand():
    from wxy_hw.methods.at import attention_distance, attention_map

    # One sample, two channels on a 1×2 grid: Q = Σ_c A_c² = [1+4, 0+1] = [5, 1] → / √26.
    a = torch.tensor([[[[1.0, 0.0]], [[-2.0, 1.0]]]])
    q = attention_map(a)
    assert q.tolist()[0] == pytest.approx([5 / math.sqrt(26), 1 / math.sqrt(26)], rel=1e-6)
    # Against a map whose attention is all on the second position, [0, 1]:
    b = torch.tensor([[[[0.0, 3.0]]]])
    expected = ((5 / math.sqrt(26) - 0) ** 2 + (1 / math.sqrt(26) - 1) ** 2) / 2
    assert attention_distance(a, b).item() == pytest.approx(expected, rel=1e-6)
    assert attention_distance(a, a * 7.0).item() == pytest.approx(0.0, abs=1e-12)  # scale-free
    # A teacher map of another resolution is pooled to the student's: 2×4 → 1×2.
    big = b.repeat_interleave(2, dim=-1).repeat(1, 1, 2, 1)
    assert attention_distance(a, big).item() == pytest.approx(expected, rel=1e-6)


def test_at_with_teacher_terms_by_hand():
    from wxy_hw.methods.at import attention_distance

    torch.manual_seed(0)
    teacher = build_model("resnet8", 3, 1, 0.25, 28, multi_exit=False)
    student = build_model("resnet8", 3, 1, 0.125, 28, multi_exit=False)
    x = torch.randn(2, 1, 28, 28)
    method = build_method("at", teacher=teacher, beta=10.0)
    out = student(x)
    terms = method(out, Batch(x, Y))
    t_maps = teacher.eval()(x).stage_maps
    by_hand = 5.0 * sum(attention_distance(s.detach(), t) for s, t in zip(out.stage_maps, t_maps)).item()
    assert terms["ce"].item() == pytest.approx(ce(out.final.detach(), Y), rel=1e-5)
    assert terms["at"].item() == pytest.approx(by_hand, rel=1e-5) and terms["at"].item() > 0
    terms["at"].backward()
    assert all(p.grad is None for p in teacher.parameters())  # the teacher is frozen
    assert student.stem[0].weight.grad.abs().sum() > 0  # the student is pulled towards it
    with pytest.raises(ValueError, match="needs a teacher"):
        build_method("at")


def test_dml_terms_by_hand_and_peer_trains():
    torch.manual_seed(0)
    student = build_model("resnet8", 3, 1, 0.125, 28, multi_exit=False)
    method = build_method("dml", seed=3)
    assert method.prepare_model(student) is student
    peer = method.peer
    assert peer is not student and not torch.equal(peer.stem[0].weight, student.stem[0].weight)  # its own init
    again = build_method("dml", seed=3)
    again.prepare_model(student)
    assert torch.equal(again.peer.stem[0].weight, peer.stem[0].weight)  # drawn from the seed
    x = torch.randn(2, 1, 28, 28)
    out = student(x)
    terms = method(out, Batch(x, Y))
    p_logits = peer(x).final.detach()
    s_logits = out.final.detach()
    assert terms["ce"].item() == pytest.approx(ce(s_logits, Y), rel=1e-5)
    assert terms["peer_ce"].item() == pytest.approx(ce(p_logits, Y), rel=1e-5)
    assert terms["kl"].item() == pytest.approx(kl_by_hand(s_logits, p_logits, 1.0), rel=1e-4)
    assert terms["peer_kl"].item() == pytest.approx(kl_by_hand(p_logits, s_logits, 1.0), rel=1e-4)
    # Each KL pulls only its own network: the other side's prediction is a fixed target.
    terms["kl"].backward()
    assert all(p.grad is None for p in peer.parameters())
    assert {id(p) for p in method.parameters()} == {id(p) for p in peer.parameters()}  # the peer joins the optimizer


@pytest.mark.slow
def test_dml_trains_both_networks_and_resumes_bit_identically(synthetic, tmp_path):
    from wxy_hw.checkpoint import read_checkpoint
    from wxy_hw.train import TrainConfig, Trainer

    def trainer(run):
        torch.manual_seed(0)
        m = build_method("dml")
        model = m.prepare_model(build_model("resnet8", 10, 1, 0.125, 28, multi_exit=False))
        cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, torch_device="cpu", progress=False, max_steps_per_epoch=4)
        return Trainer(model, m, synthetic, cfg, tmp_path / run)

    full = trainer("full")
    peer_before = {k: v.clone() for k, v in full.method.peer.state_dict().items()}
    full.fit()
    assert any(not torch.equal(peer_before[k], v) for k, v in full.method.peer.state_dict().items())  # peer learned
    trainer("part").fit(stop_after_epoch=1)
    trainer("part").fit(resume=True)
    a, b = (read_checkpoint(tmp_path / r / "last.pt") for r in ("full", "part"))
    for key in ("model_state", "method_state"):
        assert a[key].keys() == b[key].keys() and all(torch.equal(a[key][k], b[key][k]) for k in a[key]
                                                       if isinstance(a[key][k], torch.Tensor))


def test_fitnet_hint_stage_then_kd_by_hand():
    torch.manual_seed(0)
    teacher = build_model("resnet8", 3, 1, 0.25, 28, multi_exit=False)
    student = build_model("resnet8", 3, 1, 0.125, 28, multi_exit=False)
    method = build_method("fitnet", teacher=teacher, hint_fraction=0.5)
    method.prepare_model(student)
    r = method.regressor
    assert (r.in_channels, r.out_channels) == (student.stage_channels[1], teacher.stage_channels[1])
    x = torch.randn(2, 1, 28, 28)
    method.set_epoch(1, 4)  # epochs 0–1 of 4: hint training
    out = student(x)
    terms = method(out, Batch(x, Y))
    t = teacher.eval()(x)
    guided = r(out.stage_maps[1]).detach()
    assert list(terms) == ["hint"]
    assert terms["hint"].item() == pytest.approx(0.5 * (guided - t.stage_maps[1]).pow(2).mean().item(), rel=1e-5)
    terms["hint"].backward()
    assert student.stem[0].weight.grad is not None and student.heads[-1].fc.weight.grad is None  # lower half only
    method.set_epoch(2, 4)  # then knowledge distillation
    terms = method(student(x), Batch(x, Y))
    assert terms["kd"].item() == pytest.approx(0.9 * 16 * kl_by_hand(student(x).final.detach(), t.final.detach(), 4.0),
                                               rel=1e-4)
    with pytest.raises(ValueError, match="share of epochs"):
        build_method("fitnet", teacher=teacher, hint_fraction=1.0)


def test_changed_defaults_names_what_a_run_took_by_default_and_would_now_take_otherwise():
    """A run trained when a default was another is another model (auxiliary_adv's merge_bn was False); asked
    options, the method's seed, JSON's lists for tuples and defaults that follow other options are no change."""
    recorded = json.loads(json.dumps(build_method("auxiliary_adv", seed=3).options()))  # as a manifest holds them
    assert changed_defaults("auxiliary_adv", {}, recorded) == []
    old = {**recorded, "merge_bn": False}
    assert changed_defaults("auxiliary_adv", {}, old) == ["merge_bn: run has False, now True"]
    assert changed_defaults("auxiliary_adv", {"merge_bn": False}, old) == []  # asked for: compared as asked
    both = json.loads(json.dumps(build_method("self_distillation+hwa", device="pcm").options()))
    assert changed_defaults("self_distillation+hwa", {"device": "pcm"}, both) == []  # t_inference follows the device
    both["hwa"]["noise_scale"] = 0.5
    assert changed_defaults("self_distillation+hwa", {"device": "pcm"}, both) == ["hwa.noise_scale: run has 0.5, now 1.0"]
    # a teacher method is not built without its teacher: its signature's defaults, None ones resolved from it
    assert changed_defaults("kd", {}, {"alpha": 0.9, "temperature": 4.0, "hint_weight": 0.0}) == []
    assert changed_defaults("kd", {}, {"temperature": 2.0}) == ["temperature: run has 2.0, now 4.0"]
    # ... and the other parts of its composition as build_method makes them (hwa after it leaves CE to kd)
    teacher = build_model("resnet8", 10, 1, 0.125, 28)
    kd_hwa = json.loads(json.dumps(build_method("kd+hwa", teacher=teacher).options()))
    assert kd_hwa["hwa"]["include_ce"] is False and changed_defaults("kd+hwa", {}, kd_hwa) == []
    # a comparison's own finished run is compared on asked options too
    assert changed_options("auxiliary_adv", {"epsilon": 0.2}, recorded, asked_too=True) == [
        "epsilon: run has 0.1, asked 0.2", "step_size: run has 0.05, now 0.1"]


def test_options_are_plain_python_values_a_checkpoint_keeps(tmp_path):
    """A numpy number given as an option (a sweep over np.linspace) is a float subclass a weights-only checkpoint
    refuses: options are stored as Python's own numbers."""
    import numpy as np

    from wxy_hw.checkpoint import read_checkpoint, save_checkpoint
    from wxy_hw.utils import json_types

    method = build_method("baseline", label_smoothing=np.float64(0.1))
    options = json_types(method.options())
    assert type(options["label_smoothing"]) is float and json_types({"k": (np.int64(2), True)}) == {"k": [2, True]}
    save_checkpoint(tmp_path / "m.pt", build_model("resnet8", 10, 1, 0.125, 28, multi_exit=False),
                    method_options=json_types({"x": np.float32(0.5)}))
    assert read_checkpoint(tmp_path / "m.pt")["method_options"] == {"x": 0.5}


# --- every method checks its own options: one line naming the method, the option, its range and an example -----
@pytest.mark.parametrize("method, option, value, rule", [
    ("baseline", "label_smoothing", 5, "a number from 0 to 1"),
    ("baseline", "label_smoothing", [1], "a number from 0 to 1"),
    ("dsn", "exit_weight", -1, "a finite number ≥ 0"),
    ("kd", "temperature", -4, "a finite number > 0"),
    ("kd", "alpha", float("nan"), "a number from 0 to 1"),
    ("kd", "alpha", "abc", "a number from 0 to 1"),
    ("kd", "student_features", 0, "an integer ≥ 1"),
    ("fitnet", "hint_stage", 9, "an integer from -4 to 3"),
    ("fitnet", "hint_fraction", 1.0, "the share of epochs"),
    ("at", "beta", float("inf"), "a finite number ≥ 0"),
    ("at", "p", 0, "a finite number > 0"),
    ("dml", "temperature", 0, "a finite number > 0"),
    ("dml", "seed", -1, "an integer from 0 to 2**63 - 1"),
    ("self_distillation", "preset", "nope", "one of official, scan, paper"),
    ("self_distillation", "t2_scaling", "yes", "true or false"),
    ("scan", "alpha", 2, "a number from 0 to 1"),
    ("hwa", "device", 5, "a device name"),
    ("hwa", "noise_scale", -1, "a finite number ≥ 0"),
    ("hwa", "t_inference", "1d", "a finite number ≥ 0"),
    ("qat", "per_channel", 1, "true or false"),
    ("augment", "corruptions", "snow", "unknown corruption(s): snow"),
    ("augment", "severities", [0, 6], "a list of integers from 1 to 5"),
    ("ada", "kl_weight", -0.5, "a finite number ≥ 0"),
    ("auxiliary", "merge_start", 1.5, "a number from 0 to 1"),
    ("auxiliary", "merge_bn", "false", "true or false"),
    ("auxiliary_adv", "steps", 2.5, "an integer ≥ 1"),
    ("adv", "epsilon", 8, "epsilon is in pixel units"),
    ("adv", "step_size", 0, "a finite number > 0"),
])
def test_every_method_refuses_a_bad_option_in_one_line(method, option, value, rule):
    from wxy_hw.methods import OptionError

    with pytest.raises(OptionError) as info:  # a teacher method checks its options before it asks for the teacher
        build_method(method, **{option: value})
    text = str(info.value)
    assert f"{method}'s {option} must be " in text and rule in text and f"(e.g. {option}=" in text, text
    assert "\n" not in text


def test_check_method_options_words_a_refusal_as_the_flag_it_came_from():
    from wxy_hw.methods import check_method_options

    with pytest.raises(ValueError) as info:
        check_method_options("kd", {"temperature": -4})
    assert str(info.value) == ("--method-arg temperature=-4: kd's temperature must be a finite number > 0; "
                               "give e.g. --method-arg temperature=4")
    with pytest.raises(ValueError, match=r"^--method-arg hwa\.noise_scale=-1: hwa's noise_scale"):
        check_method_options("hwa", {"noise_scale": -1}, keys={"noise_scale": "hwa.noise_scale"})
    # a check of the method's own (the device file's) keeps its words, after the flag and the method
    with pytest.raises(ValueError, match=r"^--method-arg: method 'self_distillation\+hwa': unknown device 'nodev'"):
        check_method_options("self_distillation+hwa", {"device": "nodev"})
    with pytest.raises(ValueError, match=r"^--method-arg: method 'baseline' has no option\(s\) \['foo'\]"):
        check_method_options("baseline", {"foo": 1})
    check_method_options("kd", {"temperature": 2, "alpha": 0.5})  # good options of a teacher method, no teacher
    check_method_options("kd+hwa", {"noise_scale": 0.5})
    check_method_options("self_distillation+hwa", {"device": "pcm", "temperature": 4})
