#@ File (label="HITL project folder", style="directory") project
#@ String (label="Image (path, name or id; empty: the next without corrections)", value="", required=false) image
#@ String (label="cellseg command (empty: as installed)", value="", required=false) cellseg
#@output String image_id
"""Human in the loop, step 1: segment the project's next image and open it with its ROIs to correct.

Runs `cellseg hitl next PROJECT`, opens the image and puts the predicted ROIs into the
ROI Manager (replacing what is there; headless: the image's Overlay). Correct them (add,
delete, reshape), then run Plugins > Cellseg > HITL Add Correction. From a macro:

    run("HITL Next Image", "project=/data/hitl_project");
"""
import os
import sys

try:
    import cellseg_fiji as cf
except ImportError:  # plain Jython, or a Fiji whose jars/Lib is not on the path
    from ij import IJ
    _here = [os.path.dirname(os.path.abspath(sys.argv[0]))] if sys.argv and sys.argv[0] else []
    for _lib in [os.path.join(d, "..", "..", "..", "jars", "Lib") for d in _here] + \
            [os.path.join(IJ.getDirectory("imagej") or ".", "jars", "Lib")]:
        if os.path.isfile(os.path.join(_lib, "cellseg_fiji.py")):
            sys.path.insert(0, os.path.abspath(_lib))
            break
    import cellseg_fiji as cf


def main(p, cli):
    folder = cf.path_of(p.get("project"))
    if not folder or not os.path.isdir(folder):
        raise cf.CellsegFailure("HITL project folder not found: %r (create one with `cellseg hitl init`)" % folder)
    command = cf.cellseg_command(p.get("cellseg") or "")
    cf.require_command(command, "hitl")
    args = ["hitl", "next", folder, "--json"]
    if (p.get("image") or "").strip():
        args += ["--image", p["image"].strip()]
    status, text = cf.run_cellseg(command, args)
    report = cf.parse_json(text, status)
    found = report.get("next")
    if found is None:
        cf.IJ.log("Cellseg HITL: every image has corrections; train a cycle (`cellseg hitl train %s`)" % folder)
        return {"ok": True, "image_id": "", "done": True}
    imp = cf.IJ.openImage(found["image"])
    if imp is None:
        raise cf.CellsegFailure("ImageJ could not open %s" % found["image"])
    if cf.display_available():
        imp.show()
    rois = cf.read_zip_rois(found["rois"])
    target, before = cf.push_rois(imp, rois, False)
    cf.IJ.log("Cellseg HITL: %s, %d cells by %s in the %s; correct them, then run HITL Add Correction"
              % (found["image_id"], found["n_cells"], found["model"], "ROI Manager" if target == "manager" else "overlay"))
    return {"ok": True, "image_id": found["image_id"], "image": found["image"], "rois": found["rois"],
            "n_cells": found["n_cells"], "model": found["model"], "roi_target": target,
            "n_rois_now": cf.roi_count(imp, target)}


_result = cf.run_main(main, globals())
image_id = _result.get("image_id", "")
