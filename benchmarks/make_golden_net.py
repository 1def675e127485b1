"""Golden data proving our U-Net computes what Cellpose 3's CPnet computes, both ways.

Two modes, each run in its own environment:

``golden`` (run with the PEER's python, ``.peer_venv``, see ``peer_env.sh``)
    Loads ``../shared/models/cellpose3_dsb2018_nuclei.pth`` into Cellpose
    3.1.1.3's ``CPnet`` (``load_state_dict(strict=True)``), runs it in eval mode
    on (a) a seeded 1x2x64x64 input (uniform noise, second channel zero) and
    (b) a 96x160 crop of a real dsb2018 fluorescence image (grey = mean of RGB,
    1st-99th percentile normalised, second channel zero as with Cellpose
    ``channels=[0,0]``), and writes outputs and styles, with the random input,
    to ``tests/nn/data/golden_cpnet_dsb2018.npz``. The dsb2018 crop itself is
    not stored (no copies of the shared data in the repository): the test
    rebuilds it the same way. With ``--reverse DIR`` it also loads every
    checkpoint that ``export-ours`` wrote into ``CPnet`` (strict) and compares
    CPnet's outputs with ours.

``export-ours`` (run with the PROJECT's python, ``.venv``)
    Saves checkpoints with :func:`cellseg_bridge.nn.save_checkpoint` (random
    weights and BatchNorm statistics; segmentation, restoration and small
    widths) and our network's outputs on a seeded input, into DIR.

Usage, from the repository root::

    bash benchmarks/peer_env.sh
    .venv/bin/python benchmarks/make_golden_net.py export-ours /tmp/ours_ckpt
    .peer_venv/bin/python benchmarks/make_golden_net.py golden --reverse /tmp/ours_ckpt
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CHECKPOINT = SHARED / "models" / "cellpose3_dsb2018_nuclei.pth"
DSB_IMAGE_ID = (
    "0402a81e75262469925ea893b6706183832e85324f7b1e08e634129f5d522cdd"  # fluo, test split
)
CROP = (slice(100, 196), slice(120, 280))  # 96 x 160
GOLDEN = REPO / "tests" / "nn" / "data" / "golden_cpnet_dsb2018.npz"
SEED = 20251122

#: Networks saved by ``export-ours``: name -> (nbase, nout, diam_mean).
OURS = {
    "seg_full": ([2, 32, 64, 128, 256], 3, 30.0),
    "restore_full": ([1, 32, 64, 128, 256], 1, 30.0),
    "seg_small": ([2, 16, 32, 64, 128], 3, 17.0),
}

log = logging.getLogger("make_golden_net")


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def random_input(nchan: int, size: tuple[int, int], seed: int, uniform: bool = False) -> np.ndarray:
    """Seeded input ``[1, nchan, H, W]`` (float32): standard normal, or uniform in [0, 1).

    The trained checkpoint gets uniform values in channel 0 and zeros in channel 1, like a
    normalised grey image with Cellpose ``channels=[0, 0]``: on out-of-distribution input
    (noise in both channels) its outputs reach 100-240, and float32 rounding alone (e.g.
    CPnet itself on 1 versus 2 threads) then differs by more than 1e-4.
    """
    rng = np.random.default_rng(seed)
    shape = (1, nchan, *size)
    x = rng.random(shape) if uniform else rng.standard_normal(shape)
    return x.astype(np.float32)


def dsb_crop() -> np.ndarray:
    """The normalised dsb2018 crop as ``[1, 2, 96, 160]`` (grey, zeros)."""
    import cv2  # in the peer env (cellpose depends on opencv)

    png = (
        SHARED
        / "data"
        / "dsb2018"
        / "stage1_train"
        / DSB_IMAGE_ID
        / "images"
        / f"{DSB_IMAGE_ID}.png"
    )
    rgba = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    if rgba is None:
        raise SystemExit(f"cannot read {png}")
    grey = rgba[..., :3].astype(np.float32).mean(axis=-1)
    lo, hi = np.percentile(grey, [1, 99])
    grey = (grey - lo) / (hi - lo)
    crop = grey[CROP]
    x = np.zeros((1, 2, *crop.shape), np.float32)
    x[0, 0] = crop
    return x


def peer_net(nbase: list[int], nout: int, diam_mean: float, state: dict) -> torch.nn.Module:
    """Cellpose's CPnet with ``state`` loaded strictly, in eval mode."""
    from cellpose.resnet_torch import CPnet

    net = CPnet(
        list(nbase), nout, sz=3, mkldnn=False, conv_3D=False, max_pool=True, diam_mean=diam_mean
    )
    net.load_state_dict(state, strict=True)
    return net.eval()


def peer_forward(net: torch.nn.Module, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CPnet forward (it returns output, style, encoder features)."""
    with torch.no_grad():
        out, style, _ = net(torch.from_numpy(x))
    return out.numpy(), style.numpy()


def make_golden(out_path: Path) -> dict:
    """Run the shared checkpoint through CPnet and write the golden npz."""
    state = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    net = peer_net([2, 32, 64, 128, 256], 3, 17.0, state)
    arrays: dict[str, np.ndarray] = {}
    x_random = random_input(2, (64, 64), SEED, uniform=True)
    x_random[:, 1] = 0.0
    for name, x in (("random", x_random), ("dsb", dsb_crop())):
        y, style = peer_forward(net, x)
        if (
            name == "random"
        ):  # the dsb crop is NOT stored (no copies of shared data): tests rebuild it
            arrays[f"x_{name}"] = x
        arrays[f"y_{name}"] = y
        arrays[f"style_{name}"] = style
    meta = {
        "checkpoint": CHECKPOINT.name,
        "checkpoint_sha256": sha256(CHECKPOINT),
        "cellpose": _peer_version(),
        "torch": torch.__version__,
        "dsb_image": DSB_IMAGE_ID,
        "crop": [[CROP[0].start, CROP[0].stop], [CROP[1].start, CROP[1].stop]],
        "seed": SEED,
        "x_dsb_shape": list(x.shape),
        "x_dsb_sum": float(x.astype(np.float64).sum()),
        "n_keys": len(state),
        "n_values": int(sum(v.numel() for v in state.values())),
    }
    arrays["meta"] = np.array(json.dumps(meta))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_path, **arrays)
    log.info("wrote %s (%.0f kB): %s", out_path, out_path.stat().st_size / 1e3, meta)
    return meta


def _peer_version() -> str:
    from importlib.metadata import version

    return version("cellpose")


def check_reverse(folder: Path) -> list[dict]:
    """Load each of our checkpoints into CPnet (strict) and compare outputs with ours."""
    results = []
    for name, (nbase, nout, diam_mean) in OURS.items():
        weights = folder / name / "weights.pth"
        record = {"name": name, "nbase": nbase, "nout": nout}
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            net = peer_net(nbase, nout, diam_mean, state)
        except (OSError, RuntimeError) as exc:
            record.update(loaded=False, error=str(exc))
            results.append(record)
            continue
        ours = np.load(folder / name / "ours_output.npz")
        y, style = peer_forward(net, ours["x"])
        record.update(
            loaded=True,
            strict=True,
            diam_mean=float(net.diam_mean.item()),
            max_abs_diff_output=float(np.abs(y - ours["y"]).max()),
            max_abs_diff_style=float(np.abs(style - ours["style"]).max()),
            output_scale=float(np.abs(ours["y"]).max()),
        )
        results.append(record)
    return results


def export_ours(folder: Path) -> None:
    """Save our checkpoints and our outputs for ``check_reverse``."""
    sys.path.insert(0, str(REPO))
    from cellseg_bridge.nn import CellposeUNet, save_checkpoint

    torch.manual_seed(SEED)
    for k, (name, (nbase, nout, diam_mean)) in enumerate(OURS.items()):
        net = CellposeUNet(nbase, nout, diam_mean=diam_mean)
        with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode is really tested
            for module in net.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.normal_(0.0, 0.1)
                    module.running_var.uniform_(0.5, 1.5)
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.normal_(0.0, 0.1)
            net.diam_labels.fill_(diam_mean * 1.25)
        net.eval()
        x = random_input(nbase[0], (48, 80), SEED + k)
        with torch.no_grad():
            y, style = net(torch.from_numpy(x))
        save_checkpoint(
            net, folder / name / "weights.pth", {"provenance": {"made_by": "make_golden_net.py"}}
        )
        np.savez(folder / name / "ours_output.npz", x=x, y=y.numpy(), style=style.numpy())
        log.info("exported %s to %s", name, folder / name)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    golden = sub.add_parser(
        "golden", help="(peer venv) write the golden npz; optionally check our checkpoints"
    )
    golden.add_argument("--out", type=Path, default=GOLDEN)
    golden.add_argument("--reverse", type=Path, help="folder written by export-ours")
    export = sub.add_parser("export-ours", help="(project venv) save our checkpoints and outputs")
    export.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    torch.set_num_threads(2)

    if args.mode == "export-ours":
        export_ours(args.folder)
        return 0
    make_golden(args.out)
    if args.reverse is None:
        return 0
    results = check_reverse(args.reverse)
    print(json.dumps(results, indent=2))
    ok = all(
        r.get("loaded") and r["max_abs_diff_output"] < 1e-4 and r["max_abs_diff_style"] < 1e-5
        for r in results
    )
    print("reverse load into CPnet (strict) and outputs equal:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
