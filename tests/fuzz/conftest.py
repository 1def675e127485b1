"""Hostile inputs (issue 19): builders of small bad files, checksums, and a child process that reports its memory.

Every bad input is built here in ``tmp_path`` from a few hundred bytes: crafted
TIFF headers, ROIs with huge coordinates, pickles that would create a marker file
if they ran, truncated checkpoints and zips. The tests feed them to the real CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import roifile

REPO = Path(__file__).resolve().parents[2]
#: Address space a memory child may use (malloc and mmap of numpy arrays count): a
#: regression that rasterises a 64000^2 ROI fails with MemoryError, not the machine.
CHILD_DATA_LIMIT = 3 << 30


def sha256s(paths: Iterable[Path]) -> dict[str, str]:
    """Checksum of each existing file (to prove the inputs were not touched)."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


def tiff_header(path: Path, width: int, height: int, *, tiled: bool = False, compression: int = 1,
                payload: bytes = b"\0" * 64) -> Path:
    """A little-endian 8-bit TIFF whose single IFD declares ``width`` x ``height`` pixels over ``payload``."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, compression), (262, 3, 1)]
    if tiled:
        entries += [(322, 3, 256), (323, 3, 256), (324, 4, 8), (325, 4, len(payload))]
    else:
        entries += [(273, 4, 8), (277, 3, 1), (278, 4, height), (279, 4, len(payload))]
    ifd = 8 + len(payload) + len(payload) % 2
    body = struct.pack("<H", len(entries))
    for tag, kind, value in sorted(entries):
        body += struct.pack("<HHIHH" if kind == 3 else "<HHII", tag, kind, 1, value, *((0,) if kind == 3 else ()))
    blob = b"II*\0" + struct.pack("<I", ifd) + payload + b"\0" * (len(payload) % 2) + body + struct.pack("<I", 0)
    path.write_bytes(blob)
    return path


def roi_zip(path: Path, rois: list[roifile.ImagejRoi]) -> Path:
    """Write ``rois`` as an ImageJ RoiSet.zip."""
    if path.exists():
        path.unlink()
    roifile.roiwrite(path, rois)
    return path


def polygon(points, name: str, subpixel: bool = False) -> roifile.ImagejRoi:
    """A polygon ROI through ``points`` (integer, or float32 sub-pixel)."""
    roi = roifile.ImagejRoi.frompoints(np.asarray(points, np.float32 if subpixel else np.int32))
    roi.roitype = roifile.ROI_TYPE.POLYGON
    roi.name = name
    return roi


def huge_rois() -> list[roifile.ImagejRoi]:
    """One ROI of each kind whose coordinates reach far beyond any image (+-32000 px, up to 1e7)."""
    big_int = polygon([[-32000, -32000], [32000, -32000], [32000, 32000], [-32000, 32000]], "poly_32000")
    big_sub = polygon([[-1e7, -1e7], [1e7, -1e7], [1e7, 1e7], [-1e7, 1e7]], "subpixel_1e7", subpixel=True)
    sliver = polygon([[-1e7, 5.5], [1e7, 5.5], [1e7, 7.5], [-1e7, 7.5]], "sliver_1e7", subpixel=True)
    ellipse = polygon([[0, 0], [1, 1]], "ellipse_1e7", subpixel=True)
    ellipse.roitype, ellipse.subtype = roifile.ROI_TYPE.FREEHAND, roifile.ROI_SUBTYPE.ELLIPSE
    ellipse.x1, ellipse.y1, ellipse.x2, ellipse.y2 = -1e7, 10.0, 1e7, 20.0
    ellipse.arrow_style_or_aspect_ratio = 0x3F  # big-endian float 0.5 at header byte 52: the aspect ratio
    # ImageJ reads header coordinates below -5000 as unsigned, so -5000 is the farthest left/top
    rounded = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=-5000, top=-5000, right=32000,
                                bottom=32000, rounded_rect_arc_size=200, name="rounded_37000")
    composite = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=-32000, top=-32000, right=32000,
                                  bottom=32000, name="composite_1e7")
    # moveTo, lineTo, cubicTo, close (ImageJ's ShapeRoi float array) spanning +-1e7
    composite.multi_coordinates = np.array(
        [0, -1e7, -1e7, 1, 1e7, -1e7, 3, 1e7, 1e7, 0, 1e7, -1e7, 1e7, 4], np.float32)
    composite.shape_roi_size = composite.multi_coordinates.size
    spline = polygon([[-1e7, -1e7], [1e7, -1e7], [1e7, 1e7], [-1e7, 1e7]], "spline_1e7", subpixel=True)
    spline.options |= roifile.ROI_OPTIONS.SPLINE_FIT  # ImageJ would sample 4e7 spline points
    return [big_int, big_sub, sliver, ellipse, rounded, composite, spline]


def checkpoint_files(folder: Path, marker: Path) -> dict[str, Path]:
    """Files that are not checkpoints, named by what they are; the pickles would create ``marker``."""
    import pickle

    import torch

    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    files["passwd"] = folder / "passwd"
    files["passwd"].write_bytes(b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/bin/sh\n")
    files["empty"] = folder / "empty.pth"
    files["empty"].write_bytes(b"")
    whole = folder / "whole.pth"
    torch.save({"w": torch.zeros(64)}, whole)
    files["truncated"] = folder / "truncated.pth"
    files["truncated"].write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    files["zip_not_torch"] = folder / "notes.pth"
    import zipfile

    with zipfile.ZipFile(files["zip_not_torch"], "w") as zf:
        zf.writestr("readme.txt", "not a model")
    files["garbage_safetensors"] = folder / "garbage.safetensors"
    files["garbage_safetensors"].write_bytes(struct.pack("<Q", 40) + b'{"w": {"dtype": "F32", garbage' + b"\0" * 8)
    payload = _Payload(marker)
    files["pickle_os_system_torch"] = folder / "evil.pth"
    torch.save({"w": torch.zeros(2), "x": payload}, files["pickle_os_system_torch"])
    files["pickle_os_system_p2"] = folder / "evil_p2.pth"
    files["pickle_os_system_p2"].write_bytes(pickle.dumps({"x": payload}, protocol=2))
    files["pickle_os_system_p4"] = folder / "evil_p4.pth"
    files["pickle_os_system_p4"].write_bytes(pickle.dumps({"x": payload}, protocol=4))
    return files


class _Payload:
    """Unpickling this would run ``os.system('touch MARKER')``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def run_child(code: str, cwd: Path, timeout: float = 120) -> dict:
    """Run ``code`` in a fresh interpreter capped at :data:`CHILD_DATA_LIMIT`; return the JSON it prints last.

    ``code`` may call ``peak()`` (this process's peak resident memory in bytes so
    far) and must end by printing one JSON line.
    """
    prelude = textwrap.dedent(f"""
        import json, resource, sys
        resource.setrlimit(resource.RLIMIT_DATA, ({CHILD_DATA_LIMIT}, {CHILD_DATA_LIMIT}))
        def peak():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def fuzz() -> SimpleNamespace:
    """The builders and helpers above, for the tests of this folder."""
    return SimpleNamespace(sha256s=sha256s, tiff_header=tiff_header, roi_zip=roi_zip, polygon=polygon,
                           huge_rois=huge_rois, checkpoint_files=checkpoint_files, run_child=run_child)


@pytest.fixture
def sample_image(tmp_path: Path) -> Path:
    """A small 48 x 64 OME-TIFF with two bright blobs (a --like image, a segment input)."""
    from cellseg_bridge.io.writers import write_ome_tiff

    image = np.zeros((48, 64), np.uint16)
    image[10:20, 10:22] = 900
    image[28:40, 36:50] = 700
    path = tmp_path / "img.ome.tif"
    write_ome_tiff(image, path)
    return path
