#@ ImagePlus imp
#@ File (label="HITL project folder", style="directory") project
#@ String (label="Image id (empty: the current image's file)", value="", required=false) image
#@ String (label="ROI file instead of the ROI Manager (optional)", value="", required=false) rois
#@ String (label="Use for", choices={"default", "train", "holdout"}, value="default") split
#@ String (label="cellseg command (empty: as installed)", value="", required=false) cellseg
#@output Integer n_cells
"""Human in the loop, step 2: add your corrected ROIs (ROI Manager, else the Overlay) to the project.

Saves the ROIs as a RoiSet.zip and runs `cellseg hitl add PROJECT IMAGE ROIS`; the image is
the current image's file unless an image id is given. "Use for" holds the image out for the
AP of the cycles, or trains on it (default: the project's rule). Then HITL Next Image for
the next one, or `cellseg hitl train PROJECT` for a new cycle. From a macro:

    run("HITL Add Correction", "project=/data/hitl_project split=default");
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
    imp = p.get("imp")
    if imp is None:
        raise cf.CellsegFailure("no image is open")
    folder = cf.path_of(p.get("project"))
    if not folder or not os.path.isdir(folder):
        raise cf.CellsegFailure("HITL project folder not found: %r" % folder)
    split = cf.choice(p, "split", ("default", "train", "holdout"))
    image = (p.get("image") or "").strip()
    if not image:
        info = imp.getOriginalFileInfo()
        if info is None or not info.fileName:
            raise cf.CellsegFailure("the image was not opened from a file: give its image id (see `cellseg hitl status`)")
        image = os.path.join(info.directory or "", info.fileName)
    command = cf.cellseg_command(p.get("cellseg") or "")
    cf.require_command(command, "hitl")
    staging = cf.work_folder(None, "hitl")
    try:
        if (p.get("rois") or "").strip():
            zip_path, where = p["rois"].strip(), "file"
        else:
            found, where = cf.current_rois(imp)
            if not found:
                raise cf.CellsegFailure("no ROIs: correct the cells in the ROI Manager (or the Overlay) first")
            zip_path = cf.write_zip_rois(found, os.path.join(staging, cf.safe_name(imp.getTitle()) + "_RoiSet.zip"))
        args = ["hitl", "add", folder, image, zip_path, "--json"]
        if split != "default":
            args.append("--" + split)
        status, text = cf.run_cellseg(command, args)
    finally:
        cf.shutil.rmtree(staging, True)
    report = cf.parse_json(text, status)
    if status != 0 or not report.get("ok"):
        raise cf.CellsegFailure("hitl add failed: " + cf.failure_text(status))
    cf.IJ.log("Cellseg HITL: %s: %d cells from %d ROIs (%s) added from the %s"
              % (report["image_id"], report["n_cells"], report["n_rois"], report["split"], where))
    return {"ok": True, "image_id": report["image_id"], "n_cells": report["n_cells"], "split": report["split"],
            "rois_from": where}


_result = cf.run_main(main, globals())
n_cells = _result.get("n_cells", 0)
