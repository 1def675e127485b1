"""The one set of defaults shared by the Python API, the CLI and the Fiji scripts.

Each dataclass groups the options of one job. Every field is declared with
:func:`option`: its default, its help text (the one text: the CLI's ``--help``
shows it, and these docs) and its constraints (choices, bounds). The dataclasses
validate themselves on construction (``__post_init__``), so an options object
that exists is valid; :meth:`Options.derive` is the one way to make options from
a base and overrides. The API functions take their defaults from these classes,
the click CLI generates one option per field (:mod:`cellseg_bridge.cli.options`),
and the Jython scripts read them through ``cellseg defaults --json``; change a
default here and every entry point follows.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from cellseg_bridge.errors import InputError

#: Environment variable overriding the model cache folder.
MODELS_DIR_ENV = "CELLSEG_BRIDGE_MODELS"
#: Environment variable naming an ImageJ 1.x jar (default: Debian's ij.jar).
IJ_JAR_ENV = "IJ_JAR"
#: Environment variable naming a local Fiji installation.
FIJI_HOME_ENV = "FIJI_HOME"

DEFAULT_IJ_JAR = Path("/usr/share/java/ij.jar")

#: Kinds of restoration (and of the degradation each is trained on).
RESTORE_KINDS = ("denoise", "deblur", "upsample", "oneclick", "aniso")

OptionsT = TypeVar("OptionsT", bound="Options")


def models_dir() -> Path:
    """Return the folder where named models are cached (created on demand)."""
    return Path(os.environ.get(MODELS_DIR_ENV, Path.home() / ".cellseg_bridge" / "models"))


# --------------------------------------------------------------------------- declaring and validating options


def option(
    default: Any,
    help: str,  # noqa: A002 - the word click uses
    *,
    choices: tuple[str, ...] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    flag: str | None = None,
) -> Any:
    """Declare an option field: default, help text and constraints, kept in the field's metadata.

    Parameters
    ----------
    default : object
        The default (immutable: numbers, strings, tuples, None).
    help : str
        What the option does, for users (``cellseg ... --help`` prints it).
    choices : tuple of str, optional
        The accepted values of a string option (compared case-insensitively).
    ge, gt, le, lt : float, optional
        Bounds of a number option (None values are not checked).
    flag : str, optional
        The CLI option name, when it is not ``--`` + the field name with dashes.

    Returns
    -------
    dataclasses.Field
    """
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt, "flag": flag}
    return field(default=default, metadata=meta)


class Options:
    """Base of the option dataclasses: validation on construction, and :meth:`derive`."""

    #: Word used in "unknown <noun>option(s)" messages.
    noun: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = _type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = _coerce(f.name, getattr(self, f.name), hints[f.name])
            _check_bounds(f.name, value, f.metadata)
            object.__setattr__(self, f.name, value)
        self._check()

    def _check(self) -> None:
        """Checks that involve several fields or more than bounds (subclasses)."""

    @classmethod
    def derive(cls: type[OptionsT], base: OptionsT | None = None, /, **overrides: Any) -> OptionsT:
        """Options from ``base`` (default: this class's defaults) with ``overrides``, validated.

        Raises
        ------
        InputError
            Unknown option names, or values of the wrong type or out of range.
        """
        unknown = cls.unknown_names(overrides)
        if unknown:
            raise InputError(f"unknown {cls.noun}option(s) {', '.join(unknown)}; known: {', '.join(cls.names())}")
        if base is None:
            return cls(**overrides)
        return dataclasses.replace(base, **overrides)  # type: ignore[type-var]

    @classmethod
    def names(cls) -> list[str]:
        """The option names (fields), sorted."""
        return sorted(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def unknown_names(cls, names: typing.Iterable[str]) -> list[str]:
        """Those of ``names`` that are not options of this class, sorted."""
        return sorted(set(names) - set(cls.names()))

    def as_dict(self) -> dict[str, Any]:
        """The fields as a flat dict (tuples kept)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


_HINTS: dict[type, dict[str, Any]] = {}


def _type_hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _union_args(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """``value`` checked against the type ``hint`` (sequences become tuples); InputError otherwise."""
    members = _union_args(hint)
    if value is None:
        if type(None) in members:
            return None
        raise InputError(f"{name} must not be None")
    for member in members:
        ok, out = _as_type(value, member)
        if ok:
            return out
    expected = " or ".join(getattr(m, "__name__", str(m)) for m in members)
    raise InputError(f"{name} must be {expected}, got {value!r}")


def _as_type(value: Any, hint: Any) -> tuple[bool, Any]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for member in typing.get_args(hint):
            ok, out = _as_type(value, member)
            if ok:
                return ok, out
        return False, None
    if hint is bool:
        return (True, bool(value)) if isinstance(value, bool) or type(value).__name__ == "bool_" else (False, None)
    if hint is int:
        return (isinstance(value, numbers.Integral) and not isinstance(value, bool)), value
    if hint is float:
        return (isinstance(value, numbers.Real) and not isinstance(value, bool)), value
    if hint is str:
        return isinstance(value, str), value
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if isinstance(value, str) and args[-1] is Ellipsis and args[0] is str:
            value = [v for v in value.replace(" ", "").split(",") if v]  # "denoise,deblur"
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            return False, None
        item_hints = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        if len(item_hints) != len(value):
            return False, None
        items = [_as_type(v, h) for v, h in zip(value, item_hints)]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    return False, None


def _check_bounds(name: str, value: Any, meta: Any) -> None:
    if value is None:
        return
    choices = meta.get("choices")
    if choices and str(value).lower() not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    bounds = [(key, meta.get(key)) for key in ("ge", "gt", "le", "lt") if meta.get(key) is not None]
    if not bounds:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value}")
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    for key, bound in bounds:
        ok = {"ge": value >= bound, "gt": value > bound, "le": value <= bound, "lt": value < bound}[key]
        if not ok:
            raise InputError(f"{name} must be {words[key]} {bound:g}, got {value}")


def _check_percentiles(name: str, pair: tuple[float, float]) -> None:
    lo, hi = pair
    if not 0 <= lo < hi <= 100:
        raise InputError(f"{name} must satisfy 0 <= low < high <= 100 (percentiles), got {(lo, hi)}")


# --------------------------------------------------------------------------- the options of each job

_DEVICES = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."
_CHANNEL = "Channel to segment: 0-based index or channel name."
_NUCLEAR = "Second input channel with nuclei (index or name), for 2-channel cytoplasm models."
_PERCENTILES = "Per-channel percentile normalisation: LOW HIGH percentiles mapped to 0 and 1."


@dataclass(frozen=True)
class ReadOptions(Options):
    """How input images are opened."""

    scene: int | str | None = option(
        None, "Only this scene (name or 0-based index); default: every scene (batch) or the first (API).")
    axes: str | None = option(None, "Axis order of plain TIFFs whose axes are ambiguous, e.g. ZYX; default: "
                                    "trust the metadata.")
    reader: str | None = option(
        None, "Reader backend: bioio (default; falls back to aicsimageio, if installed, for files bioio cannot "
              "read) or aicsimageio (pip install 'cellseg-bridge[aicsimageio]'). Default: $CELLSEG_READER, "
              "else bioio.", choices=("bioio", "aicsimageio"))


@dataclass(frozen=True)
class BatchOptions(Options):
    """How batch commands (convert, segment, restore) walk their inputs."""

    recursive: bool = option(False, "Descend into sub-folders of folder inputs.", flag="-r/--recursive")


@dataclass(frozen=True)
class ConvertOptions(Options):
    """Options of ``cellseg convert``."""

    overwrite: bool = option(False, "Redo items whose outputs exist (default: skip them, so a re-run resumes).")
    compression: str = option("zlib", "OME-TIFF compression.", choices=("zlib", "none"))


@dataclass(frozen=True)
class RoiOptions(Options):
    """Options for turning labels into ImageJ ROIs and back."""

    name_format: str = option("cell_{label:04d}", "ROI names; fields {label}, {z}, {t}, {c}, {piece}.")
    multipart: str = option(
        "composite", "A label made of several pieces: one composite ROI (what ImageJ's Create Selection makes), "
                     "or one polygon per piece.", choices=("composite", "pieces"))
    overlap: str = option(
        "last", "Who keeps a pixel claimed by several ROIs when rasterised: the last ROI (as ImageJ fills them "
                "in order) or the first.", choices=("last", "first"))


@dataclass(frozen=True)
class GeoJsonOptions(Options):
    """The QuPath GeoJSON output of ``segment`` (``--save-geojson``)."""

    geojson_object_type: str = option(
        "detection", "QuPath object type of the cells in <base>_cells.geojson: detection (many, light) or "
                     "annotation (editable, what QuPath trains from).", choices=("detection", "annotation"))
    geojson_classification: str | None = option("Cell", "QuPath classification (class name) of the cells; "
                                                        "empty for none.")


@dataclass(frozen=True)
class TrackOptions(Options):
    """Linking labels over time (``segment --track``)."""

    track_iou_threshold: float = option(
        0.1, "Smallest overlap (IoU) of a cell with a cell of an earlier frame to continue its track.", gt=0, le=1)
    track_max_gap: int = option(
        1, "A track may skip at most this many frames (a cell missed by the segmentation) and continue.", ge=0)


@dataclass(frozen=True)
class SegmentOptions(Options):
    """Options of segmentation (``segment`` API, ``cellseg segment``, Fiji scripts)."""

    model: str = option("nuclei", "Model name (registry: bundled, cache, Cellpose zoo) or checkpoint path.")
    diameter: float | None = option(
        None, "Object diameter in pixels; default: the size model's estimate if the model has one, else the "
              "model's training diameter.", gt=0)
    channel: int | str = option(0, _CHANNEL)
    nuclear_channel: int | str | None = option(None, _NUCLEAR)
    channels: str | None = option(
        None, "Cellpose-SAM models (3 inputs): up to 3 channels in order, comma-separated indices or names; "
              "default: the image's channels (at most 3; more is an error), or channel and nuclear_channel when "
              "given; missing inputs are zeros. Cellpose 2/3 models use channel and nuclear_channel.")
    normalize_percentiles: tuple[float, float] = option((1.0, 99.0), _PERCENTILES)
    invert: bool | None = option(
        None, "Invert the normalised image (1 - x): dark objects on a bright background (brightfield, H&E) "
              "look like fluorescence. Default: as the model was trained (cellseg train --invert).")
    cellprob_threshold: float = option(
        0.0, "Cell probability (logit) threshold: pixels above it take part in the dynamics; lower finds "
             "more/larger cells (an automatic diameter is estimated with the default threshold, so it stays put).")
    flow_threshold: float = option(0.4, "Maximum mean squared flow error of a mask (flow QC); 0 disables the check.",
                                   ge=0)
    niter: int | None = option(None, "Euler steps of the dynamics; default: 200 scaled by 1/rescale.", ge=0)
    min_size: int = option(15, "Masks smaller than this (pixels or voxels) are removed.")
    max_size_fraction: float = option(0.4, "Masks larger than this fraction of the image are removed.", gt=0)
    tile_size: int = option(
        224, "Largest side of the square tiles the network sees (pixels, after rescaling); 0: the whole image "
             "in one pass. 224 reproduces Cellpose's tiling exactly; larger tiles pass fewer pixels through "
             "the network but change its output (docs/benchmarks.md).", ge=0)
    tile_overlap: float = option(0.1, "Fraction of overlap between neighbouring tiles.", ge=0, lt=1)
    augment: bool = option(False, "Test-time augmentation: 50% tile overlap and flipped tiles (slower).")
    batch_size: int = option(8, "Tiles per network batch.", ge=1)
    do_3d: bool = option(False, "True 3D segmentation of Z stacks: flows from YX, ZY and ZX planes (default: "
                                "plane by plane).")
    anisotropy: float | None = option(
        None, "Z step / XY pixel size for 3D; default: from the image's pixel sizes (1 if unknown).", gt=0)
    stitch_threshold: float = option(
        0.0, "Plane by plane: join masks of neighbouring planes with IoU above this (0: no stitching).", ge=0)
    device: str = option("auto", "Compute device: " + _DEVICES)
    precision: str = option(
        "auto", "Network arithmetic; auto: float16 on CUDA, bfloat16 on CPUs with native bfloat16 "
                "(AVX512-BF16/AMX), else float32.", choices=("auto", "float32", "bfloat16", "float16"))

    def _check(self) -> None:
        _check_percentiles("normalize_percentiles", self.normalize_percentiles)


@dataclass(frozen=True)
class TrainOptions(Options):
    """Options of training (``train`` API, ``cellseg train``); None: the recipe's value."""

    noun: ClassVar[str] = "training "

    recipe: str = option("hitl", "Training recipe: hitl (fine-tune on a few corrected images) or generalist "
                                 "(train from scratch).", choices=("hitl", "generalist"))
    optimizer: str = option("sgd", "Optimiser: sgd (momentum 0.9) or adamw.", choices=("sgd", "adamw"))
    n_epochs: int | None = option(None, "Epochs; default: the recipe's (hitl 100, generalist 500).", ge=1,
                                  flag="--epochs")
    learning_rate: float | None = option(
        None, "Peak learning rate; default: the recipe's (hitl 0.1, generalist 0.2; AdamW 1e-3).", gt=0, flag="--lr")
    weight_decay: float | None = option(None, "Weight decay; default: the recipe's (hitl 1e-4, generalist 1e-5).",
                                        ge=0)
    warmup_epochs: int = option(10, "Linear learning-rate warm-up epochs at the start.", ge=0)
    batch_size: int = option(8, "Crops per optimiser step.", ge=1)
    crop_size: int = option(224, "Side of the square training crops (pixels).", ge=16)
    scale_range: float = option(
        0.5, "Random zoom uniform in [1 - r/2, 1 + r/2] (times diam_mean / the image's diameter).", ge=0, lt=2)
    min_train_masks: int | None = option(
        None, "Images with fewer masks are left out; default: the recipe's (hitl 0, generalist 5).", ge=0)
    images_per_epoch: int | None = option(
        None, "Images drawn per epoch; default: the recipe's (hitl max(8, n), generalist n).", ge=1)
    nbase: tuple[int, ...] = option(
        (2, 32, 64, 128, 256), "Widths of a new network, comma separated (first: input channels); ignored when "
                               "fine-tuning.")
    diam_mean: float = option(30.0, "Diameter (pixels) a new network works at (ignored when fine-tuning).", gt=0)
    pretrained: str | None = option(None, "Model to fine-tune (name or checkpoint); default: a new network.")
    channel: int | str = option(0, "Segmentation channel (index or name), as for segment.")
    nuclear_channel: int | str | None = option(None, "Optional nuclear channel (2-channel networks), as for segment.")
    normalize_percentiles: tuple[float, float] = option((1.0, 99.0), _PERCENTILES + " Must match inference.")
    invert: bool = option(False, "Invert the normalised images (1 - x); recorded in config.json, so the trained "
                                 "model inverts when it segments.")
    mask_suffix: str = option("_masks", "Label images are NAME + suffix + .tif/.png beside the image.")
    val_every: int = option(10, "Validation AP every this many epochs (0: never).", ge=0)
    save_every: int = option(10, "Checkpoint (last.pth + state) every this many epochs (0: never).", ge=0)
    seed: int = option(0, "Random seed (augmentation, sampling, initialisation): same seed, same run on the CPU.")
    time_budget_min: float | None = option(
        None, "Time budget in minutes: epochs are fitted to it, and the run stops and saves when it is used up.",
        gt=0, flag="--minutes")
    fit_size_model: bool = option(True, "Fit a size model (style -> diameter) after training.")
    precision: str = option(
        "auto", "Arithmetic; auto: bfloat16 mixed precision on a CPU with native bfloat16 (AVX512-BF16/AMX, ~3x "
                "faster steps) or a CUDA GPU with bfloat16, else float32.", choices=("auto", "float32", "bfloat16"))
    device: str = option("auto", "Compute device: " + _DEVICES)

    def _check(self) -> None:
        _check_percentiles("normalize_percentiles", self.normalize_percentiles)


@dataclass(frozen=True)
class RestoreOptions(Options):
    """Options of image restoration (``restore`` API, ``cellseg restore``, ``cellseg segment --restore``)."""

    noun: ClassVar[str] = "restore "

    types: tuple[str, ...] = option(
        ("denoise",), "Restoration type(s), comma separated, applied in order: " + ", ".join(RESTORE_KINDS) + ".",
        flag="--type")
    target: str = option(
        "nuclei", "Model family: the model of a type is <type>_<target> (e.g. denoise_nuclei, denoise_cyto3).")
    model: str | None = option(None, "Restoration model name or checkpoint path (instead of --type/--target).")
    channel: int | str | tuple[int | str, ...] | None = option(
        None, "Channel(s) to restore (index or name); default: every channel.")
    diameter: float | None = option(
        None, "Object diameter in pixels (the image is rescaled to the model's diam_mean); default: no rescaling.",
        gt=0)
    normalize_percentiles: tuple[float, float] = option(
        (1.0, 99.0), _PERCENTILES + " The output is normalised.")
    tile_size: int = option(224, "Network tile side in pixels; tiles are blended as for segmentation.", ge=0)
    batch_size: int = option(8, "Tiles per network batch.", ge=1)
    device: str = option("auto", "Compute device: " + _DEVICES)
    suffix: str = option("_restored.ome.tif", "Restoration output file suffix (after the scene's base name).")

    def _check(self) -> None:
        _check_percentiles("normalize_percentiles", self.normalize_percentiles)


@dataclass(frozen=True)
class HitlOptions(Options):
    """Options of a human-in-the-loop project (``cellseg hitl``, :mod:`cellseg_bridge.hitl`)."""

    model: str = option("nuclei", "Initial (pretrained) model; every cycle fine-tunes from it on ALL corrected "
                                  "images.")
    n_epochs: int = option(100, "Epochs of each training cycle (Cellpose 2.0's HITL recipe: 100).", ge=1,
                           flag="--epochs")
    holdout_every: int = option(
        3, "Every k-th corrected image (in the order added) is held out for AP; 0: none.", ge=0)
    seed: int = option(0, "Random seed of each cycle's training.")
    manifest_name: str = option("hitl_project.json", "Name of the project manifest inside the project folder.")

    def _check(self) -> None:
        if self.holdout_every == 1:
            raise InputError("holdout_every must be 0 (no held-out images) or >= 2, got 1")


@dataclass(frozen=True)
class FijiOptions(Options):
    """Options of the Fiji bridge (``cellseg_bridge.fiji``) and the Jython scripts in ``fiji_scripts/``."""

    append_rois: bool = option(True, "Add ROIs to what the ROI Manager / Overlay already holds (False: empty it "
                                     "first).")
    show_labels: bool = option(True, "Segment script: also show the label image (glasbey-like LUT) beside the "
                                     "image.")
    finetune_recipe: str = option("hitl", "Fine-tune script: training recipe passed to cellseg train --recipe.",
                                  choices=("hitl", "generalist"))
    finetune_epochs: int | None = option(None, "Fine-tune script: epochs (None: the recipe's).", ge=1)
    mode: str = option("headless", "How pyimagej starts a local Fiji.", choices=("headless", "interactive", "gui"))


@dataclass(frozen=True)
class DistributedOptions(Options):
    """Scale-out on Dask (``--workers``, ``--scheduler``, ``--chunked``; :mod:`cellseg_bridge.distributed`)."""

    workers: int | None = option(
        None, "Run on a local Dask cluster of N worker processes (one task per scene); default: no cluster "
              "unless --scheduler is given.", ge=1)
    scheduler: str | None = option(
        None, "Address of a running Dask scheduler (tcp://host:8786): one task per scene.")
    threads_per_worker: int = option(1, "Threads per local worker (1: the network uses the worker's cores "
                                        "through torch).", ge=1)
    chunk_size: int = option(2048, "Chunk core side (pixels) for chunked segmentation of large planes.", ge=16)
    overlap: int | None = option(
        None, "Pixels around each chunk core; default: twice the diameter, rounded up (the least accepted).", ge=0)
    chunked_threshold_pixels: int = option(
        8192 * 8192, "Planes with more pixels than this are segmented in chunks automatically.", ge=1)
    manifest_name: str = option("cellseg_manifest.jsonl", "Name of the manifest written into the output folder "
                                                          "(resume, report).")


@dataclass(frozen=True)
class Defaults:
    """All defaults, one object (serialised by ``cellseg defaults --json``)."""

    read: ReadOptions = field(default_factory=ReadOptions)
    batch: BatchOptions = field(default_factory=BatchOptions)
    convert: ConvertOptions = field(default_factory=ConvertOptions)
    rois: RoiOptions = field(default_factory=RoiOptions)
    geojson: GeoJsonOptions = field(default_factory=GeoJsonOptions)
    track: TrackOptions = field(default_factory=TrackOptions)
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
