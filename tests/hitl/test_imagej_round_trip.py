"""The HITL round trip with the real ImageJ 1.53t: predict -> RoiSet.zip -> edit through ImageJ's API
(delete, add, reshape) -> ``hitl add`` -> ``hitl train`` -> the new cycle's model predicts.

The initial model is the peer's nuclei checkpoint from ``../shared/models`` (skipped without it);
the cycle is 2 epochs of small crops, so this test shows the round trip, not the quality of
the fine-tuned model. The ROIs are decoded, edited and saved by ImageJ's own classes (``RoiDecoder``,
``RoiEnlarger``, ``OvalRoi``, ``RoiEncoder`` over a ``ZipOutputStream``, as the ROI
Manager's "Save..." does), headless.
"""

import zipfile

import numpy as np
import pytest

from cellseg_bridge.fiji.rois import save_java_rois
from cellseg_bridge.hitl import init_project, open_project
from tests.hitl.conftest import FAST_TRAIN, SPEC, write_images


@pytest.fixture(scope="module")
def quick_model(shared_models):
    """The peer's DSB2018 nuclei checkpoint (finds the synthetic nuclei; small crops keep training quick)."""
    path = shared_models / "cellpose3_dsb2018_nuclei.pth"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def _imagej_edit(src, dst, free_xy):
    """Delete the first ROI, enlarge the second by 2 px, add an oval at ``free_xy``; save as ImageJ does."""
    from scyjava import jimport

    decoder = jimport("ij.io.RoiDecoder")
    enlarger = jimport("ij.plugin.RoiEnlarger")
    oval = jimport("ij.gui.OvalRoi")
    with zipfile.ZipFile(src) as zf:
        rois = [decoder(bytearray(zf.read(n)), n).getRoi() for n in zf.namelist()]
    names = [str(r.getName()) for r in rois]
    deleted, reshaped = names[0], names[1]
    rois = rois[1:]
    grown = enlarger.enlarge(rois[0], 2)
    grown.setName(reshaped)
    rois[0] = grown
    added = oval(int(free_xy[0]) - 6, int(free_xy[1]) - 6, 12, 12)
    added.setName("added_cell")
    rois.append(added)
    save_java_rois(rois, dst)
    return deleted, reshaped


def test_round_trip_with_imagej_edits(ij, tmp_path, quick_model):
    images = write_images(tmp_path / "images", [60, 61])
    proj = init_project(tmp_path / "proj", images, model=quick_model, diameter=16.0, n_epochs=2,
                        holdout_every=0, train_options=FAST_TRAIN)
    nxt = proj.next_image()
    assert nxt.n_cells >= 2, "the quick model should find nuclei"
    import tifffile

    predicted = tifffile.imread(nxt.labels).reshape(SPEC.shape)
    truth = np.load(images[0].with_name(images[0].stem + "_truth.npy"))
    yy, xx = np.mgrid[: SPEC.shape[0], : SPEC.shape[1]]
    busy = (predicted > 0) | (truth > 0)
    free = next((x, y) for y in range(10, 86, 2) for x in range(10, 86, 2)
                if not busy[(yy - y) ** 2 + (xx - x) ** 2 <= 100].any())
    edited = tmp_path / "corrected_RoiSet.zip"
    deleted, reshaped = _imagej_edit(nxt.rois, edited, free)

    res = proj.add_correction(images[0], edited)
    assert res.n_cells == nxt.n_cells  # one deleted, one added
    assert res.changes == {"unchanged": nxt.n_cells - 2, "reshaped": 1, "added": 1, "deleted": 1}
    corr = tifffile.imread(proj.directory / proj.find_image(images[0])["correction"]["labels"]).reshape(SPEC.shape)
    first = int(deleted.split("_")[1])
    assert not corr[predicted == first].any()  # the deleted cell is gone from the corrections
    second = int(reshaped.split("_")[1])
    grown = np.count_nonzero(corr[predicted == second]) < np.count_nonzero(np.isin(corr, np.unique(corr[predicted == second])))
    assert grown  # the reshaped cell covers more than it did
    assert corr[free[1], free[0]] > 0  # the added oval

    record = proj.train(evaluate=False)
    assert record["model"] == "cycle_001" and record["n_train_cells"] == res.n_cells
    proj = open_project(proj.directory)
    again = proj.next_image(images[0])
    assert again.model == "cycle_001" and again.labels.parent.name == "cycle_001"
    status = proj.status(evaluate=False)
    assert status["images"][0]["changes"] == res.changes and status["models"][1]["current"]
