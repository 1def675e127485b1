"""Losses for restoration networks that are judged by how well their output segments.

The restoration network ``R`` maps a degraded, normalised image to a restored
one. A *frozen* segmentation network ``S`` (eval mode, no gradients to its
weights) judges the result:

- **perceptual**: for every encoder level ``l`` of ``S``, the channel
  correlation matrix ``G_l = F_l F_l^T / (H_l W_l)`` of its features ``F_l``
  (``C_l x H_l W_l``) on the restored image should match the one on the clean
  image; per level the squared difference is averaged and divided by the mean
  square of the clean matrix (so every level counts alike), then levels are
  averaged.
- **segmentation**: ``S`` run on the restored image, scored like segmentation
  training against the clean image's targets: ``MSE(flows, 5 * flow
  targets) / 2 + BCEWithLogits(cellprob, probability target)``. The targets
  are the flows of the ground-truth masks when there are masks, else ``S``'s
  own output on the clean image (flows and sigmoid of its cell probability).
- **reconstruction**: ``MSE(restored, clean)`` (Cellpose 3 weights it x80 when used).

Cellpose 3's weights are perceptual 1.0, segmentation 1.5, reconstruction 0;
the CARE-like baseline is reconstruction only (:data:`MSE_BASELINE_WEIGHTS`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from cellseg_bridge.nn.net import CellposeUNet, style_vector
from cellseg_bridge.nn.precision import autocast

__all__ = [
    "DEFAULT_WEIGHTS",
    "MSE_BASELINE_WEIGHTS",
    "LossWeights",
    "RestoreLoss",
    "gram_matrices",
    "perceptual_loss",
    "segmentation_loss",
    "seg_input",
]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three terms (0 switches a term off, and its cost)."""

    perceptual: float = 1.0
    segmentation: float = 1.5
    reconstruction: float = 0.0

    def to_dict(self) -> dict[str, float]:
        """Plain dict (for ``config.json``)."""
        return asdict(self)


#: Cellpose 3's segmentation-aware recipe.
DEFAULT_WEIGHTS = LossWeights()
#: Reconstruction-only (CARE / Noise2Void-style pixel loss), 80 x MSE.
MSE_BASELINE_WEIGHTS = LossWeights(perceptual=0.0, segmentation=0.0, reconstruction=80.0)


def gram_matrices(features: list[torch.Tensor]) -> list[torch.Tensor]:
    """Channel correlation ``[B, C, C]`` of each ``[B, C, H, W]`` feature map, divided by ``H * W``."""
    grams = []
    for f in features:
        b, c, h, w = f.shape
        flat = f.reshape(b, c, h * w)
        grams.append(torch.bmm(flat, flat.transpose(1, 2)) / float(h * w))
    return grams


def perceptual_loss(restored_feats: list[torch.Tensor], clean_feats: list[torch.Tensor]) -> torch.Tensor:
    """Mean over levels of ``mean((G_r - G_c)^2) / (mean(G_c^2) + 1e-6)`` (see the module docstring)."""
    terms = []
    for gr, gc in zip(gram_matrices(restored_feats), gram_matrices(clean_feats)):
        gc = gc.detach()
        terms.append(((gr - gc) ** 2).mean() / ((gc**2).mean() + 1e-6))
    return torch.stack(terms).mean()


def segmentation_loss(output: torch.Tensor, flows5: torch.Tensor, prob: torch.Tensor) -> torch.Tensor:
    """``MSE(output[:, :2], flows5) / 2 + BCEWithLogits(output[:, 2], prob)``; ``prob`` may be soft."""
    return F.mse_loss(output[:, :2], flows5) / 2 + F.binary_cross_entropy_with_logits(output[:, 2], prob)


def seg_input(image: torch.Tensor, nchan: int) -> torch.Tensor:
    """A ``[B, 1, H, W]`` image as input of a segmentation net with ``nchan`` channels (extra channels 0)."""
    if nchan == 1:
        return image
    pad = torch.zeros((image.shape[0], nchan - 1, *image.shape[2:]), dtype=image.dtype, device=image.device)
    return torch.cat([image, pad], dim=1)


class RestoreLoss:
    """The combined loss with a frozen segmentation network.

    Parameters
    ----------
    seg_net : CellposeUNet, optional
        Segmentation network (``nout`` 3); put in eval mode, its parameters
        frozen. Needed unless only the reconstruction weight is non-zero.
    weights : LossWeights
    amp_dtype : torch.dtype, optional
        Autocast dtype of the segmentation network's passes (bfloat16 mixed
        precision); its outputs and the loss terms are float32 either way.
    """

    def __init__(
        self,
        seg_net: CellposeUNet | None,
        weights: LossWeights = DEFAULT_WEIGHTS,
        amp_dtype: torch.dtype | None = None,
    ) -> None:
        needs_seg = weights.perceptual > 0 or weights.segmentation > 0
        if needs_seg and seg_net is None:
            raise ValueError("perceptual and segmentation losses need a segmentation network")
        if seg_net is not None:
            if seg_net.nout < 3:
                raise ValueError(f"the judging network must be a segmentation network (nout 3), got nout {seg_net.nout}")
            seg_net.eval()
            for p in seg_net.parameters():
                p.requires_grad_(False)
        self.seg_net = seg_net
        self.weights = weights
        self.amp_dtype = amp_dtype

    def _seg(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        net = self.seg_net
        x = seg_input(image, net.nchan)
        if x.device.type == "cpu":  # channels-last: oneDNN's fast convolutions, forward and backward
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(image.device, self.amp_dtype):
            feats = net.encode(x)
            out = net.decode(feats, style_vector(feats[-1]))
        return out.float(), [f.float() for f in feats]

    def clean_targets(self, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """The segmentation net on the clean image: flows x5, cell probability (sigmoid), encoder features."""
        with torch.no_grad():
            out, feats = self._seg(clean)
        return out[:, :2], torch.sigmoid(out[:, 2]), feats

    def __call__(
        self,
        restored: torch.Tensor,
        clean: torch.Tensor,
        flows5: torch.Tensor | None = None,
        prob: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its terms.

        Parameters
        ----------
        restored, clean : Tensor ``[B, 1, H, W]``
            Restoration output and the clean normalised image.
        flows5, prob : Tensor, optional
            Ground-truth targets ``[B, 2, H, W]`` (unit flows x5) and ``[B, H, W]``
            (mask > 0); without them the segmentation net's output on ``clean`` is the target.
        """
        w = self.weights
        total = restored.new_zeros(())
        terms: dict[str, float] = {}
        if w.perceptual > 0 or w.segmentation > 0:
            out, feats = self._seg(restored)
            need_clean = w.perceptual > 0 or flows5 is None or prob is None
            if need_clean:
                f5_c, p_c, feats_c = self.clean_targets(clean)
                if flows5 is None or prob is None:
                    flows5, prob = f5_c, p_c
            if w.perceptual > 0:
                lp = perceptual_loss(feats, feats_c)
                total = total + w.perceptual * lp
                terms["perceptual"] = float(lp.detach())
            if w.segmentation > 0:
                ls = segmentation_loss(out, flows5, prob)
                total = total + w.segmentation * ls
                terms["segmentation"] = float(ls.detach())
        if w.reconstruction > 0:
            lr = F.mse_loss(restored, clean)
            total = total + w.reconstruction * lr
            terms["reconstruction"] = float(lr.detach())
        terms["total"] = float(total.detach())
        return total, terms
