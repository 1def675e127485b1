"""Restoration losses: zero at the clean image, gradients reach the restored image, not the judge."""

from __future__ import annotations

import pytest
import torch

from cellseg_bridge.nn.net import CellposeUNet
from cellseg_bridge.restoration.losses import (
    MSE_BASELINE_WEIGHTS,
    LossWeights,
    RestoreLoss,
    gram_matrices,
    perceptual_loss,
    seg_input,
)


@pytest.fixture
def judge() -> CellposeUNet:
    torch.manual_seed(0)
    return CellposeUNet((2, 4, 8, 16), nout=3, diam_mean=17.0)


def test_gram_matrices_are_channel_correlations():
    f = torch.randn(2, 3, 4, 5)
    (g,) = gram_matrices([f])
    expected = torch.einsum("bchw,bdhw->bcd", f, f) / 20.0
    torch.testing.assert_close(g, expected)
    assert perceptual_loss([f], [f]).item() == pytest.approx(0.0, abs=1e-7)
    assert perceptual_loss([f * 2], [f]).item() > 0


def test_seg_input_pads_with_zero_channels():
    x = torch.ones(2, 1, 8, 8)
    y = seg_input(x, 2)
    assert y.shape == (2, 2, 8, 8) and y[:, 1].abs().sum() == 0 and torch.equal(y[:, :1], x)


def test_loss_is_smallest_at_the_clean_image_and_trains_only_the_restorer(judge):
    torch.manual_seed(1)
    clean = torch.rand(2, 1, 32, 32)
    noisy = (clean + 0.5 * torch.randn_like(clean)).requires_grad_(True)
    loss_fn = RestoreLoss(judge, LossWeights(1.0, 1.5, 80.0))
    at_clean, terms_clean = loss_fn(clean, clean)
    at_noisy, terms = loss_fn(noisy, clean)
    assert terms_clean["perceptual"] == pytest.approx(0.0, abs=1e-6)
    assert terms_clean["reconstruction"] == 0.0
    assert terms["perceptual"] > 0 and terms["reconstruction"] > 0
    # without ground truth the judge's own output on the clean image is the target
    assert terms["segmentation"] > terms_clean["segmentation"]
    at_noisy.backward()
    assert noisy.grad is not None and noisy.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in judge.parameters())
    assert not judge.training


def test_ground_truth_targets_are_used_when_given(judge):
    clean = torch.rand(1, 1, 32, 32)
    flows5 = torch.zeros(1, 2, 32, 32)
    prob = torch.zeros(1, 32, 32)
    loss_fn = RestoreLoss(judge, LossWeights(0.0, 1.0, 0.0))
    _, with_gt = loss_fn(clean, clean, flows5, prob)
    _, without = loss_fn(clean, clean)
    assert with_gt["segmentation"] != pytest.approx(without["segmentation"])


def test_mse_baseline_needs_no_judge_and_others_do():
    loss_fn = RestoreLoss(None, MSE_BASELINE_WEIGHTS)
    x, y = torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8)
    total, terms = loss_fn(x, y)
    assert total.item() == pytest.approx(80.0) and set(terms) == {"reconstruction", "total"}
    with pytest.raises(ValueError, match="need a segmentation network"):
        RestoreLoss(None)
    with pytest.raises(ValueError, match="nout 3"):
        RestoreLoss(CellposeUNet((1, 4, 8, 16), nout=1))


def test_bfloat16_judge_gives_float32_terms_close_to_float32(judge):
    torch.manual_seed(2)
    clean = torch.rand(2, 1, 32, 32)
    noisy = (clean + 0.3 * torch.randn_like(clean)).requires_grad_(True)
    _, ref = RestoreLoss(judge, LossWeights(1.0, 1.5, 0.0))(noisy, clean)
    loss, terms = RestoreLoss(judge, LossWeights(1.0, 1.5, 0.0), amp_dtype=torch.bfloat16)(noisy, clean)
    assert loss.dtype == torch.float32
    for key in ("perceptual", "segmentation"):
        assert terms[key] == pytest.approx(ref[key], rel=0.1)
        assert terms[key] != ref[key]  # the judge really ran in bfloat16
    loss.backward()
    assert noisy.grad is not None and noisy.grad.dtype == torch.float32 and noisy.grad.abs().sum() > 0
