"""Model folders and the model cache: names, config files, size models, atomic installation.

A *model folder* holds a weights file, the ``config.json`` naming it (``"weights"``
entry, see :mod:`cellseg_bridge.nn.checkpoint`) and optionally a size model.
:func:`install` moves a fully built folder into the cache in one rename, so a
failed import or download never leaves half a model behind.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cellseg_bridge.config import models_dir
from cellseg_bridge.errors import InputError
from cellseg_bridge.io.atomic import atomic_output
from cellseg_bridge.nn.checkpoint import CONFIG_NAME
from cellseg_bridge.nn.vit_checkpoint import load_network

#: Our own size model file, beside the weights in a model folder.
SIZE_MODEL_NAME = "size_model.npz"

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")

WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors", ".bin")

CHUNK = 1 << 20

def bundled_models_dir() -> Path:
    """Folder of the models shipped with the package (``cellseg_bridge/models``)."""
    return Path(__file__).resolve().parents[1] / "models"

def cache_dir() -> Path:
    """The model cache (:func:`cellseg_bridge.config.models_dir`), ``~`` expanded."""
    return Path(models_dir()).expanduser()

def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read model config ({exc})", path) from exc
    if not isinstance(data, dict):
        raise InputError("model config must be a JSON object", path)
    return data

def folder_weights(folder: Path) -> tuple[Path, dict[str, Any]]:
    """Weights file and config of a model folder; InputError if it is not one."""
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.is_file():
        raise InputError(f"not a model folder: no {CONFIG_NAME}", folder)
    config = read_json(cfg_path)
    name = config.get("weights")
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise InputError('model config has no valid "weights" entry (a file name)', cfg_path)
    weights = folder / name
    if not weights.is_file():
        raise InputError(f"weights file {name!r} named in {CONFIG_NAME} is missing", folder)
    return weights, config

def check_name(name: str) -> str:
    if (
        not isinstance(name, str)
        or not NAME_RE.fullmatch(name)
        or ".." in name
        or name.endswith(WEIGHT_SUFFIXES)
    ):
        raise InputError(
            f"invalid model name {name!r}: use letters, digits and _ . + - "
            "(starting with a letter or digit, at most 100 characters, "
            f"not ending in {', '.join(WEIGHT_SUFFIXES)})"
        )
    return name

def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()

def copy_hashing(src: Path, dst: Path) -> str:
    """Copy ``src`` to ``dst`` and return the sha256 of the bytes copied."""
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for block in iter(lambda: fin.read(CHUNK), b""):
            digest.update(block)
            fout.write(block)
    return digest.hexdigest()

def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

def write_config(folder: Path, config: dict[str, Any]) -> None:
    text = json.dumps(config, indent=2, sort_keys=True, allow_nan=False)
    with atomic_output(folder / CONFIG_NAME) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")

def make_build_dir(parent: Path, name: str) -> Path:
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".part", dir=parent))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InputError(f"cannot write to the model cache ({reason})", parent) from exc

def install(build: Path, dest: Path, overwrite: bool) -> None:
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

@contextlib.contextmanager
def building_model(cache: Path, name: str, dest: Path, overwrite: bool) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A private folder in which to build model ``name``, installed as ``dest`` when the block succeeds.

    Yields ``(folder, config)``: the caller puts the files into ``folder`` and the
    entries into ``config``; at the end of the block ``config.json`` is written and
    the folder moved into place (:func:`install`). On any failure nothing is
    installed and the folder is removed.

    Raises
    ------
    InputError
        The cache cannot be written (an ``OSError`` in the block or while installing).
    """
    build = make_build_dir(cache, name)
    config: dict[str, Any] = {}
    try:
        yield build, config
        write_config(build, config)
        install(build, dest, overwrite)
    except OSError as exc:
        raise InputError(f"cannot write the model ({exc.strerror or exc})", dest) from exc
    finally:
        shutil.rmtree(build, ignore_errors=True)


def validated(path: Path) -> dict[str, Any]:
    """Load ``path`` as a checkpoint (CPU) and return its config; any failure is an InputError.

    Files given to import and download are untrusted: besides the InputErrors of
    :func:`~cellseg_bridge.nn.vit_checkpoint.load_network` (either family), torch's unpickler may raise other exceptions on
    garbage (e.g. IndexError); they are reported, not propagated.
    """
    try:
        return load_network(path, "cpu")[1]
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 (untrusted bytes: anything may go wrong)
        reason = f"{type(exc).__name__}: {exc}"
        raise InputError(f"not a PyTorch checkpoint or corrupt ({reason})", path) from exc

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
        weights, config = folder_weights(path)
    else:
        weights = path
        cfg_path = weights.parent / CONFIG_NAME
        if cfg_path.is_file():
            try:
                config = read_json(cfg_path)
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


__all__ = [
    "CHUNK",
    "NAME_RE",
    "SIZE_MODEL_NAME",
    "WEIGHT_SUFFIXES",
    "cache_dir",
    "check_name",
    "copy_hashing",
    "folder_weights",
    "install",
    "make_build_dir",
    "now_iso",
    "read_json",
    "sha256_file",
    "size_model_path",
    "validated",
    "write_config",
]
