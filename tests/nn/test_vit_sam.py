"""The Cellpose-SAM network: Cellpose 4's key layout, fused attention against the written-out formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cellseg_bridge.nn.vit_sam import VIT_CONFIGS, CellposeSAM, VitSamConfig, resample_rel_pos


def expected_layout(dim: int, depth: int, heads: int, rows: list[int], nout: int = 3) -> dict[str, tuple]:
    """Key -> shape of Cellpose 4's Transformer, written from its SAM encoder layout, not our code."""
    hd = dim // heads
    lay: dict[str, tuple] = {
        "encoder.pos_embed": (1, 32, 32, dim),
        "encoder.patch_embed.proj.weight": (dim, 3, 8, 8),
        "encoder.patch_embed.proj.bias": (dim,),
    }
    for i in range(depth):
        p = f"encoder.blocks.{i}"
        lay |= {
            f"{p}.norm1.weight": (dim,), f"{p}.norm1.bias": (dim,),
            f"{p}.attn.rel_pos_h": (rows[i], hd), f"{p}.attn.rel_pos_w": (rows[i], hd),
            f"{p}.attn.qkv.weight": (3 * dim, dim), f"{p}.attn.qkv.bias": (3 * dim,),
            f"{p}.attn.proj.weight": (dim, dim), f"{p}.attn.proj.bias": (dim,),
            f"{p}.norm2.weight": (dim,), f"{p}.norm2.bias": (dim,),
            f"{p}.mlp.lin1.weight": (4 * dim, dim), f"{p}.mlp.lin1.bias": (4 * dim,),
            f"{p}.mlp.lin2.weight": (dim, 4 * dim), f"{p}.mlp.lin2.bias": (dim,),
        }  # fmt: skip
    lay |= {
        "encoder.neck.0.weight": (256, dim, 1, 1),
        "encoder.neck.1.weight": (256,), "encoder.neck.1.bias": (256,),
        "encoder.neck.2.weight": (256, 256, 3, 3),
        "encoder.neck.3.weight": (256,), "encoder.neck.3.bias": (256,),
        "out.weight": (nout * 64, 256, 1, 1), "out.bias": (nout * 64,),
        "W2": (nout * 64, nout, 8, 8),
        "diam_labels": (1,), "diam_mean": (1,),
    }  # fmt: skip
    return lay


def test_vit_l_layout_equals_cellpose4():
    """ViT-L as the released cpsam files hold it: 24 blocks, windowed tables 27 rows, global 127."""
    with torch.device("meta"):
        net = CellposeSAM("vit_l")
    rows = [127 if i in (5, 11, 17, 23) else 27 for i in range(24)]
    got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert got == expected_layout(1024, 24, 16, rows)
    assert sum(v.numel() for v in net.state_dict().values()) > 300e6


def naive_attention(attn, x):
    """SAM's attention written out: softmax(q k^T * scale + q.Rh + q.Rw) v, no fusion."""
    b, h, w, dim = x.shape
    nh, hd = attn.heads, attn.head_dim
    qkv = attn.qkv(x).reshape(b, h * w, 3, nh, hd).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    logits = (q * hd**-0.5) @ k.transpose(-2, -1)  # (b, nh, hw, hw)
    rh = resample_rel_pos(attn.rel_pos_h, 2 * h - 1)
    rw = resample_rel_pos(attn.rel_pos_w, 2 * w - 1)
    bias = torch.zeros(b, nh, h, w, h, w)
    for qy in range(h):
        for ky in range(h):
            bias[:, :, qy, :, ky, :] += (q.reshape(b, nh, h, w, hd)[:, :, qy] @ rh[qy - ky + h - 1])[..., None]
    for qx in range(w):
        for kx in range(w):
            bias[:, :, :, qx, :, kx] += (q.reshape(b, nh, h, w, hd)[:, :, :, qx] @ rw[qx - kx + w - 1])[..., None]
    p = torch.softmax(logits + bias.reshape(b, nh, h * w, h * w), -1)
    out = (p @ v).transpose(1, 2).reshape(b, h, w, dim)
    return attn.proj(out)


def test_fused_attention_equals_written_out_formula(one_torch_thread):
    torch.manual_seed(0)
    net = CellposeSAM("tiny").eval()
    for blk in net.encoder.blocks:  # rows 27 (resampled to 7) and 63 (resampled to 7)
        torch.nn.init.normal_(blk.attn.rel_pos_h)
        torch.nn.init.normal_(blk.attn.rel_pos_w)
        x = torch.randn(2, 4, 4, 32)
        with torch.no_grad():
            assert torch.allclose(blk.attn(x), naive_attention(blk.attn, x), atol=1e-5)


def test_resample_matches_linear_interpolation_of_ends():
    t = torch.arange(5.0)[:, None].repeat(1, 2)
    r = resample_rel_pos(t, 9)
    assert r.shape == (9, 2)
    assert torch.allclose(r, F.interpolate(t.t()[None], size=9, mode="linear")[0].t())
    assert resample_rel_pos(t, 5) is t


def test_readout_is_the_transposed_convolution_with_w2(one_torch_thread):
    torch.manual_seed(1)
    net = CellposeSAM("tiny").eval()
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        y, style = net(x)
        f = net.encoder.neck(net.encoder.blocks[1](net.encoder.blocks[0](
            net.encoder.patch_embed(x) + net.encoder.pos_embed)).permute(0, 3, 1, 2))
        ref = F.conv_transpose2d(net.out(f), net.W2, stride=8)
    assert y.shape == (1, 3, 256, 256) and style.shape == (1, 256)
    assert torch.allclose(y, ref, atol=1e-5)


def test_wrong_tile_size_is_refused():
    net = CellposeSAM("tiny").eval()
    with pytest.raises(ValueError, match="256 x 256 tiles"):
        net(torch.zeros(1, 3, 128, 128))


def test_rdrop_skips_blocks_in_training_only(one_torch_thread):
    torch.manual_seed(2)
    net = CellposeSAM(VitSamConfig(16, 3, 2, (27,) * 3, neck=8), rdrop=0.9)
    x = torch.randn(4, 3, 256, 256)
    net.train()
    a, _ = net(x)
    a.float().mean().backward()  # gradients flow through kept blocks
    assert net.encoder.blocks[0].attn.qkv.weight.grad is not None
    net.eval()
    with torch.no_grad():
        b1, _ = net(x)
        b2, _ = net(x)
    assert torch.equal(b1, b2)
    assert not math.isclose(float((a.detach() - b1).abs().max()), 0.0)


def test_configs_are_consistent():
    for cfg in VIT_CONFIGS.values():
        assert cfg.dim % cfg.heads == 0 and len(cfg.rel_pos_rows) == cfg.depth


def test_inference_copy_runs_in_bfloat16_and_follows_weight_changes(one_torch_thread):
    torch.manual_seed(3)
    net = CellposeSAM("tiny").eval()
    x = torch.rand(2, 3, 256, 256)
    with torch.inference_mode():
        low = net.inference_copy(torch.bfloat16)
        assert low.out.weight.dtype == torch.bfloat16 and net.out.weight.dtype == torch.float32
        assert net.inference_copy(torch.bfloat16) is low  # cached
        y32, y16 = net(x)[0], low(x)[0]
    assert y16.dtype == torch.bfloat16
    assert (y16.float() - y32).abs().max() < 0.05 * y32.abs().max()
    with torch.no_grad():
        net.out.bias.add_(1.0)
    with torch.inference_mode():
        again = net.inference_copy(torch.bfloat16)
    assert again is not low and torch.equal(again.out.bias, net.out.bias.to(torch.bfloat16))
    assert "_inference_copy" not in "".join(net.state_dict())
