"""Which arithmetic the network runs in: float32, or bfloat16 / float16 autocast.

Inference (:func:`autocast_dtype`) and training (:func:`training_autocast_dtype`)
read the same ``precision`` option ("auto", "float32", "bfloat16", "float16").
"auto" uses reduced precision only where the hardware computes it natively:

* inference: float16 on CUDA; bfloat16 on a CPU with AVX512-BF16 or AMX (on
  such a CPU the convolutions run about twice as fast, and the masks of the
  dsb2018 2048² mosaic agree with float32 at AP@0.5 0.99, docs/benchmarks.md);
  float32 elsewhere (MPS, older CPUs).
* training: bfloat16 mixed precision (float32 weights, optimiser and loss;
  bfloat16 convolutions) on such a CPU and on CUDA devices with bfloat16;
  float32 elsewhere. float16 training would need loss scaling: not offered.
"""

from __future__ import annotations

import contextlib

import torch

from cellseg_bridge.errors import InputError

__all__ = ["PRECISIONS", "cpu_has_native_bfloat16", "autocast_dtype", "training_autocast_dtype", "autocast"]

#: Accepted values of ``precision``.
PRECISIONS = ("auto", "float32", "bfloat16", "float16")


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX tiles)."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def _checked(precision: str) -> str:
    name = str(precision).strip().lower()
    if name not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r} (use {', '.join(PRECISIONS)})")
    return name


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of inference on ``device``; None: plain float32.

    Parameters
    ----------
    precision : {"auto", "float32", "bfloat16", "float16"}
        ``"auto"``: float16 on CUDA, bfloat16 on a CPU with native bfloat16
        (:func:`cpu_has_native_bfloat16`), float32 otherwise. ``"bfloat16"``
        is accepted on any CPU or CUDA device (slow where it is emulated);
        ``"float16"`` needs CUDA.
    device : torch.device
        Where the network runs.

    Raises
    ------
    InputError
        For an unknown precision or one the device cannot run.
    """
    name = _checked(precision)
    if name == "float32":
        return None
    if name == "auto":
        if device.type == "cuda":
            return torch.float16
        if device.type == "cpu" and cpu_has_native_bfloat16():
            return torch.bfloat16
        return None
    if device.type not in ("cpu", "cuda") or (name == "float16" and device.type != "cuda"):
        raise InputError(f"precision {name} is not available on the {device.type} device (use float32 or auto)")
    return torch.bfloat16 if name == "bfloat16" else torch.float16


def training_autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of training on ``device``; None: plain float32.

    ``"auto"``: bfloat16 on a CPU with native bfloat16 or a CUDA device that
    supports it, float32 otherwise; ``"bfloat16"`` on any CPU or CUDA device;
    ``"float16"`` is refused (it would need loss scaling).

    Raises
    ------
    InputError
        For an unknown precision, float16, or bfloat16 on a device without it.
    """
    name = _checked(precision)
    if name == "float16":
        raise InputError("precision float16 is not offered for training (use auto, bfloat16 or float32)")
    if name == "float32":
        return None
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if name == "auto":
        native = cuda_bf16 or (device.type == "cpu" and cpu_has_native_bfloat16())
        return torch.bfloat16 if native else None
    if device.type not in ("cpu", "cuda") or (device.type == "cuda" and not cuda_bf16):
        raise InputError(f"precision bfloat16 is not available on the {device.type} device (use float32 or auto)")
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``, or nothing when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
