"""Does restoration help segmentation? AP@0.5 on the dsb2018 TEST split under heavy synthetic degradation.

For every test image (grayscale, 1st/99th percentiles normalised) and condition, the
segmentation model (default the bundled ``nuclei``) segments:

- ``clean``: the undegraded image (reference);
- ``degraded``: the degraded image;
- ``mse``: the degraded image restored by the reconstruction-only baseline model
  (``<type>_nuclei_mse``);
- ``seg-aware``: restored by the segmentation-aware model (``<type>_nuclei``);
- for the beyond-the-paper conditions also ``isotropic``: restored by the one-click
  model trained on isotropic degradations only (``oneclick_nuclei``), against ``seg-aware``
  = the ``aniso_nuclei`` model trained for them.

Conditions (fixed seed per image, so every method sees the same degraded pixels):

==============  =========================================================  ===========
condition       degradation                                                type
==============  =========================================================  ===========
noise           Poisson, ``--photons`` photons per unit intensity (5)      denoise
blur            Gaussian blur, sigma ``--blur`` px (4)                     deblur
downsample      bilinear x``--factor`` (4) down and up                     upsample
aniso_blur      anisotropic blur, sigmas ``--aniso`` (8,1.5) px at 30 deg  aniso
aniso_blur_any  the same at a random angle (a new one each draw)           aniso
stripes         stripe noise, amplitude 0.25, horizontal, + 0.5 banding    aniso
==============  =========================================================  ===========

The random conditions (noise, stripes) can be drawn ``--draws`` times per image (the
image's score is the mean over draws). Beside the table of means, the paired per-image
differences (segmentation-aware minus MSE baseline, and minus the isotropic model) are
printed with a 95% confidence interval and the count of images won / lost, so that a small
difference can be told from noise. The JSON beside ``--out`` keeps every per-image score.

Both segmentation and restoration get the image's true median nucleus diameter
(``--diameter gt``, isolating the effect of restoration) or estimate it (``auto``).
A model that is not found gives ``n/a``.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_restore.py --models-dir runs/ --out restore_bench.md
    # smoke run
    .venv/bin/python benchmarks/bench_restore.py --models-dir /tmp/smoke --max-images 1 \\
        --conditions noise --seg-model ../shared/models/cellpose3_dsb2018_nuclei.pth
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import shared_data  # noqa: E402

from cellseg_bridge.core import degrade as dg  # noqa: E402
from cellseg_bridge.core import transforms  # noqa: E402
from cellseg_bridge.core.metrics import average_precision  # noqa: E402
from cellseg_bridge.datasets import dsb2018  # noqa: E402
from cellseg_bridge.errors import InputError  # noqa: E402
from cellseg_bridge.restoration.api import load_restore_model, restore  # noqa: E402
from cellseg_bridge.segmentation.pipeline import load_model, segment  # noqa: E402
from cellseg_bridge.training.data import median_diameter  # noqa: E402

logger = logging.getLogger("bench_restore")
CONDITIONS = ("noise", "blur", "downsample", "aniso_blur", "aniso_blur_any", "stripes")
TYPE_OF = {"noise": "denoise", "blur": "deblur", "downsample": "upsample", "aniso_blur": "aniso",
           "aniso_blur_any": "aniso", "stripes": "aniso"}
#: Conditions whose degradation is random (the others give the same pixels every draw).
RANDOM_CONDITIONS = ("noise", "aniso_blur_any", "stripes")


def paired_difference(a: list[float], b: list[float]) -> dict[str, float]:
    """Mean of the per-image differences ``a - b`` with a 95% normal-approximation interval.

    Returns
    -------
    dict
        ``mean``, ``half_width`` (1.96 standard errors; 0 for one image), ``wins``
        (images where a > b), ``losses`` (a < b), ``n``.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError("need two equally long, non-empty lists of per-image scores")
    half = 1.96 * float(d.std(ddof=1)) / math.sqrt(d.size) if d.size > 1 else 0.0
    return {"mean": float(d.mean()), "half_width": half, "wins": int((d > 0).sum()),
            "losses": int((d < 0).sum()), "n": int(d.size)}


def degrade_for(condition: str, img: np.ndarray, seed: int, args: argparse.Namespace) -> np.ndarray:
    """The benchmark's degraded version of a normalised image (deterministic per seed)."""
    rng = np.random.default_rng(seed)
    if condition == "noise":
        out = dg.poisson_noise(img, args.photons, rng)
    elif condition == "blur":
        out = dg.gaussian_blur(img, args.blur)
    elif condition == "downsample":
        out = dg.downsample(img, args.factor)
    elif condition == "aniso_blur":
        out = dg.anisotropic_blur(img, *args.aniso, math.radians(30))
    elif condition == "aniso_blur_any":
        out = dg.anisotropic_blur(img, *args.aniso, float(rng.uniform(0, math.pi)))
    elif condition == "stripes":
        out = dg.stripe_noise(img, rng, 0.25, angle=0.0, period=24.0)
    else:
        raise ValueError(condition)
    return transforms.normalize_percentile(out, channel_axis=None)


def _find(models_dir: Path | None, name: str, device: str):
    """A restoration model from ``models_dir/<name>`` or the registry; None when absent."""
    spec = models_dir / name if models_dir is not None and (models_dir / name).is_dir() else name
    try:
        return load_restore_model(spec, device=device)
    except InputError as exc:
        logger.warning("restoration model %s not available: %s", name, exc.reason)
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seg-model", default="nuclei")
    ap.add_argument("--models-dir", type=Path, default=None,
                    help="folder with model folders <type>_nuclei and <type>_nuclei_mse (else the registry)")
    ap.add_argument("--target", default="nuclei")
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    ap.add_argument("--kinds", default="fluo,color,bf_gray", help="dsb2018 modalities of the test split")
    ap.add_argument("--max-images", type=int, default=None)
    ap.add_argument("--photons", type=float, default=5.0)
    ap.add_argument("--blur", type=float, default=4.0)
    ap.add_argument("--factor", type=float, default=4.0)
    ap.add_argument("--aniso", type=lambda v: tuple(float(x) for x in v.split(",")), default=(8.0, 1.5),
                    help="major,minor sigma (px) of the anisotropic blur")
    ap.add_argument("--draws", type=int, default=1, help="degradations per image for the random conditions")
    ap.add_argument("--diameter", choices=["gt", "auto"], default="gt")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=None, help="markdown table (a .json beside it)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = shared_data()
    if data is None:
        logger.error("shared data not found (set CELLSEG_SHARED)")
        return 2
    root = data / "dsb2018"
    rows = dsb2018.read_split(root)
    kinds = set(args.kinds.split(","))
    ids = [r.image_id for r in rows if r.split == "test" and r.kind in kinds][: args.max_images]
    samples = [dsb2018.load_sample(root, i) for i in ids]
    conditions = [c for c in args.conditions.split(",") if c]
    seg_model = load_model(args.seg_model, device=args.device)
    t = args.target
    methods: dict[str, dict[str, object]] = {}
    for cond in conditions:
        kind = TYPE_OF[cond]
        methods[cond] = {"mse": _find(args.models_dir, f"{kind}_{t}_mse", args.device),
                         "seg-aware": _find(args.models_dir, f"{kind}_{t}", args.device)}
        if kind == "aniso":
            methods[cond]["isotropic"] = _find(args.models_dir, f"oneclick_{t}", args.device)

    def seg_ap(img: np.ndarray, truth: np.ndarray, diameter: float | None) -> float:
        labels = segment(img, seg_model, axes="YX", diameter=diameter).labels[0, 0]
        return float(average_precision(truth, labels.astype(np.int64), 0.5)[0][0])

    scores: dict[str, dict[str, list[float]]] = {c: {} for c in conditions}
    clean_scores: list[float] = []
    timings: dict[str, list[float]] = {"segment": [], "restore": []}
    for k, (raw, truth) in enumerate(samples):
        img = transforms.normalize_percentile(raw, channel_axis=None)
        diameter = median_diameter(truth)[0] if args.diameter == "gt" else None
        tic = time.perf_counter()
        clean_scores.append(seg_ap(img, truth, diameter))
        timings["segment"].append(time.perf_counter() - tic)
        for cond in conditions:
            draws = args.draws if cond in RANDOM_CONDITIONS else 1
            per_draw: dict[str, list[float]] = {}
            for j in range(draws):
                bad = degrade_for(cond, img, 1000 + k + 100_000 * j, args)
                per_draw.setdefault("degraded", []).append(seg_ap(bad, truth, diameter))
                for name, model in methods[cond].items():
                    if model is None:
                        continue
                    tic = time.perf_counter()
                    fixed = restore(bad, model=model, diameter=diameter).image[0, 0, 0]
                    timings["restore"].append(time.perf_counter() - tic)
                    per_draw.setdefault(name, []).append(seg_ap(fixed, truth, diameter))
            for name, values in per_draw.items():
                scores[cond].setdefault(name, []).append(float(np.mean(values)))
        logger.info("image %d/%d (%s) done", k + 1, len(samples), ids[k])

    cols = ["degraded", "mse", "seg-aware", "isotropic"]
    lines = [f"AP@0.5 of `{args.seg_model}` on {len(samples)} dsb2018 test image(s) ({', '.join(sorted(kinds))}); "
             f"clean images: {np.mean(clean_scores):.3f}", "",
             "| condition | degraded | MSE baseline | segmentation-aware | isotropic model | seg-aware / degraded |",
             "|---|---|---|---|---|---|"]
    table: dict[str, dict[str, float | None]] = {}
    for cond in conditions:
        vals = {c: (float(np.mean(scores[cond][c])) if scores[cond].get(c) else None) for c in cols}
        table[cond] = vals
        ratio = (vals["seg-aware"] / vals["degraded"]) if vals["seg-aware"] is not None and vals["degraded"] else None
        cells = ["n/a" if vals[c] is None else f"{vals[c]:.3f}" for c in cols]
        lines.append(f"| {cond} | " + " | ".join(cells) + f" | {'n/a' if ratio is None else f'{ratio:.2f}x'} |")
    lines += ["", "Paired per-image differences of the segmentation-aware model (mean, 95% interval, images won / lost):", "",
              "| condition | seg-aware - MSE baseline | seg-aware - isotropic model |", "|---|---|---|"]
    paired: dict[str, dict[str, dict[str, float]]] = {}
    for cond in conditions:
        ours = scores[cond].get("seg-aware")
        paired[cond] = {other: paired_difference(ours, scores[cond][other])
                        for other in ("mse", "isotropic") if ours and scores[cond].get(other)}
        cells = [(f"{p['mean']:+.3f} ± {p['half_width']:.3f} ({p['wins']}/{p['losses']})" if (p := paired[cond].get(o))
                  else "n/a") for o in ("mse", "isotropic")]
        lines.append(f"| {cond} | " + " | ".join(cells) + " |")
    lines += ["", f"mean seconds: segment {np.mean(timings['segment']):.1f} per image"
              + (f", restore {np.mean(timings['restore']):.1f} per image" if timings["restore"] else "")]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps(
            {"clean": float(np.mean(clean_scores)), "table": table, "paired": paired, "images": ids,
             "per_image": {"clean": clean_scores, **scores}, "args": vars(args)},
            indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
