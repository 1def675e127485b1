"""Model registry: find models by name, import checkpoints, download the Cellpose zoo.

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
import datetime
import difflib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellseg_bridge.config import MODELS_DIR_ENV, models_dir
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.atomic import atomic_output
from cellseg_bridge.nn.checkpoint import CONFIG_NAME, FORMAT, load_checkpoint

logger = logging.getLogger(__name__)

#: Environment variable naming Cellpose's model folder (read by Cellpose too).
CELLPOSE_MODELS_ENV = "CELLPOSE_LOCAL_MODELS_PATH"
#: Environment variable overriding the base URL that :func:`download_model` uses.
MODEL_URL_ENV = "CELLSEG_BRIDGE_MODEL_URL"
#: The Cellpose model server (Cellpose 3.1's ``_MODEL_URL``); a file is at ``<base>/<file name>``.
DEFAULT_MODEL_URL = "https://www.cellpose.org/models/"

#: Our own size model file, beside the weights in a model folder.
SIZE_MODEL_NAME = "size_model.npz"

SOURCES = ("bundled", "cache", "cellpose-zoo")

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
_WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors", ".bin")
_CHUNK = 1 << 20
_ZOO_LIST_FILE = "gui_models.txt"  # user models added in the Cellpose GUI


@dataclass(frozen=True)
class ZooModel:
    """A model of the Cellpose 3 zoo.

    Attributes
    ----------
    name : str
        The name users type (``"nuclei"``); Cellpose's ``model_type``.
    filename : str
        File name on the Cellpose model server and in ``~/.cellpose/models``.
    size_filename : str or None
        File name of its size model (style -> diameter regression), if it has one.
    kind : str
        ``"segmentation"`` or ``"restoration"``.
    diam_mean : float
        The diameter Cellpose uses for this built-in model (17 for nuclei models,
        else 30). Cellpose takes it from this table, not from the state dict.
    """

    name: str
    filename: str
    size_filename: str | None
    kind: str
    diam_mean: float


def _zoo_table() -> dict[str, ZooModel]:
    """The Cellpose 3.1 zoo, from the naming rules of its ``models.py`` and ``denoise.py``.

    ``cyto``, ``cyto2`` and ``nuclei`` are stored as ``<name>torch_0`` with size
    models ``size_<name>torch_0.npy``; ``cyto3`` as ``cyto3`` with ``size_cyto3.npy``;
    every other model under its own name, without a size model. The transformer
    models (``transformer_cp3``, ``neurips_cellpose_transformer``) are not CPnets
    and are left out.
    """
    table: dict[str, ZooModel] = {}

    def add(name: str, filename: str | None = None, size: bool = False, kind: str = "segmentation"):
        filename = filename or name
        table[name] = ZooModel(
            name=name,
            filename=filename,
            size_filename=f"size_{filename}.npy" if size else None,
            kind=kind,
            diam_mean=17.0 if "nuclei" in name else 30.0,
        )

    add("cyto3", size=True)
    for legacy in ("nuclei", "cyto2", "cyto"):
        add(legacy, f"{legacy}torch_0", size=True)
    for name in (
        "cyto2_cp3", "tissuenet_cp3", "livecell_cp3", "yeast_PhC_cp3", "yeast_BF_cp3",
        "bact_phase_cp3", "bact_fluor_cp3", "deepbacs_cp3", "neurips_cellpose_default",
        "neurips_grayscale_cyto2", "CP", "CPx", "TN1", "TN2", "TN3", "LC1", "LC2", "LC3", "LC4",
    ):  # fmt: skip
        add(name)
    for target in ("cyto3", "cyto2", "nuclei"):
        for task in ("denoise", "deblur", "upsample", "oneclick"):
            add(f"{task}_{target}", kind="restoration")
            if target != "cyto3":
                for loss in ("per", "seg", "rec"):
                    add(f"{task}_{loss}_{target}", kind="restoration")
        if target != "cyto3":
            add(f"aniso_{target}", kind="restoration")
    return table


#: Cellpose 3 zoo: our name -> :class:`ZooModel`.
ZOO: dict[str, ZooModel] = _zoo_table()

#: Verified sha256 of zoo weight files, by model name. Empty on purpose: only values
#: checked against a real download belong here. Without an entry (and without
#: ``expected_sha256``) a download is kept unverified and its hash recorded.
KNOWN_SHA256: dict[str, str] = {}


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
    """

    name: str
    source: str
    path: Path
    size_bytes: int
    size_model: Path | None
    config: dict[str, Any] | None
    active: bool = True

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


def bundled_models_dir() -> Path:
    """Folder of the models shipped with the package (``cellseg_bridge/models``)."""
    return Path(__file__).resolve().parents[1] / "models"


def cellpose_models_dir() -> Path:
    """Cellpose's model folder: ``$CELLPOSE_LOCAL_MODELS_PATH`` or ``~/.cellpose/models``."""
    env = os.environ.get(CELLPOSE_MODELS_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cellpose" / "models"


def cache_dir() -> Path:
    """The model cache (:func:`cellseg_bridge.config.models_dir`), ``~`` expanded."""
    return Path(models_dir()).expanduser()


def searched_dirs() -> dict[str, Path]:
    """The folders searched for model names, by source, in lookup order."""
    return {
        "bundled": bundled_models_dir(),
        "cache": cache_dir(),
        "cellpose-zoo": cellpose_models_dir(),
    }


# --------------------------------------------------------------------------- helpers


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read model config ({exc})", path) from exc
    if not isinstance(data, dict):
        raise InputError("model config must be a JSON object", path)
    return data


def _folder_weights(folder: Path) -> tuple[Path, dict[str, Any]]:
    """Weights file and config of a model folder; InputError if it is not one."""
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.is_file():
        raise InputError(f"not a model folder: no {CONFIG_NAME}", folder)
    config = _read_json(cfg_path)
    name = config.get("weights")
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise InputError('model config has no valid "weights" entry (a file name)', cfg_path)
    weights = folder / name
    if not weights.is_file():
        raise InputError(f"weights file {name!r} named in {CONFIG_NAME} is missing", folder)
    return weights, config


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
        return _folder_weights(candidate)[0]
    return None


def _looks_like_path(text: str) -> bool:
    return (
        os.sep in text
        or "/" in text
        or (os.altsep is not None and os.altsep in text)
        or text.startswith(("~", "."))
        or text.endswith(_WEIGHT_SUFFIXES)
    )


def _check_name(name: str) -> str:
    if (
        not isinstance(name, str)
        or not _NAME_RE.fullmatch(name)
        or ".." in name
        or name.endswith(_WEIGHT_SUFFIXES)
    ):
        raise InputError(
            f"invalid model name {name!r}: use letters, digits and _ . + - "
            "(starting with a letter or digit, at most 100 characters, "
            f"not ending in {', '.join(_WEIGHT_SUFFIXES)})"
        )
    return name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy_hashing(src: Path, dst: Path) -> str:
    """Copy ``src`` to ``dst`` and return the sha256 of the bytes copied."""
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for block in iter(lambda: fin.read(_CHUNK), b""):
            digest.update(block)
            fout.write(block)
    return digest.hexdigest()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _write_config(folder: Path, config: dict[str, Any]) -> None:
    text = json.dumps(config, indent=2, sort_keys=True, allow_nan=False)
    with atomic_output(folder / CONFIG_NAME) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")


def _make_build_dir(parent: Path, name: str) -> Path:
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".part", dir=parent))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InputError(f"cannot write to the model cache ({reason})", parent) from exc


def _install(build: Path, dest: Path, overwrite: bool) -> None:
    """Move the finished folder ``build`` to ``dest`` (replacing it only if ``overwrite``)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(build, 0o777 & ~umask)  # mkdtemp makes it private
    if not (dest.exists() or dest.is_symlink()):
        os.replace(build, dest)
        return
    if not overwrite:
        raise InputError("a model of this name exists; pass --overwrite to replace it", dest)
    trash = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
    try:
        os.replace(dest, trash / "old")
        try:
            os.replace(build, dest)
        except OSError:
            os.replace(trash / "old", dest)
            raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def _validated(path: Path) -> dict[str, Any]:
    """Load ``path`` as a checkpoint (CPU) and return its config; any failure is an InputError.

    Files given to import and download are untrusted: besides the InputErrors of
    :func:`load_checkpoint`, torch's unpickler may raise other exceptions on
    garbage (e.g. IndexError); they are reported, not propagated.
    """
    try:
        return load_checkpoint(path, "cpu")[1]
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 (untrusted bytes: anything may go wrong)
        reason = f"{type(exc).__name__}: {exc}"
        raise InputError(f"not a PyTorch checkpoint or corrupt ({reason})", path) from exc


def _missing_message(name: str, looked: dict[str, list[Path]]) -> str:
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
            raise InputError("model file or folder not found", path)
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


def size_model_path(checkpoint: str | os.PathLike) -> Path | None:
    """The size model belonging to a checkpoint, or None.

    Looked for beside the weights, in this order: the file named by the
    ``"size_model"`` entry of the model's ``config.json``; ``size_model.npz``
    (ours; only when no ``config.json`` there describes other weights);
    ``<weights>_size.npy`` (Cellpose ``train_seg``); ``size_<weights>.npy``
    (Cellpose zoo: ``size_cyto3.npy``, ``size_nucleitorch_0.npy``).

    Parameters
    ----------
    checkpoint : str or path-like
        Weights file or model folder (not a name: use :func:`resolve_model` first).
    """
    path = Path(checkpoint).expanduser()
    config: dict[str, Any] | None = None
    if path.is_dir():
        weights, config = _folder_weights(path)
    else:
        weights = path
        cfg_path = weights.parent / CONFIG_NAME
        if cfg_path.is_file():
            try:
                config = _read_json(cfg_path)
            except InputError:
                config = None
    folder = weights.parent
    owned = config is None or config.get("weights") in (None, weights.name)
    candidates = []
    if owned and config and isinstance(config.get("size_model"), str):
        candidates.append(config["size_model"])
    if owned:
        candidates.append(SIZE_MODEL_NAME)
    candidates += [f"{weights.name}_size.npy", f"size_{weights.name}.npy"]
    for name in candidates:
        if Path(name).name == name and (folder / name).is_file():
            return folder / name
    return None


def zoo_model_for(checkpoint: str | os.PathLike) -> ZooModel | None:
    """The zoo entry a weights file is, judged by its file name as Cellpose does, or None.

    Cellpose uses the diameter of its table (17 for nuclei models, 30 otherwise)
    for built-in models, whatever the state dict holds; a pipeline that wants
    the same numbers can take :attr:`ZooModel.diam_mean` from here.

    Parameters
    ----------
    checkpoint : str or path-like
        Weights file or model folder (e.g. from :func:`resolve_model`).
    """
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        path = _folder_weights(path)[0]
    return next((z for z in ZOO.values() if z.filename == path.name), None)


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
                weights, config = _folder_weights(sub)
            except InputError as exc:
                logger.warning("skipped broken model folder: %s", exc)
                continue
            yield sub.name, source, weights, config


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
        weights, config = _folder_weights(path)
    elif (path.parent / CONFIG_NAME).is_file():
        try:
            config = _read_json(path.parent / CONFIG_NAME)
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
        loaded = _validated(path)
    except InputError as exc:
        info["error"] = str(exc)
    else:
        keys = ("nbase", "nout", "kernel_size", "diam_mean", "diam_labels")
        info["architecture"] = {k: loaded[k] for k in keys}
    zoo = zoo_model_for(weights) or ZOO.get(text)
    if zoo is not None:
        info["zoo"] = dataclasses.asdict(zoo)
    info["shadowed"] = [
        {"source": m.source, "path": str(m.path)} for m in matches if m is not active
    ]
    return info


# --------------------------------------------------------------------------- import


def _default_name(src: Path, weights: Path) -> str:
    if src.is_dir():
        return src.name
    name = weights.name
    for suffix in _WEIGHT_SUFFIXES:
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
        If the file is missing or not a loadable checkpoint, the name is
        invalid, or the model exists and ``overwrite`` is False.
    """
    src = Path(path).expanduser()
    if not src.exists():
        raise InputError("checkpoint not found", src)
    loaded = _validated(src)
    weights = src / loaded["weights"] if src.is_dir() else src
    name = _check_name(name if name is not None else _default_name(src, weights))
    cache = cache_dir()
    dest = cache / name
    if (dest.exists() or dest.is_symlink()) and not overwrite:
        raise InputError(
            f"model {name!r} already exists in the cache; pass --overwrite to replace it, "
            "or choose another --name",
            dest,
        )
    size = size_model_path(src)
    build = _make_build_dir(cache, name)
    try:
        digest = _copy_hashing(weights, build / weights.name)
        config = {"format": FORMAT, "channels": None, "provenance": {}, **loaded}
        config.update(
            weights=weights.name,
            sha256=digest,
            size_model=None,
            origin={"kind": "import", "path": str(weights.resolve()), "date": _now()},
        )
        if size is not None:
            shutil.copyfile(size, build / size.name)
            config["size_model"] = size.name
        _write_config(build, config)
        _install(build, dest, overwrite)
    except OSError as exc:
        raise InputError(f"cannot write the model ({exc.strerror or exc})", dest) from exc
    finally:
        shutil.rmtree(build, ignore_errors=True)
    logger.info("imported %s as model %r into %s", weights, name, dest)
    return dest


# --------------------------------------------------------------------------- download


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
                        block = response.read(_CHUNK)
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
    if name not in ZOO:
        close = difflib.get_close_matches(name, list(ZOO), n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise InputError(
            f"{name!r} is not a Cellpose zoo model{hint}; known: {', '.join(ZOO)}. "
            "For a checkpoint you have, use `cellseg models import PATH`"
        )
    entry = ZOO[name]
    base = base_url or os.environ.get(MODEL_URL_ENV) or DEFAULT_MODEL_URL
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
                previous = _read_json(dest / CONFIG_NAME)
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

    build = _make_build_dir(cache, name)
    try:
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
            loaded = _validated(weights)
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
        config = {"format": FORMAT, "channels": None, "provenance": {}, **loaded}
        config.update(
            weights=entry.filename,
            sha256=digest,
            size_model=None,
            origin={
                "kind": "cellpose-zoo",
                "name": name,
                "url": url,
                "sha256_verified": expected is not None,
                "date": _now(),
                "cellpose_diam_mean": entry.diam_mean,
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
        _write_config(build, config)
        _install(build, dest, overwrite)
    except OSError as exc:
        raise InputError(f"cannot write the model ({exc.strerror or exc})", dest) from exc
    finally:
        shutil.rmtree(build, ignore_errors=True)
    logger.info("model %r saved to %s", name, dest)
    return dest


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
