"""Training state on disk: the resumable ``checkpoint/`` folder and the learning curves.

``checkpoint/state.pt`` holds the network, optimiser and RNG states, the epoch, the
planned epochs and the curves in one atomic file (plain tensors and numbers, so it
loads with ``weights_only=True``); ``checkpoint/last.pth`` + ``config.json`` is the
network at that epoch as a model. ``curves.csv`` / ``curves.png`` show loss,
learning rate and validation AP per epoch (per validation set where there are several).
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np
import torch

from cellseg_bridge.io.atomic import atomic_output
from cellseg_bridge.nn.checkpoint import save_checkpoint

__all__ = [
    "CHECKPOINT_DIR", "CURVE_FIELDS", "STATE_NAME", "curve_fields", "rng_from_plain", "rng_to_plain",
    "save_state", "save_training_checkpoint", "write_curves",
]

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
STATE_NAME = "state.pt"


CURVE_FIELDS = ("epoch", "lr", "loss", "ap50", "ap75", "ap90", "seconds")


def curve_fields(curves: list[dict]) -> list[str]:
    """CURVE_FIELDS, then per-dataset validation columns (``ap50_<name>``, ...) in first-seen order."""
    fields = list(CURVE_FIELDS)
    for row in curves:
        fields += [k for k in row if k not in fields]
    return fields


def write_curves(curves: list[dict], out_dir: Path, png: bool = True) -> None:
    fields = curve_fields(curves)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for row in curves:
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
    with atomic_output(out_dir / "curves.csv") as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    if not curves or not png:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib not installed: curves.png not written")
        return
    ep = [r["epoch"] for r in curves]
    val = [r for r in curves if r.get("ap50") is not None]
    # the validation panel only when there is validation (no empty panel without a validation set)
    fig, axes = plt.subplots(1, 2 if val else 1, figsize=(9 if val else 4.5, 3.5), squeeze=False)
    ax = axes[0]
    ax[0].plot(ep, [r["loss"] for r in curves])
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("training loss")
    ax[0].set_yscale("log")
    if val:
        for key in ("ap50", "ap75", "ap90"):
            ax[1].plot([r["epoch"] for r in val], [r[key] for r in val], marker="o", label=key)
        ax[1].set_xlabel("epoch")
        ax[1].set_ylabel("validation AP")
        ax[1].set_ylim(0, 1)
        ax[1].legend()
    fig.tight_layout()
    with atomic_output(out_dir / "curves.png") as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def save_state(path: Path, net, optim, epoch: int, n_epochs: int, rng, curves, diam_labels: float, elapsed: float,
               options: dict | None = None) -> None:
    """Write the resumable state (network, optimiser, RNGs, epoch, curves and the run's options) atomically."""
    state = {
        "net": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "optimizer": optim.state_dict(),
        "epoch": int(epoch),
        "n_epochs": int(n_epochs),
        "rng": rng if isinstance(rng, dict) else rng_to_plain(rng),
        "torch_rng": torch.get_rng_state(),
        "curves": [{k: _plain(k, r.get(k)) for k in curve_fields(curves)} for r in curves],
        "diam_labels": float(diam_labels),
        "elapsed": float(elapsed),
    }
    if options is not None:
        state["options"] = {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def _plain(key: str, value) -> int | float | None:
    """A curve value as saved: epochs stay integers, the rest are floats."""
    if value is None:
        return None
    return int(value) if key == "epoch" else float(value)


def rng_to_plain(rng: np.random.Generator) -> dict:
    st = rng.bit_generator.state
    return {
        "bit_generator": st["bit_generator"],
        "state": str(st["state"]["state"]),
        "inc": str(st["state"]["inc"]),
        "has_uint32": int(st["has_uint32"]),
        "uinteger": int(st["uinteger"]),
    }


def rng_from_plain(plain: dict) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = {
        "bit_generator": plain["bit_generator"],
        "state": {"state": int(plain["state"]), "inc": int(plain["inc"])},
        "has_uint32": int(plain["has_uint32"]),
        "uinteger": int(plain["uinteger"]),
    }
    return rng


def save_training_checkpoint(
    out_dir: Path, net, optim, epoch, n_epochs, rng, curves, diam_labels, elapsed, config, png: bool = False,
    options: dict | None = None,
) -> None:
    """Write ``checkpoint/state.pt``, ``checkpoint/last.pth`` and ``curves.csv`` (``curves.png`` with ``png``)."""
    ck = out_dir / CHECKPOINT_DIR
    ck.mkdir(parents=True, exist_ok=True)
    save_state(ck / STATE_NAME, net, optim, epoch, n_epochs, rng, curves, diam_labels, elapsed, options)
    save_checkpoint(net, ck / "last.pth", {**config, "epoch": int(epoch)})
    write_curves(curves, out_dir, png=png)  # the plot costs seconds: at the end only
    logger.info("checkpoint after epoch %d in %s", epoch, ck)
