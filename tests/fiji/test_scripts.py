"""The Jython scripts of fiji_scripts/, run end to end under Debian's ImageJ 1.53t + Jython 2.7.

Each script runs once, as Fiji would run it but with its ``#@`` parameters given as
``name=value`` arguments, calling the real ``cellseg`` CLI of this environment. They run
through ``fiji_session.py``, which loads ImageJ's preferences first as Fiji does (so ImageJ
writes big-endian TIFFs, as in any Fiji session) and reports the state of the user's image.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cellseg_bridge.fiji.lut import label_lut
from cellseg_bridge.io.reader import open_image
from cellseg_bridge.io.roi_import import read_rois
from tests.conftest import REPO

SCRIPTS = REPO / "fiji_scripts" / "scripts" / "Plugins" / "Cellseg"
SESSION = Path(__file__).with_name("fiji_session.py")
LIB = REPO / "fiji_scripts" / "jars" / "Lib"
JYTHON_JAR = Path("/usr/share/java/jython.jar")


@pytest.fixture(scope="module")
def jython(ij):
    """The java command line that runs a script with ImageJ 1.x + Jython."""
    from cellseg_bridge.fiji.jvm import find_ij_jar, find_java

    if not JYTHON_JAR.is_file():
        if os.environ.get("CI"):
            raise AssertionError(f"{JYTHON_JAR} missing: apt-get install jython")
        pytest.skip(f"Jython not installed ({JYTHON_JAR}); apt-get install jython")
    return [find_java(), f"-Dpython.path={LIB}", "-cp", f"{find_ij_jar()}:{JYTHON_JAR}", "org.python.util.jython"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import torch

    from cellseg_bridge.nn import save_checkpoint
    from cellseg_bridge.nn.net import CellposeUNet

    torch.manual_seed(0)
    net = CellposeUNet(nbase=[2, 8, 16], nout=3, diam_mean=17.0)
    path = tmp_path_factory.mktemp("model") / "tiny.pth"
    save_checkpoint(net, path)
    return path


def _cellseg() -> str:
    import sys

    return f"{sys.executable} -m cellseg_bridge.cli"


def run_script(jython, name: str, *args: str, display: bool = False, session: tuple[str, ...] = (),
               env: dict | None = None, scripts: Path = SCRIPTS) -> tuple[dict, str]:
    """Run a script as in a Fiji session (``fiji_session.py``: preferences loaded; ``session`` are its options)."""
    import tempfile

    home = tempfile.mkdtemp(prefix="ij_home_")  # ImageJ reads (never writes) its preferences here
    command = list(jython)
    command.insert(1, f"-Duser.home={home}")
    if display:
        if shutil.which("xvfb-run") is None:
            pytest.skip("xvfb-run not installed (apt-get install xvfb)")
        command = ["xvfb-run", "-a"] + command
    else:
        command.insert(1, "-Djava.awt.headless=true")
    env = dict(os.environ, CELLSEG_COMMAND=_cellseg(), PYTHONPATH=str(REPO)) if env is None else env
    run = subprocess.run(command + [str(SESSION), *session, str(scripts / name), *args], capture_output=True,
                         text=True, timeout=300, env=env, cwd=REPO)
    shutil.rmtree(home, ignore_errors=True)
    lines = [line for line in run.stdout.splitlines() if line.startswith("CELLSEG_RESULT ")]
    assert lines, f"no result from {name}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return json.loads(lines[-1][len("CELLSEG_RESULT "):]), run.stdout + run.stderr


def _assert_image_left_alone(result: dict, source: Path) -> None:
    """Issue 18 defect 2: the user's ImagePlus keeps its title, file info and unsaved-changes flag."""
    (image,) = result["session_images"]
    assert image["after"] == image["before"]
    assert image["before"]["title"] == source.name and image["before"]["changes"] is True
    assert Path(*image["before"]["file"]) == source


def test_segment_current_image_fills_roi_manager_and_label_image(jython, tiny_model, shared_data, tmp_path):
    source = shared_data / "formats" / "ome_tiff" / "s_1_t_1_c_1_z_1.ome.tiff"
    result, log = run_script(jython, "Segment_Current_Image.py", f"imp={source}", f"model={tiny_model}",
                             "diameter=17", "cellprob_threshold=-6", "flow_threshold=0", f"output_dir={tmp_path}",
                             "invert=no", "z_mode=stitch planes", "stitch_threshold=0.3",
                             display=True, session=("--changed",))
    assert result["ok"], log[-3000:]
    _assert_image_left_alone(result, source)
    assert "--no-invert --stitch-threshold 0.3" in log  # the dialog's invert and Z stack fields
    labels = open_image(result["outputs"]["labels"]).values[0, 0, 0]
    n_cells = len(np.unique(labels)) - 1
    assert result["n_cells"] == n_cells > 0
    assert result["labels_dimensions"] == [labels.shape[1], labels.shape[0], 1, 1, 1]
    assert result["max_label"] == labels.max()
    image = open_image(source)
    assert result["labels_calibration"][0] == pytest.approx(image.attrs["physical_pixel_sizes"]["X"], rel=1e-6)
    assert result["labels_calibration"][3] in ("µm", "micron")
    assert result["roi_target"] == "manager"  # a display (Xvfb): the ROI Manager
    assert result["n_rois"] == result["n_rois_now"] == n_cells
    names = [r.name for r in read_rois(result["outputs"]["rois"])]
    assert result["roi_names_head"] == names[:5]
    assert np.array_equal(np.array(result["labels_lut"]), label_lut())  # Jython LUT == Python LUT


@pytest.mark.slow
def test_segment_current_image_with_model_auto_gives_whole_cells(jython, shared_data, tmp_path):
    """A phase-contrast field (Usiigaci test split) with ``model=auto``: the phase specialist, whole-cell ROIs."""
    from cellseg_bridge.core.metrics import average_precision
    from cellseg_bridge.datasets import usiigaci

    field = shared_data / "usiigaci" / "set41"
    result, log = run_script(jython, "Segment_Current_Image.py", f"imp={field / 'raw.tif'}", "model=auto",
                             f"output_dir={tmp_path}", display=True)
    assert result["ok"], log[-3000:]
    assert result["model_choice"]["model"] == "cells_phase" and "model auto chose cells_phase" in log
    assert result["roi_target"] == "manager" and result["n_rois"] == result["n_rois_now"] == result["n_cells"] > 20
    labels = open_image(result["outputs"]["labels"]).values[0, 0, 0]
    truth = usiigaci.load_labels(field)
    assert average_precision(truth, labels, 0.5)[0][0] > 0.6  # whole cells, not nuclei or fragments


def test_batch_folder_segments_vendor_files(jython, tiny_model, shared_data, tmp_path):
    folder = shared_data / "formats" / "czi"
    result, log = run_script(jython, "Batch_Folder.py", f"input_dir={folder}", "pattern=s_1_t_1_c_1_z_1.czi",
                             f"output_dir={tmp_path}", f"model={tiny_model}", "diameter=17")
    assert result["ok"], log[-3000:]
    assert result["counts"]["done"] == 1 and result["n_failed"] == 0
    produced = sorted(p.name for p in tmp_path.iterdir())
    assert produced == ["cellseg_run.json", "s_1_t_1_c_1_z_1_RoiSet.zip", "s_1_t_1_c_1_z_1_cells.csv",
                        "s_1_t_1_c_1_z_1_labels.ome.tif",
                        "s_1_t_1_c_1_z_1_overlay.png"]
    labels = open_image(tmp_path / "s_1_t_1_c_1_z_1_labels.ome.tif")
    assert labels.sizes["Y"] == 325 and labels.sizes["X"] == 475


def _has_command(name: str) -> bool:
    from click.testing import CliRunner

    from cellseg_bridge.cli import main

    return name in main.commands or CliRunner().invoke(main, [name, "--help"]).exit_code == 0


def test_restore_runs_the_real_command_and_opens_the_restored_image(jython, shared_data, tmp_path):
    import torch

    from cellseg_bridge.nn import save_checkpoint
    from cellseg_bridge.nn.net import CellposeUNet

    source = shared_data / "formats" / "ome_tiff" / "s_1_t_1_c_1_z_1.ome.tiff"
    torch.manual_seed(0)
    model = tmp_path / "model" / "restore.pth"
    save_checkpoint(CellposeUNet(nbase=[1, 8, 16], nout=1, diam_mean=17.0), model)
    out = tmp_path / "out"
    result, log = run_script(jython, "Restore.py", f"imp={source}", f"output_dir={out}", f"model={model}")
    assert result["ok"], log[-3000:]
    restored = Path(result["restored"])
    assert restored.is_file() and restored.name.endswith("_restored.ome.tif")
    img = open_image(restored)
    assert img.sizes["Y"] == 325 and img.sizes["X"] == 475 and img.dtype == np.float32


def test_fine_tune_from_rois_gives_a_model_that_segments(jython, tiny_model, shared_data, tmp_path):
    """In a Fiji session ImageJ saves the painted masks big-endian; `cellseg train` reads them (defect 1)."""
    from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip
    from cellseg_bridge.segmentation.pipeline import load_model, segment

    # a real 3-channel ImageJ TIFF (BBBC022, Hoechst in channel 0); the "corrected" ROIs are the
    # bundled model's nuclei, as a user would start from them
    image = shared_data / "formats" / "imagej_tiff" / "BBBC022_IXMtest_A02_s9.tif"
    masks = segment(open_image(image), "nuclei", channel=0).labels[0, 0]
    assert masks.max() >= 20
    zip_path = write_roi_zip(labels_to_rois(masks), tmp_path / "corrected_RoiSet.zip")
    out = tmp_path / "model"
    result, log = run_script(jython, "Fine_Tune_From_ROI_Manager.py", f"imp={image}", f"model={tiny_model}",
                             f"output_dir={out}", "epochs=1", "channel=0", f"rois={zip_path}",
                             session=("--changed",))
    assert result["ok"], log[-3000:]
    _assert_image_left_alone(result, image)
    import tifffile

    with tifffile.TiffFile(result["training_masks"]) as tif:
        assert tif.byteorder == ">" and tif.is_imagej  # written by ImageJ with Fiji's preferences
    assert result["n_labels"] == len(np.unique(masks)) - 1
    painted = np.asarray(open_image(result["training_masks"]).values).squeeze()
    assert np.array_equal(painted > 0, masks > 0)  # ImageJ's fill of our ROIs == the masks
    model = load_model(result["model"], device="cpu")
    labels = segment(open_image(image), model, channel=0, diameter=17.0, cellprob_threshold=-6.0,
                     flow_threshold=0.0).labels
    assert labels.shape[-2:] == masks.shape


def test_channel_by_imagej_label_and_current_channel(jython, tiny_model, shared_data, tmp_path):
    """Defect 3: ImageJ channel labels are channel names; no channel given: the image's current channel."""
    image = shared_data / "formats" / "imagej_tiff" / "BBBC022_IXMtest_A02_s9.tif"
    common = (f"imp={image}", f"model={tiny_model}", "diameter=17", "cellprob_threshold=-6", "flow_threshold=0")
    by_name, log = run_script(jython, "Segment_Current_Image.py", *common, "channel=Hoechst",
                              f"output_dir={tmp_path / 'name'}", session=("--labels=Hoechst,ER,Actin",))
    assert by_name["ok"], log[-3000:]
    assert "--channel Hoechst" in log
    current, log = run_script(jython, "Segment_Current_Image.py", *common, f"output_dir={tmp_path / 'current'}",
                              "nuclear_channel=Hoechst", session=("--labels=Hoechst,ER,Actin", "--channel=3"))
    assert current["ok"], log[-3000:]
    assert "--nuclear-channel Hoechst" in log
    assert current["channel"] == "2" and "--channel 2" in log  # ImageJ's channel 3, 0-based for cellseg
    name_labels = open_image(by_name["outputs"]["labels"]).values
    assert not np.array_equal(name_labels, open_image(current["outputs"]["labels"]).values)  # another channel


@pytest.mark.parametrize("argument, message", [
    ("roi_mode=foo", "parameter roi_mode: expected one of default, append, replace, got 'foo'"),
    ("diameter=abc", "parameter diameter: expected a number, got 'abc'"),
    ("cellprob_threshold=high", "parameter cellprob_threshold: expected a number, got 'high'"),
    ("flow_threshold=-1", "cellseg failed: Error: flow_threshold must be >= 0, got -1.0"),  # cellseg's own words
])
def test_bad_parameters_are_said_clearly(jython, tiny_model, shared_data, tmp_path, argument, message):
    """Defect 6: parameters are checked by the script; cellseg's own error text reaches the dialog."""
    source = shared_data / "formats" / "ome_tiff" / "s_1_t_1_c_1_z_1.ome.tiff"
    result, log = run_script(jython, "Segment_Current_Image.py", f"imp={source}", f"model={tiny_model}", argument,
                             f"output_dir={tmp_path}")
    assert not result["ok"] and result["error"] == message, log[-3000:]
    assert "Traceback" not in log


def test_installed_script_starts_python_once_per_call(jython, tiny_model, shared_data, tmp_path):
    """Defect 7: `cellseg fiji install` caches the defaults, so a call runs cellseg once (not `defaults` too).

    The installed script's model list (a choice from `cellseg models list`): a listed name reaches
    cellseg, and the model file field overrides the list.
    """
    from cellseg_bridge.fiji.install import default_scripts_dir, install_scripts

    fiji = tmp_path / "Fiji.app"
    (fiji / "jars").mkdir(parents=True)
    starts = tmp_path / "starts.txt"
    counting = tmp_path / "cellseg.sh"
    counting.write_text(f'#!/bin/sh\necho "$1" >> {starts}\nexec {_cellseg()} "$@"\n')
    counting.chmod(0o755)
    install_scripts(fiji, command=[str(counting)], commands=["segment", "train", "restore"], cache_defaults=True)
    source = shared_data / "formats" / "ome_tiff" / "s_1_t_1_c_1_z_1.ome.tiff"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("CELLSEG_COMMAND", None)
    installed = fiji / "scripts" / "Plugins" / "Cellseg"
    header = (installed / "Segment_Current_Image.py").read_text().splitlines()[1]
    assert '"cells", ' in header and '"nuclei", ' in header and 'value="nuclei"' in header  # the installed list
    # a model file overrides the list
    result, log = run_script(jython, "Segment_Current_Image.py", f"imp={source}", "model=auto",
                             f"model_file={tiny_model}", "diameter=17", f"output_dir={tmp_path / 'out'}", env=env,
                             scripts=installed)
    assert result["ok"], log[-3000:]
    assert result["model"] == str(tiny_model) and result["model_choice"] is None
    assert starts.read_text().split() == ["segment"]  # one Python start: no `cellseg defaults`
    config = fiji / "jars" / "Lib" / "cellseg_fiji.json"
    stale = json.loads(config.read_text())
    stale["stamp"]["size"] += 1  # cellseg_bridge upgraded since the install: the scripts ask again
    config.write_text(json.dumps(stale))
    again, log = run_script(jython, "Segment_Current_Image.py", f"imp={source}", "model=nuclei",
                            "diameter=17", f"output_dir={tmp_path / 'out2'}", env=env, scripts=installed)
    assert again["ok"] and again["model"] == "nuclei", log[-3000:]  # a name from the list reaches cellseg
    assert starts.read_text().split() == ["segment", "defaults", "segment"]
    assert (default_scripts_dir() / "jars" / "Lib" / "cellseg_fiji.py").read_bytes() == \
        (fiji / "jars" / "Lib" / "cellseg_fiji.py").read_bytes()


def test_hitl_menus_next_then_add(jython, tmp_path):
    """Defect 8: HITL Next Image opens the next image with its predicted ROIs; HITL Add Correction adds them."""
    from cellseg_bridge.hitl import init_project, open_project
    from cellseg_bridge.io.roi_export import labels_to_rois, write_roi_zip
    from tests.hitl.conftest import FAST_TRAIN, write_images

    images = write_images(tmp_path / "images", range(2))
    import torch

    from cellseg_bridge.nn.checkpoint import save_checkpoint
    from cellseg_bridge.nn.net import CellposeUNet

    torch.manual_seed(0)
    model = tmp_path / "model" / "weights.pth"
    save_checkpoint(CellposeUNet((2, 8, 16, 32), 3, 3, diam_mean=16.0), model)
    project = init_project(tmp_path / "proj", images, model=model, diameter=16.0, train_options=FAST_TRAIN)
    nxt, log = run_script(jython, "HITL_Next_Image.py", f"project={project.directory}")
    assert nxt["ok"], log[-3000:]
    assert nxt["image_id"] == open_project(project.directory).images[0]["id"]
    assert nxt["roi_target"] == "overlay" and nxt["n_rois_now"] == len(read_rois(nxt["rois"]))
    corrected = write_roi_zip(labels_to_rois(np.load(images[0].with_name(images[0].stem + "_truth.npy"))),
                              tmp_path / "corrected_RoiSet.zip")
    added, log = run_script(jython, "HITL_Add_Correction.py", f"imp={images[0]}", f"project={project.directory}",
                            f"rois={corrected}", "split=train")
    assert added["ok"], log[-3000:]
    record = open_project(project.directory).find_image(images[0])
    assert added["image_id"] == record["id"] and record["correction"]["n_cells"] == added["n_cells"] > 0
    assert added["split"] == "train" and record["correction"]["split"] == "train"
