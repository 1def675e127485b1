"""Setting up a training run: options, data of every source, network, optimiser, saved state.

:func:`setup_run` turns the arguments of :func:`~cellseg_bridge.training.loop.train` into a
:class:`TrainingRun`, everything the epoch loop (:mod:`cellseg_bridge.training.loop`) and
finalising need: samples with their flow targets and zoom scales, per-image draw
probabilities when several datasets are weighted, validation sets, the network (new or
fine-tuned), the optimiser and, with ``resume``, the state saved at the last checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cellseg_bridge.config import DEFAULTS, TrainOptions
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.atomic import check_writable, clean_stale_staging
from cellseg_bridge.nn.net import CellposeUNet
from cellseg_bridge.nn.precision import training_autocast_dtype
from cellseg_bridge.nn.vit_checkpoint import load_network
from cellseg_bridge.nn.vit_sam import CellposeSAM
from cellseg_bridge.training.data import TrainPair, TrainSample, find_pairs, load_pair, make_sample
from cellseg_bridge.training.recipes import ADAMW_LR, get_recipe
from cellseg_bridge.training.sources import DataSource, as_sources, sampling_probabilities
from cellseg_bridge.training.state import CHECKPOINT_DIR, STATE_NAME, rng_from_plain

__all__ = ["MIN_TRAIN_DIAMETER", "RESUME_FREE_OPTIONS", "TrainingRun", "read_state", "restore_state", "setup_run"]

logger = logging.getLogger(__name__)

#: Diameters below this (pixels) are raised to it when scaling training images (Cellpose: 5).
MIN_TRAIN_DIAMETER = 5.0
#: Options a resumed run may change (where it runs, how often it saves and scores, how long it may take);
#: every other option is the checkpoint's.
RESUME_FREE_OPTIONS = ("device", "precision", "time_budget_min", "save_every", "val_every")


# --------------------------------------------------------------------------- options and data


def _raw_items(data: Any, axes: str | None, opts: TrainOptions, masks_dir) -> list[tuple[str, Any, Any, str | None]]:
    """``(name, image, labels, axes)`` for a folder, pairs of files, or arrays.

    Arrays come as ``(image, labels)`` (named ``image i``) or ``(image, labels, name)``, the name
    that logs, warnings and the model's provenance show (e.g. ``usiigaci/set41``).
    """
    if isinstance(data, (str, Path)):
        data = find_pairs(data, mask_suffix=opts.mask_suffix, masks_dir=masks_dir)
    items = []
    for i, entry in enumerate(data):
        if isinstance(entry, TrainPair):
            image, labels = load_pair(entry)
            items.append((entry.image.name, image, labels, None))
        elif isinstance(entry, (tuple, list)) and (
            len(entry) == 2 or (len(entry) == 3 and isinstance(entry[2], str))
        ):
            image, labels = entry[0], entry[1]
            if isinstance(image, (str, Path)) or isinstance(labels, (str, Path)):
                kind = "rois" if str(labels).lower().endswith(".zip") else (
                    "seg_npy" if str(labels).endswith("_seg.npy") else "labels")
                pair = TrainPair(Path(image), Path(labels), kind)
                image, labels = load_pair(pair)
                items.append((pair.image.name, image, labels, None))
            else:
                items.append((entry[2] if len(entry) == 3 else f"image {i}", image, labels, axes))
        else:
            raise InputError(
                "training data must be a folder, TrainPair objects or (image, labels[, name]) tuples; "
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


def _init_net(opts: TrainOptions, device: torch.device) -> tuple[CellposeUNet | CellposeSAM, dict]:
    if opts.pretrained:
        from cellseg_bridge.nn.registry import resolve_model

        net, config = load_network(resolve_model(opts.pretrained), device)
        if int(net.nout) != 3:
            raise InputError(f"pretrained model {opts.pretrained!r} is not a segmentation network")
        logger.info("fine-tuning %s (%s, diam_mean %.3g)", opts.pretrained,
                    f"nbase {list(net.nbase)}" if isinstance(net, CellposeUNet) else "Cellpose-SAM",
                    net.diam_mean.item())
        return net, {"pretrained": str(opts.pretrained)}
    net = CellposeUNet(opts.nbase, 3, 3, diam_mean=float(opts.diam_mean)).to(device)
    return net, {"pretrained": None}


#: Cellpose 4's fine-tuning recipe (its ``train_seg`` defaults): AdamW, learning rate 1e-5,
#: weight decay 0.1, crops of 256 px (the network's only tile size).
SAM_RECIPE = {"optimizer": "adamw", "learning_rate": 1e-5, "weight_decay": 0.1, "crop_size": 256}


def sam_train_options(opts: TrainOptions) -> TrainOptions:
    """``opts`` for fine-tuning a Cellpose-SAM network: Cellpose 4's recipe where not given.

    The optimiser is always AdamW (as Cellpose 4), the patch embedding stays frozen (Cellpose 4
    passes it no gradient); learning rate and weight decay take
    :data:`SAM_RECIPE`'s values unless given; crops are 256 px (the default 224 becomes 256,
    any other size is an :class:`InputError`). On a CPU, a ViT-L step holds the 305 M weights,
    AdamW's two moments and the activations of ``batch_size`` 256-px crops: about 6 GB
    plus 1-2 GB per crop; use ``batch_size`` 1-2 there (Cellpose 4 uses 1).
    """
    if opts.crop_size not in (DEFAULTS.train.crop_size, SAM_RECIPE["crop_size"]):
        raise InputError(f"Cellpose-SAM trains on crops of {SAM_RECIPE['crop_size']} px only "
                         f"(crop_size {opts.crop_size} asked)")
    if opts.optimizer.lower() != "adamw":
        logger.info("Cellpose-SAM: optimiser AdamW (Cellpose 4's recipe) instead of %s", opts.optimizer)
    return dataclasses.replace(
        opts, optimizer="adamw", crop_size=SAM_RECIPE["crop_size"],
        learning_rate=SAM_RECIPE["learning_rate"] if opts.learning_rate is None else opts.learning_rate,
        weight_decay=SAM_RECIPE["weight_decay"] if opts.weight_decay is None else opts.weight_decay,
    )


def _optimizer(net: torch.nn.Module, opts: TrainOptions, lr: float, wd: float) -> torch.optim.Optimizer:
    params = [p for p in net.parameters() if p.requires_grad]
    if opts.optimizer.lower() == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return torch.optim.SGD(params, lr=lr, momentum=get_recipe(opts.recipe).momentum, weight_decay=wd)


# --------------------------------------------------------------------------- the run


@dataclass
class TrainingRun:
    """Everything one training run holds between setup, the epoch loop and finalising."""

    opts: TrainOptions
    out_dir: Path
    device: torch.device
    amp_dtype: torch.dtype | None
    net: CellposeUNet | CellposeSAM
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
    #: torch's threads when the run was set up: numba's parallel loops (flows, validation) reset the OpenMP
    #: threads torch shares, so each epoch sets them back (a resumed run, whose flows come from the cache,
    #: then computes exactly as an uninterrupted one)
    threads: int = field(default_factory=torch.get_num_threads)


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


def setup_run(train_data, out_dir, val_data, resume, axes, masks_dir, flow_cache, options) -> TrainingRun:
    """Options, device, network, data, optimiser and (on resume) the saved state.

    Parameters are those of :func:`~cellseg_bridge.training.loop.train` (``options``: its
    ``**options`` as a dict, validated by :class:`~cellseg_bridge.config.TrainOptions`).

    Raises
    ------
    InputError
        Bad options, unusable data, or nothing to resume.
    """
    from cellseg_bridge.nn.inference import select_device

    threads = torch.get_num_threads()  # before any numba loop changes them
    out_dir = Path(out_dir)
    state = read_state(out_dir) if resume else None
    if state is not None and "options" in state:
        options = _resume_options(state["options"], options, out_dir / CHECKPOINT_DIR / STATE_NAME)
    opts = TrainOptions.derive(DEFAULTS.train, **options)  # validated by the dataclass
    recipe = get_recipe(opts.recipe)
    check_writable(out_dir)
    clean_stale_staging(out_dir / CHECKPOINT_DIR)  # partial files of a run killed while saving
    flow_cache = out_dir / "flow_cache" if flow_cache is None else Path(flow_cache)
    device = select_device(opts.device)
    amp_dtype = training_autocast_dtype(opts.precision, device)
    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)

    net, provenance = _init_net(opts, device)
    if isinstance(net, CellposeSAM):
        opts = sam_train_options(opts)
        # Cellpose 4's forward reads the patch embedding through ``.data``: it never trains it
        net.encoder.patch_embed.requires_grad_(False)
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
    run = TrainingRun(
        opts=opts, out_dir=out_dir, device=device, amp_dtype=amp_dtype, net=net,
        optim=_optimizer(net, opts, lr_peak, wd), samples=samples, probabilities=probabilities,
        val_sets=val_sets, scales=scales, config=config, lr_peak=lr_peak, per_epoch=per_epoch,
        steps_per_epoch=max(1, math.ceil(per_epoch / opts.batch_size)),
        n_epochs=int(opts.n_epochs or recipe.n_epochs), rng=rng, diam_labels=diam_labels, threads=threads,
    )
    if resume:
        restore_state(run, state)
    return run


def read_state(out_dir: Path) -> dict:
    """The saved training state of ``out_dir`` (``checkpoint/state.pt``), loaded with ``weights_only=True``.

    Raises
    ------
    InputError
        No state to resume, or one that cannot be read.
    """
    state_path = Path(out_dir) / CHECKPOINT_DIR / STATE_NAME
    if not state_path.is_file():
        raise InputError("nothing to resume: no checkpoint state", state_path)
    try:
        st = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable state is an input problem
        raise InputError(f"cannot read the training state ({type(exc).__name__})", state_path) from exc
    if not isinstance(st, dict):
        raise InputError("not a training state", state_path)
    return st


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _resume_options(saved: dict, given: dict, state_path: Path) -> dict:
    """The options of a resumed run: the checkpoint's, with the given :data:`RESUME_FREE_OPTIONS`.

    Raises
    ------
    InputError
        A given option (other than those) differs from the checkpoint's: one line naming them.
    """
    saved = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
    differ = [k for k, v in given.items() if k not in RESUME_FREE_OPTIONS and k in saved and not _same(v, saved[k])]
    if differ:
        said = ", ".join(f"{k}={given[k]!r} (checkpoint: {saved[k]!r})" for k in sorted(differ))
        raise InputError(f"cannot resume with other options than the checkpoint's: {said}; leave them out to "
                         "resume, or train into a new output folder", state_path)
    return {**saved, **{k: v for k, v in given.items() if k in RESUME_FREE_OPTIONS}}


def restore_state(run: TrainingRun, st: dict | None = None) -> None:
    """Load network, optimiser, RNGs, epoch and curves from ``out_dir/checkpoint/state.pt`` (or ``st``) into ``run``."""
    state_path = run.out_dir / CHECKPOINT_DIR / STATE_NAME
    if st is None:
        st = read_state(run.out_dir)
    try:
        run.net.load_state_dict(st["net"])
        run.optim.load_state_dict(st["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"the checkpoint does not fit this network/optimiser ({first}); resume with the options it was "
            "trained with (e.g. the same --pretrained, --nbase)",
            state_path,
        ) from exc
    run.start_epoch = int(st["epoch"])
    run.n_epochs = int(st["n_epochs"])
    run.rng = rng_from_plain(st["rng"])
    torch.set_rng_state(st["torch_rng"])
    run.curves = [{k: (int(v) if k == "epoch" and v is not None else v) for k, v in r.items()} for r in st["curves"]]
    run.diam_labels = float(st["diam_labels"])
    run.elapsed0 = float(st.get("elapsed", 0.0))
    run.resumed = True
    logger.info("resuming after epoch %d of %d", run.start_epoch, run.n_epochs)
