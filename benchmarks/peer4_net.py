"""Build Cellpose 4.2.1.1's own Cellpose-SAM network with seeded random weights (peer side).

Run with the Cellpose 4 peer's interpreter (``bash benchmarks/peer4_env.sh``); imported by
``peer4_golden.py`` and ``peer4_side.py``. ``cellpose.vit.CPSAM`` always builds SAM's ViT-L
encoder through ``segment_anything.sam_model_registry["vit_l"]`` and then adapts it (patch
size 8, position embedding for 256-px tiles, global attention everywhere, readout). To get a
*small* network of the same family for committed golden data, :func:`small_encoder_registry`
swaps the registry entry for a builder of a narrow ``ImageEncoderViT`` while ``CPSAM`` is
constructed, so every adaptation step is still Cellpose 4's own code.

SAM initialises the position embedding and the relative-position tables with zeros; the
weights here are then overwritten with seeded normal noise so that those paths matter.

A random network's flows point nowhere, so Cellpose's dynamics find no cells and a mask
comparison would test nothing. :func:`fit_readout` therefore sets the last layer only (the 1x1
``out`` convolution, a linear map of the neck's features) by ridge regression of the random
encoder's features onto Cellpose's own flow and cell-probability targets of a few annotated
training images; everything before it stays random. The result finds nucleus-like masks.
"""

from __future__ import annotations

import contextlib
import sys
from functools import partial
from pathlib import Path

# torchvision's compiled ops do not load with torch 2.13 CPU here: see peer4_env.sh.
sys.path.insert(0, str(Path(__file__).resolve().parent / "peer4_stub"))

import torch  # noqa: E402

#: The small encoder of the golden data: SAM layout, 3 blocks (the last global in SAM), 48 wide, neck 64.
SMALL = {"embed_dim": 48, "depth": 3, "num_heads": 3, "global_attn_indexes": (2,), "out_chans": 64}


@contextlib.contextmanager
def small_encoder_registry(spec: dict = SMALL):
    """While active, ``CPSAM()`` builds its encoder from ``spec`` instead of ViT-L."""
    import cellpose.vit as vit
    from segment_anything.modeling import ImageEncoderViT

    class _Sam:
        def __init__(self):
            self.image_encoder = ImageEncoderViT(
                img_size=1024, patch_size=16, in_chans=3, mlp_ratio=4.0, qkv_bias=True,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), act_layer=torch.nn.GELU,
                use_abs_pos=True, use_rel_pos=True, window_size=14, **spec)

    registry = vit.sam_model_registry
    saved = registry["vit_l"]
    registry["vit_l"] = lambda checkpoint=None: _Sam()
    try:
        yield
    finally:
        registry["vit_l"] = saved


def randomise(net: torch.nn.Module, seed: int, residual_scale: float = 1.0) -> None:
    """Seeded noise in every trainable tensor; ``W2`` and the diameters are left as built.

    Scales keep a random deep network's activations in range: weights ``N(0, 1/fan_in)``,
    biases and LayerNorm offsets ``N(0, 0.05)``, LayerNorm gains ``1 + N(0, 0.1)``, position
    tables ``N(0, 0.5)``. ``residual_scale`` multiplies the weights that write into the
    residual stream (``attn.proj``, ``mlp.lin2``): a deep random stack (ViT-L) otherwise
    forgets its input, and no readout can then find cells.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if not p.requires_grad:
                continue
            noise = torch.randn(p.shape, generator=gen)
            if "rel_pos" in name or "pos_embed" in name:
                p.copy_(0.5 * noise)
            elif p.ndim == 1 and ("norm" in name or name.startswith("encoder.neck.1") or name.startswith("encoder.neck.3")):
                p.copy_((1.0 + 0.1 * noise) if name.endswith("weight") else 0.05 * noise)
            elif p.ndim == 1:
                p.copy_(0.05 * noise)
            else:
                fan_in = p[0].numel()
                scale = residual_scale if name.endswith(("attn.proj.weight", "mlp.lin2.weight")) else 1.0
                p.copy_(scale * noise / fan_in**0.5)


def _features(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The neck's output ``(B, F, 32, 32)`` of Cellpose 4's forward, captured with a hook."""
    got = {}
    handle = net.encoder.neck.register_forward_hook(lambda m, i, o: got.setdefault("f", o))
    with torch.no_grad():
        net(x)
    handle.remove()
    return got["f"]


def fit_readout(net: torch.nn.Module, tiles: list, labels: list, ridge: float = 1e-2) -> None:
    """Set ``net.out`` by ridge regression onto Cellpose targets of annotated 256 x 256 tiles.

    Parameters
    ----------
    tiles : list of ndarray (3, 256, 256)
        Normalised images (Cellpose's ``normalize_img`` output, channels first).
    labels : list of ndarray (256, 256)
        Their instance labels; targets are Cellpose 4's ``masks_to_flows_gpu`` unit flows
        x 5 and a cell-probability logit of +4 inside cells, -4 outside.
    """
    import numpy as np
    from cellpose import dynamics

    ps = net.ps
    feats, targets = [], []
    for img, lab in zip(tiles, labels):
        f = _features(net, torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None])[0]
        nf, ty, tx = f.shape
        feats.append(f.permute(1, 2, 0).reshape(-1, nf))
        mu = dynamics.masks_to_flows_gpu(lab.astype(np.int64), device=torch.device("cpu"))[0]
        t = np.concatenate([5.0 * mu, np.where(lab > 0, 4.0, -4.0)[None]], 0).astype(np.float32)
        # channel c * ps**2 + i * ps + j of token (y, x) holds pixel (ps * y + i, ps * x + j) of map c
        t = t.reshape(3, ty, ps, tx, ps).transpose(1, 3, 0, 2, 4).reshape(ty * tx, -1)
        targets.append(torch.from_numpy(t))
    a = torch.cat(feats).double()
    a = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype)], 1)
    b = torch.cat(targets).double()
    w = torch.linalg.solve(a.T @ a + ridge * len(a) * torch.eye(a.shape[1], dtype=a.dtype), a.T @ b)
    with torch.no_grad():
        net.out.weight.copy_(w[:-1].T.float().reshape(net.out.weight.shape))
        net.out.bias.copy_(w[-1].float())


def build(seed: int, small: bool = True, residual_scale: float = 1.0) -> torch.nn.Module:
    """Cellpose 4's ``CPSAM`` (float32), small or ViT-L, with seeded random weights."""
    from cellpose.vit import CPSAM

    ctx = small_encoder_registry() if small else contextlib.nullcontext()
    with ctx:
        net = CPSAM(dtype=torch.float32)
    randomise(net, seed, residual_scale)
    return net.eval()
