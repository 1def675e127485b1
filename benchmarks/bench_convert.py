"""Convert throughput (MB/s of pixel data) against reading the same files with aicsimageio alone.

Inputs: every vendor file of ``../shared/data/formats`` that aicsimageio reads, plus a generated
512 MiB ImageJ-style TIFF stack (so the number is not dominated by per-file overhead).
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from aicsimageio import AICSImage

from _common import Row, shared_data
from cellseg_bridge.batch.convert import convert

log = logging.getLogger("benchmarks")


def _inputs(tmp: Path) -> list[Path]:
    files: list[Path] = []
    stems: set[str] = set()
    data = shared_data()
    if data is not None:
        for path in sorted((data / "formats").rglob("*")):
            stem = path.name.split(".")[0]
            if path.suffix.lower() in {".czi", ".nd2", ".lif", ".tif", ".tiff"} and stem not in stems:
                stems.add(stem)  # two inputs with one stem would write the same output name
                try:
                    _read_all([path])  # keep only files the reference can read (numpy 2 breaks some)
                except Exception as exc:  # noqa: BLE001 - any reference failure: not comparable
                    log.info("skipping %s for the comparison: %s", path.name, exc)
                    continue
                files.append(path)
    big = tmp / "stack_32x2048x4096.tif"
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 4096, size=(32, 2048, 4096), dtype=np.uint16)
    tifffile.imwrite(big, stack, imagej=True, metadata={"axes": "ZYX"}, resolution=(1 / 0.5, 1 / 0.5))
    files.append(big)
    return files


def _read_all(files: list[Path]) -> int:
    nbytes = 0
    for path in files:
        img = AICSImage(path)
        for scene in img.scenes:
            img.set_scene(scene)
            nbytes += img.get_image_data().nbytes
    return nbytes


def run() -> list[Row]:
    """Time ``convert`` and aicsimageio reading on the same files."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = _inputs(tmp)
        t0 = time.perf_counter()
        nbytes = _read_all(files)
        t_read = time.perf_counter() - t0
        out = tmp / "out"
        t0 = time.perf_counter()
        report = convert(files, out, overwrite=True, compression="none")
        t_convert = time.perf_counter() - t0
        if report.failed:
            log.info("convert failures: %s", report.failed)
        mb = nbytes / 2**20
        log.info("%d files, %.1f MiB of pixels", len(files), mb)
        return [Row("convert (uncompressed OME-TIFF out)", mb / t_convert, mb / t_read, "MB/s",
                    "aicsimageio read only", higher_is_better=True)]
