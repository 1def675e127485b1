"""Segment many files (every scene of each) and write the results Fiji users need.

:func:`segment_files` is the batch behind ``cellseg segment``. For every input
file and scene it opens the image, segments it (the model is loaded ONCE for
the whole batch, and only when there is something to do) and writes, into
``out_dir``, under the scene's base name ``<base>`` (``<stem>`` or
``<stem>_s<index>_<scene>``, the rule of :mod:`cellseg_bridge.naming` shared
with ``convert``):

==========================  ================================================  =====================
file                        content                                           when
==========================  ================================================  =====================
``<base>_labels.ome.tif``   label image (T, Z, Y, X; uint16, uint32 beyond    ``"labels"`` in outputs
                            65535 labels) with the image's pixel sizes
``<base>_RoiSet.zip``       one pixel-exact ImageJ ROI per label and plane,   ``"rois"``
                            with z/t positions (ROI Manager > More > Open)
``<base>_cells.csv``        per-cell table (:mod:`cellseg_bridge.measure`):   ``"csv"``
                            label, t, z, area/volume, centroid, mean
                            intensity of every channel
``<base>_overlay.png``      the segmented channel in gray with outlines in    ``"overlay"``
                            magenta: first time point, middle Z plane
``<base>_seg.npy``          Cellpose GUI file (masks, outlines, flows;        ``save_seg_npy``,
                            ``filename`` = the input's absolute path)         2D images only
``<base>_flows.ome.tif``    network output per pixel: channels ``dY``,        ``save_flows``
                            ``dX`` (``dZ`` first in 3D) and ``cellprob``
==========================  ================================================  =====================

Positions and modes:

- ROIs: labels with one stack axis (Z or T) carry the plain stack position;
  with both, or when the image has several channels, hyperstack positions
  (channel 0 = "all channels"), so they land on the right plane of the
  original image and of the label image.
- CSV: 3D objects (one row per label and time point, ``volume``,
  ``centroid_z``) for ``do_3d`` or ``stitch_threshold > 0``; otherwise a Z
  stack is segmented plane by plane and measured per plane (a ``z`` column).
- ``_seg.npy`` is written for images with one time point and one plane only
  (Cellpose's GUI format); it is skipped, with a log message, for stacks.

Every output of an item is written into a hidden staging folder in
``out_dir`` and moved into place only when all of them are complete, so a
failed or interrupted item leaves no output behind. An item whose outputs all
exist is skipped (a re-run resumes) unless ``overwrite``. A file that cannot
be read or segmented is reported with the reason and the batch goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cellseg_bridge.batch import BatchReport, WorkItem, run_batch
from cellseg_bridge.config import DEFAULTS, SegmentOptions
from cellseg_bridge.errors import CellsegError, InputError
from cellseg_bridge.naming import axes_for, scene_items

log = logging.getLogger(__name__)

__all__ = [
    "OUTPUT_KINDS",
    "DEFAULT_OUTPUTS",
    "OUTPUT_SUFFIXES",
    "ItemResult",
    "SegmentReport",
    "segment_files",
]

#: Output suffix of every kind of output, appended to the scene's base name.
OUTPUT_SUFFIXES = {
    "labels": "_labels.ome.tif",
    "rois": "_RoiSet.zip",
    "csv": "_cells.csv",
    "overlay": "_overlay.png",
    "seg_npy": "_seg.npy",
    "flows": "_flows.ome.tif",
}
#: Kinds that ``outputs`` may name (``seg_npy`` and ``flows`` have their own switches).
OUTPUT_KINDS = ("labels", "rois", "csv", "overlay")
#: What ``cellseg segment`` writes unless told otherwise.
DEFAULT_OUTPUTS = OUTPUT_KINDS

#: Names of the options passed on to :func:`cellseg_bridge.segment.segment`.
SEGMENT_OPTION_NAMES = tuple(f.name for f in dataclasses.fields(SegmentOptions) if f.name != "model")


@dataclass
class ItemResult:
    """What happened to one input scene (one row of ``--json``'s ``items``).

    Attributes
    ----------
    input : str
        The input file (as given/expanded).
    scene : int or None
        0-based scene index; None when the file could not be opened.
    scene_name : str or None
        The scene's name.
    status : str
        ``"done"``, ``"skipped"`` (outputs existed) or ``"failed"``.
    outputs : dict of str to Path
        Output kind (``labels``, ``rois``, ``csv``, ``overlay``, ``seg_npy``,
        ``flows``) -> file. Empty for a file that could not be opened.
    n_cells : int or None
        Number of labels found (None unless segmented in this run).
    diameter : float or None
        Diameter (pixels) used by the segmentation.
    model_choice : dict or None
        With ``--model auto``: ``{"model", "confidence", "ranking"}``.
    reason : str or None
        Why it failed.
    """

    input: str
    scene: int | None = None
    scene_name: str | None = None
    status: str = "failed"
    outputs: dict[str, Path] = field(default_factory=dict)
    n_cells: int | None = None
    diameter: float | None = None
    model_choice: dict | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, output paths absolute."""
        data = dataclasses.asdict(self)
        data["outputs"] = {kind: os.path.abspath(path) for kind, path in self.outputs.items()}
        return data


@dataclass
class SegmentReport(BatchReport):
    """A :class:`~cellseg_bridge.batch.BatchReport` with one :class:`ItemResult` per input scene."""

    items: list[ItemResult] = field(default_factory=list)
    model: str = ""

    def summary(self, verb: str = "segmented") -> str:
        """One line of counts of scenes (not files), then one line per failure."""
        counts = {status: sum(1 for item in self.items if item.status == status) for status in ("done", "skipped")}
        lines = [f"{counts['done']} {verb}, {counts['skipped']} skipped (already done), {len(self.failed)} failed"]
        lines += [f"FAILED {path}: {reason}" for path, reason in self.failed]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable result (what ``cellseg segment --json`` prints).

        ``{"ok", "model", "items": [ItemResult...], "failed": [{"input", "reason"}],
        "counts": {"done", "skipped", "failed"}}`` where counts are items
        (scenes), and ``failed`` also lists inputs that could not be opened
        or did not exist.
        """
        statuses = ("done", "skipped", "failed")
        counts = {status: sum(1 for item in self.items if item.status == status) for status in statuses}
        return {
            "ok": self.ok,
            "model": self.model,
            "items": [item.to_dict() for item in self.items],
            "failed": [{"input": source, "reason": reason} for source, reason in self.failed],
            "counts": counts,
        }


def segment_files(
    inputs: Iterable[str | Path] | str | Path,
    out_dir: str | Path,
    *,
    model: Any = DEFAULTS.segment.model,
    overwrite: bool = DEFAULTS.convert.overwrite,
    scene: int | str | None = DEFAULTS.read.scene,
    axes: str | None = DEFAULTS.read.axes,
    outputs: Sequence[str] = DEFAULT_OUTPUTS,
    save_seg_npy: bool = False,
    save_flows: bool = False,
    recursive: bool = DEFAULTS.batch.recursive,
    quiet: bool = False,
    segment_fn: Callable[..., Any] | None = None,
    load_model_fn: Callable[..., Any] | None = None,
    restore: str | Sequence[str] | None = None,
    restore_target: str = DEFAULTS.restore.target,
    **segment_options: Any,
) -> SegmentReport:
    """Segment every scene of every input and write labels, ROIs, a table and an overlay.

    Parameters
    ----------
    inputs : path, or iterable of paths / folders / glob patterns
        Images (any format :func:`~cellseg_bridge.io.reader.open_image` reads).
        Folders and patterns keep the supported name endings; hidden and
        temporary files are skipped.
    out_dir : str or Path
        Output folder (created if needed); names in the module docstring.
    model : str, Path or model object
        Model name or checkpoint path, loaded once with
        :func:`cellseg_bridge.segment.load_model` (on ``device``) when the
        first item needs it; or an already loaded model.
    overwrite : bool
        Redo items whose outputs all exist (default: skip them, i.e. resume).
    scene : int or str, optional
        Only this scene (index or name); default every scene.
    axes : str, optional
        Axis order of plain TIFFs with ambiguous axes (e.g. ``"ZYX"``).
    outputs : sequence of str
        Which of ``labels``, ``rois``, ``csv``, ``overlay`` to write.
    save_seg_npy : bool
        Also write ``<base>_seg.npy`` for 2D images (Cellpose GUI).
    save_flows : bool
        Also write ``<base>_flows.ome.tif``.
    recursive : bool
        Descend into sub-folders of folder inputs.
    quiet : bool
        No progress bar.
    segment_fn, load_model_fn : callable, optional
        Stand-ins for :func:`cellseg_bridge.segment.segment` and
        :func:`~cellseg_bridge.segment.load_model` (tests, custom pipelines),
        with the same signatures.
    restore : str or sequence of str, optional
        Restore the segmented (and nuclear) channel first: restoration types
        (``"denoise"``, ...; model ``<type>_<restore_target>``) or model
        names/paths, in order (:func:`cellseg_bridge.restoration.batch.restoring_segment_fn`).
        Labels are of the restored image; the table and overlay use the original pixels.
    restore_target : str
        Model family of ``restore`` types.
    **segment_options
        Options of :class:`~cellseg_bridge.config.SegmentOptions` (``diameter``,
        ``channel``, ``nuclear_channel``, ``cellprob_threshold``,
        ``flow_threshold``, ``do_3d``, ``stitch_threshold``, ``tile_size``,
        ``augment``, ``device``, ...); default :data:`~cellseg_bridge.config.DEFAULTS`.

    Returns
    -------
    SegmentReport
        Outputs written and skipped, failures ``(input, reason)``, and one
        :class:`ItemResult` per scene (:meth:`SegmentReport.to_dict` for JSON).
        Failures never raise.

    Raises
    ------
    InputError
        Unknown output kinds or segmentation options, or nothing to write.
    """
    from cellseg_bridge.io.reader import SUPPORTED_SUFFIXES

    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    out_dir = Path(out_dir)
    model = DEFAULTS.segment.model if model is None else model
    kinds = check_output_kinds(outputs, save_seg_npy, save_flows)
    unknown = sorted(set(segment_options) - set(SEGMENT_OPTION_NAMES))
    if unknown:
        known = ", ".join(SEGMENT_OPTION_NAMES)
        raise InputError(f"unknown segmentation option(s) {', '.join(unknown)} (known: {known})")
    options = {name: getattr(DEFAULTS.segment, name) for name in SEGMENT_OPTION_NAMES} | segment_options
    device = options.pop("device")
    if segment_fn is None or load_model_fn is None:
        # the module (not the package attribute, which may be the segment() function)
        segment_module = importlib.import_module("cellseg_bridge.segment")
        segment_fn = segment_fn or segment_module.segment
        load_model_fn = load_model_fn or segment_module.load_model
    if restore:
        from cellseg_bridge.restoration.batch import restoring_segment_fn

        segment_fn = restoring_segment_fn(segment_fn, restore, target=restore_target, device=device)
    models = _ModelOnce(model, device, load_model_fn)
    records: dict[str, ItemResult] = {}
    report = SegmentReport(model=str(model) if isinstance(model, (str, Path)) else type(model).__name__)

    def plan(source: Path) -> list[WorkItem]:
        from cellseg_bridge.io.reader import list_scenes

        scenes = [str(s) for s in list_scenes(source)]
        items = scene_items(source, scenes, out_dir, [OUTPUT_SUFFIXES[k] for k in kinds], scene=scene)
        planned = []
        for item in items:
            item_kinds = list(kinds)
            if "seg_npy" in kinds and not scene_is_2d(item.source, item.key, axes):
                log.info("%s: not a single 2D plane; no _seg.npy (Cellpose's GUI format is 2D here)", item.name)
                item_kinds.remove("seg_npy")
                item = dataclasses.replace(
                    item, outputs=tuple(o for k, o in zip(kinds, item.outputs) if k != "seg_npy")
                )
            records[item.name] = ItemResult(
                input=str(source),
                scene=item.key,
                scene_name=scenes[item.key],
                outputs=dict(zip(item_kinds, item.outputs)),
            )
            planned.append(item)
        return planned

    def job(item: WorkItem) -> None:
        record = records[item.name]
        n_cells, diameter, choice = segment_item(item, record.outputs, models, segment_fn, options, axes)
        record.n_cells, record.diameter, record.model_choice = n_cells, diameter, choice

    batch = run_batch(
        inputs,
        plan,
        job,
        overwrite=overwrite,
        recursive=recursive,
        suffixes=tuple(SUPPORTED_SUFFIXES),
        exclude=[out_dir],
        quiet=quiet,
        description="segment",
    )
    report.done, report.skipped, report.failed = batch.done, batch.skipped, batch.failed
    report.items = item_statuses(records, batch)
    return report


# --------------------------------------------------------------------------- planning


def check_output_kinds(outputs: Sequence[str], save_seg_npy: bool, save_flows: bool) -> list[str]:
    """The output kinds to write, in :data:`OUTPUT_KINDS` order, then ``seg_npy`` and ``flows``.

    Parameters
    ----------
    outputs : str or sequence of str
        Kinds of :data:`OUTPUT_KINDS`.
    save_seg_npy, save_flows : bool
        Add ``"seg_npy"`` / ``"flows"``.

    Returns
    -------
    list of str

    Raises
    ------
    InputError
        Unknown kinds, or nothing to write.
    """
    if isinstance(outputs, str):
        outputs = [outputs]
    unknown = [k for k in outputs if k not in OUTPUT_KINDS]
    if unknown:
        raise InputError(f"unknown output kind(s) {', '.join(map(repr, unknown))} (known: {', '.join(OUTPUT_KINDS)})")
    kinds = [k for k in OUTPUT_KINDS if k in outputs]
    kinds += ["seg_npy"] * bool(save_seg_npy) + ["flows"] * bool(save_flows)
    if not kinds:
        raise InputError("nothing to write: every output is switched off")
    return kinds


def scene_is_2d(source: Path, index: int, axes: str | None) -> bool:
    """Whether a scene has one time point and one plane (opened lazily; no pixels are read)."""
    image = open_scene(source, index, axes)
    return image.sizes["T"] == 1 and image.sizes["Z"] == 1


def open_scene(source: Path, index: int, axes: str | None):
    """Open scene ``index`` of ``source`` lazily as a TCZYX DataArray.

    ``axes`` applies to plain TIFFs only (:func:`~cellseg_bridge.naming.axes_for`);
    see :func:`~cellseg_bridge.io.reader.open_image`.
    """
    from cellseg_bridge.io.reader import open_image

    return open_image(source, scene=index, axes=axes_for(source, axes))


def item_statuses(records: dict[str, ItemResult], batch: BatchReport) -> list[ItemResult]:
    """Set each record's status from the batch report; add records for inputs that failed before planning.

    Parameters
    ----------
    records : dict of str to ItemResult
        One record per planned item, by item name (updated in place).
    batch : BatchReport
        What :func:`~cellseg_bridge.batch.run_batch` did.

    Returns
    -------
    list of ItemResult
        The records, then one per input that failed before it could be planned.
    """
    failed = dict(batch.failed)
    skipped = {Path(p) for p in batch.skipped}
    done = {Path(p) for p in batch.done}
    items: list[ItemResult] = []
    for name, record in records.items():
        paths = list(record.outputs.values())
        if name in failed:
            record.status, record.reason = "failed", failed[name]
        elif paths and all(p in skipped for p in paths):
            record.status = "skipped"
        elif paths and all(p in done for p in paths):
            record.status = "done"
        else:  # pragma: no cover - run_batch reports every item one way or another
            record.status, record.reason = "failed", "not run"
        items.append(record)
    for source, reason in batch.failed:
        if source not in records:
            items.append(ItemResult(input=source, status="failed", reason=reason))
    return items


# --------------------------------------------------------------------------- the job


class _ModelOnce:
    """Load the model on first use, once; a load failure is remembered and reported for every item."""

    def __init__(self, model: Any, device: str, load: Callable[..., Any]) -> None:
        self._spec, self._device, self._load = model, device, load
        self._model: Any = None if isinstance(model, (str, Path)) else model
        self._error: str | None = None

    def get(self) -> Any:
        if self._model is None:
            if self._error is None:
                try:
                    self._model = self._load(self._spec, device=self._device)
                    log.info("model %s loaded (device %s)", self._spec, self._device)
                except CellsegError as exc:
                    self._error = getattr(exc, "reason", None) or str(exc)
                except (OSError, RuntimeError, ValueError, KeyError) as exc:
                    self._error = f"{type(exc).__name__}: {exc}"
            if self._model is None:
                raise InputError(f"cannot load model {str(self._spec)!r}: {self._error}")
        return self._model


def segment_item(
    item: WorkItem,
    outputs: dict[str, Path],
    models: _ModelOnce,
    segment_fn: Callable[..., Any],
    options: dict[str, Any],
    axes: str | None,
) -> tuple[int, float | None, dict | None]:
    """Open, segment and write all outputs of one scene; return (number of cells, diameter, model choice).

    Parameters
    ----------
    item : WorkItem
        The scene (``source``, scene index ``key``).
    outputs : dict of str to Path
        Output path per kind; all are written through :func:`staged_outputs`.
    models : object with a ``get()`` method
        Gives the loaded model (loaded on first use by :func:`segment_files`).
    segment_fn : callable
        ``segment_fn(image, model, return_flows=..., **options)``, as
        :func:`cellseg_bridge.segment.segment`.
    options : dict
        Segmentation options (``channel`` and ``nuclear_channel`` are resolved
        to indices here; the dict is not modified).
    axes : str, optional
        Axes of plain TIFFs.

    Returns
    -------
    (int, float or None, dict or None)
        Number of labels, the diameter used and (``model="auto"``) the model choice.
    """
    image = open_scene(item.source, item.key, axes)
    image = image.copy(data=np.asarray(image.data))  # read the pixels once (segment and measure use them)
    n_t, n_c, n_z, n_y, n_x = (image.sizes[a] for a in "TCZYX")
    names = [str(n) for n in image.attrs.get("channel_names") or [f"ch{i}" for i in range(n_c)]]
    options = dict(options)
    channel = options["channel"] = _channel_index(names, options.get("channel"), item.source)
    if options.get("nuclear_channel") is not None:
        options["nuclear_channel"] = _channel_index(names, options["nuclear_channel"], item.source)
    model = models.get()
    want_flows = "flows" in outputs or "seg_npy" in outputs
    result = segment_fn(image, model, return_flows=want_flows, **options)
    labels = np.asarray(result.labels)
    if labels.shape != (n_t, n_z, n_y, n_x):
        raise InputError(f"segmentation returned labels of shape {labels.shape}, expected (T, Z, Y, X) = "
                         f"{(n_t, n_z, n_y, n_x)}", item.source)
    sizes = dict(image.attrs.get("physical_pixel_sizes") or {})
    diameter = getattr(result, "diameter", None)
    diameter = None if diameter is None else float(diameter)
    per_plane = n_z > 1 and not options.get("do_3d") and not options.get("stitch_threshold")
    pixels = image.data  # numpy (T, C, Z, Y, X)

    writers: dict[str, Callable[[Path], Any]] = {}
    if "labels" in outputs:
        from cellseg_bridge.io.writers import write_labels

        writers["labels"] = lambda path: write_labels(labels, path, physical_pixel_sizes=sizes, dims="TZYX")
    if "rois" in outputs:
        writers["rois"] = lambda path: _write_rois(labels, n_c, path)
    if "csv" in outputs:
        from cellseg_bridge.measure import measure_cells, write_csv

        def write_table(path: Path) -> None:
            table = measure_cells(labels, np.moveaxis(pixels, 1, 0), axes="TZYX", channel_names=names,
                                  pixel_sizes=sizes, per_plane=per_plane)
            write_csv(table, path)

        writers["csv"] = write_table
    if "overlay" in outputs:
        from cellseg_bridge.io.overlay import outline_overlay, write_png

        z = n_z // 2
        writers["overlay"] = lambda path: write_png(outline_overlay(pixels[0, channel, z], labels[0, z]), path)
    if "seg_npy" in outputs:
        writers["seg_npy"] = lambda path: _write_seg_npy(path, item.source, labels, result, diameter, options)
    if "flows" in outputs:
        writers["flows"] = lambda path: _write_flows(path, result, labels.shape, sizes)

    with staged_outputs([outputs[kind] for kind in writers]) as tmps:
        for write, tmp in zip(writers.values(), tmps):
            write(tmp)
    choice = getattr(result, "choice", None)
    return _count_labels(labels), diameter, (choice.to_dict() if choice is not None else None)


@contextlib.contextmanager
def staged_outputs(paths: Sequence[Path]) -> Iterator[list[Path]]:
    """Yield temporary paths in a hidden folder beside ``paths``; move them all into place on success.

    All outputs of an item share one folder, so one staging folder suffices; on any
    failure nothing is moved and the staging folder is removed.
    """
    if not paths:
        yield []
        return
    folder = paths[0].parent
    folder.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".cellseg-staging-", dir=folder))
    try:
        tmps = [stage / p.name for p in paths]
        yield tmps
        for tmp, path in zip(tmps, paths):
            if not tmp.exists():
                raise InputError(f"{path.name} was not written")
        for tmp, path in zip(tmps, paths):
            os.replace(tmp, path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _channel_index(names: Sequence[str], channel: int | str | None, source: Path) -> int:
    """Index of the segmented channel (a name, an index, or a string of digits)."""
    if channel is None:
        return 0
    if isinstance(channel, str) and channel in names:
        return list(names).index(channel)
    try:
        index = int(channel)
    except (TypeError, ValueError):
        raise InputError(f"no channel named {channel!r} (channels: {', '.join(names)})", source) from None
    if not 0 <= index < len(names):
        raise InputError(f"channel {index} out of range (image has {len(names)} channels)", source)
    return index


def _count_labels(labels: np.ndarray) -> int:
    """Number of distinct non-zero labels."""
    if labels.size == 0:
        return 0
    high = int(labels.max())
    if high == 0:
        return 0
    if high <= 4 * labels.size:
        return int(np.count_nonzero(np.bincount(labels.reshape(-1).astype(np.intp), minlength=high + 1)[1:]))
    return int(np.unique(labels).size - (labels.min() == 0))


def _write_rois(labels: np.ndarray, n_channels: int, path: Path) -> None:
    """ImageJ ROIs of (T, Z, Y, X) labels with the positions described in the module docstring."""
    from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip

    n_t, n_z = labels.shape[:2]
    stack = "".join(a for a, n in zip("TZ", (n_t, n_z)) if n > 1)
    data = labels.reshape(tuple(n for n in (n_t, n_z) if n > 1) + labels.shape[2:])
    position = None
    if n_channels > 1 and len(stack) == 1:
        # a hyperstack with channels: hyperstack positions with channel 0 = all channels
        position = {("Z" if stack == "T" else "T"): 0}
    write_roi_zip(labels_to_rois(data, axes=stack + "YX", position=position), path)


def _spatial_resample(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Resample the trailing axes of ``array`` to ``shape`` (linear), if they differ."""
    if array.shape[-len(shape):] == tuple(shape):
        return array
    from scipy.ndimage import zoom

    factors = (1.0,) * (array.ndim - len(shape)) + tuple(n / m for n, m in zip(shape, array.shape[-len(shape):]))
    out = zoom(array, factors, order=1, grid_mode=True, mode="nearest")
    return out[tuple(slice(0, n) for n in array.shape[: array.ndim - len(shape)] + tuple(shape))]


def _network_outputs(result: Any, labels_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Flows (T, 2|3, Z, Y, X) and cell probability (T, Z, Y, X) at the labels' size."""
    flows = getattr(result, "flows", None)
    cellprob = getattr(result, "cellprob", None)
    if flows is None or cellprob is None:
        raise InputError("the segmentation returned no flows (return_flows was not honoured)")
    flows = np.asarray(flows, dtype=np.float32)
    cellprob = np.asarray(cellprob, dtype=np.float32)
    if flows.ndim != 5 or flows.shape[1] not in (2, 3) or cellprob.ndim != 4:
        raise InputError(f"unexpected flows {flows.shape} / cellprob {cellprob.shape}; "
                         "expected (T, 2|3, Z, Y, X) / (T, Z, Y, X)")
    spatial = labels_shape[1:]
    return _spatial_resample(flows, spatial), _spatial_resample(cellprob, spatial)


def _write_flows(path: Path, result: Any, labels_shape: tuple[int, ...], sizes: dict) -> None:
    from cellseg_bridge.io.writers import write_ome_tiff

    flows, cellprob = _network_outputs(result, labels_shape)
    names = (["dZ"] if flows.shape[1] == 3 else []) + ["dY", "dX", "cellprob"]
    data = np.concatenate([flows, cellprob[:, None]], axis=1)
    write_ome_tiff(data, path, physical_pixel_sizes=sizes, channel_names=names, dims="TCZYX", name="flows")


def _write_seg_npy(path: Path, source: Path, labels: np.ndarray, result: Any, diameter: float | None,
                   options: dict[str, Any]) -> None:
    from cellseg_bridge.io.seg_npy import gui_flows, write_seg_npy

    flows_list: list = []
    if getattr(result, "flows", None) is not None and getattr(result, "cellprob", None) is not None:
        flows, cellprob = _network_outputs(result, labels.shape)
        flows_list = gui_flows(flows[0][-2:, 0], cellprob[0, 0])
    extra = {
        "model_path": str(getattr(result, "model", "") or ""),
        "flow_threshold": float(options.get("flow_threshold", DEFAULTS.segment.flow_threshold)),
        "cellprob_threshold": float(options.get("cellprob_threshold", DEFAULTS.segment.cellprob_threshold)),
    }
    write_seg_npy(path, labels[0, 0], filename=os.path.abspath(source), diameter=diameter, flows=flows_list,
                  extra=extra)


def suggest_files(
    inputs: Sequence[str | Path], *, scene: int = 0, axes: str | None = None, device: str = "auto",
    **options: Any,
) -> list[dict[str, Any]]:
    """Rank the zoo models for each file (``cellseg models suggest``); failures are reported, not raised.

    Parameters
    ----------
    inputs : sequence of paths
        Image files.
    scene : int
        Scene of each file.
    axes : str, optional
        Axes of plain TIFFs.
    device : str
        Where the generalist runs.
    **options
        ``channel``, ``nuclear_channel``, ``invert``, ... as for segmentation.

    Returns
    -------
    list of dict
        Per input: ``{"input", "model", "confidence", "ranking"}`` or ``{"input", "reason"}``.

    Raises
    ------
    InputError
        The generalist, its style index or a zoo model is not installed.
    """
    from cellseg_bridge.nn.suggest import load_auto_model

    auto = load_auto_model(device)
    rows: list[dict[str, Any]] = []
    for source in inputs:
        try:
            image = open_scene(Path(source), scene, axes)
            rows.append({"input": str(source), **auto.choose(image, **options).to_dict()})
        except CellsegError as exc:
            log.error("%s: %s", source, exc)
            rows.append({"input": str(source), "reason": str(exc)})
    return rows
