"""Model registry: find models by name, list them, describe them.

Split by job: the zoo table is :mod:`.zoo`, model folders and the cache :mod:`.store`,
importing a user's checkpoint :mod:`.model_import`, downloading the zoo :mod:`.download`;
their public names are re-exported here (``cellseg_bridge.nn.registry`` is the one place to look).

A *model name* is looked up in three places, in this order; the first hit wins:

1. **bundled** -- folders shipped inside the package, ``cellseg_bridge/models/<name>/``;
2. **cache** -- folders under :func:`cellseg_bridge.config.models_dir`
   (``~/.cellseg_bridge/models``, or ``$CELLSEG_BRIDGE_MODELS``), filled by
   :func:`import_model` and :func:`download_model`;
3. **cellpose-zoo** -- the files Cellpose itself downloaded, in
   ``$CELLPOSE_LOCAL_MODELS_PATH`` or ``~/.cellpose/models``, under Cellpose's
   own file names (see :data:`ZOO`: ``nuclei`` is the file ``nucleitorch_0``,
   ``cyto3`` the file ``cyto3``), plus any other file there whose name is the
   model name (models added with the Cellpose GUI).

A *model folder* (bundled or cache) holds a weights file, the ``config.json``
naming it (``"weights"`` entry, see :mod:`cellseg_bridge.nn.checkpoint`) and
optionally a size model. Dropping such a folder into either place registers it.

Nothing is ever downloaded implicitly: a missing model is an :class:`InputError`
that says where it looked and how to get the model (``cellseg models download``
for zoo names, ``cellseg models import`` for files the user has).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellseg_bridge.config import MODELS_DIR_ENV
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.paths import missing_reason
from cellseg_bridge.nn.checkpoint import CONFIG_NAME
from cellseg_bridge.nn.download import download_model
from cellseg_bridge.nn.model_import import import_model
from cellseg_bridge.nn.store import (
    SIZE_MODEL_NAME,
    WEIGHT_SUFFIXES,
    bundled_models_dir,
    cache_dir,
    folder_weights,
    read_json,
    size_model_path,
    validated,
)
from cellseg_bridge.nn.zoo import (
    DEFAULT_MODEL_URL,
    KNOWN_SHA256,
    MODEL_URL_ENV,
    UNSUPPORTED_CELLPOSE4,
    ZOO,
    ZooModel,
    zoo_model_for,
)

logger = logging.getLogger(__name__)

#: Environment variable naming Cellpose's model folder (read by Cellpose too).
CELLPOSE_MODELS_ENV = "CELLPOSE_LOCAL_MODELS_PATH"


SOURCES = ("bundled", "cache", "cellpose-zoo")

_ZOO_LIST_FILE = "gui_models.txt"  # user models added in the Cellpose GUI


@dataclass(frozen=True)
class ModelInfo:
    """One model found by :func:`list_models`.

    Attributes
    ----------
    name : str
        Name that :func:`resolve_model` accepts.
    source : str
        ``"bundled"``, ``"cache"`` or ``"cellpose-zoo"``.
    path : Path
        The weights file.
    size_bytes : int
        Size of the weights file.
    size_model : Path or None
        Its size model, if any.
    config : dict or None
        The model folder's ``config.json``; None for bare Cellpose files.
    active : bool
        Whether :func:`resolve_model` picks this entry for ``name`` (False: an
        earlier source has a model of the same name).
    generation : str
        ``"cellpose3"`` (Cellpose 2/3 U-Net) or ``"cellpose4"`` (Cellpose-SAM), from the
        zoo table or the model's ``config.json`` (the weights are not read).
    """

    name: str
    source: str
    path: Path
    size_bytes: int
    size_model: Path | None
    config: dict[str, Any] | None
    active: bool = True
    generation: str = "cellpose3"

    @property
    def has_size_model(self) -> bool:
        """Whether the model has a size model."""
        return self.size_model is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings)."""
        data = dataclasses.asdict(self)
        data["path"] = str(self.path)
        data["size_model"] = None if self.size_model is None else str(self.size_model)
        data["has_size_model"] = self.has_size_model
        return data


# --------------------------------------------------------------------------- places


def cellpose_models_dir() -> Path:
    """Cellpose's model folder: ``$CELLPOSE_LOCAL_MODELS_PATH`` or ``~/.cellpose/models``."""
    env = os.environ.get(CELLPOSE_MODELS_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cellpose" / "models"


def searched_dirs() -> dict[str, Path]:
    """The folders searched for model names, by source, in lookup order."""
    return {
        "bundled": bundled_models_dir(),
        "cache": cache_dir(),
        "cellpose-zoo": cellpose_models_dir(),
    }


# --------------------------------------------------------------------------- helpers


def _zoo_candidates(name: str) -> list[str]:
    """File names under which ``name`` may lie in Cellpose's model folder."""
    names = []
    if name in ZOO:
        names.append(ZOO[name].filename)
    if name not in names and not name.startswith("size_") and name != _ZOO_LIST_FILE:
        names.append(name)
    return names


def _find(name: str, source: str, folder: Path) -> Path | None:
    """Weights file of ``name`` in one source, or None."""
    if source == "cellpose-zoo":
        for filename in _zoo_candidates(name):
            if (folder / filename).is_file():
                return folder / filename
        return None
    candidate = folder / name
    if candidate.is_dir():
        return folder_weights(candidate)[0]
    return None


def _looks_like_path(text: str) -> bool:
    return (
        os.sep in text
        or "/" in text
        or (os.altsep is not None and os.altsep in text)
        or text.startswith(("~", "."))
        or text.endswith(WEIGHT_SUFFIXES)
    )


def _missing_message(name: str, looked: dict[str, list[Path]]) -> str:
    if name in UNSUPPORTED_CELLPOSE4:
        return (f"model {name!r} is a Cellpose 4 DINOv3 model (cpdino): not supported yet; "
                "Cellpose-SAM models (cpsam, cpsam_v2) and the Cellpose 3 zoo are")
    where = "; ".join(
        f"{source}: {', '.join(str(p) for p in paths)}" for source, paths in looked.items()
    )
    if name in ZOO:
        how = (
            f"get it with `cellseg models download {name}` (Cellpose model zoo), "
            f"or, if you have the file, `cellseg models import PATH --name {name}`"
        )
    else:
        how = (
            f"import your checkpoint with `cellseg models import PATH --name {name}`, "
            "or pass the path of a checkpoint file"
        )
        close = difflib.get_close_matches(name, [*ZOO, *(m.name for m in list_models())], n=3)
        if close:
            how += f" (did you mean {', '.join(repr(c) for c in close)}?)"
    return f"model {name!r} not found; looked in {where}. To fix: {how}"


# --------------------------------------------------------------------------- lookup


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """Return the checkpoint a model name or path refers to.

    Parameters
    ----------
    name_or_path : str or path-like
        A path of a weights file or model folder, or a model name (bundled,
        cached, or from the Cellpose zoo). A bare word (no ``/``, no weights
        suffix) is taken as a path only when it names an existing file or a
        folder with a ``config.json`` there; otherwise it is a name.

    Returns
    -------
    Path
        An existing path given as such is returned unchanged (``~`` expanded).
        A name gives its **weights file** (loadable by
        :func:`~cellseg_bridge.nn.checkpoint.load_checkpoint`, which also finds
        the ``config.json`` beside it).

    Raises
    ------
    InputError
        If a path does not exist, a model folder is broken, or a name is found
        nowhere; the message says where it looked and how to get the model.
        Nothing is downloaded.
    """
    text = os.fspath(name_or_path)
    if not text:
        raise InputError("empty model name")
    path = Path(text).expanduser()
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(text):
        if not path.exists():
            raise InputError(missing_reason(path, "model file or folder"), path)
        return path
    if path.is_file() or (path.is_dir() and (path / CONFIG_NAME).is_file()):
        logger.info("model %r: using the local path %s", text, path.resolve())
        return path
    looked: dict[str, list[Path]] = {}
    for source, folder in searched_dirs().items():
        found = _find(text, source, folder)
        if found is not None:
            logger.debug("model %r: %s (%s)", text, found, source)
            return found
        names = _zoo_candidates(text) if source == "cellpose-zoo" else [text]
        looked[source] = [folder / n for n in names]
    raise InputError(_missing_message(text, looked))


def _entries() -> Iterator[tuple[str, str, Path, dict[str, Any] | None]]:
    """(name, source, weights, config) of every model found, sources in order."""
    for source, folder in searched_dirs().items():
        if not folder.is_dir():
            continue
        if source == "cellpose-zoo":
            names = [n for n, z in ZOO.items() if (folder / z.filename).is_file()]
            listed = folder / _ZOO_LIST_FILE
            if listed.is_file():
                try:
                    extra = listed.read_text(encoding="utf-8").split()
                except (OSError, UnicodeDecodeError):
                    extra = []
                names += [
                    n
                    for n in extra
                    if n not in names and Path(n).name == n and (folder / n).is_file()
                ]
            for name in sorted(names):
                weights = _find(name, source, folder)
                if weights is not None:
                    yield name, source, weights, None
            continue
        for sub in sorted(folder.iterdir()):
            if sub.name.startswith((".", "_")) or not sub.is_dir():
                continue
            if not (sub / CONFIG_NAME).is_file():
                continue
            try:
                weights, config = folder_weights(sub)
            except InputError as exc:
                logger.warning("skipped broken model folder: %s", exc)
                continue
            yield sub.name, source, weights, config


def _generation(name: str, source: str, config: dict[str, Any] | None) -> str:
    """Which Cellpose generation a listed model is, without reading its weights."""
    if config is not None:
        origin = config.get("origin") or {}
        if config.get("family") == "cellpose-sam" or origin.get("generation") == "cellpose4":
            return "cellpose4"
        return "cellpose3"
    zoo = ZOO.get(name)
    return zoo.generation if zoo is not None and source == "cellpose-zoo" else "cellpose3"


def list_models() -> list[ModelInfo]:
    """Every model found in the bundled, cache and Cellpose zoo folders.

    Returns
    -------
    list of ModelInfo
        In lookup order (bundled, cache, cellpose-zoo; by name within each).
        A name present in several sources appears once per source; only the
        first has ``active=True``.
    """
    seen: set[str] = set()
    infos = []
    for name, source, weights, config in _entries():
        infos.append(
            ModelInfo(
                name=name,
                source=source,
                path=weights,
                size_bytes=weights.stat().st_size,
                size_model=size_model_path(weights),
                config=config,
                active=name not in seen,
                generation=_generation(name, source, config),
            )
        )
        seen.add(name)
    return infos


def model_info(name: str | os.PathLike) -> dict[str, Any]:
    """Everything known about one model (a name or a path), JSON-ready.

    The checkpoint is loaded (on the CPU) to report its architecture; a file
    that does not load is reported under ``"error"`` rather than raised.

    Returns
    -------
    dict
        ``name``, ``source`` (a source name, or ``"path"``), ``path`` (weights
        file), ``size_bytes``, ``size_model``, ``config`` (``config.json`` or
        None), ``architecture`` (``nbase``, ``nout``, ``kernel_size``,
        ``diam_mean``, ``diam_labels``) or ``error``, ``zoo`` (the
        :class:`ZooModel` fields when ``name`` is a zoo name), ``shadowed``
        (other sources that also have this name).

    Raises
    ------
    InputError
        If the model is not found (see :func:`resolve_model`).
    """
    text = os.fspath(name)
    path = resolve_model(name)
    matches = [m for m in list_models() if m.name == text]
    active = next((m for m in matches if m.path == path), None)
    weights = path
    config = None
    if path.is_dir():
        weights, config = folder_weights(path)
    elif (path.parent / CONFIG_NAME).is_file():
        try:
            config = read_json(path.parent / CONFIG_NAME)
        except InputError:
            config = None
        if config is not None and config.get("weights") not in (None, path.name):
            config = None
    info: dict[str, Any] = {
        "name": text if active else Path(weights).name,
        "source": active.source if active else "path",
        "path": str(weights),
        "size_bytes": weights.stat().st_size,
        "size_model": None,
        "config": config,
    }
    size = size_model_path(path)
    info["size_model"] = None if size is None else str(size)
    try:
        loaded = validated(path)
    except InputError as exc:
        info["error"] = str(exc)
    else:
        keys = ("family", "nbase", "nout", "kernel_size", "vit", "diam_mean", "diam_labels")
        info["architecture"] = {k: loaded[k] for k in keys if k in loaded}
    zoo = zoo_model_for(weights) or ZOO.get(text)
    if zoo is not None:
        info["zoo"] = dataclasses.asdict(zoo)
    info["shadowed"] = [
        {"source": m.source, "path": str(m.path)} for m in matches if m is not active
    ]
    return info


# --------------------------------------------------------------------------- import


# --------------------------------------------------------------------------- download


__all__ = [
    "CELLPOSE_MODELS_ENV",
    "DEFAULT_MODEL_URL",
    "KNOWN_SHA256",
    "MODELS_DIR_ENV",
    "MODEL_URL_ENV",
    "SIZE_MODEL_NAME",
    "SOURCES",
    "ZOO",
    "ModelInfo",
    "ZooModel",
    "bundled_models_dir",
    "cache_dir",
    "cellpose_models_dir",
    "download_model",
    "import_model",
    "list_models",
    "model_info",
    "resolve_model",
    "searched_dirs",
    "size_model_path",
    "zoo_model_for",
]
