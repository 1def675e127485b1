"""The Cellpose-SAM network (Cellpose 4's ``cpsam`` models): a ViT encoder, a neck, a pixel readout.

The architecture, with the state-dict keys of Cellpose 4.2 (so its ``cpsam`` / ``cpsam_v2``
files load unchanged and our fine-tuned files load into Cellpose 4):

* ``encoder.patch_embed.proj``: a ``patch x patch`` convolution with stride ``patch`` (8) from
  3 channels to ``dim`` (1024 for ViT-L): a 256-px tile becomes 32 x 32 tokens;
* ``encoder.pos_embed`` ``(1, 32, 32, dim)``: absolute position embedding, added once;
* ``encoder.blocks.{i}``: pre-norm transformer blocks, **global** attention over all tokens
  in every block, with SAM's decomposed relative position bias: per block two tables
  ``attn.rel_pos_h`` / ``attn.rel_pos_w`` of ``(L, head_dim)``, linearly resampled to
  ``2 * 32 - 1`` rows when ``L`` differs (SAM's windowed blocks have ``L = 27``, its global
  ones 127; Cellpose 4 keeps those shapes and resamples at run time, so do we); the bias of
  query ``(qy, qx)`` and key ``(ky, kx)`` is ``q . Rh[qy - ky] + q . Rw[qx - kx]``;
  ``mlp.lin1`` / ``mlp.lin2`` with exact GELU; LayerNorm eps 1e-6;
* ``encoder.neck``: 1x1 conv to 256 (the neck width), channel LayerNorm, 3x3 conv, channel LayerNorm (no biases
  in the convolutions);
* ``out``: 1x1 conv to ``nout * patch**2`` channels, then ``W2``, a fixed 0/1 transposed
  convolution with stride ``patch`` that places channel ``c * patch**2 + i * patch + j`` at
  pixel ``(i, j)`` of output channel ``c``: a pixel shuffle, which is what we run
  (``W2`` is kept as a frozen parameter for the state-dict keys and checked on load);
* ``diam_mean``, ``diam_labels``: frozen one-element parameters (30).

Speed: in bfloat16 / float16 the whole network runs in that dtype (:meth:`CellposeSAM.inference_copy`,
as Cellpose 4 does), and the attention is :func:`torch.nn.functional.scaled_dot_product_attention` with the
relative-position bias as its additive mask (one fused kernel, no explicit softmax matrix in
Python); the resampled tables are cached in eval mode. Training drops whole blocks at random
per sample (``rdrop``: block ``i`` of ``n`` is skipped with probability ``rdrop * i / (n - 1)``),
as Cellpose 4 trains.

:data:`VIT_CONFIGS` names the sizes: ``vit_l`` (the released models), ``vit_b``, ``vit_h`` and
``tiny`` (2 blocks, 32 wide, neck 32: tests). Other sizes are read from a file's shapes
(:mod:`cellseg_bridge.nn.vit_checkpoint`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VitSamConfig", "VIT_CONFIGS", "CellposeSAM", "TILE_SIZE", "PATCH_SIZE", "is_vit_sam_state"]

#: Side of the tiles the network was trained on (its position embedding is for 32 x 32 tokens).
TILE_SIZE = 256
#: Side of one token in pixels.
PATCH_SIZE = 8
#: Width of the style vector ``forward`` returns (zeros: this network has no style).
STYLE_WIDTH = 256
_EPS = 1e-6


@dataclass(frozen=True)
class VitSamConfig:
    """The size of a Cellpose-SAM network.

    Attributes
    ----------
    dim : int
        Token width (``embed_dim``).
    depth : int
        Number of transformer blocks.
    heads : int
        Attention heads per block.
    rel_pos_rows : tuple of int
        Rows of each block's relative-position tables as stored (SAM: 27 in windowed
        blocks, 127 in its global ones; any value is resampled to ``2 * tokens - 1``).
    mlp_ratio : float
        Hidden width of the MLP over ``dim``.
    nout : int
        Output maps (dY, dX, cell probability).
    neck : int
        Channels of the neck (SAM: 256).
    """

    dim: int
    depth: int
    heads: int
    rel_pos_rows: tuple[int, ...]
    mlp_ratio: float = 4.0
    nout: int = 3
    neck: int = 256

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        data = asdict(self)
        data["rel_pos_rows"] = list(self.rel_pos_rows)
        return data


def _sam_rows(depth: int, global_blocks: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(127 if i in global_blocks else 27 for i in range(depth))


#: Known sizes: SAM's ViT-B/L/H encoders as Cellpose 4 builds them, and a tiny one for tests.
VIT_CONFIGS: dict[str, VitSamConfig] = {
    "vit_b": VitSamConfig(768, 12, 12, _sam_rows(12, (2, 5, 8, 11))),
    "vit_l": VitSamConfig(1024, 24, 16, _sam_rows(24, (5, 11, 17, 23))),
    "vit_h": VitSamConfig(1280, 32, 16, _sam_rows(32, (7, 15, 23, 31))),
    "tiny": VitSamConfig(32, 2, 2, (27, 63), neck=32),
}


def is_vit_sam_state(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict is a Cellpose-SAM network's (it has the encoder and ``W2``)."""
    return "W2" in state and "encoder.patch_embed.proj.weight" in state


def resample_rel_pos(table: torch.Tensor, rows: int) -> torch.Tensor:
    """``table`` ``(L, C)`` linearly resampled to ``(rows, C)`` (unchanged when ``L == rows``).

    Linear interpolation with ``align_corners=False``, as SAM resamples its tables.
    """
    if table.shape[0] == rows:
        return table
    x = table.t().unsqueeze(0)  # (1, C, L)
    return F.interpolate(x, size=rows, mode="linear").squeeze(0).t()


def _relative_table(table: torch.Tensor, n: int) -> torch.Tensor:
    """``R[q, k] = table[q - k + n - 1]`` for ``q, k < n``: ``(n, n, C)``."""
    idx = torch.arange(n, device=table.device)
    return table[(idx[:, None] - idx[None, :]) + n - 1]


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map (keys ``weight``, ``bias``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, _EPS)
        return y.permute(0, 3, 1, 2)


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch x patch`` convolution; output ``(B, H, W, dim)`` tokens."""

    def __init__(self, dim: int, patch: int = PATCH_SIZE, in_chans: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class RelPosAttention(nn.Module):
    """Global multi-head self-attention with a decomposed relative-position bias."""

    def __init__(self, dim: int, heads: int, rel_rows: int):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(rel_rows, self.head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(rel_rows, self.head_dim))
        self._cache: tuple[tuple, torch.Tensor, torch.Tensor] | None = None

    def _tables(self, h: int, w: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, h, C)`` and ``(w, w, C)`` relative tables; cached while not training."""
        key = (h, w, dtype, self.rel_pos_h._version, self.rel_pos_w._version)
        if self._cache is not None and self._cache[0] == key and not self.training:
            return self._cache[1], self._cache[2]
        rh = _relative_table(resample_rel_pos(self.rel_pos_h, 2 * h - 1), h).to(dtype)
        rw = _relative_table(resample_rel_pos(self.rel_pos_w, 2 * w - 1), w).to(dtype)
        if not self.training and not torch.is_grad_enabled():
            self._cache = (key, rh, rw)
        return rh, rw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, dim = x.shape
        n = h * w
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, N, C)
        rh, rw = self._tables(h, w, q.dtype)
        qg = q.reshape(b, self.heads, h, w, self.head_dim)
        bias_h = torch.einsum("bnywc,ykc->bnywk", qg, rh)  # (B, heads, h, w, kh)
        bias_w = torch.einsum("bnyxc,xkc->bnyxk", qg, rw)  # (B, heads, h, w, kw)
        bias = (bias_h.unsqueeze(-1) + bias_w.unsqueeze(-2)).reshape(b, self.heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = out.transpose(1, 2).reshape(b, h, w, dim)
        return self.proj(out)


class Mlp(nn.Module):
    """``lin2(gelu(lin1(x)))``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.gelu(self.lin1(x)))


class Block(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))``, then ``+ mlp(norm2(.))``."""

    def __init__(self, dim: int, heads: int, rel_rows: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_EPS)
        self.attn = RelPosAttention(dim, heads, rel_rows)
        self.norm2 = nn.LayerNorm(dim, eps=_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    """Patch embedding, position embedding, blocks and neck (keys under ``encoder.``)."""

    def __init__(self, cfg: VitSamConfig, tokens: int):
        super().__init__()
        self.patch_embed = PatchEmbed(cfg.dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, tokens, cfg.dim))
        self.blocks = nn.ModuleList(
            Block(cfg.dim, cfg.heads, rows, cfg.mlp_ratio) for rows in cfg.rel_pos_rows
        )
        self.neck = nn.Sequential(
            nn.Conv2d(cfg.dim, cfg.neck, 1, bias=False),
            LayerNorm2d(cfg.neck),
            nn.Conv2d(cfg.neck, cfg.neck, 3, padding=1, bias=False),
            LayerNorm2d(cfg.neck),
        )


class CellposeSAM(nn.Module):
    """Cellpose-SAM: ``(B, 3, 256, 256)`` tiles -> ``(B, nout, 256, 256)`` maps.

    Parameters
    ----------
    config : VitSamConfig or str
        The size (:data:`VIT_CONFIGS` name or a config).
    rdrop : float
        Largest probability of skipping a block in training (the last block's).
    diam_mean : float
        Diameter the network works at (Cellpose 4: 30).

    Notes
    -----
    ``forward`` returns ``(maps, style)`` like the U-Net; this network has no style, so the
    style is zeros ``(B, 256)`` (Cellpose 4 returns random numbers there).
    """

    #: Input sides must be multiples of this.
    size_multiple = PATCH_SIZE
    #: Input channels.
    nchan = 3
    #: Marks the family for the pipeline (fixed tile size, no style, no size model).
    family = "cellpose-sam"

    def __init__(self, config: VitSamConfig | str = "vit_l", rdrop: float = 0.4, diam_mean: float = 30.0):
        super().__init__()
        cfg = VIT_CONFIGS[config] if isinstance(config, str) else config
        self.cfg = cfg
        self.nout = cfg.nout
        self.rdrop = float(rdrop)
        self.tile_size = TILE_SIZE
        tokens = TILE_SIZE // PATCH_SIZE
        self.encoder = Encoder(cfg, tokens)
        self.out = nn.Conv2d(cfg.neck, cfg.nout * PATCH_SIZE**2, kernel_size=1)
        self.W2 = nn.Parameter(shuffle_kernel(cfg.nout, PATCH_SIZE), requires_grad=False)
        self.diam_mean = nn.Parameter(torch.full((1,), float(diam_mean)), requires_grad=False)
        self.diam_labels = nn.Parameter(torch.full((1,), float(diam_mean)), requires_grad=False)

    @property
    def device(self) -> torch.device:
        """Where the weights are."""
        return self.out.weight.device

    def inference_copy(self, dtype: torch.dtype) -> CellposeSAM:
        """This network with weights held in ``dtype`` (bfloat16, float16), for inference.

        Cellpose 4 runs its network this way in bfloat16; autocast instead would cast the
        305 M weights of ViT-L at every batch. The copy is cached and remade when any weight
        of this network changed (training, ``load_state_dict``).
        """
        stamp = (dtype, sum(p._version for p in self.parameters()))
        cached = self.__dict__.get("_inference_copy")
        if cached is None or cached[0] != stamp:
            with torch.inference_mode(False), torch.no_grad():  # normal tensors: they keep version counters
                copy = CellposeSAM(self.cfg, rdrop=self.rdrop).to(next(self.parameters()).device)
                copy.load_state_dict(self.state_dict())
                copy.to(dtype).eval()
            self.__dict__["_inference_copy"] = (stamp, copy)  # not a submodule: no state-dict keys
            cached = self.__dict__["_inference_copy"]
        return cached[1]

    def architecture(self) -> dict:
        """The facts a ``config.json`` records."""
        return {
            "family": self.family,
            "vit": self.cfg.to_dict(),
            "nout": self.nout,
            "diam_mean": float(self.diam_mean.item()),
            "diam_labels": float(self.diam_labels.item()),
        }

    def _block_keep(self, n: int, batch: int, device: torch.device) -> torch.Tensor | None:
        """(batch, n) 0/1 mask of blocks kept per sample while training with rdrop."""
        if not self.training or self.rdrop <= 0:
            return None
        p = torch.linspace(0, self.rdrop, n, device=device)
        return (torch.rand(batch, n, device=device) >= p).float()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.encoder
        t = enc.patch_embed(x.to(self.out.weight.dtype))
        if t.shape[1:3] != enc.pos_embed.shape[1:3]:
            raise ValueError(
                f"Cellpose-SAM takes {TILE_SIZE} x {TILE_SIZE} tiles, got {tuple(x.shape[-2:])}"
            )
        t = t + enc.pos_embed
        keep = self._block_keep(len(enc.blocks), t.shape[0], t.device)
        for i, blk in enumerate(enc.blocks):
            if keep is None:
                t = blk(t)
            else:
                m = keep[:, i].view(-1, 1, 1, 1).to(t.dtype)
                t = m * blk(t) + (1 - m) * t
        f = enc.neck(t.permute(0, 3, 1, 2))
        y = F.pixel_shuffle(self.out(f), PATCH_SIZE)
        style = torch.zeros(x.shape[0], STYLE_WIDTH, device=x.device, dtype=y.dtype)
        return y, style


def shuffle_kernel(nout: int, patch: int) -> torch.Tensor:
    """The fixed ``W2`` kernel: identity over ``nout * patch**2`` channels, ``(c, nout, p, p)``."""
    c = nout * patch * patch
    return torch.eye(c).reshape(c, nout, patch, patch)
