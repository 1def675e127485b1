"""Import a bioimage.io model package of a Cellpose-style network (``cellseg models import PACKAGE.zip``).

The package's ``pytorch_state_dict`` weights are read with ``torch.load(weights_only=True)`` and must fit
:class:`~cellseg_bridge.nn.net.CellposeUNet` (``CPnet`` keys: ours, see :mod:`cellseg_bridge.nn.bioimageio`,
or Cellpose's own export); the model is then cached as any imported checkpoint
(:func:`~cellseg_bridge.nn.model_import.import_model`), with our ``config.json`` from ``config.cellseg_bridge``
when the package has it, else the percentiles of its ``scale_range`` preprocessing.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from cellseg_bridge.errors import InputError
from cellseg_bridge.nn.bioimageio import RDF_NAMES, sha256_bytes
from cellseg_bridge.nn.checkpoint import CONFIG_NAME, FORMAT, load_checkpoint
from cellseg_bridge.nn.store import SIZE_MODEL_NAME, now_iso, write_config

__all__ = ["import_bioimageio", "is_bioimageio_package"]


def is_bioimageio_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a bioimage.io package: a zip or folder holding ``rdf.yaml`` / ``bioimageio.yaml``.

    (A ``torch.save`` file is a zip too, but holds no RDF.)
    """
    path = Path(path)
    if path.is_dir():
        return any((path / n).is_file() for n in RDF_NAMES)
    try:
        with zipfile.ZipFile(path) as zf:
            return any(Path(n).name in RDF_NAMES for n in zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _read_package(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The RDF of a package (``.zip`` or folder) and the bytes of its files, by name relative to the RDF."""
    import yaml

    files: dict[str, bytes] = {}
    try:
        if path.is_dir():
            root = next((path / n for n in RDF_NAMES if (path / n).is_file()), None)
            if root is None:
                raise InputError(f"no {' or '.join(RDF_NAMES)} in the folder", path)
            files = {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}
            rdf_name = root.name
        else:
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/")]
                rdfs = sorted((n for n in names if Path(n).name in RDF_NAMES), key=lambda n: n.count("/"))
                if not rdfs:
                    raise InputError(f"not a bioimage.io package: no {' or '.join(RDF_NAMES)} in the zip", path)
                prefix = rdfs[0][: -len(Path(rdfs[0]).name)]
                files = {n[len(prefix):]: zf.read(n) for n in names if n.startswith(prefix)}
                rdf_name = Path(rdfs[0]).name
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot read the package ({exc})", path) from exc
    try:
        rdf = yaml.safe_load(files[rdf_name])
    except yaml.YAMLError as exc:
        raise InputError(f"{rdf_name} is not valid YAML ({exc})", path) from exc
    if not isinstance(rdf, dict):
        raise InputError(f"{rdf_name} is not a mapping", path)
    return rdf, files


def _source(entry: Any) -> str | None:
    """File name of a v0.5 file description (``{source: ...}``) or a v0.4 plain string."""
    src = entry.get("source") if isinstance(entry, dict) else entry
    return src if isinstance(src, str) else None


def _architecture_name(weights: dict[str, Any]) -> str:
    arch = weights.get("architecture")
    if isinstance(arch, dict):
        return str(arch.get("callable", "?"))
    return str(arch).rsplit(":", 1)[-1] if arch else "?"


def _imported_config(rdf: dict[str, Any], package: Path) -> dict[str, Any]:
    """``config.json`` entries of an imported package: ours from ``config.cellseg_bridge``, else read off the RDF."""
    ours = (rdf.get("config") or {}).get("cellseg_bridge")
    config: dict[str, Any] = dict(ours) if isinstance(ours, dict) else {}
    if "normalize_percentiles" not in config:
        for step in (rdf.get("inputs") or [{}])[0].get("preprocessing") or []:
            name = step.get("id") or step.get("name")
            kwargs = step.get("kwargs") or {}
            if name == "scale_range":
                config["normalize_percentiles"] = [float(kwargs.get("min_percentile", 0.0)),
                                                   float(kwargs.get("max_percentile", 100.0))]
    provenance = dict(config.get("provenance") or {})
    provenance["bioimageio"] = {"package": str(package.resolve()), "name": rdf.get("name"),
                                "format_version": rdf.get("format_version"), "imported": now_iso()}
    config.update(format=FORMAT, provenance=provenance)
    for key in ("weights", "sha256", "size_model", "origin", "nbase", "nout", "kernel_size"):
        config.pop(key, None)
    return config


def import_bioimageio(package: str | os.PathLike, name: str | None = None, *, overwrite: bool = False) -> Path:
    """Import a bioimage.io package of a Cellpose-style network into the model cache.

    Parameters
    ----------
    package : str or path-like
        The package: a ``.zip`` (or an unpacked folder) with ``rdf.yaml`` / ``bioimageio.yaml``
        (format 0.4 or 0.5) and ``pytorch_state_dict`` weights of a Cellpose ``CPnet``-keyed network.
    name : str, optional
        Model name (default: the package's file name without ``.zip``).
    overwrite : bool
        Replace a cached model of that name.

    Returns
    -------
    Path
        The new model folder (as :func:`~cellseg_bridge.nn.model_import.import_model`).

    Raises
    ------
    InputError
        Not a package, not a model, no PyTorch state dict, weights whose sha256 differs from the
        RDF, or weights of another model family (keys that do not fit our network).
    """
    from cellseg_bridge.nn.model_import import import_model

    path = Path(package).expanduser()
    if not path.exists():
        raise InputError("bioimage.io package not found", path)
    rdf, files = _read_package(path)
    if rdf.get("type") != "model":
        raise InputError(f"the package describes a {rdf.get('type')!r}, not a model", path)
    all_weights = rdf.get("weights") or {}
    entry = all_weights.get("pytorch_state_dict")
    if not isinstance(entry, dict):
        raise InputError("no pytorch_state_dict weights (formats: " + (", ".join(all_weights) or "none") +
                         "); only Cellpose-style PyTorch networks can be imported", path)
    wname = _source(entry)
    if not wname or wname not in files:
        raise InputError(f"pytorch_state_dict weights {wname!r} are not in the package", path)
    data = files[wname]
    if entry.get("sha256") and entry["sha256"] != sha256_bytes(data):
        raise InputError(f"{wname}: sha256 differs from the one in the RDF (corrupt package?)", path)
    config = _imported_config(rdf, path)
    with tempfile.TemporaryDirectory(prefix=".cellseg-bioimageio-") as tmp:
        folder = Path(tmp) / "model"
        folder.mkdir()
        weights = folder / "weights.pth"
        weights.write_bytes(data)
        size_name = next((n for n in files if Path(n).name == SIZE_MODEL_NAME), None)
        if size_name is not None:
            (folder / SIZE_MODEL_NAME).write_bytes(files[size_name])
            config["size_model"] = SIZE_MODEL_NAME
        (folder / CONFIG_NAME).write_text(json.dumps({**config, "weights": weights.name}, indent=2), "utf-8")
        try:
            load_checkpoint(weights, "cpu")
        except InputError as exc:
            raise InputError(f"not a Cellpose-style model (architecture {_architecture_name(entry)!r}): "
                             f"{exc.reason}", path) from exc
        except Exception as exc:  # noqa: BLE001 (untrusted bytes: anything may go wrong)
            raise InputError(f"weights {wname} do not load ({type(exc).__name__}: {exc})", path) from exc
        default = path.name[: -len(".zip")] if path.name.lower().endswith(".zip") else path.name
        dest = import_model(folder, name or default, overwrite=overwrite)
    cfg_path = dest / CONFIG_NAME
    written = json.loads(cfg_path.read_text(encoding="utf-8"))
    written["origin"] = {"kind": "bioimageio", "path": str(path.resolve()), "date": now_iso()}
    write_config(dest, written)
    return dest
