"""Download Cellpose zoo models into the cache (sha256-checked, atomic; never implicit).

Files come from ``<base>/<file name>`` (:data:`~cellseg_bridge.nn.zoo.DEFAULT_MODEL_URL`,
``$CELLSEG_BRIDGE_MODEL_URL`` or the ``base_url`` given); the model folder is built
beside the cache and installed in one rename.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cellseg_bridge.errors import InputError
from cellseg_bridge.nn.checkpoint import CONFIG_NAME, FORMAT
from cellseg_bridge.nn.store import (
    CHUNK,
    building_model,
    cache_dir,
    now_iso,
    read_json,
    validated,
)
from cellseg_bridge.nn.zoo import DEFAULT_MODEL_URL, KNOWN_SHA256, MODEL_URL_ENV, UNSUPPORTED_CELLPOSE4, ZOO

logger = logging.getLogger(__name__)

_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")

def _check_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not _SHA256_RE.fullmatch(value):
        raise InputError(f"not a sha256 checksum (64 hex digits): {value!r}")
    return value.lower()

def _fetch(url: str, dst: Path, timeout: float, progress: bool) -> str:
    """Stream ``url`` into ``dst``; return the sha256 of the bytes received."""
    request = urllib.request.Request(url, headers={"User-Agent": "cellseg-bridge"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (scheme checked)
    except urllib.error.HTTPError as exc:
        raise InputError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InputError(f"download of {url} failed: {reason}") from exc
    digest = hashlib.sha256()
    received = 0
    with response:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=Path(dst).name, leave=False)  # fmt: skip
        try:
            with open(dst, "wb") as fh:
                while True:
                    try:
                        block = response.read(CHUNK)
                    except OSError as exc:
                        raise InputError(f"download of {url} interrupted: {exc}") from exc
                    if not block:
                        break
                    digest.update(block)
                    fh.write(block)
                    received += len(block)
                    if bar is not None:
                        bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()
    if expected is not None and received != expected:
        raise InputError(
            f"download of {url} is incomplete: {received} of {expected} bytes received"
        )
    return digest.hexdigest()

def download_model(
    name: str,
    *,
    base_url: str | None = None,
    expected_sha256: str | None = None,
    overwrite: bool = False,
    size_model: bool = True,
    timeout: float = 60.0,
    progress: bool = False,
) -> Path:
    """Download a Cellpose zoo model into the cache as ``<cache>/<name>/``.

    Only called on request (``cellseg models download``); :func:`resolve_model`
    never downloads. The weights are streamed into a hidden temporary folder in
    the cache, checked against the sha256, loaded to validate them, and the
    folder is then renamed into place, so an interrupted or bad download leaves
    nothing behind. The model's size model (``cyto3``, ``nuclei``, ``cyto2``,
    ``cyto``) is fetched too; if that fails the model is kept without it.

    Parameters
    ----------
    name : str
        A zoo name (:data:`ZOO`), e.g. ``"cyto3"``, ``"nuclei"``, ``"denoise_cyto3"``.
    base_url : str, optional
        Where the files are (``<base_url>/<file name>``); default
        ``$CELLSEG_BRIDGE_MODEL_URL``, else :data:`DEFAULT_MODEL_URL`.
        ``http``, ``https`` and ``file`` URLs are accepted.
    expected_sha256 : str, optional
        Checksum of the weights file; default: :data:`KNOWN_SHA256`. Without
        either, the download is unverified: a warning is logged and the
        computed checksum is recorded in ``config.json``.
    overwrite : bool
        Replace a cached model of the same name. Without it, a model this
        function downloaded before is returned as is.
    size_model : bool
        Also fetch the size model, when the zoo has one.
    timeout : float
        Seconds to wait for the server.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    Path
        The model folder.

    Raises
    ------
    InputError
        Unknown name, bad URL or checksum, HTTP error, unreachable server,
        incomplete download, checksum mismatch, a file that is not a
        checkpoint, or a cached model of that name from elsewhere.
    """
    if name in UNSUPPORTED_CELLPOSE4:
        raise InputError(f"{name!r} is a Cellpose 4 DINOv3 model: not supported yet (cpsam and cpsam_v2 are)")
    if name not in ZOO:
        close = difflib.get_close_matches(name, list(ZOO), n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise InputError(
            f"{name!r} is not a Cellpose zoo model{hint}; known: {', '.join(ZOO)}. "
            "For a checkpoint you have, use `cellseg models import PATH`"
        )
    entry = ZOO[name]
    base = base_url or os.environ.get(MODEL_URL_ENV) or entry.base_url or DEFAULT_MODEL_URL
    if not base.lower().startswith(("http://", "https://", "file:")):
        raise InputError(f"model URL must start with http://, https:// or file: (got {base!r})")
    url = f"{base.rstrip('/')}/{entry.filename}"
    expected = _check_sha256(expected_sha256) or KNOWN_SHA256.get(name)
    cache = cache_dir()
    dest = cache / name

    if (dest.exists() or dest.is_symlink()) and not overwrite:
        previous: dict[str, Any] = {}
        if (dest / CONFIG_NAME).is_file():
            try:
                previous = read_json(dest / CONFIG_NAME)
            except InputError:
                previous = {}
        origin = previous.get("origin") or {}
        if origin.get("kind") == "cellpose-zoo" and origin.get("name") == name:
            if expected is not None and previous.get("sha256") != expected:
                raise InputError(
                    f"the cached {name!r} has sha256 {previous.get('sha256')}, not {expected}; "
                    "pass --overwrite to download it again",
                    dest,
                )
            logger.info("model %r is already in the cache: %s", name, dest)
            return dest
        raise InputError(
            f"a model named {name!r} that was not downloaded from the zoo is in the cache; "
            "pass --overwrite to replace it",
            dest,
        )

    with building_model(cache, name, dest, overwrite) as (build, config):
        weights = build / entry.filename
        logger.info("downloading %s", url)
        digest = _fetch(url, weights, timeout, progress)
        if expected is not None and digest != expected:
            weights.unlink()
            raise InputError(
                f"checksum mismatch for {url}: expected sha256 {expected}, got {digest}; "
                "the file was deleted"
            )
        try:
            loaded = validated(weights)
        except InputError as exc:
            raise InputError(
                f"the file downloaded from {url} is not a usable checkpoint ({exc.reason})"
            ) from exc
        if expected is None:
            logger.warning(
                "no known sha256 for %r: the download from %s is NOT verified; its sha256 %s "
                "is recorded in %s (pass --sha256 to verify)",
                name, url, digest, dest / CONFIG_NAME,
            )  # fmt: skip
        fmt = FORMAT if loaded.get("family") != "cellpose-sam" else "cellpose-sam-state-dict"
        config.update({"format": fmt, "channels": None, "provenance": {}, **loaded})
        config.update(
            weights=entry.filename,
            sha256=digest,
            size_model=None,
            origin={
                "kind": "cellpose-zoo",
                "name": name,
                "url": url,
                "sha256_verified": expected is not None,
                "date": now_iso(),
                "cellpose_diam_mean": entry.diam_mean,
                "generation": entry.generation,
            },
        )
        if size_model and entry.size_filename:
            size_url = f"{base.rstrip('/')}/{entry.size_filename}"
            try:
                size_digest = _fetch(size_url, build / entry.size_filename, timeout, progress)
            except InputError as exc:
                (build / entry.size_filename).unlink(missing_ok=True)
                logger.warning(
                    "size model of %r not downloaded (the model is kept without it): %s",
                    name, exc,
                )  # fmt: skip
            else:
                config["size_model"] = entry.size_filename
                config["size_model_sha256"] = size_digest
    logger.info("model %r saved to %s", name, dest)
    return dest


__all__ = ["download_model"]
