"""bioimage.io model packages of our segmentation networks: export and import.

:func:`export_bioimageio` writes one ``.zip`` that tools of the bioimage.io world
(``bioimageio.core``, deepImageJ, JDLL) run without this package:

- ``rdf.yaml``: the resource description, format 0.5 (:data:`FORMAT_VERSION`);
- ``weights.pth``: the state dict as we ship it (Cellpose ``CPnet`` keys), with
  ``cellpose_unet.py`` as its architecture: the text of :mod:`cellseg_bridge.nn.net`
  (it imports torch only) plus :data:`_ENTRY_POINT`, a subclass whose ``forward``
  returns the flows only;
- ``weights.torchscript``: the same network traced (any H, W that are multiples of 16);
- ``test_input.npy`` / ``test_output.npy``: a raw image crop and the network's output
  after the declared preprocessing;
- ``cover.png`` (the test image and the outlines of the masks made from that output),
  ``README.md`` (the model card and how to turn the outputs into masks).

The preprocessing is the spec's ``scale_range`` per channel with our percentiles
(1, 99), i.e. our normalisation up to the spec's ``eps`` (1e-6) in the divisor.
The spec (0.5) has no operation for Cellpose's flow dynamics: the output tensor is
``flow_y, flow_x, cellprob`` (flows x5, cellprob as logits), and the README and the
description say so; :func:`import_bioimageio` turns the package back into a model
that ``cellseg segment`` runs with its masks path. Our ``config.json`` travels in
``config.cellseg_bridge`` of the RDF (provenance included).

Import (:mod:`cellseg_bridge.nn.bioimageio_import`) accepts packages of Cellpose-style networks, ours or others' (Cellpose's own
export also ships a ``CPnet`` state dict): weights are read with
``torch.load(weights_only=True)`` and must fit :class:`~cellseg_bridge.nn.net.CellposeUNet`;
anything else (another model family, no PyTorch state dict) is an :class:`InputError`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cellseg_bridge.errors import InputError
from cellseg_bridge.io.atomic import atomic_output
from cellseg_bridge.nn import net as net_module
from cellseg_bridge.nn.checkpoint import load_checkpoint
from cellseg_bridge.nn.store import SIZE_MODEL_NAME, size_model_path

logger = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "RDF_NAMES", "export_bioimageio", "scale_range", "sha256_bytes"]

#: RDF format written (bioimage.io model spec 0.5).
FORMAT_VERSION = "0.5.4"
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
ARCHITECTURE_FILE = "cellpose_unet.py"
ENTRY_CALLABLE = "CellposeFlowsNet"
#: Appended to the text of ``nn/net.py`` in the package: the network with one output.
_ENTRY_POINT = f'''

class {ENTRY_CALLABLE}(CellposeUNet):
    """bioimage.io entry point: ``forward`` gives ``[B, nout, H, W]`` (flow_y, flow_x, cellprob) only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Flows x5 and cell probability logits; the style vector is dropped."""
        return super().forward(x)[0]
'''
_TEST_SIZE = 256
_SIZE_STEP = 16
_CITE = [
    {"text": "Stringer, Wang, Michaelos, Pachitariu (2021). Cellpose: a generalist algorithm for cellular "
             "segmentation. Nature Methods 18, 100-106.", "doi": "10.1038/s41592-020-01018-x"},
    {"text": "Pachitariu, Stringer (2022). Cellpose 2.0: how to train your own model. Nature Methods 19, "
             "1634-1641.", "doi": "10.1038/s41592-022-01663-4"},
]
_POSTPROCESSING_NOTE = (
    "Outputs are the network's raw maps: flow_y and flow_x (5 x the unit flows towards each cell's centre) "
    "and cellprob (logits). bioimage.io spec 0.5 has no operation for Cellpose's flow dynamics, so masks are "
    "not made inside the package: follow the flows of pixels with cellprob > 0 for 200 Euler steps and group "
    "pixels that meet (Cellpose's dynamics), or run `cellseg models import THIS.zip` and `cellseg segment`, "
    "which does that (and the rescaling to the training diameter) for you."
)
_VALIDATION = (
    "The package's test tensors are the network's output on a generated image of nuclei after the declared "
    "preprocessing; `bioimageio.core` reproduces them from both weight formats (cellseg_bridge's tests). "
    "Segmentation quality of the masks made from these outputs: see the scores in the model card above."
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cellseg-bridge")
    except PackageNotFoundError:
        return "unknown"


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def architecture_source() -> str:
    """The self-contained architecture file of a package: ``nn/net.py`` plus the one-output entry point."""
    return Path(net_module.__file__).read_text(encoding="utf-8") + _ENTRY_POINT


def _entry_network(net: net_module.CellposeUNet) -> torch.nn.Module:
    """Our network as the package's entry point (same state dict, flows only)."""
    namespace: dict[str, Any] = {}
    exec(compile(architecture_source(), ARCHITECTURE_FILE, "exec"), namespace)  # noqa: S102 (our own source)
    arch = net.architecture()
    entry = namespace[ENTRY_CALLABLE](arch["nbase"], arch["nout"], arch["kernel_size"], arch["diam_mean"])
    entry.load_state_dict(net.state_dict(), strict=True)
    return entry.eval()


def scale_range(image: np.ndarray, low: float, high: float, eps: float = 1e-6) -> np.ndarray:
    """The spec's ``scale_range`` per channel of ``(B, C, Y, X)``: ``(x - p_low) / (p_high - p_low + eps)``."""
    x = image.astype(np.float32)
    lo = np.percentile(x, low, axis=(2, 3), keepdims=True).astype(np.float32)
    hi = np.percentile(x, high, axis=(2, 3), keepdims=True).astype(np.float32)
    return ((x - lo) / (hi - lo + np.float32(eps))).astype(np.float32)


def _test_image(nchan: int, image: np.ndarray | None, diameter: float) -> np.ndarray:
    """``(1, nchan, 256, 256)`` float32 raw test input: ``image`` cropped (default: generated nuclei of the
    network's diameter, seed 0), other channels zero."""
    if image is None:
        from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei

        image = synthetic_nuclei(NucleiSpec(shape=(_TEST_SIZE, _TEST_SIZE), diameter=diameter), seed=0)[0]
    plane = np.asarray(image, dtype=np.float32)
    while plane.ndim > 2:
        plane = plane[0]
    n = _SIZE_STEP * (min(_TEST_SIZE, *plane.shape) // _SIZE_STEP)
    if n < _SIZE_STEP:
        raise InputError(f"test image {plane.shape} is smaller than {_SIZE_STEP} pixels")
    out = np.zeros((1, nchan, n, n), np.float32)
    out[0, 0] = plane[:n, :n]
    return out


def model_card(name: str, docs: Path | None = None) -> str | None:
    """The model card section of ``docs/models.md`` for ``name`` (heading with `` `name` `` and "model card")."""
    docs = docs or Path(__file__).resolve().parents[2] / "docs" / "models.md"
    if not docs.is_file():
        return None
    lines = docs.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(#+) .*`" + re.escape(name) + r"`.*model card", line)
        if m:
            level = len(m.group(1))
            end = next((j for j in range(i + 1, len(lines))
                        if re.match("^#{1," + str(level) + "} ", lines[j])), len(lines))
            return "\n".join(lines[i:end]).strip() + "\n"
    return None


def _readme(name: str, config: dict[str, Any]) -> str:
    card = model_card(name)
    if card is None:
        card = f"# `{name}`\n\nProvenance (from the model's config.json):\n\n```json\n" \
               f"{json.dumps(config.get('provenance') or {}, indent=2)}\n```\n"
    return (f"{card}\n## Using this package\n\n"
            f"Input: `raw`, (batch, channel, y, x); channel 0 the segmented channel"
            f"{', channel 1 the nuclear channel (zeros if none)' if config['nbase'][0] == 2 else ''}; "
            f"scale the image so that objects are about {config['diam_mean']:.3g} px across "
            f"(the network's working diameter). Preprocessing: percentiles "
            f"{config['normalize_percentiles'][0]:g} and {config['normalize_percentiles'][1]:g} of each channel "
            "to 0 and 1.\n\n" + _POSTPROCESSING_NOTE + "\n\n## Validation\n\n" + _VALIDATION
            + "\n\nExported by cellseg_bridge " + _version() + ".\n")


def _cover(test_input: np.ndarray, output: np.ndarray) -> bytes:
    """PNG: the test image beside its mask outlines (masks from the output by our flow dynamics)."""
    from PIL import Image

    from cellseg_bridge.core.dynamics import compute_masks
    from cellseg_bridge.io.overlay import outline_overlay

    masks = compute_masks(output[0, :2], output[0, 2])
    overlay = outline_overlay(test_input[0, 0], masks)
    gray = np.repeat(outline_overlay(test_input[0, 0], np.zeros_like(masks))[..., :1], 3, axis=2)
    buf = io.BytesIO()
    Image.fromarray(np.concatenate([gray, overlay], axis=1)).save(buf, format="PNG")
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _tif(array: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, array, photometric="minisblack", metadata={"axes": "CYX"})
    return buf.getvalue()


def _torchscript(entry: torch.nn.Module, example: torch.Tensor) -> bytes:
    # the input-size checks of ``CellposeUNet.check_input`` run once, at trace time (any multiple of 16 is valid);
    # torch 2.13 warns that TorchScript is deprecated; bioimage.io's ``torchscript`` weights still are TorchScript
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(entry, example, check_trace=False)
        torch.jit.save(traced, buf)
    return buf.getvalue()


def _rdf(name: str, config: dict[str, Any], files: dict[str, bytes], low: float, high: float) -> dict[str, Any]:
    nchan, nout = config["nbase"][0], config["nout"]
    channels = ["cyto", "nuclei"][:nchan] if nchan <= 2 else [f"c{i}" for i in range(nchan)]
    space = {"min": _SIZE_STEP, "step": _SIZE_STEP}
    out_names = ["flow_y", "flow_x", "cellprob"] if nout == 3 else [f"out{i}" for i in range(nout)]
    torch_version = torch.__version__.split("+")[0]
    arch_kwargs = {k: config[k] for k in ("nbase", "nout", "kernel_size", "diam_mean")}
    ours = {k: v for k, v in config.items() if k not in ("weights", "sha256")}
    return {
        "type": "model",
        "format_version": FORMAT_VERSION,
        "name": f"cellseg_bridge {name}",
        "description": f"Cellpose-style U-Net '{name}' (cellseg_bridge): flows and cell probability for instance "
                       "segmentation; masks by Cellpose flow dynamics (not part of the package, see README).",
        "authors": [{"name": "cellseg_bridge contributors"}],
        "cite": _CITE,
        "license": "BSD-3-Clause",
        "tags": ["cellpose", "cellseg_bridge", "instance-segmentation", "2d", "pytorch", "unet"],
        "documentation": "README.md",
        "covers": ["cover.png"],
        "version": "1.0",
        "inputs": [{
            "id": "raw",
            "description": "raw image; channel 0 the segmented channel"
                           + ("; channel 1 the nuclear channel (zeros if none)" if nchan == 2 else ""),
            "axes": [{"type": "batch"}, {"type": "channel", "channel_names": channels},
                     {"type": "space", "id": "y", "size": space}, {"type": "space", "id": "x", "size": space}],
            "test_tensor": {"source": "test_input.npy", "sha256": sha256_bytes(files["test_input.npy"])},
            "sample_tensor": {"source": "sample_input.tif", "sha256": sha256_bytes(files["sample_input.tif"])},
            "data": {"type": "float32"},
            "preprocessing": [{"id": "scale_range", "kwargs": {
                "axes": ["y", "x"], "min_percentile": low, "max_percentile": high}}],
        }],
        "outputs": [{
            "id": "flows",
            "description": "flow_y, flow_x (x5), cellprob (logits); masks: Cellpose flow dynamics (README)",
            "axes": [{"type": "batch"}, {"type": "channel", "channel_names": out_names},
                     {"type": "space", "id": "y", "size": {"tensor_id": "raw", "axis_id": "y"}},
                     {"type": "space", "id": "x", "size": {"tensor_id": "raw", "axis_id": "x"}}],
            "test_tensor": {"source": "test_output.npy", "sha256": sha256_bytes(files["test_output.npy"])},
            "sample_tensor": {"source": "sample_output.tif", "sha256": sha256_bytes(files["sample_output.tif"])},
            "data": {"type": "float32"},
        }],
        "weights": {
            "pytorch_state_dict": {
                "source": "weights.pth", "sha256": sha256_bytes(files["weights.pth"]),
                "architecture": {"source": ARCHITECTURE_FILE, "sha256": sha256_bytes(files[ARCHITECTURE_FILE]),
                                 "callable": ENTRY_CALLABLE, "kwargs": arch_kwargs},
                "pytorch_version": torch_version,
            },
            "torchscript": {
                "source": "weights.torchscript", "sha256": sha256_bytes(files["weights.torchscript"]),
                "pytorch_version": torch_version, "parent": "pytorch_state_dict",
            },
        },
        **({"attachments": [{"source": SIZE_MODEL_NAME, "sha256": sha256_bytes(files[SIZE_MODEL_NAME])}]}
           if SIZE_MODEL_NAME in files else {}),
        "config": {"cellseg_bridge": {**ours, "exported_by": f"cellseg_bridge {_version()}",
                                      "postprocessing": "cellpose-flow-dynamics (not in the package)"}},
    }


def _model_name(text: str, weights: Path) -> str:
    """A model name as given; for a path, its folder's name (model folders, ``weights.pth``) or the file's stem."""
    if os.sep not in text and not Path(text).exists():
        return text
    if weights.is_file() and weights.stem == "weights":
        return weights.parent.name
    return weights.stem


def export_bioimageio(model: str | os.PathLike, out: str | os.PathLike, *, test_image: np.ndarray | None = None,
                      overwrite: bool = False) -> Path:
    """Write model ``model`` (a name or path) as a bioimage.io package ``out`` (.zip).

    Parameters
    ----------
    model : str or path-like
        A model name (bundled, cached, zoo) or checkpoint path; segmentation
        networks only (3 outputs).
    out : str or path-like
        The ``.zip`` to write (atomically).
    test_image : ndarray, optional
        2D image whose top-left 256 x 256 crop becomes the test input
        (default: generated nuclei of the network's diameter).
    overwrite : bool
        Replace an existing ``out``.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    InputError
        Unknown model, a restoration network, ``out`` not a .zip or existing.
    """
    from cellseg_bridge.nn.registry import resolve_model

    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise InputError("a bioimage.io package is a .zip file", out)
    if out.exists() and not overwrite:
        raise InputError("output exists (pass --overwrite to replace it)", out)
    weights = resolve_model(model)
    net, config = load_checkpoint(weights, "cpu")
    if config["nout"] != 3:
        raise InputError(f"only segmentation networks (3 outputs) are exported; this one has {config['nout']}",
                         weights)
    name = _model_name(os.fspath(model), Path(weights))
    config.setdefault("normalize_percentiles", [1.0, 99.0])
    low, high = (float(p) for p in config["normalize_percentiles"])
    entry = _entry_network(net)
    test_input = _test_image(config["nbase"][0], test_image, float(config["diam_mean"]))
    with torch.no_grad():
        test_output = entry(torch.from_numpy(scale_range(test_input, low, high))).numpy()
    weights_file = Path(weights) if Path(weights).is_file() else Path(weights) / config["weights"]
    files = {
        "weights.pth": weights_file.read_bytes(),
        ARCHITECTURE_FILE: architecture_source().encode("utf-8"),
        "weights.torchscript": _torchscript(entry, torch.from_numpy(scale_range(test_input, low, high))),
        "test_input.npy": _npy(test_input),
        "test_output.npy": _npy(test_output.astype(np.float32)),
        "sample_input.tif": _tif(test_input[0]),
        "sample_output.tif": _tif(test_output[0].astype(np.float32)),
        "cover.png": _cover(test_input, test_output),
        "README.md": _readme(name, config).encode("utf-8"),
    }
    size = size_model_path(weights_file)
    if size is not None:
        files[SIZE_MODEL_NAME] = size.read_bytes()
    import yaml

    files["rdf.yaml"] = yaml.safe_dump(_rdf(name, config, files, low, high), sort_keys=False).encode("utf-8")
    with atomic_output(out) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for fname, data in files.items():
            zf.writestr(fname, data)
    logger.info("exported %s as bioimage.io package %s", weights, out)
    return out
