"""Copy a trained model folder into the package (``cellseg_bridge/models/NAME``), paths made portable.

The weights are re-saved from a checked load (``weights_only``), and ``config.json`` keeps
everything but the machine's absolute paths: a path inside this repository becomes
repository-relative, a bundled model's path becomes its name, any other path its last two
parts (e.g. ``runs/denoise_nuclei_mse/weights.pth`` -> ``denoise_nuclei_mse/weights.pth``).

Usage::

    .venv/bin/python scripts/bundle_model.py runs/denoise_nuclei denoise_nuclei \
        --stage "400 MSE steps" --stage "240 segmentation-aware steps from the MSE model"

A trained folder's config.json describes its last training run only; ``--stage`` (repeatable)
records the whole chain of runs in ``provenance.stages``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cellseg_bridge.nn.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402

log = logging.getLogger("bundle_model")
MODELS = REPO / "cellseg_bridge" / "models"
SIZE_MODEL = "size_model.npz"


def portable(value: object) -> object:
    """``value`` with absolute paths (in strings, lists, dicts) made machine-independent."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v) for v in value]
    if isinstance(value, str):
        words = [_portable_word(w) for w in value.split(" ")]
        return " ".join(words)
    return value


def _portable_word(word: str) -> str:
    if not word.startswith("/"):
        return word
    path = Path(word)
    if path.is_relative_to(MODELS):
        return path.relative_to(MODELS).parts[0]
    if path.is_relative_to(REPO):
        return str(path.relative_to(REPO))
    return str(Path(*path.parts[-2:]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="trained model folder (weights.pth + config.json)")
    ap.add_argument("name", help="model name: folder under cellseg_bridge/models")
    ap.add_argument("--stage", action="append", default=[],
                    help="one training run of the chain that made the model, in order (repeatable)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    net, config = load_checkpoint(args.src / "weights.pth", "cpu")
    config = portable({k: v for k, v in config.items() if k not in ("nbase", "nout", "diam_mean", "kernel_size")})
    if args.stage:
        config["provenance"] = {**config.get("provenance", {}), "stages": portable(list(args.stage))}
    dest = MODELS / args.name
    tmp = MODELS / f".{args.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_checkpoint(net, tmp / "weights.pth", config)
    if (args.src / SIZE_MODEL).is_file():  # style -> diameter, fitted at the end of training
        shutil.copy2(args.src / SIZE_MODEL, tmp / SIZE_MODEL)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    log.info("bundled %s as %s (%d bytes)", args.src, dest, (dest / "weights.pth").stat().st_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
