"""The training loop: :func:`train`, checkpoints, resume, validation AP, curves, size model.

Per step: ``batch_size`` images drawn (a seeded permutation per epoch), each
warped by a random scale/rotation/flip into a ``crop_size`` crop
(:mod:`cellseg_bridge.core.augment`, scale around ``diam_mean / diameter`` of
that image), loss ``MSE(pred_flow, 5 * flow) / 2 + BCEWithLogits(pred_prob,
mask > 0)``, one optimiser step. The learning rate follows
:func:`~cellseg_bridge.training.recipes.lr_schedule` epoch by epoch.

Files in ``out_dir``:

* ``weights.pth`` + ``config.json`` (:func:`~cellseg_bridge.nn.checkpoint.save_checkpoint`;
  ``diam_mean``, ``diam_labels`` = mean training diameter, channels, recipe), at the end;
* ``size_model.npz`` (style -> diameter), at the end, unless disabled;
* ``checkpoint/last.pth`` (+ its ``config.json``) and ``checkpoint/state.pt``
  (network, optimiser, RNG states, epoch, curves; one atomic file), every
  ``save_every`` epochs, when the time budget runs out and on Ctrl-C
  (KeyboardInterrupt is re-raised after saving; an interrupted epoch is rolled
  back to its start, so resuming gives the same weights as an uninterrupted run
  with the same seed); ``resume=True`` continues from it;
* ``curves.csv`` (at every checkpoint) and ``curves.png`` (at the end and on
  Ctrl-C): training loss, learning rate and validation AP per epoch.

With a time budget, the number of epochs is reduced after the first epoch to what
the budget allows (so that the learning-rate schedule still anneals), and the run
stops cleanly (saving everything) if it is exceeded anyway.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cellseg_bridge.config import DEFAULTS, TrainOptions
from cellseg_bridge.core.augment import random_affine, warp_sample
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.atomic import atomic_output
from cellseg_bridge.nn.checkpoint import load_checkpoint, save_checkpoint
from cellseg_bridge.nn.net import CellposeUNet
from cellseg_bridge.nn.precision import autocast, training_autocast_dtype
from cellseg_bridge.training.data import TrainPair, TrainSample, find_pairs, load_pair, make_sample
from cellseg_bridge.training.recipes import ADAMW_LR, get_recipe, lr_schedule
from cellseg_bridge.training.sources import DataSource, as_sources, sampling_probabilities
from cellseg_bridge.training.state import (
    CHECKPOINT_DIR,
    STATE_NAME,
    rng_from_plain,
    rng_to_plain,
    save_training_checkpoint,
)
from cellseg_bridge.training.validation import fit_size_from_net, validate_sets

__all__ = ["train", "TrainResult", "training_loss", "fit_size_from_net", "STATE_NAME"]

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "weights.pth"
SIZE_MODEL_NAME = "size_model.npz"
#: Diameters below this (pixels) are raised to it when scaling training images (Cellpose: 5).
MIN_TRAIN_DIAMETER = 5.0
#: The clock of time budgets and curves (a module attribute, so tests can replace it).
_clock = time.perf_counter
#: Crops per training image used to fit the size model.
SIZE_CROPS_PER_IMAGE = 4


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    weights : Path
        The final weights (``out_dir/weights.pth``).
    config : dict
        The ``config.json`` content.
    curves : list of dict
        One row per epoch: ``epoch``, ``lr``, ``loss``, ``ap50``, ``ap75``, ``ap90``, ``seconds``.
    diam_labels : float
        Mean training diameter.
    epochs_run : int
        Epochs completed.
    n_epochs : int
        Epochs planned (after fitting to the time budget).
    stopped : str
        ``"done"`` or ``"time budget"``.
    size_model : Path or None
        The size model written, if any.
    """

    weights: Path
    config: dict
    curves: list[dict] = field(default_factory=list)
    diam_labels: float = 0.0
    epochs_run: int = 0
    n_epochs: int = 0
    stopped: str = "done"
    size_model: Path | None = None


# --------------------------------------------------------------------------- options and data


def _options(options: dict[str, Any]) -> TrainOptions:
    names = {f.name for f in dataclasses.fields(TrainOptions)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise InputError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    opts = dataclasses.replace(DEFAULTS.train, **options)
    if opts.optimizer.lower() not in ("sgd", "adamw"):
        raise InputError(f"optimizer must be 'sgd' or 'adamw', got {opts.optimizer!r}")
    get_recipe(opts.recipe)
    if opts.batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {opts.batch_size}")
    if opts.crop_size < 16:
        raise InputError(f"crop_size must be >= 16, got {opts.crop_size}")
    if opts.n_epochs is not None and opts.n_epochs < 1:
        raise InputError(f"n_epochs must be >= 1, got {opts.n_epochs}")
    if not 0 <= opts.scale_range < 2:
        raise InputError(f"scale_range must be in [0, 2), got {opts.scale_range}")
    if opts.time_budget_min is not None and not opts.time_budget_min > 0:
        raise InputError(f"time_budget_min must be positive, got {opts.time_budget_min}")
    return opts


def _raw_items(data: Any, axes: str | None, opts: TrainOptions, masks_dir) -> list[tuple[str, Any, Any, str | None]]:
    """``(name, image, labels, axes)`` for a folder, pairs of files, or (image, labels) arrays."""
    if isinstance(data, (str, Path)):
        data = find_pairs(data, mask_suffix=opts.mask_suffix, masks_dir=masks_dir)
    items = []
    for i, entry in enumerate(data):
        if isinstance(entry, TrainPair):
            image, labels = load_pair(entry)
            items.append((entry.image.name, image, labels, None))
        elif isinstance(entry, (tuple, list)) and len(entry) == 2:
            image, labels = entry
            if isinstance(image, (str, Path)) or isinstance(labels, (str, Path)):
                kind = "rois" if str(labels).lower().endswith(".zip") else (
                    "seg_npy" if str(labels).endswith("_seg.npy") else "labels")
                pair = TrainPair(Path(image), Path(labels), kind)
                image, labels = load_pair(pair)
                items.append((pair.image.name, image, labels, None))
            else:
                items.append((f"image {i}", image, labels, axes))
        else:
            raise InputError(
                "training data must be a folder, TrainPair objects or (image, labels) pairs; "
                f"item {i} is a {type(entry).__name__}"
            )
    if not items:
        raise InputError("no training images given")
    return items


def _samples(items, nchan: int, opts: TrainOptions, flow_cache) -> list[TrainSample]:
    samples = []
    for name, image, labels, ax in items:
        samples.append(
            make_sample(
                image, labels, nchan=nchan, name=name, axes=ax, channel=opts.channel,
                nuclear_channel=opts.nuclear_channel,
                normalize_percentiles=opts.normalize_percentiles, invert=opts.invert, flow_cache=flow_cache,
            )
        )
    counts = sorted({s.source_channels for s in samples})
    if len(counts) > 1:
        detail = ", ".join(f"{s.name}: {s.source_channels}" for s in samples[:8])
        raise InputError(
            f"training images have different channel counts ({detail}); the same channel "
            "index would mean different things: give images with the same channels"
        )
    return samples


# --------------------------------------------------------------------------- network and optimiser


def _init_net(opts: TrainOptions, device: torch.device) -> tuple[CellposeUNet, dict]:
    if opts.pretrained:
        from cellseg_bridge.nn.registry import resolve_model

        net, config = load_checkpoint(resolve_model(opts.pretrained), device)
        if int(net.nout) != 3:
            raise InputError(f"pretrained model {opts.pretrained!r} is not a segmentation network")
        logger.info("fine-tuning %s (nbase %s, diam_mean %.3g)", opts.pretrained, list(net.nbase), net.diam_mean.item())
        return net, {"pretrained": str(opts.pretrained)}
    net = CellposeUNet(opts.nbase, 3, 3, diam_mean=float(opts.diam_mean)).to(device)
    return net, {"pretrained": None}


def _optimizer(net: torch.nn.Module, opts: TrainOptions, lr: float, wd: float) -> torch.optim.Optimizer:
    params = [p for p in net.parameters() if p.requires_grad]
    if opts.optimizer.lower() == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return torch.optim.SGD(params, lr=lr, momentum=get_recipe(opts.recipe).momentum, weight_decay=wd)


def training_loss(output: torch.Tensor, flows5: torch.Tensor, cellprob: torch.Tensor) -> torch.Tensor:
    """``MSE(output[:, :2], flows5) / 2 + BCEWithLogits(output[:, 2], cellprob)``.

    Parameters
    ----------
    output : Tensor ``[B, 3, H, W]``
        Network output (flows x5, cell probability logits).
    flows5 : Tensor ``[B, 2, H, W]``
        Target flows already multiplied by 5.
    cellprob : Tensor ``[B, H, W]``
        Target ``mask > 0`` as float.
    """
    return F.mse_loss(output[:, :2], flows5) / 2 + F.binary_cross_entropy_with_logits(output[:, 2], cellprob)


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on ``device``; channels-last on the CPU (faster convolutions, as at inference)."""
    x = x.to(device)
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cpu" else x


def _batch(samples: Sequence[TrainSample], idx: Sequence[int], scales: np.ndarray, rng, opts: TrainOptions):
    imgs, flows, probs = [], [], []
    for i in idx:
        s = samples[i]
        params = random_affine(
            rng, s.labels.shape, opts.crop_size, base_scale=float(scales[i]), scale_range=opts.scale_range
        )
        img, fl, lab = warp_sample(params, s.image, s.flows, s.labels)
        imgs.append(img)
        flows.append(fl)
        probs.append(lab > 0)
    x = torch.from_numpy(np.stack(imgs))
    f5 = torch.from_numpy(np.stack(flows) * np.float32(5.0))
    p = torch.from_numpy(np.stack(probs).astype(np.float32))
    return x, f5, p


# --------------------------------------------------------------------------- train: setup


@dataclass
class _Run:
    """Everything one training run holds between setup, the epoch loop and finalising."""

    opts: TrainOptions
    out_dir: Path
    device: torch.device
    amp_dtype: torch.dtype | None
    net: CellposeUNet
    optim: torch.optim.Optimizer
    samples: list[TrainSample]
    probabilities: np.ndarray | None  # per-image draw probabilities (several sources), else None
    val_sets: dict[str, list]
    scales: np.ndarray
    config: dict
    lr_peak: float
    per_epoch: int
    steps_per_epoch: int
    n_epochs: int
    rng: np.random.Generator
    diam_labels: float
    start_epoch: int = 0
    curves: list[dict] = field(default_factory=list)
    elapsed0: float = 0.0
    resumed: bool = False


def _training_samples(
    train_data: Any, axes: str | None, opts: TrainOptions, masks_dir, nchan: int, flow_cache: Path, min_masks: int
) -> tuple[list[TrainSample], list[int], list[DataSource]]:
    """Samples of every source with at least ``min_masks`` masks, and the source index of each."""
    sources = as_sources(train_data)
    items, source_of = [], []
    for k, src in enumerate(sources):
        try:
            its = _raw_items(src.data, axes, opts, masks_dir)
        except InputError as exc:
            if len(sources) == 1:
                raise
            raise InputError(f"training dataset {src.label(k)!r}: {exc}") from exc
        items += its
        source_of += [k] * len(its)
    samples = _samples(items, nchan, opts, flow_cache)
    kept, kept_src = [], []
    for s, k in zip(samples, source_of):
        if s.n_masks >= min_masks:
            kept.append(s)
            kept_src.append(k)
        else:
            logger.warning("%s: %d mask(s) < min_train_masks %d: left out", s.name, s.n_masks, min_masks)
    if not kept:
        raise InputError(
            f"no training image has at least {min_masks} mask(s) "
            f"({len(samples)} image(s) given; empty masks cannot teach anything)"
        )
    if sum(s.n_masks for s in kept) == 0:
        raise InputError("all training masks are empty: nothing to learn")
    empty = [src.label(k) for k, src in enumerate(sources) if k not in kept_src]
    if empty:
        raise InputError(f"training dataset(s) {', '.join(empty)}: no image with at least {min_masks} mask(s)")
    return kept, kept_src, sources


def _val_sets(val_data: Any, axes: str | None, opts: TrainOptions) -> dict[str, list]:
    """Validation items by set name: one set ``val``, or one per key of a dict / per DataSource."""
    if val_data is None:
        return {}
    if isinstance(val_data, dict):
        named = list(val_data.items())
    elif isinstance(val_data, DataSource) or (
        isinstance(val_data, (list, tuple)) and val_data and all(isinstance(v, DataSource) for v in val_data)
    ):
        named = [(src.label(k), src.data) for k, src in enumerate(as_sources(val_data))]
    else:
        named = [("val", val_data)]
    return {str(name): _raw_items(data, axes, opts, None) for name, data in named}  # masks beside


def _setup(train_data, out_dir, val_data, resume, axes, masks_dir, flow_cache, options) -> _Run:
    """Options, device, network, data, optimiser and (on resume) the saved state."""
    from cellseg_bridge.nn.inference import select_device

    opts = _options(options)
    recipe = get_recipe(opts.recipe)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    flow_cache = out_dir / "flow_cache" if flow_cache is None else Path(flow_cache)
    device = select_device(opts.device)
    amp_dtype = training_autocast_dtype(opts.precision, device)
    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)

    net, provenance = _init_net(opts, device)
    nchan = int(net.nchan)
    if opts.crop_size % net.size_multiple:
        raise InputError(f"crop_size {opts.crop_size} must be a multiple of {net.size_multiple}")

    min_masks = recipe.min_train_masks if opts.min_train_masks is None else int(opts.min_train_masks)
    samples, source_of, sources = _training_samples(train_data, axes, opts, masks_dir, nchan, flow_cache, min_masks)
    if len(samples) == 1:
        logger.warning("training on a single image: expect overfitting (use it only to fine-tune)")
    val_sets = _val_sets(val_data, axes, opts)
    probabilities = None
    if len(sources) > 1:
        probabilities = sampling_probabilities(source_of, [s.weight for s in sources])
        datasets = []
        for k, src in enumerate(sources):
            n_k = source_of.count(k)
            share = float(probabilities[np.asarray(source_of) == k].sum())
            datasets.append({"name": src.label(k), "weight": float(src.weight), "n_images": n_k, "share": share})
            logger.info("dataset %s: %d image(s), weight %g, %.1f%% of the draws", src.label(k), n_k,
                        src.weight, 100 * share)
        provenance["datasets"] = datasets

    dm = float(net.diam_mean.item())
    diams = np.array([s.diameter for s in samples])
    with_masks = diams[diams > 0]
    diam_labels = float(with_masks.mean())
    fill = float(np.median(with_masks))
    scales = dm / np.maximum(np.where(diams > 0, diams, fill), MIN_TRAIN_DIAMETER)
    net.diam_labels.data.fill_(diam_labels)
    logger.info(
        "%d training image(s), %d masks, diam_labels %.2f px, diam_mean %.3g",
        len(samples), sum(s.n_masks for s in samples), diam_labels, dm,
    )

    n = len(samples)
    per_epoch = int(opts.images_per_epoch) if opts.images_per_epoch else max(recipe.min_images_per_epoch, n)
    if opts.learning_rate is not None:
        lr_peak = float(opts.learning_rate)
    else:
        lr_peak = ADAMW_LR if opts.optimizer.lower() == "adamw" else recipe.learning_rate
    wd = float(recipe.weight_decay if opts.weight_decay is None else opts.weight_decay)
    config = {
        "channels": {"channel": opts.channel, "nuclear_channel": opts.nuclear_channel},
        "normalize_percentiles": list(opts.normalize_percentiles),
        "invert": bool(opts.invert),
        "provenance": {
            **provenance,
            "trainer": "cellseg_bridge.training",
            "recipe": recipe.name,
            "optimizer": opts.optimizer.lower(),
            "learning_rate": lr_peak,
            "weight_decay": wd,
            "batch_size": opts.batch_size,
            "crop_size": opts.crop_size,
            "seed": opts.seed,
            "n_train_images": n,
            "train_images": [s.name for s in samples][:1000],
        },
    }
    run = _Run(
        opts=opts, out_dir=out_dir, device=device, amp_dtype=amp_dtype, net=net,
        optim=_optimizer(net, opts, lr_peak, wd), samples=samples, probabilities=probabilities,
        val_sets=val_sets, scales=scales, config=config, lr_peak=lr_peak, per_epoch=per_epoch,
        steps_per_epoch=max(1, math.ceil(per_epoch / opts.batch_size)),
        n_epochs=int(opts.n_epochs or recipe.n_epochs), rng=rng, diam_labels=diam_labels,
    )
    if resume:
        _restore_state(run)
    return run


def _restore_state(run: _Run) -> None:
    """Network, optimiser, RNGs, epoch and curves from ``out_dir/checkpoint/state.pt``."""
    state_path = run.out_dir / CHECKPOINT_DIR / STATE_NAME
    if not state_path.is_file():
        raise InputError("nothing to resume: no checkpoint state", state_path)
    try:
        st = torch.load(state_path, map_location=run.device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable state is an input problem
        raise InputError(f"cannot read the training state ({exc})", state_path) from exc
    try:
        run.net.load_state_dict(st["net"])
        run.optim.load_state_dict(st["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise InputError(
            f"the checkpoint does not fit this network/optimiser ({exc}); resume with the same options",
            state_path,
        ) from exc
    run.start_epoch = int(st["epoch"])
    run.n_epochs = int(st["n_epochs"])
    run.rng = rng_from_plain(st["rng"])
    torch.set_rng_state(st["torch_rng"])
    run.curves = [dict(r) for r in st["curves"]]
    run.diam_labels = float(st["diam_labels"])
    run.elapsed0 = float(st.get("elapsed", 0.0))
    run.resumed = True
    logger.info("resuming after epoch %d of %d", run.start_epoch, run.n_epochs)


# --------------------------------------------------------------------------- train: the epochs


def _epoch_order(run: _Run) -> np.ndarray:
    """Image indices of one epoch: seeded permutations, or weighted draws for several sources."""
    n = len(run.samples)
    if run.probabilities is not None:
        return run.rng.choice(n, size=run.per_epoch, p=run.probabilities)
    return np.concatenate([run.rng.permutation(n) for _ in range(math.ceil(run.per_epoch / n))])[: run.per_epoch]


def _train_epoch(run: _Run, lr: float, budget_s: float | None, t0: float) -> float:
    """One epoch of optimiser steps at learning rate ``lr``; returns the mean loss."""
    opts = run.opts
    for g in run.optim.param_groups:
        g["lr"] = lr
    order = _epoch_order(run)
    losses = []
    for k in range(run.steps_per_epoch):
        idx = order[k * opts.batch_size : (k + 1) * opts.batch_size]
        if len(idx) == 0:
            break
        x, f5, p = _batch(run.samples, idx, run.scales, run.rng, opts)
        x, f5, p = _to_device(x, run.device), f5.to(run.device), p.to(run.device)
        with autocast(run.device, run.amp_dtype):
            out, _ = run.net(x)
        loss = training_loss(out.float(), f5, p)
        run.optim.zero_grad(set_to_none=True)
        loss.backward()
        run.optim.step()
        losses.append(float(loss.item()))
        if budget_s is not None and _clock() - t0 > budget_s:
            break
    return float(np.mean(losses))


def _save(run: _Run, epoch: int, t0: float, png: bool = False) -> None:
    save_training_checkpoint(run.out_dir, run.net, run.optim, epoch, run.n_epochs, run.rng, run.curves, run.diam_labels,
                _clock() - t0, run.config, png=png)


def _run_epochs(run: _Run, progress: bool) -> tuple[int, str, float]:
    """The epoch loop (validation, checkpoints, time budget, Ctrl-C); returns (epoch, stopped, t0)."""
    opts = run.opts
    budget_s = None if opts.time_budget_min is None else 60.0 * float(opts.time_budget_min)
    schedule = lr_schedule(run.lr_peak, run.n_epochs, opts.warmup_epochs)
    t0 = _clock() - run.elapsed0
    stopped = "done"
    epoch = run.start_epoch
    mid_epoch = False
    snapshot: tuple[dict, dict] | None = None
    rng_at_epoch_start = rng_to_plain(run.rng)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=run.n_epochs, initial=run.start_epoch, unit="epoch", dynamic_ncols=True)
    run.net.train()
    try:
        while epoch < run.n_epochs:
            t_ep = _clock()
            # an interrupted epoch is redone from here on resume (exactly: same draws, same weights)
            rng_at_epoch_start = rng_to_plain(run.rng)
            snapshot = (
                {k: v.detach().clone() for k, v in run.net.state_dict().items()},
                copy.deepcopy(run.optim.state_dict()),
            )
            mid_epoch = True
            lr = float(schedule[epoch])
            loss = _train_epoch(run, lr, budget_s, t0)
            epoch += 1
            mid_epoch = False
            row: dict[str, Any] = {"epoch": epoch, "lr": lr, "loss": loss, "ap50": None, "ap75": None,
                                   "ap90": None, "seconds": round(_clock() - t0, 2)}
            over = budget_s is not None and _clock() - t0 > budget_s
            last = epoch == run.n_epochs or over
            if run.val_sets and ((opts.val_every and epoch % opts.val_every == 0) or last):
                row.update(validate_sets(run.net, run.val_sets, opts, run.device))
                run.net.train()
            run.curves.append(row)
            if bar is not None:
                post = {"loss": f"{row['loss']:.4f}", "lr": f"{lr:.3g}"}
                if row["ap50"] is not None:
                    post["AP50"] = f"{row['ap50']:.3f}"
                bar.set_postfix(post)
                bar.update(1)
            logger.debug("epoch %d: %s", epoch, row)
            if (
                epoch == run.start_epoch + 1 and budget_s is not None and not run.resumed
            ):  # fit the plan to the budget (first epoch includes JIT and cache warm-up)
                budget_s = _fit_budget(run, budget_s, _clock() - t_ep, epoch, t0)
                schedule = lr_schedule(run.lr_peak, run.n_epochs, opts.warmup_epochs)
                if bar is not None:
                    bar.total = run.n_epochs
                    bar.refresh()
            if over and epoch < run.n_epochs:
                stopped = "time budget"
                logger.warning("time budget of %.1f min used up after epoch %d: stopping", budget_s / 60, epoch)
                break
            if opts.save_every and epoch % opts.save_every == 0 and epoch < run.n_epochs:
                _save(run, epoch, t0)
    except KeyboardInterrupt:
        logger.warning("interrupted: saving a resumable checkpoint after epoch %d", epoch)
        if mid_epoch and snapshot is not None:  # inside an epoch: back to its start, it is redone on resume
            run.rng = rng_from_plain(rng_at_epoch_start)
            run.net.load_state_dict(snapshot[0])
            run.optim.load_state_dict(snapshot[1])
        _save(run, epoch, t0, png=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    return epoch, stopped, t0


def _fit_budget(run: _Run, budget_s: float, per: float, epoch: int, t0: float) -> float:
    """Reduce ``run.n_epochs`` to what the time budget allows at ``per`` seconds an epoch."""
    if run.opts.fit_size_model:  # keep time for the size model (forward passes, ~1/3 of a training step each)
        reserve = SIZE_CROPS_PER_IMAGE * len(run.samples) / run.opts.batch_size * per / run.steps_per_epoch / 3
        budget_s = max(budget_s - reserve, _clock() - t0)
        logger.info("time budget: %.0f s kept for fitting the size model", reserve)
    fit = max(epoch, int((budget_s - (_clock() - t0)) / max(per, 1e-6)) + epoch)
    if fit < run.n_epochs:
        logger.info("time budget: %d epochs planned -> %d fit in %.1f min", run.n_epochs, fit, budget_s / 60)
        run.n_epochs = fit
    return budget_s


# --------------------------------------------------------------------------- train: finalise


def _finalise(run: _Run, epoch: int, stopped: str, t0: float) -> TrainResult:
    """Last checkpoint, size model, ``weights.pth`` + ``config.json``."""
    opts = run.opts
    _save(run, epoch, t0, png=True)
    run.net.diam_labels.data.fill_(run.diam_labels)
    prov = run.config["provenance"]
    prov.update({"epochs_run": epoch, "epochs_planned": run.n_epochs, "stopped": stopped,
                 "train_seconds": round(_clock() - t0, 1)})
    if run.curves and run.curves[-1].get("ap50") is not None:
        prov["val_ap"] = [run.curves[-1]["ap50"], run.curves[-1]["ap75"], run.curves[-1]["ap90"]]
    size_path = None
    if opts.fit_size_model:
        sm = fit_size_from_net(run.net, run.samples, np.random.default_rng(opts.seed + 1), crop_size=opts.crop_size,
                               crops_per_image=SIZE_CROPS_PER_IMAGE, batch_size=opts.batch_size)
        if sm is not None:
            size_path = run.out_dir / SIZE_MODEL_NAME
            with atomic_output(size_path) as tmp:
                sm.save(tmp)
            run.config["size_model"] = SIZE_MODEL_NAME
    weights = run.out_dir / WEIGHTS_NAME
    save_checkpoint(run.net, weights, run.config)
    full_config = json.loads((run.out_dir / "config.json").read_text(encoding="utf-8"))
    logger.info("trained %d epoch(s) (%s); weights %s", epoch, stopped, weights)
    return TrainResult(
        weights=weights, config=full_config, curves=run.curves, diam_labels=run.diam_labels, epochs_run=epoch,
        n_epochs=run.n_epochs, stopped=stopped, size_model=size_path,
    )


# --------------------------------------------------------------------------- train


def train(
    train_data: Any,
    out_dir: str | Path,
    *,
    val_data: Any = None,
    resume: bool = False,
    axes: str | None = None,
    masks_dir: str | Path | None = None,
    flow_cache: str | Path | None = None,
    progress: bool = True,
    **options: Any,
) -> TrainResult:
    """Train (or fine-tune) a Cellpose-style segmentation network.

    Parameters
    ----------
    train_data : folder, list of (image, labels) pairs, list of TrainPair, or DataSource(s)
        A folder of images with masks named by the rule of
        :mod:`cellseg_bridge.training.data` (``NAME_masks.tif``, ``NAME_seg.npy``,
        ``NAME_RoiSet.zip``); or pairs of arrays (image with ``axes``, 2D labels)
        or of file paths (image, label image / ``_seg.npy`` / RoiSet zip). Several
        datasets: a list of :class:`~cellseg_bridge.training.sources.DataSource`,
        each drawn with its sampling weight.
    out_dir : str or Path
        Output folder (weights, config, size model, curves, checkpoints).
    val_data : same forms as ``train_data``, a dict ``{name: data}``, optional
        Images scored (AP at IoU 0.5/0.75/0.9, segmented at their true median
        diameter) every ``val_every`` epochs and at the end. Several named sets
        (a dict or DataSources) are scored one by one (``ap50_<name>`` columns
        in the curves); ``ap50`` is then their mean.
    resume : bool
        Continue from ``out_dir/checkpoint/state.pt`` (same data and options).
    axes : str, optional
        Axes of array images (as for :func:`~cellseg_bridge.segment.segment`).
    masks_dir : str or Path, optional
        Folder holding the masks of a folder of images.
    flow_cache : str or Path, optional
        Folder caching flow targets between runs (default ``out_dir/flow_cache``).
    progress : bool
        Show a progress bar (loss, ETA).
    **options
        Fields of :class:`~cellseg_bridge.config.TrainOptions`.

    Returns
    -------
    TrainResult

    Raises
    ------
    InputError
        Bad options, no usable training image (in any dataset), masks that do
        not fit their image, images with different channel counts, a sampling
        weight that is not positive, no checkpoint to resume.
    KeyboardInterrupt
        Re-raised after writing a resumable checkpoint.
    """
    run = _setup(train_data, out_dir, val_data, resume, axes, masks_dir, flow_cache, options)
    epoch, stopped, t0 = _run_epochs(run, progress)
    return _finalise(run, epoch, stopped, t0)
