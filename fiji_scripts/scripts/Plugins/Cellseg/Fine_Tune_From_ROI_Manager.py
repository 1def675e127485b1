#@ ImagePlus imp
#@ String (label="Start from model (empty: default)", value="") model
#@ File (label="Output folder for the new model", style="directory") output_dir
#@ Integer (label="Epochs (0: default)", value=0) epochs
#@ String (label="Channel (0-based index or name; empty: the image's current channel)", value="") channel
#@ String (label="ROI file instead of the ROI Manager (optional)", value="", required=false) rois
#@ String (label="cellseg command (empty: as installed)", value="", required=false) cellseg
#@output String model_path
"""Fine-tune a model on the current image and the ROIs you corrected (ROI Manager, else the Overlay).

The image and a label image painted from the ROIs by ImageJ itself (one label
per area ROI, in list order) are saved as a training pair, and
`cellseg train --recipe hitl --pretrained MODEL` fine-tunes the chosen model on it (recipe and
epochs default to cellseg's defaults, fiji.finetune_recipe / finetune_epochs).
The new model is the folder <output>/model (weights.pth + config.json), usable as
Model in the other menus; the ROIs are also saved as <image>_RoiSet.zip in the output folder. From a macro:

    run("Fine Tune From ROI Manager", "model=nuclei output_dir=/data/models epochs=50");
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


def labels_from_rois(imp, rois):
    """A 16-bit label image (one plane) that ImageJ fills from area ROIs, label k = k-th ROI."""
    from ij.process import ShortProcessor
    ip = ShortProcessor(imp.getWidth(), imp.getHeight())
    n = 0
    for roi in rois:
        if not roi.isArea():
            continue
        n += 1
        ip.setValue(n)
        ip.fill(roi)
    if n > 65535:
        raise cf.CellsegFailure("more than 65535 ROIs")
    return cf.ImagePlus("masks", ip), n


def main(p, cli):
    imp = p.get("imp")
    if imp is None:
        raise cf.CellsegFailure("no image is open")
    if imp.getNSlices() > 1 or imp.getNFrames() > 1:
        raise cf.CellsegFailure("fine-tuning takes a 2D image (one Z plane, one time point); "
                                "use Image > Duplicate to pick the plane you corrected")
    out = cf.path_of(p.get("output_dir"))
    if not out:
        raise cf.CellsegFailure("choose an output folder for the new model")
    command = cf.cellseg_command(p.get("cellseg") or "")
    defaults = cf.defaults(command)
    cf.require_command(command, "train")
    if p.get("rois"):
        rois, where = cf.read_zip_rois(p["rois"]), "file"
    else:
        rois, where = cf.current_rois(imp)
    if not rois:
        raise cf.CellsegFailure("no ROIs: outline the cells in the ROI Manager (or the Overlay) first")
    if not os.path.isdir(out):
        os.makedirs(out)
    stem = cf.safe_name(imp.getTitle())
    training = os.path.join(out, "training")
    image_path = cf.save_for_cellseg(imp, training)
    masks, n_labels = labels_from_rois(imp, rois)
    masks_path = os.path.join(training, stem + defaults["train"]["mask_suffix"] + ".tif")
    cf.IJ.saveAsTiff(masks, masks_path)
    cf.write_zip_rois(rois, os.path.join(out, stem + "_RoiSet.zip"))
    cf.IJ.log("Cellseg: training pair %s + %d ROIs from the %s" % (image_path, n_labels, where))
    model_dir = os.path.join(out, "model")
    args = ["train", training, "--out", model_dir, "--recipe", defaults["fiji"]["finetune_recipe"]]
    args += ["--pretrained", p.get("model") or defaults["segment"]["model"]]
    epochs = int(cf.number(p.get("epochs"), "epochs", allow_empty=True) or 0) or defaults["fiji"]["finetune_epochs"]
    if epochs:
        args += ["--epochs", str(epochs)]
    channel = cf.current_channel_arg(imp, p.get("channel"))
    if channel is not None:
        args += ["--channel", channel]
    status, text = cf.run_cellseg(command, args)
    weights = os.path.join(model_dir, "weights.pth")
    if status != 0 or not os.path.isfile(weights):
        raise cf.CellsegFailure("training failed (exit %d): %s" % (status, cf.failure_text(status)))
    model_file = model_dir if os.path.isfile(os.path.join(model_dir, "config.json")) else weights
    cf.IJ.log("Cellseg: new model %s" % model_file)
    return {"ok": True, "model": model_file, "n_labels": n_labels, "rois_from": where, "training_image": image_path,
            "training_masks": masks_path, "weights": weights}


_result = cf.run_main(main, globals())
model_path = _result.get("model", "")
