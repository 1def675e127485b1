"""Train a restoration network that restores images *for segmentation* (Cellpose 3's recipe).

Each step, for a batch of training images:

1. a random crop at the judging network's scale (random zoom by ``diam_mean /
   image diameter`` x [0.75, 1.25], rotation, flip: :mod:`cellseg_bridge.core.augment`)
   of the clean, normalised image, with its masks and flows;
2. one random degradation of the crop (:func:`cellseg_bridge.core.degrade.degrade`,
   of the kind being trained), renormalised;
3. the restoration network on the degraded crop;
4. the loss (:class:`cellseg_bridge.restoration.losses.RestoreLoss`): perceptual and
   segmentation terms from a frozen segmentation network, optional
   reconstruction term; AdamW.

The result is a plain Cellpose-compatible state dict (``nbase`` [1, ...], ``nout``
1) with ``config.json`` (``task`` "restoration", ``restore_type``, loss weights,
judging model, provenance) and ``curves.csv`` (per epoch: loss terms, learning
rate, seconds per step split into data preparation and network).
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cellseg_bridge.core.augment import random_affine, warp_sample
from cellseg_bridge.core.degrade import ANISO_MIX, RESTORE_KINDS, degrade
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.atomic import atomic_output
from cellseg_bridge.nn.checkpoint import load_checkpoint, save_checkpoint
from cellseg_bridge.nn.inference import select_device
from cellseg_bridge.nn.net import RESTORATION_NBASE, CellposeUNet
from cellseg_bridge.nn.precision import autocast, training_autocast_dtype
from cellseg_bridge.nn.registry import resolve_model
from cellseg_bridge.restoration.losses import DEFAULT_WEIGHTS, LossWeights, RestoreLoss

__all__ = ["RestoreTrainResult", "train_restore"]

logger = logging.getLogger(__name__)


@dataclass
class RestoreTrainResult:
    """What :func:`train_restore` returns.

    Attributes
    ----------
    weights : Path
        The saved state dict.
    epochs_run : int
    steps : int
    stopped : str
        ``"done"`` or ``"time budget"``.
    curves : list of dict
        Per epoch: ``epoch``, ``lr``, ``loss`` and its terms, ``s_data``, ``s_net`` (seconds per step).
    seconds : float
        Total wall time.
    """

    weights: Path
    epochs_run: int
    steps: int
    stopped: str
    curves: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _load_judge(seg_model: Any, device: torch.device) -> tuple[CellposeUNet | None, str | None]:
    if seg_model is None:
        return None, None
    if isinstance(seg_model, CellposeUNet):
        return seg_model.to(device), type(seg_model).__name__
    path = resolve_model(seg_model)
    net, config = load_checkpoint(path, device)
    if int(config["nout"]) < 3:
        raise InputError("the judging model must be a segmentation network (nout 3)", path)
    return net, str(path)


@dataclass
class _Sample:
    image: np.ndarray  # (1, Y, X) normalised
    labels: np.ndarray | None
    flows: np.ndarray | None
    diameter: float


def _samples(images: Sequence[Any], labels: Sequence[Any] | None, diam_mean: float) -> list[_Sample]:
    from cellseg_bridge.training.data import make_sample, network_input

    out = []
    for i, img in enumerate(images):
        name = f"image {i}"
        if labels is not None and labels[i] is not None:
            s = make_sample(img, labels[i], nchan=1, name=name)
            diam = s.diameter if s.diameter > 0 else diam_mean
            out.append(_Sample(s.image, s.labels, s.flows, diam))
        else:
            out.append(_Sample(network_input(img, nchan=1, name=name), None, None, diam_mean))
    return out


def _batch(samples: list[_Sample], idx: Sequence[int], rng: np.random.Generator, kind: str, crop: int,
           diam_mean: float, scale_range: float, aniso_mix: tuple[float, float] = ANISO_MIX):
    clean, noisy, flows, probs = [], [], [], []
    with_targets = all(samples[i].flows is not None for i in idx)
    for i in idx:
        s = samples[i]
        params = random_affine(rng, s.image.shape[-2:], crop, base_scale=diam_mean / s.diameter,
                               scale_range=scale_range)
        img, fl, lab = warp_sample(params, s.image, s.flows if with_targets else None,
                                   s.labels if with_targets else None)
        deg, _ = degrade(img[0], kind, rng, diameter=diam_mean, aniso_mix=aniso_mix)
        clean.append(img)
        noisy.append(deg[None])
        if with_targets:
            flows.append(fl * np.float32(5.0))
            probs.append((lab > 0).astype(np.float32))
    x = torch.from_numpy(np.stack(noisy))
    y = torch.from_numpy(np.stack(clean))
    if not with_targets:
        return x, y, None, None
    return x, y, torch.from_numpy(np.stack(flows)), torch.from_numpy(np.stack(probs))


def _lr(epoch: int, n_epochs: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak."""
    if epoch < warmup:
        return peak * (epoch + 1) / (warmup + 1)
    t = (epoch - warmup) / max(1, n_epochs - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def _write_curves(curves: list[dict], path: Path) -> None:
    keys: list[str] = []
    for row in curves:
        keys += [k for k in row if k not in keys]
    with atomic_output(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(curves)


def train_restore(
    images: Sequence[Any],
    out_dir: str | Path,
    *,
    labels: Sequence[Any] | None = None,
    kind: str = "denoise",
    seg_model: Any = None,
    weights: LossWeights = DEFAULT_WEIGHTS,
    nbase: Sequence[int] = RESTORATION_NBASE,
    diam_mean: float | None = None,
    n_epochs: int = 100,
    images_per_epoch: int | None = None,
    batch_size: int = 8,
    crop_size: int = 224,
    scale_range: float = 0.5,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-5,
    warmup_epochs: int = 5,
    seed: int = 0,
    time_budget_min: float | None = None,
    device: str = "auto",
    precision: str = "auto",
    init_weights: str | Path | None = None,
    aniso_mix: tuple[float, float] = ANISO_MIX,
    save_every: int = 10,
    provenance: dict | None = None,
    weights_name: str = "weights.pth",
) -> RestoreTrainResult:
    """Train a restoration network for ``kind`` and save it in ``out_dir``.

    Parameters
    ----------
    images : sequence of 2D arrays (or single-plane DataArrays)
        Clean training images.
    out_dir : str or Path
        Receives ``weights_name``, ``config.json`` and ``curves.csv``.
    labels : sequence of 2D label images, optional
        Masks of ``images``: the segmentation loss then uses their flows; without
        masks it uses the judging network's output on the clean image, and the
        crop scale is ``diam_mean`` (images assumed at the network's scale).
    kind : str
        Degradation trained for: one of :data:`~cellseg_bridge.core.degrade.RESTORE_KINDS`.
    seg_model : name, path or CellposeUNet, optional
        Frozen segmentation network judging the restorations (needed unless
        ``weights`` is reconstruction only).
    weights : LossWeights
        Default Cellpose 3's (perceptual 1, segmentation 1.5); the MSE baseline is
        :data:`~cellseg_bridge.restoration.losses.MSE_BASELINE_WEIGHTS`.
    nbase : sequence of int
        Restoration network widths (first entry must be 1).
    diam_mean : float, optional
        Diameter the network works at; default the judging network's (17 for nuclei), else 30.
    n_epochs, images_per_epoch, batch_size, crop_size, scale_range
        Schedule and augmentation (``images_per_epoch`` default: all images).
    learning_rate, weight_decay, warmup_epochs
        AdamW, linear warm-up then cosine decay.
    seed : int
    time_budget_min : float, optional
        Stop after the epoch during which this many minutes have passed.
    device : str
    precision : {"auto", "float32", "bfloat16"}
        Training arithmetic (:func:`~cellseg_bridge.nn.precision.training_autocast_dtype`):
        "auto" is bfloat16 mixed precision where the hardware has it natively.
    init_weights : str or Path, optional
        Start from this restoration checkpoint (same ``nbase``; e.g. the MSE
        baseline, then fine-tuned with the segmentation-aware loss) instead of
        random weights.
    aniso_mix : (float, float)
        For ``kind="aniso"``: probabilities of the anisotropic blur and of the
        stripes in a draw (recorded in ``config.json``).
    save_every : int
        Save the weights every this many epochs (and at the end).
    provenance : dict, optional
        Extra facts for ``config.json`` (training data, command).
    weights_name : str
        File name of the weights.

    Returns
    -------
    RestoreTrainResult
    """
    if kind not in RESTORE_KINDS:
        raise InputError(f"unknown restoration kind {kind!r}; known: {', '.join(RESTORE_KINDS)}")
    nbase = tuple(int(n) for n in nbase)
    if nbase[0] != 1:
        raise InputError(f"a restoration network takes 1 input channel: nbase must start with 1, got {list(nbase)}")
    if not images:
        raise InputError("no training images")
    if labels is not None and len(labels) != len(images):
        raise InputError(f"{len(images)} images but {len(labels)} label images")
    if batch_size < 1 or n_epochs < 1 or crop_size < 16:
        raise InputError("batch_size and n_epochs must be >= 1 and crop_size >= 16")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = select_device(device)
    amp_dtype = training_autocast_dtype(precision, dev)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    needs_judge = weights.perceptual > 0 or weights.segmentation > 0
    judge, judge_name = _load_judge(seg_model if needs_judge else None, dev)
    if diam_mean is None:
        diam_mean = float(judge.diam_mean.item()) if judge is not None else 30.0
    loss_fn = RestoreLoss(judge, weights, amp_dtype)
    net = CellposeUNet(nbase, nout=1, diam_mean=diam_mean).to(dev)
    if init_weights is not None:
        start, _ = load_checkpoint(init_weights, dev)
        if tuple(int(n) for n in start.nbase) != nbase or int(start.nout) != 1:
            raise InputError(f"init weights have nbase {list(start.nbase)}, nout {start.nout}; "
                             f"need nbase {list(nbase)}, nout 1", init_weights)
        net.load_state_dict(start.state_dict())
        net.diam_mean.data.fill_(float(diam_mean))
        logger.info("starting from %s", init_weights)
    mult = net.size_multiple if judge is None else math.lcm(net.size_multiple, judge.size_multiple)
    if crop_size % mult:
        raise InputError(f"crop_size must be a multiple of {mult}, got {crop_size}")
    tic = time.perf_counter()
    samples = _samples(images, labels, diam_mean)
    diams = [s.diameter for s in samples if s.labels is not None]
    if diams:
        net.diam_labels.data.fill_(float(np.mean(diams)))
    logger.info("%d training image(s) prepared in %.1f s; kind %s, loss %s", len(samples),
                time.perf_counter() - tic, kind, weights.to_dict())
    optim = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=weight_decay)
    n_img = images_per_epoch or len(samples)
    steps_per_epoch = max(1, math.ceil(n_img / batch_size))
    config = {
        "task": "restoration",
        "restore_type": kind,
        "loss_weights": weights.to_dict(),
        "judge_model": judge_name,
        **({"aniso_mix": [float(q) for q in aniso_mix]} if kind == "aniso" else {}),
        "provenance": {**(provenance or {}), "n_images": len(samples), "n_epochs": n_epochs,
                       "batch_size": batch_size, "crop_size": crop_size, "learning_rate": learning_rate,
                       "weight_decay": weight_decay, "seed": seed, "optimizer": "adamw",
                       "init_weights": None if init_weights is None else str(init_weights)},
    }
    weights_path = out_dir / weights_name
    curves: list[dict] = []
    stopped, steps, epoch = "done", 0, 0
    t0 = time.perf_counter()
    for epoch in range(n_epochs):
        lr = _lr(epoch, n_epochs, learning_rate, warmup_epochs)
        for group in optim.param_groups:
            group["lr"] = lr
        net.train()
        order = rng.permutation(len(samples)) if n_img <= len(samples) else rng.integers(len(samples), size=n_img)
        order = np.resize(order, steps_per_epoch * batch_size)
        sums: dict[str, float] = {}
        t_data = t_net = 0.0
        for k in range(steps_per_epoch):
            ta = time.perf_counter()
            x, y, f5, p = _batch(samples, order[k * batch_size:(k + 1) * batch_size], rng, kind, crop_size,
                                 diam_mean, scale_range, aniso_mix)
            x, y = x.to(dev), y.to(dev)
            f5 = None if f5 is None else f5.to(dev)
            p = None if p is None else p.to(dev)
            tb = time.perf_counter()
            if dev.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(dev, amp_dtype):
                restored, _ = net(x)
            loss, terms = loss_fn(restored.float(), y, f5, p)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            tc = time.perf_counter()
            t_data += tb - ta
            t_net += tc - tb
            steps += 1
            for key, v in terms.items():
                sums[key] = sums.get(key, 0.0) + v
            if not math.isfinite(terms["total"]):
                raise RuntimeError(f"restoration training diverged at epoch {epoch + 1} (loss {terms['total']})")
        row = {"epoch": epoch + 1, "lr": lr, **{f"loss_{k}" if k != "total" else "loss": v / steps_per_epoch
                                                for k, v in sums.items()},
               "s_data": t_data / steps_per_epoch, "s_net": t_net / steps_per_epoch}
        curves.append(row)
        logger.info("epoch %d/%d: loss %.4f (%s), %.2f s/step data + %.2f s/step network", epoch + 1, n_epochs,
                    row["loss"], ", ".join(f"{k} {v / steps_per_epoch:.4f}" for k, v in sums.items() if k != "total"),
                    row["s_data"], row["s_net"])
        last = epoch + 1 == n_epochs
        over = time_budget_min is not None and time.perf_counter() - t0 > time_budget_min * 60
        if last or over or (save_every > 0 and (epoch + 1) % save_every == 0):
            net.eval()
            save_checkpoint(net, weights_path, {**config, "epochs_run": epoch + 1})
            _write_curves(curves, out_dir / "curves.csv")
        if over and not last:
            stopped = "time budget"
            logger.info("time budget of %.1f min used up after epoch %d", time_budget_min, epoch + 1)
            break
    net.eval()
    return RestoreTrainResult(weights=weights_path, epochs_run=len(curves), steps=steps, stopped=stopped,
                              curves=curves, seconds=time.perf_counter() - t0)
