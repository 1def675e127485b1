"""Import a checkpoint the user has (Cellpose ``train_seg`` output, a zoo file, a model folder) into the cache."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from cellseg_bridge.errors import InputError
from cellseg_bridge.io.paths import missing_reason
from cellseg_bridge.nn.checkpoint import FORMAT
from cellseg_bridge.nn.size_model import load_size_model
from cellseg_bridge.nn.store import (
    WEIGHT_SUFFIXES,
    building_model,
    bundled_models_dir,
    cache_dir,
    check_name,
    copy_hashing,
    now_iso,
    size_model_path,
    validated,
)

logger = logging.getLogger(__name__)

def _default_name(src: Path, weights: Path) -> str:
    if src.is_dir():
        return src.name
    name = weights.name
    for suffix in WEIGHT_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name

def import_model(
    path: str | os.PathLike, name: str | None = None, *, overwrite: bool = False
) -> Path:
    """Copy a checkpoint into the model cache as ``<cache>/<name>/``.

    The checkpoint is validated first by loading it; a file that does not load
    is refused and nothing is copied. The folder receives the weights (bytes
    unchanged, so Cellpose still reads them), a ``config.json`` (the loaded
    configuration plus ``sha256`` and ``origin``) and the size model found
    beside the weights (:func:`size_model_path`), if any. The folder is built
    under a hidden temporary name and renamed into place.

    Parameters
    ----------
    path : str or path-like
        A weights file (Cellpose model, ``train_seg`` output, ``.pth``) or a
        model folder.
    name : str, optional
        Model name; default: the folder name, or the file name without a
        ``.pth``/``.pt``/... suffix.
    overwrite : bool
        Replace a cached model of the same name.

    Returns
    -------
    Path
        The new model folder.

    Raises
    ------
    InputError
        If the file is missing or not a loadable checkpoint, its size model
        does not load safely (e.g. pickles objects), the name is invalid or is
        a bundled model's (which would always win the lookup: refused even with
        ``overwrite``), or the model exists and ``overwrite`` is False.
    """
    src = Path(path).expanduser()
    if not src.exists():
        raise InputError(missing_reason(src, "checkpoint"), src)
    loaded = validated(src)
    weights = src / loaded["weights"] if src.is_dir() else src
    name = check_name(name if name is not None else _default_name(src, weights))
    if (bundled_models_dir() / name).exists():
        raise InputError(
            f"{name!r} is the name of a bundled model, which is looked up first: an imported "
            f"{name!r} would never be used; choose another --name",
            src,
        )
    cache = cache_dir()
    dest = cache / name
    if (dest.exists() or dest.is_symlink()) and not overwrite:
        raise InputError(
            f"model {name!r} already exists in the cache; pass --overwrite to replace it, "
            "or choose another --name",
            dest,
        )
    size = size_model_path(src)
    if size is not None:
        try:
            load_size_model(size)
        except InputError as exc:
            raise InputError(
                f"refused: the size model beside the weights cannot be loaded safely ({exc.reason}); "
                "nothing imported (fix or remove it and import again)",
                size,
            ) from exc
    with building_model(cache, name, dest, overwrite) as (build, config):
        digest = copy_hashing(weights, build / weights.name)
        config.update({"format": FORMAT, "channels": None, "provenance": {}, **loaded})
        config.update(
            weights=weights.name,
            sha256=digest,
            size_model=None,
            origin={"kind": "import", "path": str(weights.resolve()), "date": now_iso()},
        )
        if size is not None:
            shutil.copyfile(size, build / size.name)
            config["size_model"] = size.name
    logger.info("imported %s as model %r into %s", weights, name, dest)
    return dest


__all__ = ["import_model"]
