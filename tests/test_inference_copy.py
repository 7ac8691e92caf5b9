"""The inference copy (BN folded, NHWC) computes the model's function, and early exit runs on it."""
from __future__ import annotations

import torch

from wxy_hw.inference import early_exit_inference, fold_batchnorm, inference_copy


def test_inference_copy_keeps_every_exit_and_early_exit_decisions(trained_dsn):
    x = torch.randn(24, 1, 28, 28)
    ref = trained_dsn(x)
    folded = fold_batchnorm(trained_dsn)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.stages.modules())
    fast = inference_copy(trained_dsn)
    with torch.no_grad():
        out = fast(x.contiguous(memory_format=torch.channels_last))
    for a, b in zip(ref.logits, out.logits):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    th = [0.6, 0.7, 0.8]
    r0 = early_exit_inference(trained_dsn, x, th)
    r1 = early_exit_inference(fast, x.contiguous(memory_format=torch.channels_last), th)
    assert torch.equal(r0.exit_index, r1.exit_index) and torch.equal(r0.predictions, r1.predictions)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in trained_dsn.modules())  # the model is untouched
