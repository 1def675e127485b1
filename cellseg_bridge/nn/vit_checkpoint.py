"""Load any segmentation checkpoint: a Cellpose 2/3 U-Net or a Cellpose 4 Cellpose-SAM network.

:func:`load_network` reads the file once (``torch.load(weights_only=True)``), tells the
families apart by their keys (Cellpose-SAM: ``W2`` and ``encoder.patch_embed.proj.weight``,
:func:`~cellseg_bridge.nn.vit_sam.is_vit_sam_state`) and builds the network;
:func:`vit_sam_from_state` infers a Cellpose-SAM network's size from the tensor shapes, so a
``cpsam`` / ``cpsam_v2`` file, a Cellpose 4 fine-tuned file or a file of another SAM size
(ViT-B, ViT-H, narrower necks) loads without a config. What is refused, with the file named: a patch size
other than 8 or a position embedding for tiles other than 256 px, a ``W2`` that is not the
fixed pixel-shuffle kernel, missing, unexpected or mis-shaped keys (a truncated or edited
file), and DINOv3-based Cellpose 4 files (``cpdino*``: not supported yet).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cellseg_bridge.errors import InputError
from cellseg_bridge.nn.checkpoint import read_config, read_state_dict, unet_from_state
from cellseg_bridge.nn.net import CellposeUNet
from cellseg_bridge.nn.vit_sam import PATCH_SIZE, TILE_SIZE, CellposeSAM, VitSamConfig, is_vit_sam_state, shuffle_kernel

__all__ = ["load_network", "vit_sam_from_state", "infer_vit_config", "FAMILY_UNET", "FAMILY_SAM"]

logger = logging.getLogger(__name__)

FAMILY_UNET = "cellpose-unet"
FAMILY_SAM = "cellpose-sam"
_BLOCK = re.compile(r"^encoder\.blocks\.(\d+)\.")
_MAX_LISTED = 8


def _shape(state: dict[str, torch.Tensor], key: str, path: Path) -> tuple[int, ...]:
    if key not in state:
        raise InputError(f"not a complete Cellpose-SAM state dict: missing key {key}", path)
    return tuple(state[key].shape)


def infer_vit_config(state: dict[str, torch.Tensor], path: Path) -> VitSamConfig:
    """The :class:`VitSamConfig` of a Cellpose-SAM state dict, from its tensor shapes.

    Raises
    ------
    InputError
        For a patch size other than 8, tiles other than 256 px, or missing keys.
    """
    proj = _shape(state, "encoder.patch_embed.proj.weight", path)
    dim = proj[0]
    if proj[1:] != (3, PATCH_SIZE, PATCH_SIZE):
        raise InputError(f"patch embedding {list(proj)}: expected 3 input channels and {PATCH_SIZE} x "
                         f"{PATCH_SIZE} patches (Cellpose-SAM)", path)
    tokens = TILE_SIZE // PATCH_SIZE
    pos = _shape(state, "encoder.pos_embed", path)
    if pos != (1, tokens, tokens, dim):
        raise InputError(f"position embedding {list(pos)}: expected [1, {tokens}, {tokens}, {dim}] "
                         f"(tiles of {TILE_SIZE} px); other tile sizes are not supported", path)
    depth = 1 + max((int(m.group(1)) for k in state if (m := _BLOCK.match(k))), default=-1)
    if depth == 0:
        raise InputError("not a complete Cellpose-SAM state dict: no encoder blocks", path)
    rows = tuple(_shape(state, f"encoder.blocks.{i}.attn.rel_pos_h", path)[0] for i in range(depth))
    head_dim = _shape(state, "encoder.blocks.0.attn.rel_pos_h", path)[1]
    if head_dim <= 0 or dim % head_dim:
        raise InputError(f"relative position tables of width {head_dim} do not divide the width {dim}", path)
    hidden = _shape(state, "encoder.blocks.0.mlp.lin1.weight", path)[0]
    neck = _shape(state, "encoder.neck.0.weight", path)[0]
    out = _shape(state, "out.weight", path)[0]
    if out % PATCH_SIZE**2:
        raise InputError(f"readout out.weight has {out} channels, not a multiple of {PATCH_SIZE**2}", path)
    return VitSamConfig(dim=dim, depth=depth, heads=dim // head_dim, rel_pos_rows=rows,
                        mlp_ratio=hidden / dim, nout=out // PATCH_SIZE**2, neck=neck)


def _check_keys(net: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = net.state_dict()
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {list(state[k].shape)} (expected {list(expected[k].shape)})"
                  for k in expected if k in state and state[k].shape != expected[k].shape]
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("mismatched shapes", mismatched)):
        if items:
            more = f", ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:_MAX_LISTED])}{more}")
    if problems:
        raise InputError("state dict does not fit a Cellpose-SAM network: " + "; ".join(problems), path)


def vit_sam_from_state(
    weights: Path, state: dict[str, torch.Tensor], device: str | torch.device = "cpu"
) -> tuple[CellposeSAM, dict[str, Any]]:
    """The Cellpose-SAM network of a state dict read by :func:`~cellseg_bridge.nn.checkpoint.read_state_dict`.

    Returns
    -------
    net : CellposeSAM
        In eval mode on ``device`` (float32 weights).
    config : dict
        The ``config.json`` beside the file (if it is this file's) updated with the
        architecture (``family``, ``vit``, ``nout``, ``diam_mean``, ``diam_labels``) and ``weights``.
    """
    cfg = infer_vit_config(state, weights)
    net = CellposeSAM(cfg)
    _check_keys(net, state, weights)
    w2 = state["W2"]
    if not torch.equal(w2.float(), shuffle_kernel(cfg.nout, PATCH_SIZE)):
        raise InputError("W2 is not Cellpose-SAM's fixed pixel-shuffle kernel (identity): edited or corrupt file",
                         weights)
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    for key in ("diam_mean", "diam_labels"):
        value = float(getattr(net, key).item())
        if not value > 0:
            raise InputError(f"{key} in the state dict is {value}, not a positive diameter", weights)
    net.to(torch.device(device)).eval()
    config = {**read_config(weights), **net.architecture(), "weights": weights.name}
    logger.info("loaded %s: Cellpose-SAM, %d blocks of width %d, %d heads", weights, cfg.depth, cfg.dim, cfg.heads)
    return net, config


def load_network(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[CellposeUNet | CellposeSAM, dict[str, Any]]:
    """Load a segmentation or restoration network of either family from a checkpoint.

    Parameters
    ----------
    path : str or Path
        Weights file or model folder (see :func:`~cellseg_bridge.nn.checkpoint.load_checkpoint`).
    device : str or torch.device
        Where the network is placed.

    Returns
    -------
    net : CellposeUNet or CellposeSAM
        In eval mode.
    config : dict
        Its config; ``config["family"]`` is ``"cellpose-unet"`` or ``"cellpose-sam"``.

    Raises
    ------
    InputError
        Naming the file: unreadable, truncated or corrupt files, state dicts that fit neither
        family, Cellpose 4 DINOv3 (``cpdino``) files.
    """
    weights, state = read_state_dict(path)
    if "encoder.cls_token" in state or "encoder.storage_tokens" in state:
        raise InputError("this is a Cellpose 4 DINOv3 checkpoint (cpdino): not supported yet; "
                         "Cellpose-SAM (cpsam, cpsam_v2) and Cellpose 2/3 models are", weights)
    if is_vit_sam_state(state):
        return vit_sam_from_state(weights, state, device)
    net, config = unet_from_state(weights, state, device)
    return net, {**config, "family": FAMILY_UNET}
