#@ File (label="Input folder", style="directory") input_dir
#@ String (label="File pattern (e.g. *.czi)", value="*") pattern
#@ File (label="Output folder", style="directory") output_dir
#@ String (label="Model (auto: chosen by each image's style)", choices={"default", "auto"}, value="default") model
#@ File (label="Model file (instead of the list: weights.pth or a model folder)", required=false) model_file
#@ Float (label="Cell diameter in pixels (0: the model's)", value=0) diameter
#@ String (label="Channel (0-based index or name; empty: default)", value="") channel
#@ Boolean (label="Include sub-folders", value=false) recursive
#@ Boolean (label="Redo files whose outputs exist", value=false) overwrite
#@ String (label="cellseg command (empty: as installed)", value="", required=false) cellseg
#@output Integer n_done
#@output Integer n_failed
"""Segment every microscope file (CZI, ND2, LIF, OME-TIFF, TIFF, ...) of a folder with cellseg.

Per file and scene, the output folder receives <name>_labels.ome.tif,
<name>_RoiSet.zip, <name>_cells.csv and <name>_overlay.png. Files whose outputs
exist are skipped (run again to resume); a file that fails is reported in the
Log window and the others go on. From a macro:

    run("Batch Folder", "input_dir=/data/exp1 pattern=*.czi output_dir=/data/exp1_seg model=nuclei");
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
    folder = cf.path_of(p.get("input_dir"))
    out = cf.path_of(p.get("output_dir"))
    if not folder or not os.path.isdir(folder):
        raise cf.CellsegFailure("input folder not found: %r" % folder)
    if not out:
        raise cf.CellsegFailure("choose an output folder")
    command = cf.cellseg_command(p.get("cellseg") or "")
    pattern = (p.get("pattern") or "*").strip()
    source = folder if pattern in ("", "*") else os.path.join(folder, pattern)
    args = ["segment", source, "--out", out, "--json"]
    if p.get("recursive"):
        args.append("--recursive")
    if p.get("overwrite"):
        args.append("--overwrite")
    args += cf.model_flag(p)
    diameter = cf.number(p.get("diameter"), "diameter", allow_empty=True)
    if diameter:
        args += ["--diameter", repr(diameter)]
    if p.get("channel"):
        args += ["--channel", p["channel"]]
    status, text = cf.run_cellseg(command, args)
    report = cf.parse_json(text, status)
    for item in report.get("items", []):
        cf.IJ.log("  %-8s %s [scene %s] %s" % (item["status"], os.path.basename(item["input"]), item.get("scene"),
                                              "%s cells" % item["n_cells"] if item.get("n_cells") is not None
                                              else (item.get("reason") or "")))
    for failure in report.get("failed", []):
        cf.IJ.log("  FAILED %s: %s" % (failure["input"], failure["reason"]))
    counts = report.get("counts", {})
    cf.IJ.log("Cellseg batch: %d segmented, %d skipped, %d failed -> %s"
              % (counts.get("done", 0), counts.get("skipped", 0), len(report.get("failed", [])), out))
    return {"ok": True, "counts": counts, "n_failed": len(report.get("failed", [])), "items": report.get("items", []),
            "failed": report.get("failed", []), "exit_status": status}


_result = cf.run_main(main, globals())
n_done = _result.get("counts", {}).get("done", 0)
n_failed = _result.get("n_failed", 0)
