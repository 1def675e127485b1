"""Restore many files (``cellseg restore``) and restore before segmenting (``cellseg segment --restore``).

:func:`restore_files` writes, per input scene, into ``out_dir``:

- ``<base>_restored.ome.tif``: the restored image (float32, TCZYX, the input's
  channel names and pixel sizes; image name ``restored (<models>)``);
- ``<base>_restored.json``: what was done (input, scene, types, models,
  diameter, restored channels, the intensity scale).

Batch semantics are those of ``cellseg segment`` (:mod:`cellseg_bridge.batch.runner`):
outputs staged and moved into place together, existing outputs skipped unless
``overwrite``, a failing file reported while the others go on. The report is the
:class:`~cellseg_bridge.batch.report.BatchReport` of every batch, so ``--json`` prints the
same shape as ``cellseg segment --json`` with ``outputs: {"restored", "metadata"}``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from cellseg_bridge.batch.items import WorkItem
from cellseg_bridge.batch.naming import open_scene, plan_scene_items, segment_output_endings
from cellseg_bridge.batch.report import BatchReport
from cellseg_bridge.batch.run_record import RunRecord, models_facts
from cellseg_bridge.batch.runner import run_batch
from cellseg_bridge.config import DEFAULTS, RESTORE_KINDS, RestoreOptions
from cellseg_bridge.errors import CellsegError, InputError
from cellseg_bridge.io.atomic import staged_outputs
from cellseg_bridge.restoration.api import RestorationModel, load_restore_model, model_name_for, parse_types, restore

__all__ = ["METADATA_SUFFIX", "restore_files", "restoring_segment_fn"]

log = logging.getLogger(__name__)

METADATA_SUFFIX = "_restored.json"
_SCALE_NOTE = "normalised: the input's 1st/99th percentiles (per plane and channel) map to 0/1"


class _Models:
    """Load each restoration model once (for a batch); a failure is remembered and re-raised per item."""

    def __init__(self, specs: Sequence[Any], device: str,
                 load: Callable[[Any, str], RestorationModel] = load_restore_model) -> None:
        self.specs = list(specs)
        self.device = device
        self.load = load
        self._loaded: list[RestorationModel] | None = None
        self._error: str | None = None

    def get(self) -> list[RestorationModel]:
        if self._loaded is None:
            if self._error is None:
                try:
                    self._loaded = [s if isinstance(s, RestorationModel) else self.load(s, self.device)
                                    for s in self.specs]
                except CellsegError as exc:
                    self._error = str(exc)
            if self._loaded is None:
                raise InputError(f"cannot load restoration model: {self._error}")
        return self._loaded


def _specs(types: Any, model: Any, target: str) -> tuple[list[Any], list[str]]:
    if model is not None:
        specs = list(model) if isinstance(model, (list, tuple)) else [model]
        return specs, ["model"] * len(specs)
    kinds = list(parse_types(types))
    return [model_name_for(k, target) for k in kinds], kinds


def restore_files(
    inputs: Iterable[str | Path] | str | Path,
    out_dir: str | Path,
    *,
    options: RestoreOptions | None = None,
    types: str | Sequence[str] | None = None,
    model: Any = None,
    overwrite: bool = DEFAULTS.convert.overwrite,
    scene: int | str | None = DEFAULTS.read.scene,
    axes: str | None = DEFAULTS.read.axes,
    recursive: bool = DEFAULTS.batch.recursive,
    quiet: bool = False,
    **overrides: Any,
) -> BatchReport:
    """Restore every scene of every input; write ``<base>_restored.ome.tif`` and ``<base>_restored.json``.

    Parameters
    ----------
    inputs : path, or iterable of paths / folders / glob patterns
    out_dir : str or Path
    options : RestoreOptions, optional
        The restoration options (default ``DEFAULTS.restore``): types, target, model,
        channel, diameter, normalize_percentiles, tile_size, batch_size, device, suffix.
    types : str or sequence, optional
        Restoration types, in order (see :func:`~cellseg_bridge.restoration.api.restore`);
        default ``options.types``.
    model : name, path or RestorationModel (or a sequence), optional
        Explicit model(s) instead of ``types``; default ``options.model``.
    overwrite, scene, axes, recursive, quiet
        As for :func:`~cellseg_bridge.batch.segment.segment_files`.
    **overrides
        :class:`~cellseg_bridge.config.RestoreOptions` fields (``target``, ``device``, ``channel``, ...).

    Returns
    -------
    BatchReport
        One record per scene with ``outputs`` ``{"restored", "metadata"}`` and the
        ``diameter`` used; failures never raise.

    Raises
    ------
    InputError
        Unknown types or options (before anything runs).
    """
    from cellseg_bridge.io.reader import SUPPORTED_SUFFIXES

    out_dir = Path(out_dir)
    opts = RestoreOptions.derive(options, **overrides)
    specs, kinds = _specs(opts.types if types is None else types, opts.model if model is None else model,
                          opts.target)
    models = _Models(specs, opts.device)
    suffix = opts.suffix
    names = [s.name if isinstance(s, RestorationModel) else str(s) for s in specs]

    def plan(source: Path) -> list[WorkItem]:
        return plan_scene_items(source, out_dir, [suffix, METADATA_SUFFIX], scene=scene,
                                kinds=("restored", "metadata"))

    def job(item: WorkItem) -> dict:
        from cellseg_bridge.io.writers import write_ome_tiff

        image = open_scene(item.source, item.key, axes)
        try:
            result = restore(image, model=models.get(), axes=None, channel=opts.channel, diameter=opts.diameter,
                             normalize_percentiles=opts.normalize_percentiles, tile_size=opts.tile_size,
                             batch_size=opts.batch_size)
        except InputError as exc:
            raise InputError(exc.reason, item.source) from exc
        result.types = kinds
        meta = {
            "input": str(Path(item.source).resolve()),
            "scene": item.key,
            "types": kinds,
            "models": names,
            "diameter": result.diameter,
            "restored_channels": result.restored_channels,
            "channel_names": result.channel_names,
            "physical_pixel_sizes": result.physical_pixel_sizes,
            "intensity_scale": _SCALE_NOTE,
        }
        with staged_outputs(list(item.outputs)) as (tmp_img, tmp_meta):
            write_ome_tiff(result.image, tmp_img, physical_pixel_sizes=result.physical_pixel_sizes,
                           channel_names=result.channel_names, dims="TCZYX",
                           name=f"restored ({'+'.join(names)})")
            tmp_meta.write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
        return {"diameter": result.diameter}

    record = RunRecord(out_dir, "restore", dataclasses.asdict(opts), {"scene": scene, "axes": axes, "types": kinds},
                       model=models_facts(specs), device=opts.device, precision=getattr(opts, "precision", "auto"))
    report = run_batch(inputs, plan, job, overwrite=overwrite, recursive=recursive,
                       suffixes=tuple(SUPPORTED_SUFFIXES), exclude=[out_dir], quiet=quiet, description="restore",
                       skip_endings=(suffix, METADATA_SUFFIX, *segment_output_endings()),
                       report=BatchReport(model="+".join(names)), stale=record.stale_reason())
    record.write(report)
    return report


def restoring_segment_fn(
    segment_fn: Callable[..., Any],
    types: str | Sequence[str],
    *,
    target: str = DEFAULTS.restore.target,
    device: str = DEFAULTS.restore.device,
    load: Callable[[Any, str], RestorationModel] = load_restore_model,
) -> Callable[..., Any]:
    """Wrap a ``segment(image, model, **options)`` function so that it restores the image first.

    The segmented channel (and the nuclear channel, if any) are restored with
    the models of ``types`` (each entry a type, or a model name/path), loaded
    once with ``load(spec, device)`` (a per-process cache on Dask workers), at
    the segmentation ``diameter`` when one is given. The wrapped function's
    result is the segmentation of the restored image.
    """
    entries = [t.strip() for t in types.split(",")] if isinstance(types, str) else [str(t) for t in types]
    entries = [t for t in entries if t]
    if not entries:
        raise InputError("--restore needs at least one restoration type or model")
    specs = [model_name_for(t, target) if t.lower() in RESTORE_KINDS else t for t in entries]
    models = _Models(specs, device, load)

    def run(image: Any, model: Any, **options: Any) -> Any:
        chans = [options.get("channel", 0)]
        if options.get("nuclear_channel") is not None:
            chans.append(options["nuclear_channel"])
        restored = restore(image, model=models.get(), channel=chans, diameter=options.get("diameter"))
        data = restored.to_dataarray()
        return segment_fn(data, model, **options)

    return run

