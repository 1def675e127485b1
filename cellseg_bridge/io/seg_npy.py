"""Read and write Cellpose ``_seg.npy`` files, without unpickling arbitrary objects.

A ``_seg.npy`` is a Python dict saved with ``numpy.save`` (so pickled inside a
0-d object array). The keys written by Cellpose 3 (``io.masks_flows_to_seg``
and the GUI's save) and read by its GUI:

``masks``
    label image, ``uint16`` (``uint32`` when there are 65535 labels or more),
    2-D ``(Ly, Lx)`` or 3-D ``(Lz, Ly, Lx)``; 0 = background.
``outlines``
    same shape and type as ``masks``: the label value on each object's
    boundary pixels, 0 elsewhere.
``flows``
    list for display and for re-thresholding in the GUI: ``[0]`` the flow field as
    an RGB picture ``(Lz, Ly, Lx, 3) uint8`` (``Lz`` = 1 in 2-D), ``[1]`` the
    cell probability scaled to 0-255 ``(Lz, Ly, Lx) uint8``, ``[2]`` the Z flow
    as ``uint8`` (zeros ``(1, Ly, Lx, 3)`` in 2-D), ``[3]`` the pixel
    destinations after flow dynamics ``p`` ``(2|3, ...)``, ``[4]`` the raw network
    output ``[dY, dX, cellprob]`` (``[dZ, dY, dX, cellprob]`` in 3-D) as float32.
    Files without flows hold an empty list.
``diameter``
    the diameter (pixels) used to segment, a float (older files: ``est_diam``).
``filename``
    the image file the masks belong to (str).
``ismanual``
    one bool per label: drawn by hand (True) or computed (False).
``chan_choose``
    the two channels chosen in the GUI, ``[0, 0]`` = grayscale.

The GUI also stores ``colors``, ``zdraw``, ``manual_changes``, ``model_path``,
``flow_threshold``, ``cellprob_threshold``, ``normalize_params``, ``restore``,
``ratio``, ``img_restore``; we keep them in :attr:`SegNpy.extra`.

Reading uses :class:`RestrictedUnpickler`, which only resolves numpy's array,
dtype and scalar reconstructors and a few inert builtins; any other global
(``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) is refused with
:class:`~cellseg_bridge.errors.InputError` before anything is called.

Naming: Cellpose looks for ``os.path.splitext(image)[0] + "_seg.npy"`` beside
the image (``cells.ome.tif`` -> ``cells.ome_seg.npy``); :func:`seg_npy_path`
applies the same rule.
"""

from __future__ import annotations

import builtins
import logging
import os
import pathlib
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cellseg_bridge.errors import InputError
from cellseg_bridge.io.atomic import atomic_output

log = logging.getLogger(__name__)

#: Keys a Cellpose ``_seg.npy`` is built from (the ones :class:`SegNpy` names).
SEG_KEYS = ("masks", "outlines", "flows", "diameter", "filename", "ismanual", "chan_choose")

_multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray  # numpy 2 / 1
_numeric = np._core.numeric if hasattr(np, "_core") else np.core.numeric

#: The only globals a ``_seg.npy`` may reference: (module, name) -> object.
#: numpy 1.x files name ``numpy.core``, numpy 2.x files ``numpy._core``.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): OrderedDict,
    ("pathlib", "PosixPath"): pathlib.PurePosixPath,
    ("pathlib", "PurePosixPath"): pathlib.PurePosixPath,
    ("pathlib", "WindowsPath"): pathlib.PureWindowsPath,
    ("pathlib", "PureWindowsPath"): pathlib.PureWindowsPath,
}
for _module in ("numpy.core", "numpy._core"):
    _ALLOWED_GLOBALS[(f"{_module}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED_GLOBALS[(f"{_module}.multiarray", "scalar")] = _multiarray.scalar
    if hasattr(_numeric, "_frombuffer"):
        _ALLOWED_GLOBALS[(f"{_module}.numeric", "_frombuffer")] = _numeric._frombuffer


def _encode_latin1(text: str, encoding: str = "latin1") -> bytes:
    """Protocol-2 pickles store bytes as ``_codecs.encode(text, "latin1")``; allow only that."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return str(text).encode("latin1")


_ALLOWED_GLOBALS[("_codecs", "encode")] = _encode_latin1
for _name in ("complex", "bytes", "bytearray", "set", "frozenset", "slice", "range"):
    _ALLOWED_GLOBALS[("builtins", _name)] = getattr(builtins, _name)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy array/dtype/scalar reconstruction and inert builtins.

    ``dict``, ``list``, ``tuple``, ``str``, numbers, ``bytes``, ``None`` and
    booleans are built by pickle opcodes without any lookup; everything else
    goes through :meth:`find_class`, which refuses what is not allow-listed.
    """

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - see class docstring
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not an array, dtype or plain value)") from None

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        raise pickle.UnpicklingError("persistent ids are not allowed")


def safe_load_npy(path: str | Path) -> Any:
    """Load a ``.npy`` file; object arrays are unpickled with :class:`RestrictedUnpickler`.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    numpy.ndarray
        The array (a 0-d object array for a pickled dict).

    Raises
    ------
    InputError
        Not a ``.npy`` file, truncated, or its pickle references a forbidden object.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            shape, _fortran, dtype = _read_header(fh, version)
            if not dtype.hasobject:
                return np.load(path, allow_pickle=False)
            unpickler = RestrictedUnpickler(fh, encoding="latin1")
            array = unpickler.load()
    except pickle.UnpicklingError as exc:
        raise InputError(f"unsafe or corrupt pickle: {exc}", path) from exc
    except FileNotFoundError as exc:
        raise InputError("file not found", path) from exc
    except (ValueError, EOFError, OSError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as exc:
        raise InputError(f"not a readable .npy file ({type(exc).__name__}: {exc})", path) from exc
    if not isinstance(array, np.ndarray) or array.shape != shape:
        raise InputError("not a readable .npy file (pickled content does not match its header)", path)
    return array


def _read_header(fh: Any, version: tuple[int, int]) -> tuple[tuple[int, ...], bool, np.dtype]:
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)
    if version == (3, 0) and hasattr(np.lib.format, "_read_array_header"):
        return np.lib.format._read_array_header(fh, version)
    raise ValueError(f"unsupported .npy format version {version}")


@dataclass
class SegNpy:
    """The content of a Cellpose ``_seg.npy``.

    Attributes
    ----------
    masks : numpy.ndarray
        Labels, 2-D or 3-D, 0 = background.
    outlines : numpy.ndarray
        Label-valued boundary pixels (same shape as ``masks``).
    flows : list
        GUI flow list (see module docstring); empty when absent.
    diameter : float or None
        Diameter in pixels used to segment.
    filename : str
        The image file.
    ismanual : numpy.ndarray
        One bool per label.
    chan_choose : list of int
        GUI channel choice, ``[0, 0]`` = grayscale.
    extra : dict
        Every other key of the file (colors, zdraw, thresholds, ...).
    """

    masks: np.ndarray
    outlines: np.ndarray
    flows: list = field(default_factory=list)
    diameter: float | None = None
    filename: str = ""
    ismanual: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    chan_choose: list[int] = field(default_factory=lambda: [0, 0])
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the dict that is saved (the Cellpose keys, then ``extra``)."""
        data: dict[str, Any] = {
            "outlines": self.outlines,
            "masks": self.masks,
            "chan_choose": list(self.chan_choose),
            "ismanual": self.ismanual,
            "filename": self.filename,
            "flows": self.flows,
            "diameter": self.diameter,
        }
        for key, value in self.extra.items():
            data.setdefault(key, value)
        return data


def seg_npy_path(image_path: str | Path) -> Path:
    """Return where Cellpose looks for an image's ``_seg.npy``: ``splitext(image)[0] + "_seg.npy"``."""
    return Path(os.path.splitext(str(image_path))[0] + "_seg.npy")


def read_seg_npy(path: str | Path) -> SegNpy:
    """Read a Cellpose ``_seg.npy`` safely.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    SegNpy
        Masks, outlines, flows, diameter, filename, ismanual, chan_choose and
        the other keys in ``extra``. Missing outlines are computed from the
        masks; a missing ``ismanual`` is all False; ``diameter`` falls back to
        ``est_diam``.

    Raises
    ------
    InputError
        Not a ``.npy`` file, a pickle that references anything but numpy
        arrays and plain values, no ``masks`` key, or masks that are not an
        integer image.
    """
    path = Path(path)
    array = safe_load_npy(path)
    if array.dtype != object or array.shape != ():
        raise InputError("not a Cellpose _seg.npy (expected a saved dict, found a plain array)", path)
    data = array.item()
    if not isinstance(data, dict):
        raise InputError(f"not a Cellpose _seg.npy (expected a dict, found {type(data).__name__})", path)
    if "masks" not in data:
        raise InputError(f"not a Cellpose _seg.npy: no 'masks' key (keys: {sorted(map(str, data))})", path)
    masks = np.asarray(data["masks"])
    if masks.ndim == 3 and masks.shape[0] == 1:
        masks = masks[0]
    if masks.ndim not in (2, 3) or masks.dtype.kind not in "iub":
        raise InputError(f"'masks' must be a 2-D or 3-D integer image, found {masks.ndim}-D {masks.dtype}", path)
    if masks.size and masks.min() < 0:
        if masks.min() != -1:
            raise InputError(f"'masks' has negative labels (min {masks.min()})", path)
        masks = masks + 1  # very old GUI files stored -1 for background
    outlines = data.get("outlines")
    if isinstance(outlines, np.ndarray) and outlines.size == masks.size and outlines.min(initial=0) < 0:
        outlines = outlines + 1
    if not isinstance(outlines, np.ndarray) or outlines.shape[-2:] != masks.shape[-2:]:
        outlines = masks_to_outlines(masks)
    n_labels = int(masks.max()) if masks.size else 0
    ismanual = np.asarray(data.get("ismanual", np.zeros(n_labels, bool)), dtype=bool).reshape(-1)
    if ismanual.size != n_labels:
        log.debug("%s: ismanual has %d entries for %d labels; resetting", path, ismanual.size, n_labels)
        ismanual = np.zeros(n_labels, bool)
    diameter = data.get("diameter", data.get("est_diam"))
    flows = data.get("flows")
    filename = data.get("filename", "")
    chan = data.get("chan_choose", [0, 0])
    extra = {k: v for k, v in data.items() if k not in SEG_KEYS}
    return SegNpy(
        masks=masks,
        outlines=np.asarray(outlines).reshape(masks.shape),
        flows=list(flows) if isinstance(flows, (list, tuple)) else [],
        diameter=_as_float(diameter),
        filename=str(filename) if filename is not None else "",
        ismanual=ismanual,
        chan_choose=[int(c) for c in np.ravel(chan)] if chan is not None else [0, 0],
        extra=extra,
    )


def write_seg_npy(
    path: str | Path,
    masks: np.ndarray,
    *,
    filename: str | Path = "",
    diameter: float | None = None,
    flows: list | None = None,
    ismanual: np.ndarray | None = None,
    chan_choose: tuple[int, int] | list[int] = (0, 0),
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a ``_seg.npy`` that the Cellpose 3 GUI loads (File > Load masks / image).

    Parameters
    ----------
    path : str or Path
        Output file, conventionally :func:`seg_npy_path` of the image.
    masks : numpy.ndarray
        2-D ``(Ly, Lx)`` or 3-D ``(Lz, Ly, Lx)`` integer labels. Labels that
        are not consecutive (1..N) are renumbered, as the GUI would on load.
    filename : str or Path
        The image the masks belong to (the GUI opens it from there).
    diameter : float, optional
        Diameter in pixels used to segment.
    flows : list, optional
        The GUI flow list, e.g. from :func:`gui_flows`; default empty.
    ismanual : array of bool, optional
        One flag per label; default all False (computed masks).
    chan_choose : pair of int
        GUI channel choice; ``(0, 0)`` = grayscale.
    extra : dict, optional
        More keys to store (e.g. ``colors``, ``flow_threshold``). Values must
        be numpy arrays or plain Python values, or :func:`read_seg_npy` refuses
        the file.

    Returns
    -------
    Path
        ``path`` (written atomically).
    """
    path = Path(path)
    masks = np.asarray(masks)
    if masks.ndim not in (2, 3) or masks.dtype.kind not in "iub":
        raise InputError(f"masks must be a 2-D or 3-D integer image, got {masks.ndim}-D {masks.dtype}", path)
    if masks.size and masks.min() < 0:
        raise InputError("masks must be >= 0", path)
    masks = _consecutive(masks)
    n_labels = int(masks.max()) if masks.size else 0
    # Cellpose's rule: uint16 below 2**16 - 1, else uint32.
    dtype = np.uint16 if n_labels < 2**16 - 1 else np.uint32
    masks = masks.astype(dtype)
    if ismanual is None:
        ismanual = np.zeros(n_labels, bool)
    ismanual = np.asarray(ismanual, dtype=bool).reshape(-1)
    if ismanual.size != n_labels:
        raise InputError(f"ismanual has {ismanual.size} entries for {n_labels} labels", path)
    chan = [int(c) for c in chan_choose]
    if len(chan) != 2:
        raise InputError(f"chan_choose must have two entries, got {chan}", path)
    seg = SegNpy(
        masks=masks,
        outlines=masks_to_outlines(masks).astype(dtype),
        flows=list(flows) if flows is not None else [],
        diameter=_as_float(diameter),
        filename=str(filename),
        ismanual=ismanual,
        chan_choose=chan,
        extra=dict(extra or {}),
    )
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, seg.to_dict(), allow_pickle=True)
    return path


def masks_to_outlines(masks: np.ndarray) -> np.ndarray:
    """Return the label-valued outlines of a label image (per plane in 3-D).

    A pixel is on an outline when it belongs to an object and one of its four
    neighbours (or the image border) belongs to another label or to the
    background: the inner boundary of each object, holes included.

    Parameters
    ----------
    masks : numpy.ndarray
        2-D or 3-D labels.

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as ``masks``; label value on outline pixels, 0 elsewhere.
    """
    masks = np.asarray(masks)
    if masks.ndim == 3:
        return np.stack([masks_to_outlines(plane) for plane in masks])
    padded = np.pad(masks, 1, mode="constant")
    centre = padded[1:-1, 1:-1]
    edge = (
        (padded[:-2, 1:-1] != centre)
        | (padded[2:, 1:-1] != centre)
        | (padded[1:-1, :-2] != centre)
        | (padded[1:-1, 2:] != centre)
    )
    return np.where(edge & (centre > 0), masks, 0).astype(masks.dtype)


def gui_flows(dp: np.ndarray, cellprob: np.ndarray, p: np.ndarray | None = None) -> list[np.ndarray]:
    """Build the GUI's ``flows`` list from network output.

    Parameters
    ----------
    dp : numpy.ndarray
        Flows ``(2, Ly, Lx)`` as ``[dY, dX]`` or ``(3, Lz, Ly, Lx)`` as ``[dZ, dY, dX]``,
        in network units (×5 the unit flow).
    cellprob : numpy.ndarray
        Cell probability logits, ``(Ly, Lx)`` or ``(Lz, Ly, Lx)``.
    p : numpy.ndarray, optional
        Pixel destinations after flow dynamics, ``(2, Ly, Lx)`` or ``(3, Lz, Ly, Lx)``.
        The GUI needs it (``flows[3]``) to recompute masks when thresholds
        change; without it only the three display items are written.

    Returns
    -------
    list of numpy.ndarray
        ``[rgb_flow, cellprob_uint8, z_flow_uint8, p, dp_and_cellprob]``
        (the last two only with ``p``), shapes as in the module docstring.
    """
    dp = np.asarray(dp, dtype=np.float32)
    cellprob = np.asarray(cellprob, dtype=np.float32)
    is_3d = dp.shape[0] == 3
    if dp.shape[0] not in (2, 3) or dp.shape[1:] != cellprob.shape:
        raise InputError(f"flows {dp.shape} and cell probability {cellprob.shape} do not match")
    yx = dp[-2:] if not is_3d else dp[1:]
    if not is_3d:
        yx = yx[:, None]
    rgb = np.stack([flow_to_rgb(yx[:, z]) for z in range(yx.shape[1])])
    prob8 = (np.clip(_normalize99(cellprob), 0, 1) * 255).astype(np.uint8)
    if not is_3d:
        prob8 = prob8[None]
        zflow = np.zeros_like(rgb)
    else:
        zflow = np.clip(dp[0] / 10 * 127 + 127, 0, 255).astype(np.uint8)
    out = [rgb, prob8, zflow]
    if p is not None:
        out.append(np.asarray(p, dtype=np.float32))
        out.append(np.concatenate([dp, cellprob[None]], axis=0))
    return out


def flow_to_rgb(dyx: np.ndarray) -> np.ndarray:
    """Colour a 2-D flow field: direction as hue, magnitude as brightness.

    Parameters
    ----------
    dyx : numpy.ndarray
        ``(2, Ly, Lx)`` flows ``[dY, dX]``.

    Returns
    -------
    numpy.ndarray
        ``(Ly, Lx, 3)`` uint8 RGB.
    """
    from skimage.color import hsv2rgb

    dy, dx = np.asarray(dyx, dtype=np.float32)
    magnitude = np.hypot(dy, dx)
    scale = np.percentile(magnitude, 99) if magnitude.size else 0.0
    value = np.clip(magnitude / scale, 0, 1) if scale > 0 else np.zeros_like(magnitude)
    hue = (np.arctan2(dy, dx) + np.pi) / (2 * np.pi)
    hsv = np.stack([hue, np.ones_like(hue), value], axis=-1)
    return (hsv2rgb(hsv) * 255).round().astype(np.uint8)


def _normalize99(x: np.ndarray) -> np.ndarray:
    low, high = np.percentile(x, [1, 99]) if x.size else (0.0, 0.0)
    return (x - low) / (high - low) if high > low else np.zeros_like(x)


def _consecutive(masks: np.ndarray) -> np.ndarray:
    ids = np.unique(masks)
    ids = ids[ids > 0]
    if ids.size == 0 or ids[-1] == ids.size:
        return masks
    log.debug("renumbering %d labels to 1..%d", ids.size, ids.size)
    lut = np.zeros(int(ids[-1]) + 1, dtype=np.uint32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.uint32)
    return lut[masks]


def _as_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        return None
    return float(arr[0]) if arr.size else None
