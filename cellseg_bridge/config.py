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
class Defaults:
    """All defaults, one object (serialised by ``cellseg defaults --json``)."""

    read: ReadOptions = field(default_factory=ReadOptions)
    batch: BatchOptions = field(default_factory=BatchOptions)
    convert: ConvertOptions = field(default_factory=ConvertOptions)
    rois: RoiOptions = field(default_factory=RoiOptions)

    def to_dict(self) -> dict:
        """Return the defaults as plain nested dicts (JSON-serialisable)."""
        return dataclasses.asdict(self)


DEFAULTS = Defaults()
