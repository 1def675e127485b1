"""Convert throughput (MB/s of pixel data): the bioio backend against the aicsimageio backend.

Inputs: every vendor file of ``../shared/data/formats`` that aicsimageio reads, plus a generated
ImageJ-style TIFF stack of 2048 x 4096 planes (32 planes, 512 MiB, unless
``CELLSEG_BENCH_STACK_PLANES`` says otherwise), so the number is not dominated by per-file
overhead. In the same run: ``convert`` with ``--reader bioio``, ``convert`` with ``--reader
aicsimageio`` (both write uncompressed OME-TIFF), and reading the files with aicsimageio alone.
Needs the extra ``cellseg-bridge[aicsimageio]`` (Python < 3.13); without it nothing is compared.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

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
                    _read_all([path])  # keep only files the reference can read (xz LIF scans it cannot)
                except Exception as exc:  # noqa: BLE001 - any reference failure: not comparable
                    log.info("skipping %s for the comparison: %s", path.name, exc)
                    continue
                files.append(path)
    planes = int(os.environ.get("CELLSEG_BENCH_STACK_PLANES", "32"))
    big = tmp / f"stack_{planes}x2048x4096.tif"
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 4096, size=(planes, 2048, 4096), dtype=np.uint16)
    tifffile.imwrite(big, stack, imagej=True, metadata={"axes": "ZYX"}, resolution=(1 / 0.5, 1 / 0.5))
    files.append(big)
    return files


def _read_all(files: list[Path]) -> int:
    from aicsimageio import AICSImage

    nbytes = 0
    for path in files:
        img = AICSImage(path)
        for scene in img.scenes:
            img.set_scene(scene)
            nbytes += img.get_image_data().nbytes
    return nbytes


@contextlib.contextmanager
def _reader(name: str) -> Iterator[None]:
    """Make ``name`` the backend of every ``open_image`` inside (as ``--reader`` does)."""
    before = os.environ.get("CELLSEG_READER")
    os.environ["CELLSEG_READER"] = name
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CELLSEG_READER", None)
        else:
            os.environ["CELLSEG_READER"] = before


def _time_convert(files: list[Path], out: Path, reader: str) -> float:
    with _reader(reader):
        t0 = time.perf_counter()
        report = convert(files, out, overwrite=True, compression="none", quiet=True)
        seconds = time.perf_counter() - t0
    if report.failed:
        raise RuntimeError(f"convert with {reader} failed on {report.failed}")
    log.info("convert --reader %s: %d outputs in %.2f s", reader, len(report.done), seconds)
    return seconds


def run() -> list[Row]:
    """Time ``convert`` through each backend, and aicsimageio reading, on the same files."""
    if importlib.util.find_spec("aicsimageio") is None:
        log.info("aicsimageio is not installed (pip install 'cellseg-bridge[aicsimageio]'): nothing to compare")
        return []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = _inputs(tmp)
        t0 = time.perf_counter()
        nbytes = _read_all(files)
        t_read = time.perf_counter() - t0
        # bioio first and last: the file cache is warm for both backends' timed runs
        _time_convert(files, tmp / "warm", "bioio")
        t_aics = _time_convert(files, tmp / "aics", "aicsimageio")
        t_bioio = _time_convert(files, tmp / "bioio", "bioio")
        for a, b in zip(sorted((tmp / "aics").iterdir()), sorted((tmp / "bioio").iterdir())):
            if not np.array_equal(tifffile.imread(a), tifffile.imread(b)):
                raise RuntimeError(f"the backends wrote different pixels for {a.name}")
        mb = nbytes / 2**20
        log.info("%d files, %.1f MiB of pixels; bioio/aicsimageio convert ratio x%.2f", len(files), mb, t_aics / t_bioio)
        return [
            Row("convert, bioio backend", mb / t_bioio, mb / t_aics, "MB/s", "aicsimageio backend",
                higher_is_better=True),
            Row("convert (bioio, uncompressed OME-TIFF out)", mb / t_bioio, mb / t_read, "MB/s",
                "aicsimageio read only", higher_is_better=True),
        ]
