"""The Cellpose-style residual U-Net (DESIGN.md section 3).

The module tree below is laid out so that ``state_dict()`` has exactly the keys
and shapes of Cellpose 3's ``CPnet`` (2D, ``residual_on``, ``style_on``, no
concatenation, max pooling). A Cellpose checkpoint therefore loads with
``load_state_dict(strict=True)``, and a checkpoint saved from this network loads
into Cellpose. The key layout, for a network with ``L = len(nbase) - 1``
levels::

    downsample.down.res_down_{i}.conv.conv_{j}.{0,2}.*     i < L, j < 4  (BN, conv)
    downsample.down.res_down_{i}.proj.{0,1}.*                           (BN, 1x1 conv)
    upsample.up.res_up_{i}.conv.conv_0.{0,2}.*
    upsample.up.res_up_{i}.conv.conv_{1,2,3}.conv.{0,2}.*
    upsample.up.res_up_{i}.conv.conv_{1,2,3}.full.*                     (style Linear)
    upsample.up.res_up_{i}.proj.{0,1}.*
    output.{0,2}.*
    diam_mean, diam_labels                                              (non-trainable)

Data flow: the encoder has ``L`` residual blocks, a 2x2 max pool before each but
the first. The style is the global average of the deepest features, L2
normalised. The decoder starts at the deepest level with a block whose "skip"
is the deepest feature map itself, then alternates nearest x2 upsampling and a
residual block whose skip (the encoder features of that level) is *added*
after its first convolution. Inside each decoder block a ``Linear(style)`` is
added to the features before convolutions 1-3.

Input sizes: ``H`` and ``W`` must be multiples of ``2 ** (L - 1)`` (8 for the
standard 5-entry ``nbase``), otherwise pooled and upsampled maps would not line
up; :attr:`CellposeUNet.size_multiple` gives the number. Padding (to 16 in the
inference pipeline) is the caller's job.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

#: ``nbase`` of Cellpose's segmentation networks (2 input channels).
SEGMENTATION_NBASE: tuple[int, ...] = (2, 32, 64, 128, 256)
#: ``nbase`` of Cellpose 3's restoration networks (1 input channel, ``nout`` 1).
RESTORATION_NBASE: tuple[int, ...] = (1, 32, 64, 128, 256)

BN_EPS = 1e-5
BN_MOMENTUM = 0.05


def _norm_relu_conv(c_in: int, c_out: int, kernel_size: int) -> nn.Sequential:
    """Pre-activation unit: BatchNorm -> ReLU -> Conv (state-dict indices 0, 2)."""
    return nn.Sequential(
        nn.BatchNorm2d(c_in, eps=BN_EPS, momentum=BN_MOMENTUM),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2),
    )


def _norm_conv(c_in: int, c_out: int) -> nn.Sequential:
    """Residual projection: BatchNorm -> 1x1 Conv (state-dict indices 0, 1)."""
    return nn.Sequential(
        nn.BatchNorm2d(c_in, eps=BN_EPS, momentum=BN_MOMENTUM),
        nn.Conv2d(c_in, c_out, 1),
    )


class DownBlock(nn.Module):
    """Encoder block: two residual pairs of pre-activation convolutions.

    ``y = proj(x) + c1(c0(x))``, then ``y + c3(c2(y))``.

    Parameters
    ----------
    c_in, c_out : int
        Input and output channels.
    kernel_size : int
        Size of the square convolution kernels.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            OrderedDict(
                (f"conv_{j}", _norm_relu_conv(c_in if j == 0 else c_out, c_out, kernel_size))
                for j in range(4)
            )
        )
        self.proj = _norm_conv(c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``x`` of shape ``[B, c_in, H, W]``."""
        c0, c1, c2, c3 = self.conv
        y = self.proj(x) + c1(c0(x))
        return y + c3(c2(y))


class StyleConv(nn.Module):
    """A pre-activation convolution whose input is shifted by a projected style.

    Parameters
    ----------
    channels : int
        Input and output channels.
    style_channels : int
        Length of the style vector.
    kernel_size : int
        Size of the square convolution kernel.
    """

    def __init__(self, channels: int, style_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = _norm_relu_conv(channels, channels, kernel_size)
        self.full = nn.Linear(style_channels, channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Return ``conv(x + full(style))``, the style broadcast over H and W."""
        return self.conv(x + self.full(style)[:, :, None, None])


class UpBlock(nn.Module):
    """Decoder block: like :class:`DownBlock`, with a skip and a style.

    ``y = proj(x) + s1(c0(x) + skip)``, then ``y + s3(s2(y))``, where ``s*``
    are :class:`StyleConv` units.

    Parameters
    ----------
    c_in, c_out : int
        Input and output channels (the skip has ``c_out`` channels).
    style_channels : int
        Length of the style vector.
    kernel_size : int
        Size of the square convolution kernels.
    """

    def __init__(self, c_in: int, c_out: int, style_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            OrderedDict(
                [("conv_0", _norm_relu_conv(c_in, c_out, kernel_size))]
                + [(f"conv_{j}", StyleConv(c_out, style_channels, kernel_size)) for j in (1, 2, 3)]
            )
        )
        self.proj = _norm_conv(c_in, c_out)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor, style: torch.Tensor
    ) -> torch.Tensor:
        """Apply the block; ``skip`` must have the output's shape."""
        c0, s1, s2, s3 = self.conv
        y = self.proj(x) + s1(c0(x) + skip, style)
        return y + s3(s2(y, style), style)


class Encoder(nn.Module):
    """The downsampling path: ``len(nbase) - 1`` :class:`DownBlock` levels."""

    def __init__(self, nbase: Sequence[int], kernel_size: int) -> None:
        super().__init__()
        self.down = nn.Sequential(
            OrderedDict(
                (f"res_down_{i}", DownBlock(nbase[i], nbase[i + 1], kernel_size))
                for i in range(len(nbase) - 1)
            )
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the feature map of every level, finest first."""
        features: list[torch.Tensor] = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2, 2))
            features.append(x)
        return features


class Decoder(nn.Module):
    """The upsampling path, one :class:`UpBlock` per encoder level.

    Block ``i`` maps ``widths[i + 1]`` to ``widths[i]`` channels, where
    ``widths = nbase[1:] + [nbase[-1]]``; the deepest block (``L - 1``) runs at
    the encoder's deepest resolution with that level's features as its skip.
    """

    def __init__(self, nbase: Sequence[int], kernel_size: int) -> None:
        super().__init__()
        widths = [*nbase[1:], nbase[-1]]
        style_channels = nbase[-1]
        self.up = nn.Sequential(
            OrderedDict(
                (f"res_up_{i}", UpBlock(widths[i + 1], widths[i], style_channels, kernel_size))
                for i in range(len(widths) - 1)
            )
        )

    def forward(self, features: Sequence[torch.Tensor], style: torch.Tensor) -> torch.Tensor:
        """Decode encoder ``features`` (finest first) under ``style``."""
        blocks = list(self.up)
        x = blocks[-1](features[-1], features[-1], style)
        for i in range(len(blocks) - 2, -1, -1):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = blocks[i](x, features[i], style)
        return x


def style_vector(deepest: torch.Tensor) -> torch.Tensor:
    """Global average of ``deepest`` ``[B, C, h, w]`` features, L2-normalised to ``[B, C]``."""
    pooled = deepest.mean(dim=(2, 3))
    return F.normalize(pooled, p=2.0, dim=1, eps=1e-12)


class CellposeUNet(nn.Module):
    """Residual U-Net with style vector, state-dict compatible with Cellpose 3's CPnet.

    Parameters
    ----------
    nbase : sequence of int
        ``[nchan, c1, ..., cL]``: input channels, then the width of each level.
        Cellpose uses ``[2, 32, 64, 128, 256]`` (segmentation) and
        ``[1, 32, 64, 128, 256]`` (restoration); narrower widths such as
        ``[2, 16, 32, 64, 128]`` make small CPU models. At least two levels.
    nout : int
        Output channels: 3 (``[dY, dX, cellprob]``) for segmentation, 1 for
        restoration.
    kernel_size : int
        Odd size of the square convolution kernels (Cellpose's ``sz``, 3).
    diam_mean : float
        Object diameter (pixels) the network was trained at. Stored, with
        ``diam_labels`` (initialised to the same value), as non-trainable
        parameters in the state dict.

    Notes
    -----
    Input height and width must be multiples of :attr:`size_multiple`.
    ``forward`` returns ``(output [B, nout, H, W], style [B, nbase[-1]])``; use
    :meth:`encode`, :func:`style_vector` and :meth:`decode` for the encoder
    features (e.g. a perceptual loss).
    """

    def __init__(
        self,
        nbase: Sequence[int] = SEGMENTATION_NBASE,
        nout: int = 3,
        kernel_size: int = 3,
        diam_mean: float = 30.0,
    ) -> None:
        super().__init__()
        nbase = tuple(int(n) for n in nbase)
        if len(nbase) < 3 or min(nbase) < 1:
            raise ValueError(
                f"nbase needs >= 3 positive entries (nchan and 2+ levels), got {list(nbase)}"
            )
        if nout < 1:
            raise ValueError(f"nout must be >= 1, got {nout}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        self.nbase: tuple[int, ...] = nbase
        self.nout = int(nout)
        self.kernel_size = int(kernel_size)
        self.downsample = Encoder(nbase, kernel_size)
        self.upsample = Decoder(nbase, kernel_size)
        self.output = _norm_relu_conv(nbase[1], nout, 1)
        self.diam_mean = nn.Parameter(torch.full((1,), float(diam_mean)), requires_grad=False)
        self.diam_labels = nn.Parameter(torch.full((1,), float(diam_mean)), requires_grad=False)

    @property
    def nchan(self) -> int:
        """Number of input channels (``nbase[0]``)."""
        return self.nbase[0]

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (``2 ** (levels - 1)``)."""
        return 2 ** (len(self.nbase) - 2)

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.diam_mean.device

    def architecture(self) -> dict[str, object]:
        """The constructor arguments and diameters, JSON-ready (for ``config.json``)."""
        return {
            "nbase": list(self.nbase),
            "nout": self.nout,
            "kernel_size": self.kernel_size,
            "diam_mean": float(self.diam_mean.item()),
            "diam_labels": float(self.diam_labels.item()),
        }

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``[B, nchan, H, W]``, H and W multiples of
        :attr:`size_multiple`."""
        if x.ndim != 4 or x.shape[1] != self.nchan:
            raise ValueError(f"expected input [B, {self.nchan}, H, W], got {list(x.shape)}")
        m = self.size_multiple
        if x.shape[2] % m or x.shape[3] % m:
            raise ValueError(
                f"input height and width must be multiples of {m}, "
                f"got {x.shape[2]}x{x.shape[3]} (pad first)"
            )

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder feature maps of every level, finest first."""
        self.check_input(x)
        return self.downsample(x)

    def decode(self, features: Sequence[torch.Tensor], style: torch.Tensor) -> torch.Tensor:
        """Output map ``[B, nout, H, W]`` from encoder ``features`` and ``style``
        (``[B, S]``)."""
        return self.output(self.upsample(features, style))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network.

        Parameters
        ----------
        x : torch.Tensor
            ``[B, nchan, H, W]``, H and W multiples of :attr:`size_multiple`.

        Returns
        -------
        output : torch.Tensor
            ``[B, nout, H, W]``; for segmentation ``[dY, dX, cellprob]`` with
            flows scaled x5 and cellprob as logits.
        style : torch.Tensor
            ``[B, nbase[-1]]``, unit L2 norm.
        """
        features = self.encode(x)
        style = style_vector(features[-1])
        return self.decode(features, style), style
