#@ ImagePlus imp
#@ String (label="Model (auto: chosen by the image's style)", choices={"default", "auto"}, value="default") model
#@ File (label="Model file (instead of the list: weights.pth or a model folder)", required=false) model_file
#@ Float (label="Cell diameter in pixels (0: the model's)", value=0) diameter
#@ String (label="Channel (0-based index or name; empty: the image's current channel)", value="") channel
#@ String (label="Nuclear channel (optional: index or name, for models with one)", value="", required=false) nuclear_channel
#@ String (label="Invert (dark cells on a bright background)", choices={"default", "yes", "no"}, value="default") invert
#@ String (label="Z stacks", choices={"default", "plane by plane", "stitch planes", "3D"}, value="default") z_mode
#@ String (label="Stitch threshold (IoU; empty: default)", value="", required=false) stitch_threshold
#@ String (label="Restore first (empty: no; denoise, deblur, upsample, oneclick, aniso or a model)", value="", required=false) restore
#@ String (label="Cell probability threshold (empty: default)", value="") cellprob_threshold
#@ String (label="Flow error threshold (empty: default)", value="") flow_threshold
#@ String (label="ROI Manager", choices={"default", "append", "replace"}, value="default") roi_mode
#@ File (label="Output folder (empty: temporary)", style="directory", required=false) output_dir
#@ String (label="cellseg command (empty: as installed)", value="", required=false) cellseg
#@output Integer n_cells
#@output String labels_path
#@output String rois_path
"""Segment the current image with cellseg: a label image and the ROI Manager filled.

The ROIs are ADDED to the ROI Manager (the ones already there stay) unless
roi_mode is "replace" or the defaults say otherwise (cellseg defaults:
fiji.append_rois). Headless, they go onto the image's Overlay instead, and the
RoiSet.zip is in the output folder. The model list is the one of ``cellseg models list`` when
the scripts were installed (``cellseg fiji install``); a model file overrides it. From a macro:

    run("Segment Current Image", "model=nuclei diameter=17 roi_mode=append");
    run("Segment Current Image", "model_file=/data/models/exp1/model diameter=17");
    run("Segment Current Image", "model=cells channel=GFP nuclear_channel=DAPI z_mode=[stitch planes] restore=denoise");
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


def model_args(p):
    """cellseg flags of the nuclear channel, invert, Z stack and restore fields (checked here)."""
    args = []
    if (p.get("nuclear_channel") or "").strip():
        args += ["--nuclear-channel", p["nuclear_channel"].strip()]
    invert = cf.choice(dict(p, invert=p.get("invert") or "default"), "invert", ("default", "yes", "no"))
    args += {"yes": ["--invert"], "no": ["--no-invert"]}.get(invert, [])
    z_mode = cf.choice(dict(p, z_mode=p.get("z_mode") or "default"), "z_mode",
                       ("default", "plane by plane", "stitch planes", "3D"))
    stitch = cf.number(p.get("stitch_threshold"), "stitch_threshold", allow_empty=True)
    if z_mode == "3D":
        args.append("--do-3d")
    elif z_mode == "plane by plane":
        args += ["--no-do-3d", "--stitch-threshold", "0"]
    elif z_mode == "stitch planes":
        args += ["--stitch-threshold", repr(stitch if stitch else 0.25)]
    elif stitch is not None:
        args += ["--stitch-threshold", repr(stitch)]
    if (p.get("restore") or "").strip():
        args += ["--restore", p["restore"].strip()]
    return args


def main(p, cli):
    imp = p.get("imp")
    if imp is None:
        raise cf.CellsegFailure("no image is open")
    roi_mode = cf.choice(p, "roi_mode", ("default", "append", "replace"))
    diameter = cf.number(p.get("diameter"), "diameter", allow_empty=True)
    if diameter is not None and diameter < 0:
        raise cf.CellsegFailure("parameter diameter: expected 0 (the model's) or a positive number, got %r" % diameter)
    thresholds = cf.option_args(p, ("cellprob_threshold", "flow_threshold"))
    channel = cf.current_channel_arg(imp, p.get("channel"))
    extra = model_args(p)
    command = cf.cellseg_command(p.get("cellseg") or "")
    defaults = cf.defaults(command)
    out = cf.work_folder(p.get("output_dir"), "segment")
    staging = cf.work_folder(None, "input")
    try:
        source = cf.save_for_cellseg(imp, staging)
        args = ["segment", source, "--out", out, "--json", "--overwrite"]
        args += cf.model_flag(p)
        if diameter:
            args += ["--diameter", repr(diameter)]
        if channel is not None:
            args += ["--channel", channel]
        status, text = cf.run_cellseg(command, args + thresholds + extra)
    finally:
        cf.shutil.rmtree(staging, True)
    report = cf.parse_json(text, status)
    items = report.get("items") or []
    if not items or items[0]["status"] != "done":
        reasons = [f["reason"] for f in report.get("failed", [])] or ["exit status %d" % status]
        raise cf.CellsegFailure("segmentation failed: " + "; ".join(reasons))
    item = items[0]
    outputs = item["outputs"]
    labels, max_label = cf.open_labels(outputs["labels"], imp)
    if defaults["fiji"]["show_labels"] and cf.display_available():
        labels.show()
    append = {"append": True, "replace": False}.get(roi_mode, defaults["fiji"]["append_rois"])
    rois = cf.read_zip_rois(outputs["rois"]) if "rois" in outputs else []
    target, before = cf.push_rois(imp, rois, append)
    cf.IJ.log("Cellseg: %d cells in %s; %d ROIs added to the %s (%d there before)"
              % (item["n_cells"], imp.getTitle(), len(rois), "ROI Manager" if target == "manager" else "overlay", before))
    choice = item.get("model_choice")
    if choice:  # model=auto: the zoo model the image's style picked
        cf.IJ.log("Cellseg: model auto chose %s (confidence %.2f)" % (choice["model"], choice["confidence"]))
    cal = labels.getCalibration()
    return {
        "ok": True, "n_cells": item["n_cells"], "diameter": item.get("diameter"), "outputs": outputs,
        "roi_target": target, "n_rois_before": before, "n_rois": len(rois),
        "roi_names_head": [r.getName() for r in rois[:5]],
        "n_rois_now": cf.roi_count(imp, target),
        "labels_dimensions": list(labels.getDimensions()), "max_label": max_label,
        "labels_calibration": [cal.pixelWidth, cal.pixelHeight, cal.pixelDepth, cal.getUnit()],
        "model": report.get("model"), "model_choice": choice, "channel": channel,
        "labels_lut": [[lut.getRed(i), lut.getGreen(i), lut.getBlue(i)] for lut in [labels.getProcessor().getLut()]
                       for i in range(256)],
    }


_result = cf.run_main(main, globals())
n_cells = _result.get("n_cells", 0)
labels_path = _result.get("outputs", {}).get("labels", "")
rois_path = _result.get("outputs", {}).get("rois", "")
