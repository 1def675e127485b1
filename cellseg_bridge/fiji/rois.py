"""ImageJ ROIs between Python (:mod:`roifile`) and a running ImageJ: ROI Manager, Overlay, RoiSet.zip.

Push: our pixel-exact ROIs (:func:`cellseg_bridge.io.roi_export.labels_to_rois`)
are handed to ImageJ as the bytes of their ``.roi`` files, decoded by ImageJ's
own ``RoiDecoder``, so the geometry, names and positions ImageJ sees are exactly
those of the ``RoiSet.zip`` we write. With a display, they go into the ROI
Manager, APPENDED to what is there (StarDist's plugin resets it; we do not,
unless asked); headless ImageJ has no ROI Manager, so they go onto the image's
Overlay and into a ``RoiSet.zip``.

Pull: ROIs from the ROI Manager, an Overlay or a zip are encoded by ImageJ's
``RoiEncoder`` and rasterised by :func:`cellseg_bridge.io.roi_import.rois_to_labels`
(ImageJ-exact), so the label image has exactly the pixels ImageJ fills.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from roifile import ImagejRoi

from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.roi_export import write_roi_zip
from cellseg_bridge.io.roi_import import RoiImportReport, read_rois, rois_to_labels

log = logging.getLogger(__name__)

__all__ = [
    "PushResult",
    "display_available",
    "to_java_roi",
    "from_java_roi",
    "push_rois",
    "roi_manager_rois",
    "overlay_rois",
    "pull_labels",
]

TARGETS = ("auto", "manager", "overlay")


@dataclass
class PushResult:
    """Where :func:`push_rois` put the ROIs.

    Attributes
    ----------
    target : str
        ``"manager"`` or ``"overlay"``.
    n_added : int
        ROIs added.
    n_before : int
        ROIs that were in the ROI Manager (or Overlay) before and are still there
        (0 after a reset).
    zip_path : Path or None
        The ``RoiSet.zip`` written (overlay target with ``zip_path`` given).
    """

    target: str
    n_added: int
    n_before: int
    zip_path: Path | None = None


def display_available() -> bool:
    """True when the running JVM can open windows (not headless): the ROI Manager can exist."""
    from scyjava import jimport

    return not bool(jimport("java.awt.GraphicsEnvironment").isHeadless())


def to_java_roi(roi: ImagejRoi) -> Any:
    """Decode a :class:`roifile.ImagejRoi` into an ``ij.gui.Roi`` with ImageJ's ``RoiDecoder``."""
    from scyjava import jimport

    data = roi.tobytes()
    decoder = jimport("ij.io.RoiDecoder")(bytearray(data), (roi.name or "roi") + ".roi")
    jroi = decoder.getRoi()
    if jroi is None:
        raise InputError(f"ImageJ could not decode ROI {roi.name!r}")
    if roi.name:
        jroi.setName(roi.name)
    return jroi


def from_java_roi(jroi: Any) -> ImagejRoi:
    """Encode an ``ij.gui.Roi`` with ImageJ's ``RoiEncoder`` and read it back as a :class:`roifile.ImagejRoi`."""
    from scyjava import jimport

    data = jimport("ij.io.RoiEncoder").saveAsByteArray(jroi)
    if data is None:
        raise InputError(f"ImageJ could not encode ROI {jroi.getName()!r}")
    roi = ImagejRoi.frombytes(bytes(np.asarray(data, dtype=np.int8).view(np.uint8)))
    if not roi.name and jroi.getName() is not None:
        roi.name = str(jroi.getName())
    return roi


def save_java_rois(jrois: Sequence[Any], path: str | Path) -> Path:
    """Write ``ij.gui.Roi`` objects to a RoiSet zip with ImageJ's own ``RoiEncoder``.

    The entries are written as the ROI Manager's "More > Save..." writes them (one
    ``<name>.roi`` per ROI, in list order), so the file is what a user's Fiji would save.
    """
    from scyjava import jimport

    path = Path(path)
    java = {k: jimport(f"java.{k}") for k in ("io.FileOutputStream", "io.BufferedOutputStream",
                                              "io.DataOutputStream", "util.zip.ZipOutputStream",
                                              "util.zip.ZipEntry")}
    zos = java["util.zip.ZipOutputStream"](java["io.BufferedOutputStream"](java["io.FileOutputStream"](str(path))))
    stream = java["io.DataOutputStream"](java["io.BufferedOutputStream"](zos))
    encoder = jimport("ij.io.RoiEncoder")(stream)
    try:
        for roi in jrois:
            zos.putNextEntry(java["util.zip.ZipEntry"](str(roi.getName()) + ".roi"))
            encoder.write(roi)
            stream.flush()
    finally:
        stream.close()
    return path


def _manager(create: bool) -> Any:
    from scyjava import jimport

    RoiManager = jimport("ij.plugin.frame.RoiManager")
    manager = RoiManager.getInstance()
    if manager is None and create:
        manager = RoiManager()
    return manager


def push_rois(
    rois: Iterable[ImagejRoi],
    imp: Any = None,
    *,
    target: str = "auto",
    append: bool | None = None,
    zip_path: str | Path | None = None,
) -> PushResult:
    """Put ROIs into ImageJ: the ROI Manager with a display, else the image's Overlay (+ a zip).

    Parameters
    ----------
    rois : iterable of roifile.ImagejRoi
        E.g. from :func:`cellseg_bridge.io.roi_export.labels_to_rois` or
        :func:`cellseg_bridge.io.roi_import.read_rois`.
    imp : ij.ImagePlus, optional
        The image the ROIs belong to (required for the overlay target). With the
        ROI Manager, ROIs are added for this image (positions kept).
    target : {"auto", "manager", "overlay"}
        ``auto``: the ROI Manager when a display is available, else the Overlay.
    append : bool, optional
        Keep the ROIs already in the ROI Manager / Overlay (default
        ``DEFAULTS.fiji.append_rois``, True); False empties it first.
    zip_path : str or Path, optional
        Overlay target: also write the ROIs to this ``RoiSet.zip`` (atomically),
        since headless ImageJ has no ROI Manager to save them from.

    Returns
    -------
    PushResult
    """
    if target not in TARGETS:
        raise InputError(f"target must be one of {TARGETS}, got {target!r}")
    append = DEFAULTS.fiji.append_rois if append is None else append
    rois = list(rois)
    if target == "auto":
        target = "manager" if display_available() else "overlay"
    if target == "manager":
        if not display_available():
            raise InputError("the ROI Manager needs a display: headless ImageJ has none (use target='overlay', or Xvfb)")
        manager = _manager(create=True)
        if not append:
            manager.reset()
        before = int(manager.getCount())
        for roi in rois:
            manager.add(imp, to_java_roi(roi), -1) if imp is not None else manager.addRoi(to_java_roi(roi))
        log.info("%d ROIs added to the ROI Manager (%d there before)", len(rois), before)
        return PushResult("manager", len(rois), before)
    if imp is None:
        raise InputError("the overlay target needs the image (imp)")
    from scyjava import jimport

    overlay = imp.getOverlay()
    if overlay is None or not append:
        overlay = jimport("ij.gui.Overlay")()
    before = int(overlay.size())
    for roi in rois:
        overlay.add(to_java_roi(roi))
    imp.setOverlay(overlay)
    written = write_roi_zip(rois, zip_path) if zip_path is not None else None
    log.info("%d ROIs added to the overlay of %s%s", len(rois), imp.getTitle(), f", saved to {written}" if written else "")
    return PushResult("overlay", len(rois), before, written)


def roi_manager_rois(manager: Any = None) -> list[ImagejRoi]:
    """The ROIs of the ROI Manager (empty when there is none), in list order."""
    manager = manager if manager is not None else (_manager(create=False) if display_available() else None)
    if manager is None:
        return []
    return [from_java_roi(r) for r in manager.getRoisAsArray()]


def overlay_rois(imp: Any) -> list[ImagejRoi]:
    """The ROIs of an image's Overlay (empty when it has none), in overlay order."""
    overlay = imp.getOverlay()
    if overlay is None:
        return []
    return [from_java_roi(overlay.get(i)) for i in range(int(overlay.size()))]


def pull_labels(
    source: Any,
    shape: Sequence[int],
    *,
    axes: str | None = None,
    overlap: str | None = None,
) -> tuple[np.ndarray, RoiImportReport]:
    """Rasterise ROIs held by ImageJ (or a zip) into a label image, exactly as ImageJ fills them.

    Parameters
    ----------
    source : "manager", ij.ImagePlus, str/Path, or sequence of ij.gui.Roi
        The ROI Manager, an image's Overlay, a ``RoiSet.zip``/``.roi`` file, or
        Java ROIs.
    shape : sequence of int
        Shape of the label image, e.g. ``(Y, X)`` or ``(Z, Y, X)``.
    axes : str, optional
        Axis letters of ``shape`` (see :func:`~cellseg_bridge.io.roi_import.rois_to_labels`).
    overlap : {"last", "first"}, optional
        Who keeps pixels claimed by several ROIs.

    Returns
    -------
    labels : ndarray
    report : RoiImportReport
    """
    if isinstance(source, str) and source == "manager":
        rois = roi_manager_rois()
    elif isinstance(source, (str, Path)):
        rois = read_rois(source)
    elif hasattr(source, "getOverlay"):
        rois = overlay_rois(source)
    else:
        rois = [from_java_roi(r) for r in source]
    return rois_to_labels(rois, shape, axes=axes, overlap=overlap)
