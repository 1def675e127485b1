#@ ImagePlus imp
#@ String (label="Restoration model (empty: default)", value="") model
#@ String (label="Channel (0-based index or name; empty: the image's current channel)", value="") channel
#@ File (label="Output folder (empty: temporary)", style="directory", required=false) output_dir
#@ String (label="cellseg command (empty: as installed)", value="", required=false) cellseg
#@output String restored_path
"""Restore (denoise / deblur / upsample) the current image with `cellseg restore` and show the result.

From a macro:

    run("Restore", "model=denoise_cyto3");
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
    command = cf.cellseg_command(p.get("cellseg") or "")
    cf.require_command(command, "restore")
    out = cf.work_folder(p.get("output_dir"), "restore")
    staging = cf.work_folder(None, "input")
    try:
        source = cf.save_for_cellseg(imp, staging)
        args = ["restore", source, "--out", out, "--json"]
        if p.get("model"):
            args += ["--model", p["model"]]
        channel = cf.current_channel_arg(imp, p.get("channel"))
        if channel is not None:
            args += ["--channel", channel]
        status, text = cf.run_cellseg(command, args)
    finally:
        cf.shutil.rmtree(staging, True)
    report = cf.parse_json(text, status)
    items = report.get("items") or []
    if status != 0 or not items or items[0].get("status") not in ("done", "skipped"):
        reasons = [f["reason"] for f in report.get("failed", [])] or ["exit status %d" % status]
        raise cf.CellsegFailure("restoration failed: " + "; ".join(reasons))
    outputs = items[0].get("outputs", {})
    path = outputs.get("restored") or [v for v in outputs.values() if v.lower().endswith((".tif", ".tiff"))][0]
    restored = cf.IJ.openImage(path)
    if restored is None:
        raise cf.CellsegFailure("ImageJ could not open %s" % path)
    restored.setCalibration(imp.getCalibration().copy())
    restored.setTitle(cf.safe_name(imp.getTitle()) + "_restored")
    if cf.display_available():
        restored.show()
    return {"ok": True, "restored": path, "dimensions": list(restored.getDimensions())}


_result = cf.run_main(main, globals())
restored_path = _result.get("restored", "")
