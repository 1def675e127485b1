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
    #: Run the network in float16 (autocast) on a CUDA GPU; the CPU always computes in float32.
    half_precision: bool = True


@dataclass(frozen=True)
class Defaults:
    """All defaults, one object (serialised by ``cellseg defaults --json``)."""

    read: ReadOptions = field(default_factory=ReadOptions)
    batch: BatchOptions = field(default_factory=BatchOptions)
    convert: ConvertOptions = field(default_factory=ConvertOptions)
    rois: RoiOptions = field(default_factory=RoiOptions)
    segment: SegmentOptions = field(default_factory=SegmentOptions)

    def to_dict(self) -> dict:
        """Return the defaults as plain nested dicts of JSON types (tuples become lists)."""
        return dataclasses.asdict(self, dict_factory=_json_dict)


def _json_dict(items: list[tuple[str, object]]) -> dict:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in items}


DEFAULTS = Defaults()
