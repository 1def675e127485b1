"""A headless human-in-the-loop (HITL) project: images, predictions, corrections, cycles.

Long module: the methods of one object (init, next, add, train, status) that share its
manifest and lock; the steps they delegate live in the sibling modules.

Project folder layout (``DIR`` given to :func:`init_project`)::

    DIR/hitl_project.json              the manifest (the only state; replaced atomically)
    DIR/predictions/<model>/<id>_labels.ome.tif, <id>_RoiSet.zip   what `next` wrote
    DIR/corrections/<id>_RoiSet.zip     a copy of the corrected ROIs (as imported; <id>.geojson from QuPath)
    DIR/corrections/<id>_masks.ome.tif  the same, rasterised (what training reads)
    DIR/models/cycle_NNN/               weights.pth, config.json, size_model.npz, curves, cycle.json
    DIR/models/cycle_NNN.partial/       a cycle being trained (or interrupted)
    DIR/cache/flows/                    flow targets, computed once per corrected image

``<model>`` is ``initial`` or ``cycle_NNN``. Images are referenced by absolute
path, size, modification time and sha256 and are never copied or modified.

Held-out rule: corrected images are numbered in the order they are first added
(1, 2, 3, ...); image k is held out for AP when ``k % holdout_every == 0``
(default 3: the 3rd, 6th, ... corrected image), unless ``holdout=True/False``
is given when it is added. An image keeps its split when its corrections are
replaced. Held-out images are never trained on.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cellseg_bridge.config import DEFAULTS, TrainOptions
from cellseg_bridge.errors import InputError
from cellseg_bridge.hitl.corrections import compare_to_prediction, read_correction
from cellseg_bridge.hitl.manifest import (
    FORMAT,
    VERSION,
    check_fingerprint,
    file_fingerprint,
    manifest_path,
    now,
    project_lock,
    read_manifest,
    sha256_file,
    write_manifest,
)
from cellseg_bridge.io.atomic import atomic_output, check_writable
from cellseg_bridge.io.paths import missing_reason

__all__ = ["HitlProject", "NextResult", "AddResult", "init_project", "open_project", "INITIAL"]

logger = logging.getLogger(__name__)

#: Model key of the pretrained model a project starts from.
INITIAL = "initial"
#: Training options a project may override (the rest is the HITL recipe's or fixed by the project).
_FIXED_TRAIN = {"recipe", "pretrained", "n_epochs", "seed", "channel", "nuclear_channel", "val_every"}


@dataclass
class NextResult:
    """What :meth:`HitlProject.next_image` wrote.

    Attributes
    ----------
    image_id : str
        The image's id in the project.
    image : Path
        The image file.
    labels : Path
        Predicted label image (OME-TIFF).
    rois : Path
        Predicted ROIs (``RoiSet.zip``) to open and correct in Fiji.
    model : str
        ``"initial"`` or ``"cycle_NNN"``.
    n_cells : int
        Cells predicted.
    reused : bool
        True when an existing prediction of the same model was returned.
    """

    image_id: str
    image: Path
    labels: Path
    rois: Path
    model: str
    n_cells: int
    reused: bool = False


@dataclass
class AddResult:
    """What :meth:`HitlProject.add_correction` stored.

    Attributes
    ----------
    image_id : str
    split : str
        ``"train"`` or ``"holdout"``.
    n_rois, n_cells : int
        ROIs read and cells they gave.
    changes : dict or None
        ``unchanged``/``reshaped``/``added``/``deleted`` against the prediction, if there was one.
    replaced : bool
        True when earlier corrections of the image were replaced.
    """

    image_id: str
    split: str
    n_rois: int
    n_cells: int
    changes: dict | None
    replaced: bool


def _unique_id(stem: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "image"
    name, k = base, 1
    while name.lower() in used:
        k += 1
        name = f"{base}-{k}"
    used.add(name.lower())
    return name


def _image_stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _describe_image(path: Path) -> dict[str, Any]:
    """Shape and channels of a 2D image; InputError for what a HITL project cannot take."""
    from cellseg_bridge.io.reader import open_image

    img = open_image(path)
    sizes = {d: int(img.sizes[d]) for d in ("T", "C", "Z", "Y", "X")}
    if sizes["T"] > 1 or sizes["Z"] > 1:
        raise InputError(
            f"HITL projects take single 2D images; this one has T={sizes['T']}, Z={sizes['Z']} "
            "(save the planes you want to annotate as separate images)",
            path,
        )
    return {
        "shape": [sizes["Y"], sizes["X"]],
        "channels": sizes["C"],
        "channel_names": [str(c) for c in img.attrs.get("channel_names", [])],
    }


def _check_train_options(options: dict[str, Any] | None) -> dict[str, Any]:
    options = dict(options or {})
    TrainOptions.derive(None, **options)  # unknown names, wrong types, values out of range
    fixed = sorted(set(options) & _FIXED_TRAIN)
    if fixed:
        raise InputError(
            f"training option(s) {', '.join(fixed)} are set by the project itself "
            "(model, epochs, seed, channels, HITL recipe), not through train_options"
        )
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


def init_project(
    directory: str | Path,
    images: list[str | Path],
    *,
    model: str | Path | None = None,
    channel: int | str | None = None,
    nuclear_channel: int | str | None = None,
    diameter: float | None = None,
    n_epochs: int | None = None,
    holdout_every: int | None = None,
    seed: int | None = None,
    train_options: dict[str, Any] | None = None,
) -> HitlProject:
    """Create a HITL project in ``directory`` for ``images``, starting from ``model``.

    Parameters
    ----------
    directory : str or Path
        Project folder (created; must not hold a project already).
    images : list of str or Path
        2D images to annotate, in the order ``next`` offers them. All must have
        the same number of channels. They are referenced, never copied.
    model : str or Path, optional
        Initial (pretrained) model, registry name or checkpoint; default
        ``DEFAULTS.hitl.model``. Every cycle fine-tunes from it.
    channel, nuclear_channel : int or str, optional
        Channels to segment (as for :func:`~cellseg_bridge.segmentation.pipeline.segment`).
    diameter : float, optional
        Cell diameter (pixels) for predictions and held-out AP; None: the
        model's size model, else its training diameter.
    n_epochs : int, optional
        Epochs per cycle (default ``DEFAULTS.hitl.n_epochs``, 100).
    holdout_every : int, optional
        Held-out rule (module docstring); default ``DEFAULTS.hitl.holdout_every``; 0: none.
    seed : int, optional
        Training seed (default ``DEFAULTS.hitl.seed``).
    train_options : dict, optional
        Further :class:`~cellseg_bridge.config.TrainOptions` fields for every
        cycle (e.g. ``batch_size``, ``crop_size``), except those the project sets.

    Returns
    -------
    HitlProject

    Raises
    ------
    InputError
        A project already there, no images, an image that cannot be read or is
        not 2D, images with different channel counts, a model that cannot be
        found or is not a segmentation network, bad options.
    """
    from cellseg_bridge.nn.checkpoint import load_checkpoint
    from cellseg_bridge.nn.registry import resolve_model

    directory = Path(directory).resolve()
    if manifest_path(directory).exists():
        raise InputError("a HITL project already exists here", directory)
    if not images:
        raise InputError("no images given: a HITL project needs the images you want to annotate")
    hd = DEFAULTS.hitl
    n_epochs = hd.n_epochs if n_epochs is None else int(n_epochs)
    holdout_every = hd.holdout_every if holdout_every is None else int(holdout_every)
    if n_epochs < 1:
        raise InputError(f"n_epochs must be >= 1, got {n_epochs}")
    if holdout_every < 0 or holdout_every == 1:
        raise InputError(f"holdout_every must be 0 (no held-out images) or >= 2, got {holdout_every}")
    if diameter is not None and not diameter > 0:
        raise InputError(f"diameter must be positive, got {diameter}")
    extra = _check_train_options(train_options)

    model = hd.model if model is None else model
    model_path = resolve_model(model).resolve()
    net, config = load_checkpoint(model_path, "cpu")
    if int(config.get("nout", 3)) < 3:
        raise InputError("the initial model is not a segmentation network", model_path)
    weights = model_path if model_path.is_file() else model_path / config.get("weights", "weights.pth")

    records: list[dict[str, Any]] = []
    used: set[str] = set()
    seen: dict[str, str] = {}
    for item in images:
        path = Path(item).expanduser()
        if not path.is_file():
            raise InputError(missing_reason(path, "image"), path)
        path = path.resolve()
        if str(path) in seen:
            logger.warning("%s given twice: taken once", path)
            continue
        info = _describe_image(path)
        image_id = _unique_id(_image_stem(path), used)
        seen[str(path)] = image_id
        records.append({"id": image_id, "name": path.name, "file": file_fingerprint(path), **info,
                        "prediction": None, "correction": None})
    counts = sorted({r["channels"] for r in records})
    if len(counts) > 1:
        detail = ", ".join(f"{r['name']}: {r['channels']}" for r in records)
        raise InputError(
            f"the images have different channel counts ({detail}); a channel index would mean "
            "different things in different images: make one project per kind of image"
        )
    check_writable(directory)  # created here; a read-only or full disk is one clear error
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "created": now(),
        "initial_model": {"name": str(model), "path": str(weights), "sha256": sha256_file(weights),
                          "nbase": list(net.nbase), "diam_mean": float(net.diam_mean.item())},
        "options": {
            "channel": DEFAULTS.segment.channel if channel is None else channel,
            "nuclear_channel": nuclear_channel,
            "diameter": diameter,
            "n_epochs": n_epochs,
            "holdout_every": holdout_every,
            "seed": DEFAULTS.hitl.seed if seed is None else int(seed),
            "train_options": extra,
        },
        "images": records,
        "cycles": [],
        "current_model": INITIAL,
        "evaluations": {},
    }
    with project_lock(directory):
        write_manifest(directory, manifest)
    logger.info("HITL project %s: %d image(s), initial model %s", directory, len(records), weights)
    return HitlProject(directory)


def open_project(directory: str | Path) -> HitlProject:
    """Open an existing HITL project (InputError if ``directory`` holds none)."""
    return HitlProject(directory)


class HitlProject:
    """A HITL project on disk (see the module docstring); every change rewrites the manifest atomically.

    Parameters
    ----------
    directory : str or Path
        The project folder.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).resolve()
        self.manifest = read_manifest(self.directory)
        self._models: dict[tuple[str, str], Any] = {}

    # ------------------------------------------------------------------ lookups

    def reload(self) -> None:
        """Re-read the manifest from disk."""
        self.manifest = read_manifest(self.directory)

    @property
    def images(self) -> list[dict[str, Any]]:
        """The image records, in project order."""
        return self.manifest["images"]

    @property
    def options(self) -> dict[str, Any]:
        """The project's options (channels, diameter, epochs, held-out rule, seed, training options)."""
        return self.manifest["options"]

    @property
    def current_model(self) -> str:
        """``"initial"`` or the key of the last completed cycle."""
        return self.manifest["current_model"]

    def model_path(self, key: str) -> Path:
        """Weights of the initial model or of a completed cycle."""
        if key == INITIAL:
            return Path(self.manifest["initial_model"]["path"])
        for cycle in self.manifest["cycles"]:
            if cycle["model"] == key:
                return self.directory / cycle["weights"]
        raise InputError(f"no model {key!r} in this project", self.directory)

    def find_image(self, image: str | Path) -> dict[str, Any]:
        """The record of an image given by path, file name or project id.

        Raises
        ------
        InputError
            The image is not in the project (the message lists what is).
        """
        text = str(image)
        path = Path(text).expanduser()
        if path.exists():
            resolved = str(path.resolve())
            for rec in self.images:
                if rec["file"]["path"] == resolved:
                    return rec
        for key in ("id", "name"):
            hits = [rec for rec in self.images if rec[key] == text or rec[key] == path.name]
            if len(hits) == 1:
                return hits[0]
        known = ", ".join(rec["name"] for rec in self.images[:10]) + (" ..." if len(self.images) > 10 else "")
        raise InputError(f"image is not in the HITL project {self.directory} (its images: {known})", text)

    def corrected(self, split: str | None = None) -> list[dict[str, Any]]:
        """Records with corrections, in the order they were first added (optionally one split)."""
        recs = [r for r in self.images if r["correction"] is not None]
        recs.sort(key=lambda r: r["correction"]["order"])
        return [r for r in recs if split is None or r["correction"]["split"] == split]

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.directory))

    def _load_model(self, key: str, device: str):
        from cellseg_bridge.segmentation.pipeline import load_model

        cache_key = (key, str(device))
        if cache_key not in self._models:
            self._models[cache_key] = load_model(self.model_path(key), device)
        return self._models[cache_key]

    def _read_image(self, rec: dict[str, Any]):
        from cellseg_bridge.io.reader import open_image

        check_fingerprint(rec["file"])
        return open_image(rec["file"]["path"])

    def predict(self, rec: dict[str, Any], key: str, device: str = "auto") -> np.ndarray:
        """Segment an image of the project with model ``key``; returns 2D labels."""
        from cellseg_bridge.segmentation.pipeline import segment

        opts = self.options
        img = self._read_image(rec)
        res = segment(img, self._load_model(key, device), channel=opts["channel"],
                      nuclear_channel=opts["nuclear_channel"], diameter=opts["diameter"])
        return res.labels[0, 0]

    # ------------------------------------------------------------------ next

    def next_image(self, image: str | Path | None = None, *, overwrite: bool = False,
                   device: str = "auto") -> NextResult | None:
        """Segment the next image without corrections and write its labels and RoiSet.zip.

        Parameters
        ----------
        image : str or Path, optional
            A particular image (path, name or id) instead of the next unannotated one.
        overwrite : bool
            Predict again even if the current model already predicted this image.
        device : str
            Where the network runs.

        Returns
        -------
        NextResult or None
            None when every image has corrections.
        """
        from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip
        from cellseg_bridge.io.writers import write_labels

        with project_lock(self.directory):
            self.reload()
            if image is not None:
                rec = self.find_image(image)
            else:
                rec = next((r for r in self.images if r["correction"] is None), None)
                if rec is None:
                    return None
            key = self.current_model
            pred = rec.get("prediction")
            if (pred and pred["model"] == key and not overwrite
                    and (self.directory / pred["labels"]).is_file() and (self.directory / pred["rois"]).is_file()):
                check_fingerprint(rec["file"])
                return NextResult(rec["id"], Path(rec["file"]["path"]), self.directory / pred["labels"],
                                  self.directory / pred["rois"], key, int(pred["n_cells"]), reused=True)
            labels = self.predict(rec, key, device)
            folder = self.directory / "predictions" / key
            labels_path = folder / f"{rec['id']}_labels.ome.tif"
            rois_path = folder / f"{rec['id']}_RoiSet.zip"
            write_labels(labels, labels_path)
            write_roi_zip(labels_to_rois(labels), rois_path)
            n_cells = int(np.unique(labels[labels > 0]).size)
            rec["prediction"] = {"model": key, "labels": self._rel(labels_path), "rois": self._rel(rois_path),
                                 "n_cells": n_cells, "created": now()}
            write_manifest(self.directory, self.manifest)
        logger.info("%s: %d cells predicted by %s -> %s", rec["name"], n_cells, key, rois_path)
        return NextResult(rec["id"], Path(rec["file"]["path"]), labels_path, rois_path, key, n_cells)

    # ------------------------------------------------------------------ add

    def add_correction(self, image: str | Path, rois: str | Path, *, holdout: bool | None = None,
                       allow_empty: bool = False) -> AddResult:
        """Import corrected ROIs of an image (a copy is kept; the inputs are not modified).

        Parameters
        ----------
        image : str or Path
            The image (path, file name or project id).
        rois : str or Path
            ``RoiSet.zip`` saved from Fiji's ROI Manager after correcting, or a QuPath ``.geojson``
            (kept as ``corrections/<id>.geojson``).
        holdout : bool, optional
            Hold the image out for AP (True) or train on it (False); default: the
            project's rule for a new correction, the earlier split for a replacement.
        allow_empty : bool
            Accept corrections without cells (an image that truly has none).

        Returns
        -------
        AddResult

        Raises
        ------
        InputError
            Image not in the project or changed since; ROI file unreadable,
            corrupt, empty, or not fitting the image (see
            :mod:`~cellseg_bridge.hitl.corrections`).
        """
        from cellseg_bridge.io.writers import write_labels

        rois = Path(rois).expanduser().resolve()
        with project_lock(self.directory):
            self.reload()
            rec = self.find_image(image)
            check_fingerprint(rec["file"])
            corr = read_correction(rois, tuple(rec["shape"]), image_name=rec["name"], allow_empty=allow_empty)
            changes = None
            pred = rec.get("prediction")
            if pred and (self.directory / pred["labels"]).is_file():
                import tifffile

                predicted = np.asarray(tifffile.imread(self.directory / pred["labels"])).reshape(rec["shape"])
                changes = compare_to_prediction(corr.labels, predicted).to_dict()
            old = rec["correction"]
            if old is not None:
                order = old["order"]
                split = old["split"] if holdout is None else ("holdout" if holdout else "train")
            else:
                order = 1 + max((r["correction"]["order"] for r in self.corrected()), default=0)
                every = int(self.options["holdout_every"])
                if holdout is None:
                    split = "holdout" if every and order % every == 0 else "train"
                else:
                    split = "holdout" if holdout else "train"
            folder = self.directory / "corrections"
            zip_copy = folder / (f"{rec['id']}.geojson" if rois.suffix.lower() == ".geojson" else f"{rec['id']}_RoiSet.zip")
            labels_path = folder / f"{rec['id']}_masks.ome.tif"
            with atomic_output(zip_copy) as tmp:
                shutil.copyfile(rois, tmp)
            write_labels(corr.labels, labels_path)
            rec["correction"] = {
                "rois": self._rel(zip_copy), "labels": self._rel(labels_path), "source": str(rois),
                "sha256": sha256_file(zip_copy), "n_rois": corr.n_rois, "n_cells": corr.n_cells,
                "ignored_rois": corr.ignored[:50], "split": split, "order": order, "changes": changes,
                "prediction_model": pred["model"] if pred else None, "added": now(),
            }
            write_manifest(self.directory, self.manifest)
        logger.info("%s: %d cells from %s (%s)%s", rec["name"], corr.n_cells, rois.name, split,
                    f", changes {changes}" if changes else "")
        return AddResult(rec["id"], split, corr.n_rois, corr.n_cells, changes, old is not None)

    # ------------------------------------------------------------------ train and status

    def train(self, *, n_epochs: int | None = None, fresh: bool = False, progress: bool = False,
              device: str = "auto", evaluate: bool = True) -> dict[str, Any]:
        """Train the next cycle (see :func:`cellseg_bridge.hitl.cycle.train_cycle`)."""
        from cellseg_bridge.hitl.cycle import train_cycle

        return train_cycle(self, n_epochs=n_epochs, fresh=fresh, progress=progress, device=device,
                           evaluate=evaluate)

    def status(self, *, evaluate: bool = True, device: str = "auto") -> dict[str, Any]:
        """Project summary (see :func:`cellseg_bridge.hitl.status.project_status`)."""
        from cellseg_bridge.hitl.status import project_status

        return project_status(self, evaluate=evaluate, device=device)
