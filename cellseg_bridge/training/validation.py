"""Validation AP during training, and fitting the size model from the trained network."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from cellseg_bridge.config import TrainOptions
from cellseg_bridge.core.augment import random_affine, warp_sample
from cellseg_bridge.nn.net import CellposeUNet
from cellseg_bridge.nn.size_model import SizeModel, fit_size_model
from cellseg_bridge.training.data import TrainSample

__all__ = ["fit_size_from_net", "validate", "validate_sets"]


def validate(net: CellposeUNet, val_items, opts: TrainOptions, device) -> tuple[float, float, float]:
    """Mean AP at IoU 0.5/0.75/0.9 over the validation images (segmented at their true diameter)."""
    from cellseg_bridge.core.metrics import average_precision
    from cellseg_bridge.segmentation.pipeline import SegmentationModel, segment
    from cellseg_bridge.training.data import median_diameter

    model = SegmentationModel(net=net, config=net.architecture(), name="training", device=device)
    aps = []
    was_training = net.training
    try:
        for _name, image, labels, ax in val_items:
            lab = np.asarray(labels).squeeze()
            diam, n = median_diameter(lab)
            res = segment(
                image, model, axes=ax, channel=opts.channel, nuclear_channel=opts.nuclear_channel,
                diameter=diam if n else float(net.diam_labels.item()),
                normalize_percentiles=tuple(opts.normalize_percentiles), invert=opts.invert,
            )
            ap, *_ = average_precision(lab.astype(np.int64), res.labels[0, 0].astype(np.int64))
            aps.append(ap)
    finally:
        net.train(was_training)
    m = np.mean(aps, axis=0)
    return float(m[0]), float(m[1]), float(m[2])


def validate_sets(net: CellposeUNet, val_sets: dict[str, list], opts: TrainOptions, device) -> dict[str, float]:
    """``ap50``/``ap75``/``ap90``: the mean over validation sets; with several sets also ``ap50_<name>``, ..."""
    per = {name: validate(net, items, opts, device) for name, items in val_sets.items()}
    mean = np.mean(list(per.values()), axis=0)
    row = {"ap50": float(mean[0]), "ap75": float(mean[1]), "ap90": float(mean[2])}
    if len(per) > 1:
        for name, aps in per.items():
            row.update({f"ap50_{name}": aps[0], f"ap75_{name}": aps[1], f"ap90_{name}": aps[2]})
    return row


def fit_size_from_net(
    net: CellposeUNet, samples: Sequence[TrainSample], rng: np.random.Generator, *,
    crop_size: int = 224, crops_per_image: int = 4, batch_size: int = 8,
) -> SizeModel | None:
    """Fit the style -> diameter regression from the trained network.

    Each crop is an image zoomed by ``s = r0 * u`` (``r0 = diam_mean / diam_labels``,
    the scale at which :func:`~cellseg_bridge.segmentation.pipeline.segment` computes styles
    for the estimate; ``u`` uniform in [0.5, 1.5]), randomly rotated/flipped. Its
    target is the diameter that an image would have if the network saw it at
    scale ``s`` after the pipeline's zoom by ``r0``: ``diameter * u``.

    Returns None when no image has masks.
    """
    use = [s for s in samples if s.n_masks > 0 and s.diameter > 0]
    if not use:
        return None
    dm = float(net.diam_mean.item())
    r0 = dm / float(net.diam_labels.item())
    device = net.device
    styles: list[np.ndarray] = []
    targets: list[float] = []
    xs: list[np.ndarray] = []
    was_training = net.training
    net.eval()

    def flush():
        if xs:
            with torch.inference_mode():
                _, st = net(torch.from_numpy(np.stack(xs)).to(device))
            styles.append(st.float().cpu().numpy())
            xs.clear()

    try:
        for s in use:
            for _ in range(crops_per_image):
                u = 0.5 + rng.random()
                params = random_affine(rng, s.labels.shape, crop_size, base_scale=r0 * u, scale_range=0.0)
                img, _, _ = warp_sample(params, s.image)
                xs.append(img)
                targets.append(s.diameter * u)
                if len(xs) == batch_size:
                    flush()
        flush()
    finally:
        net.train(was_training)
    return fit_size_model(np.concatenate(styles), np.asarray(targets), 1.0, diam_mean=dm)
