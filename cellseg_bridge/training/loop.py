"""The training loop: :func:`train`, checkpoints, resume, validation AP, curves, size model.

:func:`train` has three steps: :func:`~cellseg_bridge.training.setup.setup_run` (options,
data, network, optimiser, saved state; :mod:`cellseg_bridge.training.setup`), the epochs
(:func:`_run_epochs`), and finalising (:func:`_finalise`: weights, size model, curves).

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
from cellseg_bridge.io.paths import check_output
from cellseg_bridge.nn.checkpoint import save_checkpoint
from cellseg_bridge.nn.precision import autocast
from cellseg_bridge.training.data import TrainSample
from cellseg_bridge.training.recipes import lr_schedule
from cellseg_bridge.training.setup import TrainingRun, setup_run
from cellseg_bridge.training.state import (
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


# --------------------------------------------------------------------------- the loss and a batch


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


# --------------------------------------------------------------------------- train: the epochs


def _epoch_order(run: TrainingRun) -> np.ndarray:
    """Image indices of one epoch: seeded permutations, or weighted draws for several sources."""
    n = len(run.samples)
    if run.probabilities is not None:
        return run.rng.choice(n, size=run.per_epoch, p=run.probabilities)
    return np.concatenate([run.rng.permutation(n) for _ in range(math.ceil(run.per_epoch / n))])[: run.per_epoch]


def _train_epoch(run: TrainingRun, lr: float, budget_s: float | None, t0: float) -> float:
    """One epoch of optimiser steps at learning rate ``lr``; returns the mean loss."""
    opts = run.opts
    if torch.get_num_threads() != run.threads:  # numba's OpenMP loops change them (see TrainingRun.threads)
        torch.set_num_threads(run.threads)
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


def _save(run: TrainingRun, epoch: int, t0: float, png: bool = False) -> None:
    save_training_checkpoint(run.out_dir, run.net, run.optim, epoch, run.n_epochs, run.rng, run.curves, run.diam_labels,
                _clock() - t0, run.config, png=png, options=run.opts.as_dict())


def _run_epochs(run: TrainingRun, progress: bool) -> tuple[int, str, float]:
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


def _fit_budget(run: TrainingRun, budget_s: float, per: float, epoch: int, t0: float) -> float:
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


def _finalise(run: TrainingRun, epoch: int, stopped: str, t0: float) -> TrainResult:
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


def _refuse_pretrained_as_output(out_dir: Path, pretrained: str | None) -> None:
    """Refuse an ``out_dir`` whose weights, config or size model would replace the pretrained model's files.

    Checked before the first epoch, so that fine-tuning ``--pretrained runs/a/weights.pth
    --out runs/a`` fails at once instead of replacing its own input at the end.
    """
    if not pretrained:
        return
    from cellseg_bridge.nn.checkpoint import config_path_for
    from cellseg_bridge.nn.registry import resolve_model, size_model_path

    weights = resolve_model(pretrained)
    inputs = [weights, config_path_for(weights), size_model_path(weights)]
    if weights.is_dir():
        inputs += [p for p in weights.iterdir() if p.is_file()]
    for name in (WEIGHTS_NAME, "config.json", SIZE_MODEL_NAME):
        try:
            check_output(out_dir / name, inputs, overwrite=True)
        except InputError as exc:
            raise InputError(f"{exc.reason}: --out must not be the folder of the --pretrained model",
                             out_dir / name) from exc


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
        Axes of array images (as for :func:`~cellseg_bridge.segmentation.pipeline.segment`).
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
    _refuse_pretrained_as_output(Path(out_dir), options.get("pretrained", DEFAULTS.train.pretrained))
    run = setup_run(train_data, out_dir, val_data, resume, axes, masks_dir, flow_cache, options)
    epoch, stopped, t0 = _run_epochs(run, progress)
    return _finalise(run, epoch, stopped, t0)
