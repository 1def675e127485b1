"""Cellpose ``_seg.npy``: GUI-compatible structure, round trip, and refusal of malicious pickles."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest

from cellseg_bridge.errors import InputError
from cellseg_bridge.io.seg_npy import (
    gui_flows,
    masks_to_outlines,
    read_seg_npy,
    safe_load_npy,
    seg_npy_path,
    write_seg_npy,
)


def _masks() -> np.ndarray:
    masks = np.zeros((30, 40), np.int32)
    masks[2:10, 3:12] = 1
    masks[15:25, 20:35] = 2
    masks[12:14, 2:4] = 3
    return masks


def _flows(shape=(30, 40)):
    rng = np.random.default_rng(0)
    dp = rng.normal(size=(2, *shape)).astype(np.float32)
    cellprob = rng.normal(size=shape).astype(np.float32)
    p = np.stack(np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")).astype(np.float32)
    return dp, cellprob, p


def test_written_file_has_the_structure_the_cellpose_gui_expects(tmp_path):
    masks = _masks()
    dp, cellprob, p = _flows()
    out = write_seg_npy(tmp_path / "img_seg.npy", masks, filename="/data/img.tif", diameter=17.5,
                        flows=gui_flows(dp, cellprob, p))
    # what Cellpose itself does: np.load(..., allow_pickle=True).item()
    dat = np.load(out, allow_pickle=True).item()
    assert {"masks", "outlines", "flows", "diameter", "filename", "ismanual", "chan_choose"} <= set(dat)
    assert dat["masks"].dtype == np.uint16 and dat["masks"].shape == masks.shape
    np.testing.assert_array_equal(dat["masks"], masks)
    assert dat["outlines"].dtype == np.uint16
    assert set(np.unique(dat["outlines"])) == {0, 1, 2, 3}  # label-valued outline image
    assert dat["ismanual"].dtype == np.bool_ and dat["ismanual"].shape == (3,)  # one per mask
    assert dat["chan_choose"] == [0, 0]
    assert dat["filename"] == "/data/img.tif" and isinstance(dat["filename"], str)
    assert dat["diameter"] == 17.5
    flows = dat["flows"]
    assert isinstance(flows, list) and len(flows) == 5
    assert flows[0].shape == (1, 30, 40, 3) and flows[0].dtype == np.uint8  # RGB flow picture
    assert flows[1].shape == (1, 30, 40) and flows[1].dtype == np.uint8  # cellprob 0-255
    assert flows[2].shape == (1, 30, 40, 3) and not flows[2].any()  # no Z flow in 2-D
    assert flows[3].shape == (2, 30, 40)  # pixel destinations p
    assert flows[4].shape == (3, 30, 40) and flows[4].dtype == np.float32  # [dY, dX, cellprob]
    np.testing.assert_array_equal(flows[4][:2], dp)
    # what the GUI does with flows: dynamics on flows[4][:-1], flows[4][-1], p=flows[3]
    assert flows[0].shape[-3] == dat["masks"].shape[-2]


def test_round_trip_through_our_reader(tmp_path):
    masks = _masks()
    ismanual = np.array([True, False, True])
    write_seg_npy(tmp_path / "a_seg.npy", masks, filename="a.tif", diameter=30.0, ismanual=ismanual,
                  flows=gui_flows(*_flows()), extra={"colors": np.zeros((3, 3), np.uint8), "flow_threshold": 0.4})
    seg = read_seg_npy(tmp_path / "a_seg.npy")
    np.testing.assert_array_equal(seg.masks, masks)
    np.testing.assert_array_equal(seg.outlines, masks_to_outlines(masks))
    np.testing.assert_array_equal(seg.ismanual, ismanual)
    assert seg.diameter == 30.0 and seg.filename == "a.tif" and seg.chan_choose == [0, 0]
    assert len(seg.flows) == 5
    assert seg.extra["flow_threshold"] == 0.4 and seg.extra["colors"].shape == (3, 3)


def test_file_saved_the_cellpose_way_is_read(tmp_path):
    """A dict saved like Cellpose's GUI (numpy scalars, lists of int16, None values) loads."""
    masks = _masks().astype(np.uint16)
    dat = {
        "outlines": masks_to_outlines(masks), "colors": np.array([[255, 0, 0]] * 3, np.uint8),
        "masks": masks, "filename": "cells.png", "flows": [[], [], [], [], [[]]],
        "ismanual": np.zeros(3, bool), "manual_changes": [], "model_path": 0,
        "flow_threshold": 0.4, "cellprob_threshold": 0.0,
        "normalize_params": {"lowhigh": None, "percentile": [1.0, 99.0], "normalize": True},
        "restore": None, "ratio": 1.0, "diameter": np.float32(17.0),
        "zdraw": list(-1 * np.ones(3, np.int16)), "chan_choose": [2, 1],
    }
    np.save(tmp_path / "cells_seg.npy", dat)
    seg = read_seg_npy(tmp_path / "cells_seg.npy")
    np.testing.assert_array_equal(seg.masks, masks)
    assert seg.diameter == 17.0 and seg.chan_choose == [2, 1]
    assert seg.extra["normalize_params"]["percentile"] == [1.0, 99.0]
    assert seg.extra["zdraw"][0] == -1


def test_uint32_when_many_labels_and_renumbering(tmp_path):
    masks = np.arange(300 * 300, dtype=np.int64).reshape(300, 300)  # 89999 labels
    write_seg_npy(tmp_path / "many_seg.npy", masks)
    seg = read_seg_npy(tmp_path / "many_seg.npy")
    assert seg.masks.dtype == np.uint32 and seg.masks.max() == 300 * 300 - 1
    gaps = np.zeros((10, 10), np.int32)
    gaps[0:2, 0:2] = 5
    gaps[5:7, 5:7] = 9
    write_seg_npy(tmp_path / "gaps_seg.npy", gaps)
    assert sorted(np.unique(read_seg_npy(tmp_path / "gaps_seg.npy").masks)) == [0, 1, 2]


def test_3d_masks(tmp_path):
    masks = np.zeros((4, 20, 20), np.uint16)
    masks[1:3, 5:10, 5:10] = 1
    write_seg_npy(tmp_path / "z_seg.npy", masks)
    seg = read_seg_npy(tmp_path / "z_seg.npy")
    assert seg.masks.shape == (4, 20, 20) and seg.outlines.shape == (4, 20, 20)
    dp = np.zeros((3, 4, 20, 20), np.float32)
    flows = gui_flows(dp, np.zeros((4, 20, 20), np.float32), np.zeros((3, 4, 20, 20), np.float32))
    assert flows[0].shape == (4, 20, 20, 3) and flows[2].shape == (4, 20, 20) and flows[4].shape == (4, 4, 20, 20)


def test_outlines_are_inner_boundaries():
    masks = np.zeros((7, 7), np.uint16)
    masks[1:6, 1:6] = 4
    outlines = masks_to_outlines(masks)
    assert outlines[1, 1] == 4 and outlines[3, 3] == 0 and outlines[0, 0] == 0
    assert (outlines > 0).sum() == 16


def test_seg_npy_path_follows_cellpose():
    assert str(seg_npy_path("/d/cells.tif")) == "/d/cells_seg.npy"
    assert str(seg_npy_path("/d/cells.ome.tif")) == "/d/cells.ome_seg.npy"


# ------------------------------------------------------------------ security


class _Evil:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _save_malicious(path, payload) -> None:
    np.save(path, {"masks": np.zeros((4, 4), np.uint16), "filename": payload}, allow_pickle=True)


def test_malicious_pickle_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil_seg.npy"
    _save_malicious(bad, _Evil(f"touch {marker}"))
    with pytest.raises(InputError, match=r"refusing to load (posix|os|nt)\.system"):
        read_seg_npy(bad)
    assert not marker.exists()
    # the file really is dangerous with a plain np.load: proves the test payload works
    np.load(bad, allow_pickle=True)
    assert marker.exists()


@pytest.mark.parametrize(
    "module,name",
    [("builtins", "eval"), ("builtins", "getattr"), ("subprocess", "Popen"),
     ("numpy.testing._private.utils", "runstring"), ("numpy", "load"), ("pickle", "loads")],
)
def test_other_forbidden_globals(tmp_path, module, name):
    # hand-written protocol-2 pickle: GLOBAL module name, then an argument tuple, REDUCE
    payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X\x01\x00\x00\x001\x85R."
    path = tmp_path / "bad_seg.npy"
    path.write_bytes(_npy_with(payload))
    with pytest.raises(InputError, match=f"refusing to load {module}.{name}"):
        safe_load_npy(path)


def _npy_with(pickle_bytes: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": ()})
    return buf.getvalue() + pickle_bytes


def test_corrupt_and_wrong_files(tmp_path):
    junk = tmp_path / "junk_seg.npy"
    junk.write_bytes(b"not a numpy file at all")
    with pytest.raises(InputError):
        read_seg_npy(junk)
    truncated = tmp_path / "trunc_seg.npy"
    write_seg_npy(truncated, _masks())
    truncated.write_bytes(truncated.read_bytes()[:-50])
    with pytest.raises(InputError):
        read_seg_npy(truncated)
    plain = tmp_path / "plain_seg.npy"
    np.save(plain, np.zeros((3, 3)))
    with pytest.raises(InputError, match="plain array"):
        read_seg_npy(plain)
    nomasks = tmp_path / "nomasks_seg.npy"
    np.save(nomasks, {"outlines": np.zeros((3, 3))})
    with pytest.raises(InputError, match="no 'masks'"):
        read_seg_npy(nomasks)
    with pytest.raises(InputError, match="not found"):
        read_seg_npy(tmp_path / "missing_seg.npy")


def test_pickle_module_is_untouched():
    """The restricted unpickler must not change the global pickle behaviour."""
    assert pickle.loads(pickle.dumps({"a": 1})) == {"a": 1}


@pytest.mark.parametrize("protocol", [2, 3])
def test_numpy1_module_names_are_accepted(tmp_path, protocol):
    """Files written by numpy 1.x name ``numpy.core.multiarray`` (numpy 2: ``numpy._core``)."""
    masks = _masks().astype(np.uint16)
    obj = np.empty((), dtype=object)
    obj[()] = {"masks": masks, "diameter": np.float32(12.0), "filename": "x.tif"}
    raw = pickle.dumps(obj, protocol=protocol).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray\n_reconstruct" in raw
    path = tmp_path / "old_seg.npy"
    path.write_bytes(_npy_with(raw))
    seg = read_seg_npy(path)
    np.testing.assert_array_equal(seg.masks, masks)
    assert seg.diameter == 12.0


_PEER_SCRIPT = """
import sys, numpy as np
from cellpose import io, plot
out, ours = sys.argv[1], sys.argv[2]
masks = np.zeros((60, 80), np.uint16); masks[5:20, 5:25] = 1; masks[30:50, 40:70] = 2
rng = np.random.default_rng(0)
dP = rng.normal(size=(2, 60, 80)).astype(np.float32); cellprob = rng.normal(size=(60, 80)).astype(np.float32)
p = np.stack(np.meshgrid(np.arange(60), np.arange(80), indexing="ij")).astype(np.float32)
io.masks_flows_to_seg([masks * 1.0], [masks], [[plot.dx_to_circ(dP), dP, cellprob, p]], [out], diams=[17.0], channels=[0, 0])
dat = np.load(ours, allow_pickle=True).item()  # how Cellpose's GUI and training loader read it
assert dat["masks"].dtype == np.uint16 and dat["ismanual"].shape == (int(dat["masks"].max()),)
assert [np.shape(f) for f in dat["flows"]] == [(1, 60, 80, 3), (1, 60, 80), (1, 60, 80, 3), (2, 60, 80), (3, 60, 80)]
assert (dat["outlines"] > 0).tolist() == (dat["masks"] * (io.utils.masks_to_outlines(dat["masks"]) > 0) > 0).tolist()
print("peer ok")
"""


@pytest.mark.slow
def test_compatible_with_the_peer_cellpose(tmp_path):
    """Cross-check with Cellpose 3 itself (opt-in, ~15 s: importing cellpose + torch).

    Run with ``CELLSEG_PEER_PYTHON=.peer_venv/bin/python`` (the benchmarks' venv with cellpose 3.1).
    """
    import subprocess
    from pathlib import Path

    python = Path(os.environ.get("CELLSEG_PEER_PYTHON", ""))
    if not os.environ.get("CELLSEG_PEER_PYTHON") or not python.exists():
        pytest.skip("set CELLSEG_PEER_PYTHON to a python with cellpose 3 (e.g. .peer_venv/bin/python)")
    masks = np.zeros((60, 80), np.uint16)
    masks[5:20, 5:25] = 1
    masks[30:50, 40:70] = 2
    dp, cellprob, p = _flows((60, 80))
    ours = write_seg_npy(tmp_path / "ours_seg.npy", masks, filename="ours.tif", diameter=17.0,
                         flows=gui_flows(dp, cellprob, p))
    script = tmp_path / "peer.py"
    script.write_text(_PEER_SCRIPT)
    run = subprocess.run([str(python), str(script), str(tmp_path / "cp.tif"), str(ours)],
                         capture_output=True, text=True, timeout=300)
    if "No module named 'cellpose'" in run.stderr:
        pytest.skip("cellpose not installed in .peer_venv")
    assert run.returncode == 0 and "peer ok" in run.stdout, run.stderr[-2000:]
    theirs = read_seg_npy(tmp_path / "cp_seg.npy")  # a file written by Cellpose's own code
    np.testing.assert_array_equal(theirs.masks, masks)
    np.testing.assert_array_equal(theirs.outlines, masks_to_outlines(masks))
    assert theirs.diameter == 17.0 and theirs.chan_choose == [0, 0] and theirs.ismanual.shape == (2,)
    assert [f.shape for f in theirs.flows] == [f.shape for f in read_seg_npy(ours).flows]


_PEER_RECOMPUTE = """
import inspect, sys, numpy as np
from cellpose import dynamics
dat = np.load(sys.argv[1], allow_pickle=True).item()
flows = dat["flows"]
assert flows[0].shape[-3] == dat["masks"].shape[-2]  # the GUI's check before it sets recompute_masks
# the GUI's compute_cprob: dynamics on flows[4] at the image's size (p = flows[3] where the function takes it)
extra = {"p": flows[3].copy()} if "p" in inspect.signature(dynamics.resize_and_compute_masks).parameters else {}
for threshold in (dat["cellprob_threshold"], 5.0):
    masks = dynamics.resize_and_compute_masks(flows[4][:-1], flows[4][-1], cellprob_threshold=threshold,
                                              flow_threshold=dat["flow_threshold"], resize=dat["masks"].shape[-2:],
                                              **extra)
    masks = masks[0] if isinstance(masks, tuple) else masks
    np.save(sys.argv[2] + f"_{threshold}.npy", masks)
print("peer ok")
"""


@pytest.mark.slow
def test_peer_cellpose_recomputes_masks_from_our_flows(tmp_path):
    """Cellpose 3 recomputes masks from our ``_seg.npy`` as its GUI does when a threshold changes (opt-in, ~15 s).

    Flows are the exact flows of known masks (cell probability 2 + the distance to the edge inside,
    -4 outside); the peer must find the masks at the saved threshold and fewer pixels at a higher one.
    """
    import subprocess
    from pathlib import Path

    from scipy import ndimage

    from cellseg_bridge.batch.scene_outputs import pixel_destinations
    from cellseg_bridge.core.flows import masks_to_flows
    from cellseg_bridge.core.metrics import average_precision

    python = Path(os.environ.get("CELLSEG_PEER_PYTHON", ""))
    if not os.environ.get("CELLSEG_PEER_PYTHON") or not python.exists():
        pytest.skip("set CELLSEG_PEER_PYTHON to a python with cellpose 3 (e.g. .peer_venv/bin/python)")
    masks = np.zeros((64, 80), np.uint16)
    yy, xx = np.mgrid[:64, :80]
    for label, (cy, cx, r) in enumerate([(15, 15, 9), (40, 25, 11), (20, 55, 10), (48, 60, 8)], start=1):
        masks[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = label
    dp = 5 * masks_to_flows(masks)
    distance = np.where(masks > 0, 2.0 + ndimage.distance_transform_edt(masks > 0), -4.0).astype(np.float32)
    p = pixel_destinations(dp, distance, 0.0, 200)
    ours = write_seg_npy(tmp_path / "ours_seg.npy", masks, filename="ours.tif", diameter=20.0,
                         flows=gui_flows(dp, distance, p), extra={"flow_threshold": 0.4, "cellprob_threshold": 0.0})
    script = tmp_path / "peer.py"
    script.write_text(_PEER_RECOMPUTE)
    run = subprocess.run([str(python), str(script), str(ours), str(tmp_path / "peer")],
                         capture_output=True, text=True, timeout=300)
    if "No module named 'cellpose'" in run.stderr:
        pytest.skip("cellpose not installed in .peer_venv")
    assert run.returncode == 0 and "peer ok" in run.stdout, run.stderr[-2000:]
    same = np.load(tmp_path / "peer_0.0.npy")
    assert average_precision(masks, same)[0][0] == 1.0  # every cell found at IoU 0.5
    stricter = np.load(tmp_path / "peer_5.0.npy")
    assert 0 < np.count_nonzero(stricter) < np.count_nonzero(same)
