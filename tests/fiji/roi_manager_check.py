"""Run under ``xvfb-run`` by test_rois.py: the ROI Manager needs a non-headless JVM (one per process).

Prints one JSON line with what ImageJ's ROI Manager holds after our pushes.
"""

import json
import os
import sys

import numpy as np


def main(labels_path: str) -> dict:
    from cellseg_bridge.fiji.jvm import start_imagej1

    start_imagej1(headless=False)
    from scyjava import jimport

    from cellseg_bridge.fiji import rois as fr
    from cellseg_bridge.fiji.imageplus import labels_to_imageplus
    from cellseg_bridge.io.reader import open_image
    from cellseg_bridge.io.roi_export import labels_to_rois

    image = open_image(labels_path)
    labels = image.values[0, 0, 0]
    imp = labels_to_imageplus(image.isel(T=0, C=0, Z=0))
    RoiManager = jimport("ij.plugin.frame.RoiManager")
    manager = RoiManager()
    for name, (x, y) in (("mine_1", (1, 1)), ("mine_2", (20, 5))):  # the user's own ROIs
        roi = jimport("ij.gui.OvalRoi")(x, y, 6, 6)
        roi.setName(name)
        manager.addRoi(roi)
    pushed = fr.push_rois(labels_to_rois(labels), imp)
    measurements = jimport("ij.measure.Measurements")
    held = []
    for i in range(int(manager.getCount())):
        roi = manager.getRoi(i)
        imp.setRoi(roi)
        stats = imp.getStatistics(measurements.AREA)
        bounds = roi.getBounds()
        held.append({"name": str(manager.getName(i)), "pixels": int(stats.pixelCount), "area": float(stats.area),
                     "x": int(bounds.x), "y": int(bounds.y), "position": int(roi.getPosition())})
    pulled, report = fr.pull_labels("manager", labels.shape)
    counts = np.bincount(labels.ravel())
    # a Z stack: positions of ROIs in the manager
    stack = np.zeros((3, 30, 30), np.uint16)
    stack[0, 2:8, 2:9], stack[2, 10:20, 12:25] = 1, 2
    stack_imp = labels_to_imageplus(stack, dims="ZYX")
    replaced = fr.push_rois(labels_to_rois(stack), stack_imp, append=False)
    stack_held = [(str(manager.getName(i)), int(manager.getRoi(i).getPosition())) for i in range(int(manager.getCount()))]
    return {
        "pushed": [pushed.target, pushed.n_added, pushed.n_before],
        "held": held,
        "mask_counts": {int(k): int(v) for k, v in enumerate(counts) if k and v},
        "pixel_size": image.attrs["physical_pixel_sizes"]["X"],
        "pulled": pulled.tolist(),
        "pull_labels": report.n_labels,
        "replaced": [replaced.target, replaced.n_added, replaced.n_before],
        "stack_held": stack_held,
    }


if __name__ == "__main__":
    result = main(sys.argv[1])
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # the AWT threads of a non-headless JVM would keep the process alive
