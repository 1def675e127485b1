"""Convert throughput (MB/s of pixel data): the bioio backend against the aicsimageio backend.

Inputs: every vendor file of ``../shared/data/formats`` that aicsimageio reads, plus a generated
ImageJ-style TIFF stack of 2048 x 4096 planes (32 planes, 512 MiB, unless
``CELLSEG_BENCH_STACK_PLANES`` says otherwise), so the number is not dominated by per-file
overhead. In the same run: ``convert`` with ``--reader bioio``, ``convert`` with ``--reader
aicsimageio`` (both write uncompressed OME-TIFF), and reading the files with aicsimageio alone.
Needs the extra ``cellseg-bridge[aicsimageio]`` (Python < 3.13); without it nothing is compared.

That extra holds tifffile at 2023.2, where bioio's TIFF plugins do not work: in its environment
both backends read plain TIFFs through the same tifffile code (and OME-TIFFs through aicsimageio),
so the run logs which code read each input under each backend and adds a row for the inputs the
two backends read with different code (CZI, ND2, LIF). ``--bioio-python`` times the bioio backend
in another environment (the default install, where bioio-tifffile and bioio-ome-tiff work) on
the same files. Each convert is timed ``--repeat`` times, the backends alternating; best time.

Usage: ``python benchmarks/bench_convert.py [--planes N] [--repeat N] [--bioio-python PY]``
(also ``python benchmarks/run_all.py convert``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
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


#: ``attrs["reader"]`` of the project's own pixel readers, the same code under either backend
#: (plain TIFFs under the aicsimageio extra's tifffile, TIFF pixels with aicsimageio, LIF xz scans).
OWN_CODE = {"tifffile", "tifffile-tiles", "readlif-planes"}


def _read_by(files: list[Path], reader: str) -> dict[Path, str]:
    """The code that reads each file through backend ``reader`` (``attrs["reader"]`` of every scene)."""
    from cellseg_bridge.io.reader import list_scenes, open_image

    out: dict[Path, str] = {}
    with _reader(reader):
        for path in files:
            names = {str(open_image(path, scene=i).attrs["reader"]) for i in range(len(list_scenes(path)))}
            out[path] = ", ".join(sorted(names))
    return out


def _best_convert(files: list[Path], out: Path, readers: Sequence[str], repeat: int) -> dict[str, float]:
    """Best convert time per backend, the backends alternating (``repeat`` rounds)."""
    best = {name: float("inf") for name in readers}
    for _ in range(repeat):
        for name in readers:
            best[name] = min(best[name], _time_convert(files, out / name, name))
    return best


_CHILD = """
import json, sys, time
from pathlib import Path
from cellseg_bridge import convert
files, out, repeat = [Path(p) for p in sys.argv[1].split("\\n")], Path(sys.argv[2]), int(sys.argv[3])
best = float("inf")
for i in range(repeat + 1):  # run 0 warms imports and the file cache, untimed
    t0 = time.perf_counter()
    report = convert(files, out, overwrite=True, compression="none", quiet=True)
    if i:
        best = min(best, time.perf_counter() - t0)
    if report.failed:
        raise SystemExit(f"convert failed on {report.failed}")
print(json.dumps({"seconds": best}))
"""


def _time_elsewhere(python: str, files: list[Path], out: Path, repeat: int) -> float:
    """Best convert time with the bioio backend in the environment of ``python``."""
    done = subprocess.run(
        [python, "-c", _CHILD, "\n".join(str(p) for p in files), str(out), str(repeat)],
        env={**os.environ, "CELLSEG_READER": "bioio"}, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{python}: convert with bioio failed: {done.stderr.strip()[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def run(repeat: int = 3, bioio_python: str | None = None) -> list[Row]:
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
        by_bioio, by_aics = _read_by(files, "bioio"), _read_by(files, "aicsimageio")
        differ = [p for p in files if not {by_bioio[p], by_aics[p]} <= OWN_CODE]
        for path in files:
            log.info("  %-48s bioio backend: %-26s aicsimageio backend: %s", path.name, by_bioio[path], by_aics[path])
        # warm-up (untimed), then the backends alternate, best of `repeat`
        _time_convert(files, tmp / "warm", "bioio")
        best = _best_convert(files, tmp, ("aicsimageio", "bioio"), repeat)
        t_aics, t_bioio = best["aicsimageio"], best["bioio"]
        for a, b in zip(sorted((tmp / "aicsimageio").iterdir()), sorted((tmp / "bioio").iterdir())):
            if not np.array_equal(tifffile.imread(a), tifffile.imread(b)):
                raise RuntimeError(f"the backends wrote different pixels for {a.name}")
        mb = nbytes / 2**20
        same = mb - _read_all(differ) / 2**20 if differ else mb
        log.info("%d files, %.1f MiB of pixels (%.1f MiB read by the same code in both backends here); "
                 "bioio/aicsimageio convert ratio x%.2f", len(files), mb, same, t_aics / t_bioio)
        rows = [
            Row("convert, bioio backend", mb / t_bioio, mb / t_aics, "MB/s", "aicsimageio backend",
                higher_is_better=True),
            Row("convert (bioio, uncompressed OME-TIFF out)", mb / t_bioio, mb / t_read, "MB/s",
                "aicsimageio read only", higher_is_better=True),
        ]
        if differ:
            mb_differ = _read_all(differ) / 2**20
            best = _best_convert(differ, tmp / "differ", ("aicsimageio", "bioio"), repeat)
            log.info("read by different code: %s (%.1f MiB)", ", ".join(p.name for p in differ), mb_differ)
            rows.append(Row("convert, bioio backend, files read differently", mb_differ / best["bioio"],
                            mb_differ / best["aicsimageio"], "MB/s", "aicsimageio backend", higher_is_better=True))
        if bioio_python:
            t_other = _time_elsewhere(bioio_python, files, tmp / "elsewhere", repeat)
            log.info("bioio backend under %s: %.2f s (aicsimageio backend here: %.2f s)", bioio_python, t_other, t_aics)
            rows.append(Row("convert, bioio backend, --bioio-python env", mb / t_other, mb / t_aics, "MB/s",
                            "aicsimageio backend", higher_is_better=True))
        return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Convert throughput: the bioio backend against the aicsimageio backend, same files, same run.")
    parser.add_argument("--planes", type=int, default=None,
                        help="planes of the generated 2048x4096 uint16 TIFF stack (default 32 = 512 MiB, "
                             "or $CELLSEG_BENCH_STACK_PLANES)")
    parser.add_argument("--repeat", type=int, default=3, help="timed converts per backend, best kept (default 3)")
    parser.add_argument("--bioio-python", metavar="PY",
                        help="also time the bioio backend with this interpreter (an environment without the "
                             "aicsimageio extra, where bioio's TIFF plugins work), e.g. .venv/bin/python")
    args = parser.parse_args(argv)
    if args.planes is not None:
        os.environ["CELLSEG_BENCH_STACK_PLANES"] = str(args.planes)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = run(repeat=args.repeat, bioio_python=args.bioio_python)
    for row in rows:
        log.info(row.format())
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
