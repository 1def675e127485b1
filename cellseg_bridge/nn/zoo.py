"""The Cellpose model zoo (Cellpose 3 and Cellpose 4): names, file names, size models, kinds (a table, no I/O).

:data:`ZOO` maps the names users type (``nuclei``, ``cyto3``, ``denoise_cyto3``, ...)
to Cellpose's file names on its model server and in ``~/.cellpose/models``;
:func:`zoo_model_for` recognises a zoo file by its name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cellseg_bridge.nn.store import folder_weights

#: Environment variable overriding the base URL that :func:`download_model` uses.
MODEL_URL_ENV = "CELLSEG_BRIDGE_MODEL_URL"

#: The Cellpose model server (Cellpose 3.1's ``_MODEL_URL``); a file is at ``<base>/<file name>``.
DEFAULT_MODEL_URL = "https://www.cellpose.org/models/"

#: Where Cellpose 4 (4.2's ``_MODEL_URL``) downloads its Cellpose-SAM models from.
CELLPOSE4_MODEL_URL = "https://huggingface.co/mouseland/cellpose-sam/resolve/main/"

#: Cellpose 4 models of a family not supported yet (DINOv3 backbone, 384-px tiles).
UNSUPPORTED_CELLPOSE4 = ("cpdino", "cpdino-vitb")

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
    generation : str
        ``"cellpose3"`` (U-Net, Cellpose 2/3) or ``"cellpose4"`` (Cellpose-SAM transformer).
    base_url : str or None
        Where the file is downloaded from, when not :data:`DEFAULT_MODEL_URL`.
    """

    name: str
    filename: str
    size_filename: str | None
    kind: str
    diam_mean: float
    generation: str = "cellpose3"
    base_url: str | None = None

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
    for name in ("cpsam", "cpsam_v2"):  # Cellpose 4: stored under their own names
        table[name] = ZooModel(name=name, filename=name, size_filename=None, kind="segmentation",
                               diam_mean=30.0, generation="cellpose4", base_url=CELLPOSE4_MODEL_URL)
    return table

#: Cellpose 3 and 4 zoo: our name -> :class:`ZooModel`.
ZOO: dict[str, ZooModel] = _zoo_table()

#: Verified sha256 of zoo weight files, by model name. Empty on purpose: only values
#: checked against a real download belong here. Without an entry (and without
#: ``expected_sha256``) a download is kept unverified and its hash recorded.
KNOWN_SHA256: dict[str, str] = {}

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
        path = folder_weights(path)[0]
    return next((z for z in ZOO.values() if z.filename == path.name), None)


__all__ = [
    "CELLPOSE4_MODEL_URL",
    "DEFAULT_MODEL_URL",
    "KNOWN_SHA256",
    "MODEL_URL_ENV",
    "UNSUPPORTED_CELLPOSE4",
    "ZOO",
    "ZooModel",
    "zoo_model_for",
]
