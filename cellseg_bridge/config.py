"""The one set of defaults shared by the Python API, the CLI and the Fiji scripts.

Each dataclass groups the options of one job. The API functions take their
defaults from these classes, the click CLI builds its option defaults from them,
and the Jython scripts read them through ``cellseg defaults --json``; change a
default here and every entry point follows.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

#: Environment variable overriding the model cache folder.
MODELS_DIR_ENV = "CELLSEG_BRIDGE_MODELS"
#: Environment variable naming an ImageJ 1.x jar (default: Debian's ij.jar).
IJ_JAR_ENV = "IJ_JAR"
#: Environment variable naming a local Fiji installation.
FIJI_HOME_ENV = "FIJI_HOME"

DEFAULT_IJ_JAR = Path("/usr/share/java/ij.jar")


def models_dir() -> Path:
    """Return the folder where named models are cached (created on demand)."""
    return Path(os.environ.get(MODELS_DIR_ENV, Path.home() / ".cellseg_bridge" / "models"))


@dataclass(frozen=True)
class ReadOptions:
    """How input images are opened."""

    #: Scene index or name; None means every scene (batch) or the first (API).
    scene: int | str | None = None
    #: Axis order of a plain TIFF whose axes are ambiguous, e.g. "ZYX"; None: trust metadata.
    axes: str | None = None
    #: Reader backend: "bioio" or "aicsimageio" (the extra cellseg-bridge[aicsimageio]); None:
    #: $CELLSEG_READER, else bioio, with aicsimageio (if installed) for files bioio cannot read.
    reader: str | None = None


@dataclass(frozen=True)
class BatchOptions:
    """How batch commands (convert, segment, restore) walk their inputs."""

    #: Descend into sub-folders of folder inputs.
    recursive: bool = False


@dataclass(frozen=True)
class ConvertOptions:
    """Options of ``cellseg convert``."""

    #: Replace outputs that already exist instead of skipping them (resume).
    overwrite: bool = False
    #: Compression of written OME-TIFFs ("zlib", "none").
    compression: str = "zlib"


@dataclass(frozen=True)
class RoiOptions:
    """Options for turning labels into ImageJ ROIs and back."""

    #: Name pattern of ROIs; ``{label}`` is the label id.
    name_format: str = "cell_{label:04d}"
    #: How a label made of several pieces is exported: "composite" (one ShapeRoi-like
    #: composite ROI, what ImageJ's "Create Selection" makes) or "pieces" (one polygon per piece).
    multipart: str = "composite"
    #: How overlapping ROIs are resolved when rasterised: "last" (later ROI wins, as when
    #: ImageJ fills them in order) or "first" (earlier ROI keeps its pixels).
    overlap: str = "last"


@dataclass(frozen=True)
class SegmentOptions:
    """Options of segmentation (``segment`` API, ``cellseg segment``, Fiji scripts)."""

    #: Model name (registry: bundled, cache, Cellpose zoo) or path of a checkpoint.
    model: str = "nuclei"
    #: Expected object diameter in pixels; None: the size model's estimate if the model has
    #: one, else the model's training diameter (diam_labels, or diam_mean).
    diameter: float | None = None
    #: Channel to segment (0-based index or channel name).
    channel: int | str = 0
    #: Optional second channel with nuclei (cytoplasm models with 2 input channels).
    nuclear_channel: int | str | None = None
    #: Per-channel percentile normalisation (low, high).
    normalize_percentiles: tuple[float, float] = (1.0, 99.0)
    #: Invert the normalised channels (1 - x): dark objects on a bright background (brightfield,
    #: H&E nuclei) look like fluorescence to a model trained on fluorescence. None: as the
    #: model was trained (its config's ``invert``; False when it does not say).
    invert: bool | None = None
    #: Pixels with cell probability logit above this take part in the dynamics.
    cellprob_threshold: float = 0.0
    #: Maximum mean squared flow error of a mask (flow QC); 0 disables.
    flow_threshold: float = 0.4
    #: Euler steps of the dynamics; None: 200 scaled by 1/rescale.
    niter: int | None = None
    #: Masks smaller than this (pixels or voxels) are removed.
    min_size: int = 15
    #: Masks larger than this fraction of the image are removed.
    max_size_fraction: float = 0.4
    #: Largest side of the square tiles the network sees, in pixels (after rescaling); an image
    #: that fits is run in one pass, 0 always runs the whole image. 224 reproduces Cellpose's
    #: tiling exactly (the default); larger tiles pass fewer pixels through the network but change
    #: its output (the style vector is an average over the tile): AP@0.5 0.91 against 224-px
    #: tiles at tile_size 1024 on the dsb2018 test mosaic (docs/benchmarks.md).
    tile_size: int = 224
    #: Fraction of overlap between neighbouring tiles.
    tile_overlap: float = 0.1
    #: Test-time augmentation: 50% tile overlap and flipped tiles.
    augment: bool = False
    #: Tiles per network batch.
    batch_size: int = 8
    #: 3D segmentation: flows from YX, ZY and ZX planes; False: plane by plane in 2D.
    do_3d: bool = False
    #: Z step / XY pixel size; None: from the image's physical pixel sizes (1.0 if unknown).
    anisotropy: float | None = None
    #: Plane-by-plane mode: stitch masks of neighbouring planes whose IoU is above this (0: no stitching).
    stitch_threshold: float = 0.0
    #: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:1", "mps".
    device: str = "auto"
    #: Arithmetic of the network: "auto" = float16 autocast on a CUDA GPU, bfloat16 autocast on a
    #: CPU with native bfloat16 (AVX512-BF16/AMX: about 2x the float32 speed; masks AP@0.5 >= 0.99
    #: against float32, docs/benchmarks.md), else float32; or "float32", "bfloat16", "float16".
    precision: str = "auto"


@dataclass(frozen=True)
class TrainOptions:
    """Options of training (``train`` API, ``cellseg train``); None: the recipe's value."""

    #: "hitl" (fine-tune on a few corrected images) or "generalist" (train from scratch).
    recipe: str = "hitl"
    #: "sgd" (momentum 0.9) or "adamw".
    optimizer: str = "sgd"
    #: Epochs; None: the recipe's (hitl 100, generalist 500).
    n_epochs: int | None = None
    #: Peak learning rate; None: the recipe's (hitl 0.1, generalist 0.2; AdamW 1e-3).
    learning_rate: float | None = None
    #: Weight decay; None: the recipe's (hitl 1e-4, generalist 1e-5).
    weight_decay: float | None = None
    #: Linear warm-up epochs at the start.
    warmup_epochs: int = 10
    #: Crops per optimiser step.
    batch_size: int = 8
    #: Side of the square training crops (pixels).
    crop_size: int = 224
    #: Random zoom factor uniform in [1 - r/2, 1 + r/2] (times diam_mean / image diameter).
    scale_range: float = 0.5
    #: Images with fewer masks are left out; None: the recipe's (hitl 0, generalist 5).
    min_train_masks: int | None = None
    #: Images drawn per epoch; None: the recipe's (hitl max(8, n), generalist n).
    images_per_epoch: int | None = None
    #: Network widths [nchan, c1, ...] of a new network (ignored when fine-tuning a model).
    nbase: tuple[int, ...] = (2, 32, 64, 128, 256)
    #: Diameter (pixels) a new network works at (ignored when fine-tuning a model).
    diam_mean: float = 30.0
    #: Model to start from (name or path); None: a new, randomly initialised network.
    pretrained: str | None = None
    #: Segmentation channel (index or name) and optional nuclear channel, as for segment.
    channel: int | str = 0
    nuclear_channel: int | str | None = None
    #: Per-channel normalisation percentiles (must match inference).
    normalize_percentiles: tuple[float, float] = (1.0, 99.0)
    #: Invert the normalised channels (1 - x), as segment's ``invert``; recorded in config.json, so the
    #: trained model inverts when it segments.
    invert: bool = False
    #: Suffix of label images beside their image: NAME + suffix + .tif.
    mask_suffix: str = "_masks"
    #: Validation AP every this many epochs (0: never).
    val_every: int = 10
    #: Checkpoint (last.pth + state) every this many epochs.
    save_every: int = 10
    #: Random seed (augmentation, sampling, initialisation): same seed, same run on the CPU.
    seed: int = 0
    #: Stop cleanly and save after this many minutes; None: no limit.
    time_budget_min: float | None = None
    #: Fit a size model (style -> diameter) after training.
    fit_size_model: bool = True
    #: Arithmetic: "auto" = bfloat16 mixed precision on a CPU with native bfloat16 (AVX512-BF16/AMX:
    #: ~3x faster steps) or a CUDA GPU with bfloat16, else float32; "float32" or "bfloat16".
    precision: str = "auto"
    #: "auto", "cpu", "cuda", "mps".
    device: str = "auto"


@dataclass(frozen=True)
class RestoreOptions:
    """Options of image restoration (``restore`` API, ``cellseg restore``, ``cellseg segment --restore``)."""

    #: Restoration kind(s), applied in order: "denoise", "deblur", "upsample", "oneclick", "aniso".
    types: tuple[str, ...] = ("denoise",)
    #: Model family the kind is combined with: model name "<type>_<target>" (e.g. "denoise_nuclei").
    target: str = "nuclei"
    #: Restoration model name or checkpoint path; overrides types/target (one model).
    model: str | None = None
    #: Channel(s) to restore (index or name); None: every channel.
    channel: int | str | None = None
    #: Object diameter in pixels (images are rescaled to the model's diam_mean); None: no rescaling.
    diameter: float | None = None
    #: Per-channel percentile normalisation of the input (low, high); the output is normalised.
    normalize_percentiles: tuple[float, float] = (1.0, 99.0)
    #: Network tile side (pixels); tiles are blended as for segmentation.
    tile_size: int = 224
    #: Tiles per network batch.
    batch_size: int = 8
    #: "auto", "cpu", "cuda", "mps".
    device: str = "auto"
    #: Restoration output file suffix (after the scene's base name).
    suffix: str = "_restored.ome.tif"


@dataclass(frozen=True)
class HitlOptions:
    """Options of a human-in-the-loop project (``cellseg hitl``, :mod:`cellseg_bridge.hitl`)."""

    #: Initial (pretrained) model; every cycle fine-tunes from it on ALL corrected images.
    model: str = "nuclei"
    #: Epochs of each cycle (Cellpose 2.0's HITL recipe: 100).
    n_epochs: int = 100
    #: Every k-th corrected image (in the order they were added) is held out for AP; 0: none.
    holdout_every: int = 3
    #: Random seed of each cycle's training.
    seed: int = 0
    #: Name of the project manifest inside the project folder.
    manifest_name: str = "hitl_project.json"


@dataclass(frozen=True)
class FijiOptions:
    """Options of the Fiji bridge (``cellseg_bridge.fiji``) and the Jython scripts in ``fiji_scripts/``."""

    #: Add ROIs to what the ROI Manager / Overlay already holds (False: empty it first).
    append_rois: bool = True
    #: Segment script: also show the label image (glasbey-like LUT) beside the image.
    show_labels: bool = True
    #: Fine-tune script: training recipe passed to ``cellseg train --recipe``.
    finetune_recipe: str = "hitl"
    #: Fine-tune script: epochs (None: the recipe's).
    finetune_epochs: int | None = None
    #: How pyimagej starts a local Fiji: "headless", "interactive" or "gui".
    mode: str = "headless"


@dataclass(frozen=True)
class DistributedOptions:
    """Scale-out on Dask (``--workers``, ``--scheduler``, ``--chunked``; :mod:`cellseg_bridge.distributed`)."""

    #: Workers of a local Dask cluster (processes); None: no cluster unless ``scheduler`` is given.
    workers: int | None = None
    #: Address of an existing Dask scheduler, e.g. "tcp://10.0.0.5:8786"; None: none.
    scheduler: str | None = None
    #: Threads per local worker (1: the network uses the worker's cores through torch).
    threads_per_worker: int = 1
    #: Largest core side (pixels) of a chunk of a large image.
    chunk_size: int = 2048
    #: Pixels around each core; None: twice the diameter, rounded up (the least accepted).
    overlap: int | None = None
    #: Planes with more pixels than this are segmented in chunks automatically (CLI).
    chunked_threshold_pixels: int = 8192 * 8192
    #: Name of the manifest written into the output folder (resume, report).
    manifest_name: str = "cellseg_manifest.jsonl"


@dataclass(frozen=True)
class Defaults:
    """All defaults, one object (serialised by ``cellseg defaults --json``)."""

    read: ReadOptions = field(default_factory=ReadOptions)
    batch: BatchOptions = field(default_factory=BatchOptions)
    convert: ConvertOptions = field(default_factory=ConvertOptions)
    rois: RoiOptions = field(default_factory=RoiOptions)
    segment: SegmentOptions = field(default_factory=SegmentOptions)
    distributed: DistributedOptions = field(default_factory=DistributedOptions)
    train: TrainOptions = field(default_factory=TrainOptions)
    fiji: FijiOptions = field(default_factory=FijiOptions)
    hitl: HitlOptions = field(default_factory=HitlOptions)
    restore: RestoreOptions = field(default_factory=RestoreOptions)

    def to_dict(self) -> dict:
        """Return the defaults as plain nested dicts of JSON types (tuples become lists)."""
        return dataclasses.asdict(self, dict_factory=_json_dict)


def _json_dict(items: list[tuple[str, object]]) -> dict:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in items}


DEFAULTS = Defaults()
