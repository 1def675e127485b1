"""Acquisition metadata of one scene: frame interval, date, objective, channel wavelengths and colours.

:func:`read_acquisition` asks the file's bioio plugin (its standard metadata and, where the plugin
converts the vendor metadata, its OME model) for what :func:`cellseg_bridge.io.reader.open_image`
does not carry (it stays fast: segmenting needs none of it). ``cellseg convert`` writes the
result into the OME-XML of its output (:func:`cellseg_bridge.io.writers.write_ome_tiff`) and the
frame interval into ImageJ hyperstacks. Everything is best effort: what a reader does not expose
is left out, never made up.

The dict (every key optional):

``frame_interval_s``
    seconds between time points (OME ``Pixels/@TimeIncrement``);
``acquisition_date``
    ISO 8601 date and time (OME ``Image/AcquisitionDate``);
``objective``
    ``{"model": str, "magnification": float, "na": float, "immersion": str}`` (OME ``Instrument/
    Objective`` referenced by ``Image/ObjectiveSettings``); ``{"name": "60x/0.95"}`` when only the
    reader's short description is known;
``channels``
    one dict per channel: ``emission_nm``, ``excitation_nm``, ``color`` (``"#rrggbb"``).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cellseg_bridge.errors import CellsegError

log = logging.getLogger(__name__)

__all__ = ["read_acquisition"]

#: Errors of third-party metadata code that only mean "not available".
_UNAVAILABLE = (NotImplementedError, ValueError, KeyError, AttributeError, TypeError, IndexError, LookupError,
                OSError, RuntimeError)


#: OME time units in seconds.
_SECONDS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "min": 60.0, "h": 3600.0}


def read_acquisition(path: str | Path, scene: int = 0) -> dict[str, Any]:
    """The acquisition metadata of one scene (see the module docstring); ``{}`` when none is known.

    Parameters
    ----------
    path : str or Path
        A file :func:`~cellseg_bridge.io.reader.open_image` reads.
    scene : int
        Scene index.

    Returns
    -------
    dict
    """
    from cellseg_bridge.io._backends.bioio_backend import _bioimage
    from cellseg_bridge.io._backends.tiff import _inspect_tiff
    from cellseg_bridge.io.reader import SUPPORTED_SUFFIXES

    path = Path(path)
    fmt = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    try:
        if fmt == "TIFF":
            fmt = "OME-TIFF" if _inspect_tiff(path).is_ome else None
        if fmt not in ("CZI", "ND2", "LIF", "OME-TIFF"):
            return {}
        image = _bioimage(path, fmt)
        image.set_scene(scene)
    except (CellsegError, *_UNAVAILABLE) as exc:  # optional: reading the pixels reports real errors
        log.debug("%s: no acquisition metadata (%s)", path, exc)
        return {}
    out: dict[str, Any] = {}
    with _quiet(image.reader):
        standard = _get(lambda: image.standard_metadata)
        ome = _get(lambda: image.ome_metadata)
    interval = getattr(standard, "timelapse_interval", None)
    date = getattr(standard, "imaging_datetime", None)
    objective = getattr(standard, "objective", None)
    if isinstance(interval, datetime.timedelta) and interval.total_seconds() > 0:
        out["frame_interval_s"] = interval.total_seconds()
    elif isinstance(interval, (int, float)) and interval > 0:
        out["frame_interval_s"] = float(interval)
    if isinstance(date, datetime.datetime):
        out["acquisition_date"] = date.isoformat()
    out = {**out, **_from_ome(ome, scene)}  # the OME model's values where it has them
    if objective and "objective" not in out:
        out["objective"] = {"name": str(objective)}
    return out


def _get(call: Any) -> Any:
    try:
        return call()
    except _UNAVAILABLE as exc:
        log.debug("metadata not available: %s", exc)
        return None


@contextlib.contextmanager
def _quiet(reader: Any) -> Iterator[None]:
    """Silence the plugin's own logger (some log tracebacks for metadata a file does not hold)."""
    logger = logging.getLogger(type(reader).__module__.split(".")[0])
    before = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(before)


def _from_ome(ome: Any, scene: int) -> dict[str, Any]:
    """Channel wavelengths and colours, objective and date from an ome-types model of the file."""
    images = getattr(ome, "images", None) or []
    if not images:
        return {}
    image = images[min(scene, len(images) - 1)]
    out: dict[str, Any] = {}
    increment = getattr(image.pixels, "time_increment", None)
    unit = getattr(getattr(image.pixels, "time_increment_unit", None), "value", "s")
    if increment is not None and float(increment) > 0 and unit in _SECONDS:
        out["frame_interval_s"] = float(increment) * _SECONDS[unit]
    channels = []
    for channel in getattr(image.pixels, "channels", None) or []:
        entry: dict[str, Any] = {}
        for key, attr in (("emission_nm", "emission_wavelength"), ("excitation_nm", "excitation_wavelength")):
            value = getattr(channel, attr, None)
            if value is not None and float(value) > 0:
                entry[key] = float(value)
        color = getattr(channel, "color", None)
        if color is not None and hasattr(color, "as_rgb_tuple"):
            entry["color"] = "#{:02x}{:02x}{:02x}".format(*color.as_rgb_tuple(alpha=False))
        channels.append(entry)
    if any(channels):
        out["channels"] = channels
    if getattr(image, "acquisition_date", None) is not None:
        out["acquisition_date"] = image.acquisition_date.isoformat()
    settings = getattr(image, "objective_settings", None)
    wanted = getattr(settings, "id", None)
    for instrument in getattr(ome, "instruments", None) or []:
        for objective in instrument.objectives or []:
            if wanted is None or objective.id == wanted:
                found = {"model": objective.model, "magnification": objective.nominal_magnification,
                         "na": objective.lens_na,
                         "immersion": getattr(objective.immersion, "value", None) or getattr(settings, "medium", None)}
                found = {k: (v.value if hasattr(v, "value") else v) for k, v in found.items() if v is not None}
                if found:
                    out["objective"] = found
                    return out
    return out
