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
import csv
import dataclasses
import io
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
from cellseg_bridge.nn.size_model import SizeModel, fit_size_model
from cellseg_bridge.training.data import TrainPair, TrainSample, find_pairs, load_pair, make_sample
from cellseg_bridge.training.recipes import ADAMW_LR, get_recipe, lr_schedule

__all__ = ["train", "TrainResult", "training_loss", "fit_size_from_net", "STATE_NAME"]

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
STATE_NAME = "state.pt"
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


# --------------------------------------------------------------------------- validation, size model


def _validate(net: CellposeUNet, val_items, opts: TrainOptions, device) -> tuple[float, float, float]:
    """Mean AP at IoU 0.5/0.75/0.9 over the validation images (segmented at their true diameter)."""
    from cellseg_bridge.core.metrics import average_precision
    from cellseg_bridge.segmentation.pipeline import SegmentationModel, segment
    from cellseg_bridge.training.data import median_diameter

    model = SegmentationModel(net=net, config=net.architecture(), name="training", device=device)
    aps = []
    was_training = net.training
    try:
        for name, image, labels, ax in val_items:
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
    styles, targets, xs = [], [], []
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


# --------------------------------------------------------------------------- curves and state


CURVE_FIELDS = ("epoch", "lr", "loss", "ap50", "ap75", "ap90", "seconds")


def _write_curves(curves: list[dict], out_dir: Path, png: bool = True) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CURVE_FIELDS, lineterminator="\n")
    w.writeheader()
    for row in curves:
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CURVE_FIELDS})
    with atomic_output(out_dir / "curves.csv") as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    if not curves or not png:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib not installed: curves.png not written")
        return
    ep = [r["epoch"] for r in curves]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].plot(ep, [r["loss"] for r in curves])
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("training loss")
    ax[0].set_yscale("log")
    val = [r for r in curves if r.get("ap50") is not None]
    for key in ("ap50", "ap75", "ap90"):
        ax[1].plot([r["epoch"] for r in val], [r[key] for r in val], marker="o", label=key)
    ax[1].set_xlabel("epoch")
    ax[1].set_ylabel("validation AP")
    ax[1].set_ylim(0, 1)
    ax[1].legend()
    fig.tight_layout()
    with atomic_output(out_dir / "curves.png") as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def _save_state(path: Path, net, optim, epoch: int, n_epochs: int, rng, curves, diam_labels: float, elapsed: float) -> None:
    state = {
        "net": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "optimizer": optim.state_dict(),
        "epoch": int(epoch),
        "n_epochs": int(n_epochs),
        "rng": rng if isinstance(rng, dict) else _rng_to_plain(rng),
        "torch_rng": torch.get_rng_state(),
        "curves": [{k: (None if r.get(k) is None else float(r[k])) for k in CURVE_FIELDS} for r in curves],
        "diam_labels": float(diam_labels),
        "elapsed": float(elapsed),
    }
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def _rng_to_plain(rng: np.random.Generator) -> dict:
    st = rng.bit_generator.state
    return {
        "bit_generator": st["bit_generator"],
        "state": str(st["state"]["state"]),
        "inc": str(st["state"]["inc"]),
        "has_uint32": int(st["has_uint32"]),
        "uinteger": int(st["uinteger"]),
    }


def _rng_from_plain(plain: dict) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = {
        "bit_generator": plain["bit_generator"],
        "state": {"state": int(plain["state"]), "inc": int(plain["inc"])},
        "has_uint32": int(plain["has_uint32"]),
        "uinteger": int(plain["uinteger"]),
    }
    return rng


def _checkpoint(
    out_dir: Path, net, optim, epoch, n_epochs, rng, curves, diam_labels, elapsed, config, png: bool = False
) -> None:
    ck = out_dir / CHECKPOINT_DIR
    ck.mkdir(parents=True, exist_ok=True)
    _save_state(ck / STATE_NAME, net, optim, epoch, n_epochs, rng, curves, diam_labels, elapsed)
    save_checkpoint(net, ck / "last.pth", {**config, "epoch": int(epoch)})
    _write_curves(curves, out_dir, png=png)  # the plot costs seconds: at the end only
    logger.info("checkpoint after epoch %d in %s", epoch, ck)


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
    train_data : folder, list of (image, labels) pairs, or list of TrainPair
        A folder of images with masks named by the rule of
        :mod:`cellseg_bridge.training.data` (``NAME_masks.tif``, ``NAME_seg.npy``,
        ``NAME_RoiSet.zip``); or pairs of arrays (image with ``axes``, 2D labels)
        or of file paths (image, label image / ``_seg.npy`` / RoiSet zip).
    out_dir : str or Path
        Output folder (weights, config, size model, curves, checkpoints).
    val_data : same forms as ``train_data``, optional
        Images scored (AP at IoU 0.5/0.75/0.9, segmented at their true median
        diameter) every ``val_every`` epochs and at the end.
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
        Bad options, no usable training image, masks that do not fit their
        image, images with different channel counts, no checkpoint to resume.
    KeyboardInterrupt
        Re-raised after writing a resumable checkpoint.
    """
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

    items = _raw_items(train_data, axes, opts, masks_dir)
    samples = _samples(items, nchan, opts, flow_cache)
    min_masks = recipe.min_train_masks if opts.min_train_masks is None else int(opts.min_train_masks)
    kept = [s for s in samples if s.n_masks >= min_masks]
    for s in samples:
        if s.n_masks < min_masks:
            logger.warning("%s: %d mask(s) < min_train_masks %d: left out", s.name, s.n_masks, min_masks)
    if not kept:
        raise InputError(
            f"no training image has at least {min_masks} mask(s) "
            f"({len(samples)} image(s) given; empty masks cannot teach anything)"
        )
    if sum(s.n_masks for s in kept) == 0:
        raise InputError("all training masks are empty: nothing to learn")
    samples = kept
    if len(samples) == 1:
        logger.warning("training on a single image: expect overfitting (use it only to fine-tune)")
    val_items = _raw_items(val_data, axes, opts, None) if val_data is not None else []  # masks beside

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
    steps_per_epoch = max(1, math.ceil(per_epoch / opts.batch_size))
    n_epochs = int(opts.n_epochs or recipe.n_epochs)
    if opts.learning_rate is not None:
        lr_peak = float(opts.learning_rate)
    else:
        lr_peak = ADAMW_LR if opts.optimizer.lower() == "adamw" else recipe.learning_rate
    wd = float(recipe.weight_decay if opts.weight_decay is None else opts.weight_decay)
    optim = _optimizer(net, opts, lr_peak, wd)
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

    start_epoch, curves, elapsed0 = 0, [], 0.0
    state_path = out_dir / CHECKPOINT_DIR / STATE_NAME
    if resume:
        if not state_path.is_file():
            raise InputError("nothing to resume: no checkpoint state", state_path)
        try:
            st = torch.load(state_path, map_location=device, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable state is an input problem
            raise InputError(f"cannot read the training state ({exc})", state_path) from exc
        try:
            net.load_state_dict(st["net"])
            optim.load_state_dict(st["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise InputError(
                f"the checkpoint does not fit this network/optimiser ({exc}); resume with the same options",
                state_path,
            ) from exc
        start_epoch = int(st["epoch"])
        n_epochs = int(st["n_epochs"])
        rng = _rng_from_plain(st["rng"])
        torch.set_rng_state(st["torch_rng"])
        curves = [dict(r) for r in st["curves"]]
        diam_labels = float(st["diam_labels"])
        elapsed0 = float(st.get("elapsed", 0.0))
        logger.info("resuming after epoch %d of %d", start_epoch, n_epochs)

    budget_s = None if opts.time_budget_min is None else 60.0 * float(opts.time_budget_min)
    schedule = lr_schedule(lr_peak, n_epochs, opts.warmup_epochs)
    t0 = _clock() - elapsed0
    stopped = "done"
    epoch = start_epoch
    rng_at_epoch_start = _rng_to_plain(rng)
    mid_epoch = False
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_epochs, initial=start_epoch, unit="epoch", dynamic_ncols=True)
    net.train()
    try:
        while epoch < n_epochs:
            t_ep = _clock()
            # an interrupted epoch is redone from here on resume (exactly: same draws, same weights)
            rng_at_epoch_start = _rng_to_plain(rng)
            snapshot = (
                {k: v.detach().clone() for k, v in net.state_dict().items()},
                copy.deepcopy(optim.state_dict()),
            )
            mid_epoch = True
            lr = float(schedule[epoch])
            for g in optim.param_groups:
                g["lr"] = lr
            order = np.concatenate([rng.permutation(n) for _ in range(math.ceil(per_epoch / n))])[:per_epoch]
            losses = []
            for k in range(steps_per_epoch):
                idx = order[k * opts.batch_size : (k + 1) * opts.batch_size]
                if len(idx) == 0:
                    break
                x, f5, p = _batch(samples, idx, scales, rng, opts)
                x, f5, p = _to_device(x, device), f5.to(device), p.to(device)
                with autocast(device, amp_dtype):
                    out, _ = net(x)
                loss = training_loss(out.float(), f5, p)
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                losses.append(float(loss.item()))
                if budget_s is not None and _clock() - t0 > budget_s:
                    break
            epoch += 1
            mid_epoch = False
            row = {"epoch": epoch, "lr": lr, "loss": float(np.mean(losses)), "ap50": None, "ap75": None,
                   "ap90": None, "seconds": round(_clock() - t0, 2)}
            over = budget_s is not None and _clock() - t0 > budget_s
            last = epoch == n_epochs or over
            if val_items and ((opts.val_every and epoch % opts.val_every == 0) or last):
                row["ap50"], row["ap75"], row["ap90"] = _validate(net, val_items, opts, device)
                net.train()
            curves.append(row)
            if bar is not None:
                post = {"loss": f"{row['loss']:.4f}", "lr": f"{lr:.3g}"}
                if row["ap50"] is not None:
                    post["AP50"] = f"{row['ap50']:.3f}"
                bar.set_postfix(post)
                bar.update(1)
            logger.debug("epoch %d: %s", epoch, row)
            if (
                epoch == start_epoch + 1 and budget_s is not None and not resume
            ):  # fit the plan to the budget (first epoch includes JIT and cache warm-up)
                per = _clock() - t_ep
                # keep time for the size model (forward passes, ~1/3 of a training step each)
                if opts.fit_size_model:
                    reserve = SIZE_CROPS_PER_IMAGE * n / opts.batch_size * per / steps_per_epoch / 3
                    budget_s = max(budget_s - reserve, _clock() - t0)
                    logger.info("time budget: %.0f s kept for fitting the size model", reserve)
                fit = max(epoch, int((budget_s - (_clock() - t0)) / max(per, 1e-6)) + epoch)
                if fit < n_epochs:
                    logger.info("time budget: %d epochs planned -> %d fit in %.1f min", n_epochs, fit, budget_s / 60)
                    n_epochs = fit
                    schedule = lr_schedule(lr_peak, n_epochs, opts.warmup_epochs)
                    if bar is not None:
                        bar.total = n_epochs
                        bar.refresh()
            if over and epoch < n_epochs:
                stopped = "time budget"
                logger.warning("time budget of %.1f min used up after epoch %d: stopping", budget_s / 60, epoch)
                break
            if opts.save_every and epoch % opts.save_every == 0 and epoch < n_epochs:
                _checkpoint(out_dir, net, optim, epoch, n_epochs, rng, curves, diam_labels,
                            _clock() - t0, config)
    except KeyboardInterrupt:
        logger.warning("interrupted: saving a resumable checkpoint after epoch %d", epoch)
        if mid_epoch:  # inside an epoch: back to its start, it is redone on resume
            rng = rng_at_epoch_start
            net.load_state_dict(snapshot[0])
            optim.load_state_dict(snapshot[1])
        _checkpoint(out_dir, net, optim, epoch, n_epochs, rng, curves, diam_labels, _clock() - t0, config, png=True)
        raise
    finally:
        if bar is not None:
            bar.close()

    _checkpoint(out_dir, net, optim, epoch, n_epochs, rng, curves, diam_labels, _clock() - t0, config, png=True)
    net.diam_labels.data.fill_(diam_labels)
    config["provenance"].update(
        {"epochs_run": epoch, "epochs_planned": n_epochs, "stopped": stopped,
         "train_seconds": round(_clock() - t0, 1)}
    )
    if curves and curves[-1].get("ap50") is not None:
        config["provenance"]["val_ap"] = [curves[-1]["ap50"], curves[-1]["ap75"], curves[-1]["ap90"]]
    size_path = None
    if opts.fit_size_model:
        sm = fit_size_from_net(net, samples, np.random.default_rng(opts.seed + 1), crop_size=opts.crop_size,
                               crops_per_image=SIZE_CROPS_PER_IMAGE, batch_size=opts.batch_size)
        if sm is not None:
            size_path = out_dir / SIZE_MODEL_NAME
            with atomic_output(size_path) as tmp:
                sm.save(tmp)
            config["size_model"] = SIZE_MODEL_NAME
    weights = out_dir / WEIGHTS_NAME
    save_checkpoint(net, weights, config)
    full_config = json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
    logger.info("trained %d epoch(s) (%s); weights %s", epoch, stopped, weights)
    return TrainResult(
        weights=weights, config=full_config, curves=curves, diam_labels=diam_labels, epochs_run=epoch,
        n_epochs=n_epochs, stopped=stopped, size_model=size_path,
    )
