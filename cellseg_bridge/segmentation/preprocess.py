"""Input preparation shared by segmentation, training and restoration.

The steps that turn a user's image into network input, kept in one place so
that training (:mod:`cellseg_bridge.training.data`), restoration
(:mod:`cellseg_bridge.restoration.api`) and inference
(:mod:`cellseg_bridge.segmentation.pipeline`) see the same pixels:

- :func:`as_tczyx`: an ndarray or DataArray -> a checked TCZYX ndarray, its
  channel names and physical pixel sizes;
- :func:`channel_index`: a channel given by index or name -> its index;
- :func:`select_channels`: the segmented (and nuclear) channel(s) as float32;
- :func:`normalize`: per-channel percentile normalisation, per plane or over
  the whole stack.

Every refusal is an :class:`~cellseg_bridge.errors.InputError` with a message
meant for the user.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cellseg_bridge.config import SegmentOptions, TrainOptions
from cellseg_bridge.core import transforms
from cellseg_bridge.errors import InputError

__all__ = [
    "MIN_SIDE",
    "MAX_PLANE_PIXELS",
    "as_tczyx",
    "channel_index",
    "select_channels",
    "normalize",
]

#: Smallest accepted plane side (pixels) of an input image.
MIN_SIDE = 8
#: Largest accepted plane (pixels, after rescaling too); beyond, use the distributed path.
MAX_PLANE_PIXELS = 2**29
_DIMS = "TCZYX"


def as_tczyx(image: Any, axes: str | None) -> tuple[np.ndarray, list[str] | None, dict]:
    """The image as a TCZYX ndarray, its channel names and physical pixel sizes.

    Parameters
    ----------
    image : xarray.DataArray or array_like
        A DataArray (its ``dims`` give the axes; ``channel_names`` and
        ``physical_pixel_sizes`` are taken from its ``attrs``) or anything
        :func:`numpy.asarray` accepts.
    axes : str, optional
        Axes of an array, distinct letters of ``TCZYX`` including ``Y`` and
        ``X`` (case-insensitive). Default ``"YX"`` for 2D arrays, required
        otherwise. For a DataArray it must match its ``dims`` if given.

    Returns
    -------
    data : ndarray
        The pixels, 5D in TCZYX order (missing axes of length 1); a view of
        the input where possible.
    names : list of str or None
        The DataArray's channel names, None for arrays.
    sizes : dict
        The DataArray's physical pixel sizes (empty for arrays).

    Raises
    ------
    InputError
        Not an array, ``axes`` missing for a non-2D array or not fitting it, a
        non-numeric pixel type, an empty image, planes smaller than
        :data:`MIN_SIDE` or larger than :data:`MAX_PLANE_PIXELS` pixels.
    """
    names = None
    sizes: dict = {}
    if hasattr(image, "dims") and hasattr(image, "attrs"):  # xarray.DataArray
        dims = "".join(str(d) for d in image.dims)
        if axes is not None and axes.upper() != dims:
            raise InputError(f"axes {axes!r} given but the DataArray has dims {dims!r}")
        axes = dims
        names = image.attrs.get("channel_names")
        sizes = dict(image.attrs.get("physical_pixel_sizes") or {})
        data = np.asarray(image.data)
    else:
        try:
            data = np.asarray(image)
        except (TypeError, ValueError) as exc:
            raise InputError(f"not an image array ({exc})") from exc
        if axes is None:
            if data.ndim == 2:
                axes = "YX"
            else:
                raise InputError(
                    f"a {data.ndim}D array needs axes, e.g. axes='CYX', 'ZYX', 'YXC' or 'TZYX' "
                    f"(shape {data.shape}); only 2D arrays default to 'YX'"
                )
    axes = str(axes).upper()
    if len(axes) != data.ndim:
        raise InputError(
            f"axes {axes!r} has {len(axes)} letters but the image has {data.ndim} dimensions "
            f"(shape {data.shape}); e.g. a Z stack must be given as 'ZYX', not 'YX'"
        )
    if len(set(axes)) != len(axes) or not set(axes) <= set(_DIMS) or not {"Y", "X"} <= set(axes):
        raise InputError(f"axes {axes!r} must be distinct letters of TCZYX including Y and X")
    if data.dtype.kind not in "biuf":
        raise InputError(f"unsupported pixel type {data.dtype}")
    for letter in _DIMS:
        if letter not in axes:
            data = data[None]
            axes = letter + axes
    data = data.transpose([axes.index(letter) for letter in _DIMS])
    if data.size == 0:
        raise InputError(f"the image is empty (TCZYX shape {data.shape})")
    if data.shape[3] < MIN_SIDE or data.shape[4] < MIN_SIDE:
        raise InputError(
            f"the image planes are {data.shape[3]}x{data.shape[4]} pixels; "
            f"at least {MIN_SIDE}x{MIN_SIDE} are needed"
        )
    if data.shape[3] * data.shape[4] > MAX_PLANE_PIXELS:
        raise InputError(
            f"planes of {data.shape[3]}x{data.shape[4]} pixels are larger than this path handles "
            f"({MAX_PLANE_PIXELS} pixels); segment in chunks (distributed large-image path)"
        )
    return data, names, sizes


def channel_index(which: int | str, names: list[str] | None, n: int, what: str) -> int:
    """Index of a channel given by index or name.

    Parameters
    ----------
    which : int or str
        An index (negative counts from the end), a channel name (exact match
        first, then case-insensitive; it must be unique), or a string of
        digits (an index).
    names : list of str or None
        The image's channel names, if known.
    n : int
        Number of channels of the image.
    what : str
        What the channel is for (``"channel"``, ``"nuclear_channel"``), used
        in error messages.

    Returns
    -------
    int
        The index, in ``0 .. n - 1``.

    Raises
    ------
    InputError
        No such channel (the message lists those that exist), or ``which``
        is neither an index nor a name (a bool, for instance).
    """
    listing = (
        ", ".join(f"{i}={nm!r}" for i, nm in enumerate(names)) if names else f"indices 0..{n - 1}"
    )
    if isinstance(which, (bool, np.bool_)):
        raise InputError(f"{what} must be an index or a name, got {which!r}")
    if isinstance(which, (int, np.integer)):
        i = int(which)
        if not -n <= i < n:
            raise InputError(f"{what} {i} does not exist; the image has {n} channel(s): {listing}")
        return i % n
    if isinstance(which, str):
        if names:
            hits = [i for i, nm in enumerate(names) if str(nm) == which]
            if not hits:
                hits = [i for i, nm in enumerate(names) if str(nm).lower() == which.lower()]
            if len(hits) == 1:
                return hits[0]
        if which.lstrip("-").isdigit():
            return channel_index(int(which), names, n, what)
        raise InputError(f"{what} {which!r} does not exist; the image has {n} channel(s): {listing}")
    raise InputError(f"{what} must be an index or a name, got {which!r}")


#: Inputs of a Cellpose-SAM network (Cellpose 4's channel convention, :func:`sam_channels`).
SAM_INPUTS = 3


def sam_channels(n: int, names: list[str] | None, opts: SegmentOptions | TrainOptions) -> list[int]:
    """The image channels (1 to 3, in order) that feed a Cellpose-SAM network.

    Cellpose 4 takes the first three channels of an image in their order and runs fewer
    with the missing inputs absent, which equals zeros (its first convolution uses the
    weights of the channels present only). Here: ``opts.channels`` (comma-separated indices
    or names) when given; else ``channel`` (and ``nuclear_channel``) when either differs from
    the default, as the first (and second) input; else all channels of an image with at most 3.
    An image with more than 3 channels and no choice is refused, where Cellpose 4 would
    silently drop the rest.

    Raises
    ------
    InputError
        More than 3 channels chosen or present without a choice, or a channel that does not exist.
    """
    chosen = getattr(opts, "channels", None)  # training options have channel / nuclear_channel only
    if chosen is not None and str(chosen).strip():
        items = [c.strip() for c in str(chosen).split(",") if c.strip()]
        if len(items) > SAM_INPUTS:
            raise InputError(f"channels {chosen!r}: Cellpose-SAM models take at most {SAM_INPUTS} channels")
        return [channel_index(c, names, n, "channels") for c in items]
    if opts.nuclear_channel is not None or opts.channel != 0:
        chans = [channel_index(opts.channel, names, n, "channel")]
        if opts.nuclear_channel is not None:
            chans.append(channel_index(opts.nuclear_channel, names, n, "nuclear_channel"))
        return chans
    if n > SAM_INPUTS:
        listing = ", ".join(f"{i}={nm!r}" for i, nm in enumerate(names)) if names else f"indices 0..{n - 1}"
        raise InputError(f"the image has {n} channels ({listing}); Cellpose-SAM models take up to {SAM_INPUTS}: "
                         "choose them with channels (e.g. --channels 0,2 or channel names)")
    return list(range(n))


def select_channels(
    data: np.ndarray, names: list[str] | None, opts: SegmentOptions, nchan: int
) -> np.ndarray:
    """The channel(s) a network takes, as float32.

    Parameters
    ----------
    data : ndarray
        TCZYX pixels (:func:`as_tczyx`).
    names : list of str or None
        Channel names, for ``opts.channel`` / ``opts.nuclear_channel`` given
        by name.
    opts : SegmentOptions
        ``channel`` and ``nuclear_channel`` (None: a zero second channel).
    nchan : int
        Number of input channels of the network.

    Returns
    -------
    ndarray
        ``(T, nchan, Z, Y, X)`` float32: the chosen channel first, the nuclear
        channel second (zeros if not given).

    Raises
    ------
    InputError
        A channel that does not exist, ``nuclear_channel`` for a
        single-channel network, NaN or infinite pixels in the channels used.
    """
    n = data.shape[1]
    if nchan == SAM_INPUTS:
        chans = sam_channels(n, names, opts)
    else:
        chans = [channel_index(opts.channel, names, n, "channel")]
    if opts.nuclear_channel is not None and nchan != SAM_INPUTS:
        if nchan < 2:
            raise InputError("nuclear_channel given but the network takes a single channel")
        chans.append(channel_index(opts.nuclear_channel, names, n, "nuclear_channel"))
    out = np.zeros((data.shape[0], nchan, *data.shape[2:]), np.float32)
    for k, c in enumerate(chans[:nchan]):
        out[:, k] = data[:, c]
    bad = ~np.isfinite(out)
    if bad.any():
        raise InputError(
            f"the image has {int(bad.sum())} NaN or infinite pixel(s) in the channel(s) used; "
            "replace them (e.g. by the background value) before segmenting"
        )
    return out


def normalize(planes: np.ndarray, opts: SegmentOptions, whole_stack: bool) -> np.ndarray:
    """Percentile-normalise ``(C, Z, Y, X)`` planes per channel.

    Parameters
    ----------
    planes : ndarray
        ``(C, Z, Y, X)`` pixels of one time point.
    opts : SegmentOptions
        ``normalize_percentiles`` ``(low, high)``, mapped to 0 and 1
        (:func:`~cellseg_bridge.core.transforms.normalize_percentile`); with
        ``invert`` the result is ``1 - x`` (channels that hold data; a constant
        or missing channel stays 0).
    whole_stack : bool
        True: percentiles per channel over the whole stack (3D and stitching,
        as Cellpose's ``norm3D``); False: per channel and plane.

    Returns
    -------
    ndarray
        float32, the shape of ``planes``.
    """
    lo, hi = opts.normalize_percentiles
    if whole_stack:
        out = transforms.normalize_percentile(planes, lo, hi, channel_axis=0)
    else:
        out = np.empty(planes.shape, np.float32)
        for z in range(planes.shape[1]):
            out[:, z] = transforms.normalize_percentile(planes[:, z], lo, hi, channel_axis=0)
    if opts.invert:  # channels with data only: an absent (all-zero) channel stays 0
        for c in range(out.shape[0]):
            if out[c].any():
                np.subtract(np.float32(1), out[c], out=out[c])
    return out
