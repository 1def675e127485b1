# -*- coding: utf-8 -*-
"""Helpers shared by the Cellseg scripts (Jython 2.7, ImageJ 1.x classes only).

The scripts in ``scripts/Plugins/Cellseg/`` run the ``cellseg`` command line of a
Python environment and read back its JSON result. They work in two places:

- in Fiji, from the menu or a macro (``run("Segment Current Image", "model=nuclei")``):
  the ``#@`` script parameters are filled by Fiji;
- under plain ImageJ 1.x + Jython (tests, servers)::

      java -cp ij.jar:jython.jar org.python.util.jython Segment_Current_Image.py image=/path/x.tif model=nuclei

  where this module reads the script's own ``#@`` lines and takes their values
  from ``name=value`` arguments (the same keys as in a macro).

The ``cellseg`` command is, in order: the script's ``cellseg`` parameter, the
environment variable ``CELLSEG_COMMAND``, ``cellseg_fiji.json`` beside this file
(written by ``cellseg fiji install``), or ``cellseg`` on the PATH. Defaults come
from ``cellseg defaults`` (one source for the API, the CLI and these scripts), cached
in ``cellseg_fiji.json`` at install time so that a call starts Python once.

The user's image is never changed: it is saved as a copy (:func:`save_for_cellseg`).
Parameters are checked here (:func:`number`, :func:`choice`); when cellseg fails, its
own error message is shown (:func:`failure_text`).
"""
import colorsys
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from java.awt import GraphicsEnvironment
from java.io import File, FileOutputStream, BufferedOutputStream, DataOutputStream
from java.lang import Throwable, System
from java.util.zip import ZipOutputStream, ZipEntry

from ij import IJ, ImagePlus
from ij.gui import Overlay
from ij.io import RoiDecoder, RoiEncoder
from ij.process import LUT

CONFIG_NAME = "cellseg_fiji.json"
RESULT_PREFIX = "CELLSEG_RESULT "
_PARAM = re.compile(r"^#@\s*(\w+)\s*(\((.*)\))?\s*(\w+)\s*$")
_ATTR_VALUE = re.compile(r"""value\s*=\s*("([^"]*)"|[^,\s)]+)""")
_ATTR_CHOICES = re.compile(r"""choices\s*=\s*\{([^}]*)\}""")
#: Choice parameters whose list is a convenience of the dialog, not a limit: a macro may give any
#: model name or path (cellseg checks it and its own message is shown).
OPEN_CHOICES = ("model",)
_GOLDEN = 0.6180339887498949
_SATURATIONS = (1.0, 0.7, 0.5)
_VALUES = (1.0, 0.8, 0.6)


class CellsegFailure(Exception):
    """The cellseg command failed or is missing; the message says why."""


# ----------------------------------------------------------------- parameters

def parse_parameter_lines(text):
    """[(type, name, default string or None)] of the ``#@`` input lines of a script."""
    return [(kind, name, default) for kind, name, default, _ in parameter_specs(text)]


def parameter_specs(text):
    """[(type, name, default string or None, choices tuple or None)] of the ``#@`` input lines of a script."""
    params = []
    for line in text.splitlines():
        match = _PARAM.match(line.strip())
        if not match or line.strip().startswith("#@output"):
            continue
        kind, attrs, name = match.group(1), match.group(3) or "", match.group(4)
        value = _ATTR_VALUE.search(attrs)
        default = None
        if value:
            default = value.group(2) if value.group(2) is not None else value.group(1)
        choices = _ATTR_CHOICES.search(attrs)
        if choices:
            choices = tuple(c.strip().strip('"') for c in choices.group(1).split(","))
        params.append((kind, name, default, choices or None))
    return params


def _convert(kind, text, name):
    if text is None:
        return None
    if kind in ("Float", "Double", "float", "double"):
        return number(text, name)
    if kind in ("Integer", "Long", "int", "long"):
        value = number(text, name)
        if value != int(value):
            raise CellsegFailure("parameter %s: expected a whole number, got %r" % (name, text))
        return int(value)
    if kind in ("Boolean", "boolean"):
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise CellsegFailure("parameter %s: expected true or false, got %r" % (name, text))
        return text.lower() in ("true", "1", "yes")
    if kind == "File":
        return File(text) if text else None
    if kind == "ImagePlus":
        imp = IJ.openImage(text)
        if imp is None:
            raise CellsegFailure("ImageJ could not open %s" % text)
        return imp
    return text


def script_parameters(namespace, script_path=None, argv=None):
    """The script's parameters: from Fiji (already in ``namespace``) or from ``name=value`` arguments.

    Returns (params dict, cli flag). ``cli`` is True when running under plain Jython.
    """
    argv = sys.argv if argv is None else argv
    script_path = script_path or (argv[0] if argv else None)
    if not script_path or not script_path.endswith(".py") or not os.path.isfile(script_path):
        # Fiji: no script file on the command line; it injected the parameters as variables
        return dict((k, v) for k, v in namespace.items() if not k.startswith("_")), False
    spec = parameter_specs(open(script_path).read())
    if spec and all(name in namespace for _, name, _, _ in spec):
        return dict((name, namespace[name]) for _, name, _, _ in spec), False
    given = {}
    for arg in argv[1:]:
        if "=" not in arg:
            raise CellsegFailure("arguments are name=value, got %r" % arg)
        key, value = arg.split("=", 1)
        given[key] = value
    known = set(name for _, name, _, _ in spec)
    unknown = sorted(set(given) - known)
    if unknown:
        raise CellsegFailure("unknown parameter(s) %s; this script takes %s" % (", ".join(unknown), ", ".join(sorted(known))))
    params = {}
    for kind, name, default, choices in spec:
        params[name] = _convert(kind, given.get(name, default), name)
        if choices and name not in OPEN_CHOICES:
            choice(params, name, choices)
    return params, True


def number(value, name, allow_empty=False):
    """A number parameter (a number or its text) as a float; CellsegFailure naming the parameter otherwise.

    With ``allow_empty``, None or blank text gives None (the default of cellseg).
    """
    if value is None or (isinstance(value, basestring) and not value.strip()):
        if allow_empty:
            return None
        raise CellsegFailure("parameter %s: a number is needed" % name)
    try:
        result = float(value)
    except (ValueError, TypeError):
        raise CellsegFailure("parameter %s: expected a number, got %r" % (name, value))
    if result != result or result in (float("inf"), float("-inf")):
        raise CellsegFailure("parameter %s: expected a finite number, got %r" % (name, value))
    return result


def choice(params, name, choices):
    """The value of a choice parameter, checked against ``choices`` (macros can pass anything)."""
    value = params.get(name)
    if value not in choices:
        raise CellsegFailure("parameter %s: expected one of %s, got %r" % (name, ", ".join(choices), value))
    return value


def option_args(params, names):
    """``--flag value`` arguments of the number options ``names`` that are set (checked as numbers)."""
    args = []
    for name in names:
        value = number(params.get(name), name, allow_empty=True)
        if value is not None:
            args += ["--" + name.replace("_", "-"), repr(value)]
    return args


def model_flag(params):
    """``--model`` arguments from the ``model`` list and the ``model_file`` field (which wins when set).

    ``default`` (the list of a script not installed by ``cellseg fiji install``) or an empty value
    leaves the choice to cellseg's defaults.
    """
    model = path_of(params.get("model_file")) or (params.get("model") or "").strip()
    return ["--model", model] if model and model != "default" else []


def path_of(value):
    """A file parameter (java.io.File, string or None) as a string path, '' when empty."""
    if value is None:
        return ""
    if hasattr(value, "getAbsolutePath"):
        return str(value.getAbsolutePath())
    return str(value)


# ----------------------------------------------------------------- running cellseg

def cellseg_command(explicit=""):
    """The command (list of strings) that runs ``cellseg``."""
    if explicit and explicit.strip():
        return _split(explicit)
    env = os.environ.get("CELLSEG_COMMAND") or System.getenv("CELLSEG_COMMAND")
    if env:
        return _split(env)
    data = installed_config()
    if data.get("command"):
        return [str(part) for part in data["command"]]
    return ["cellseg"]


def _split(text):
    import shlex
    return shlex.split(text)


def run_cellseg(command, args, log=None):
    """Run ``cellseg ARGS``; return (exit status, stdout). Its log lines go to ImageJ's Log window.

    When it fails, :func:`parse_json` and :func:`failure_text` give cellseg's own error message
    (kept in ``LAST_ERRORS``).
    """
    full = list(command) + list(args)
    (log or IJ.log)("cellseg: " + " ".join(full))
    try:
        proc = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except (OSError, Throwable), exc:
        raise CellsegFailure("could not run %s: %s. Set the 'cellseg' parameter, CELLSEG_COMMAND, "
                             "or run `cellseg fiji install --fiji PATH` from your Python environment" % (full[0], exc))
    out, err = proc.communicate()
    del LAST_ERRORS[:]
    for line in (err or "").splitlines():
        if line.strip():
            (log or IJ.log)("  " + line)
            LAST_ERRORS.append(line.strip())
    return proc.returncode, out or ""


#: The stderr lines of the last cellseg run.
LAST_ERRORS = []


def failure_text(status):
    """cellseg's own error message of the last run: its "Error: ..." lines, else its last log lines."""
    errors = [line for line in LAST_ERRORS if line.startswith("Error") or "ERROR" in line]
    lines = errors or LAST_ERRORS[-3:]
    text = " ".join(lines) if lines else "cellseg exited with status %d and printed no message" % status
    return text[-1500:]


def parse_json(text, status=None):
    """The JSON value printed by a cellseg command (leading non-JSON lines ignored).

    When there is none, CellsegFailure carries cellseg's own error message.
    """
    start = min([i for i in (text.find("{"), text.find("[")) if i >= 0] or [-1])
    if start < 0:
        raise CellsegFailure("cellseg failed: " + failure_text(status if status is not None else -1))
    return json.loads(text[start:])


def installed_config():
    """``cellseg_fiji.json`` beside this file (written by ``cellseg fiji install``) as a dict, or {}."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), CONFIG_NAME)
    if not os.path.isfile(path):
        return {}
    try:
        return json.load(open(path))
    except ValueError:
        return {}


def _cache_is_current(config, command):
    """Whether the install-time cache describes ``command``'s cellseg as it is now (its config.py unchanged)."""
    stamp = config.get("stamp") or {}
    path = stamp.get("config_py")
    if [str(c) for c in config.get("command") or []] != list(command) or not path:
        return False
    try:
        return os.path.getsize(path) == stamp.get("size") and int(os.path.getmtime(path)) == stamp.get("mtime")
    except OSError:
        return False


def defaults(command):
    """``cellseg defaults`` as a dict (the one set of defaults).

    Read from the cache ``cellseg fiji install`` wrote when it is for this command and
    cellseg's defaults have not changed since; otherwise asked from ``cellseg defaults``.
    """
    config = installed_config()
    if config.get("defaults") and _cache_is_current(config, command):
        return config["defaults"]
    status, out = run_cellseg(command, ["defaults"], log=lambda line: None)
    if status != 0:
        raise CellsegFailure("`cellseg defaults` failed (exit %d); is the cellseg command right? %s" % (status, command))
    return parse_json(out)


def require_command(command, name):
    """Raise CellsegFailure when this cellseg has no sub-command ``name``."""
    config = installed_config()
    if config.get("commands") and _cache_is_current(config, command):
        if name not in config["commands"]:
            raise CellsegFailure("this cellseg (%s) has no `%s` command; update cellseg_bridge in that environment"
                                 % (" ".join(command), name))
        return
    status, out = run_cellseg(command, [name, "--help"], log=lambda line: None)
    if status != 0:
        raise CellsegFailure("this cellseg (%s) has no `%s` command; update cellseg_bridge in that environment"
                             % (" ".join(command), name))


# ----------------------------------------------------------------- images

def safe_name(title):
    """A file stem from an image title."""
    stem = re.sub(r"\.(ome\.tiff?|tiff?|czi|nd2|lif|png)$", "", title, flags=re.I)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._")
    return stem or "image"


def save_for_cellseg(imp, folder):
    """Save a copy of an ImagePlus as an ImageJ TIFF (calibration, channel labels kept) named after its title.

    The user's image is left alone: ``IJ.saveAsTiff`` would rename its window, point its file
    info at our folder and clear its unsaved-changes flag; here ImageJ's TIFF encoder writes
    the file from a FileInfo of the image instead. Returns the path.
    """
    from ij.io import FileSaver, TiffEncoder

    if not os.path.isdir(folder):
        os.makedirs(folder)
    path = os.path.join(folder, safe_name(imp.getTitle()) + ".tif")
    info = imp.getFileInfo()  # a new FileInfo; the image keeps its own
    stack = imp.getStack()
    if imp.getStackSize() > 1:
        info.sliceLabels = stack.getSliceLabels()
        if stack.isVirtual():
            info.virtualStack = stack
    elif stack.getSliceLabel(1):
        info.sliceLabels = [stack.getSliceLabel(1)]
    info.info = imp.getInfoProperty()
    info.description = FileSaver(imp).getDescriptionString()
    tmp = path + ".part"
    out = DataOutputStream(BufferedOutputStream(FileOutputStream(tmp)))
    try:
        TiffEncoder(info).write(out)
    except (IOError, Throwable), exc:
        raise CellsegFailure("could not save %s to %s: %s" % (imp.getTitle(), path, exc))
    finally:
        out.close()
    if os.path.exists(path):
        os.remove(path)
    os.rename(tmp, path)
    return path


def current_channel_arg(imp, channel):
    """``channel`` when given, else the image's current channel (0-based) when it has several, else None."""
    if channel not in (None, "") and str(channel).strip():
        return str(channel).strip()
    if imp is not None and imp.getNChannels() > 1:
        return str(imp.getChannel() - 1)
    return None


def label_lut():
    """The glasbey-like label LUT (same colours as cellseg_bridge.fiji.lut.label_lut)."""
    reds, greens, blues = [0] * 256, [0] * 256, [0] * 256
    for i in range(1, 256):
        hue = (i * _GOLDEN) % 1.0
        rgb = colorsys.hsv_to_rgb(hue, _SATURATIONS[i % 3], _VALUES[(i // 3) % 3])
        reds[i], greens[i], blues[i] = [int(c * 255.0 + 0.5) for c in rgb]
    as_bytes = lambda values: [v - 256 if v > 127 else v for v in values]
    import jarray
    return LUT(jarray.array(as_bytes(reds), "b"), jarray.array(as_bytes(greens), "b"), jarray.array(as_bytes(blues), "b"))


def open_labels(path, like):
    """Open a label image written by cellseg as an ImagePlus shaped and calibrated like ``like``."""
    labels = IJ.openImage(path)
    if labels is None:
        raise CellsegFailure("ImageJ could not open the label image %s" % path)
    nz, nt = like.getNSlices(), like.getNFrames()
    if labels.getStackSize() == nz * nt:
        labels.setDimensions(1, nz, nt)
        if nz > 1 and nt > 1:
            labels.setOpenAsHyperStack(True)
    labels.setCalibration(like.getCalibration().copy())
    labels.setTitle(safe_name(like.getTitle()) + "_labels")
    max_label = int(labels.getStatistics().max) if labels.getStackSize() == 1 else \
        int(max(labels.getStack().getProcessor(i + 1).getStatistics().max for i in range(labels.getStackSize())))
    labels.setLut(label_lut())
    labels.setDisplayRange(0, 255 if max_label <= 255 else max_label)
    return labels, max_label


def read_zip_rois(path):
    """The ROIs of a RoiSet.zip as ImageJ Roi objects (decoded by ImageJ's RoiDecoder), in zip order."""
    from java.io import ByteArrayOutputStream, FileInputStream
    from java.util.zip import ZipInputStream
    import jarray
    rois = []
    stream = ZipInputStream(FileInputStream(path))
    buf = jarray.zeros(65536, "b")
    try:
        entry = stream.getNextEntry()
        while entry is not None:
            name = entry.getName()
            if name.lower().endswith(".roi"):
                data = ByteArrayOutputStream()
                n = stream.read(buf)
                while n > 0:
                    data.write(buf, 0, n)
                    n = stream.read(buf)
                roi = RoiDecoder(data.toByteArray(), name).getRoi()
                if roi is not None:
                    rois.append(roi)
            entry = stream.getNextEntry()
    finally:
        stream.close()
    return rois


def write_zip_rois(rois, path):
    """Write ImageJ Roi objects to a RoiSet.zip with ImageJ's RoiEncoder (names kept, made unique)."""
    tmp = path + ".part"
    zos = ZipOutputStream(BufferedOutputStream(FileOutputStream(tmp)))
    out = DataOutputStream(zos)
    encoder = RoiEncoder(out)
    used = set()
    try:
        for index, roi in enumerate(rois):
            name = roi.getName() or ("roi_%04d" % (index + 1))
            entry, k = name, 1
            while entry.lower() in used:
                k += 1
                entry = "%s-%d" % (name, k)
            used.add(entry.lower())
            zos.putNextEntry(ZipEntry(entry + ".roi"))
            encoder.write(roi)
            out.flush()
    finally:
        out.close()
    os.rename(tmp, path) if not os.path.exists(path) else (os.remove(path), os.rename(tmp, path))
    return path


def display_available():
    return not GraphicsEnvironment.isHeadless()


def push_rois(imp, rois, append):
    """ROI Manager (with a display; appended unless ``append`` is False) or the image's Overlay.

    Returns (target, number there before).
    """
    if display_available():
        from ij.plugin.frame import RoiManager
        manager = RoiManager.getInstance() or RoiManager()
        if not append:
            manager.reset()
        before = manager.getCount()
        for roi in rois:
            manager.add(imp, roi, -1)
        return "manager", before
    overlay = imp.getOverlay() if append else None
    overlay = overlay or Overlay()
    before = overlay.size()
    for roi in rois:
        overlay.add(roi)
    imp.setOverlay(overlay)
    return "overlay", before


def roi_count(imp, target):
    """How many ROIs the ROI Manager ("manager") or the image's Overlay ("overlay") holds now."""
    if target == "manager":
        from ij.plugin.frame import RoiManager
        manager = RoiManager.getInstance()
        return manager.getCount() if manager is not None else 0
    overlay = imp.getOverlay()
    return overlay.size() if overlay is not None else 0


def current_rois(imp):
    """The user's ROIs: the ROI Manager's when there is one with ROIs, else the image's Overlay."""
    if display_available():
        from ij.plugin.frame import RoiManager
        manager = RoiManager.getInstance()
        if manager is not None and manager.getCount() > 0:
            return list(manager.getRoisAsArray()), "manager"
    overlay = imp.getOverlay()
    if overlay is not None and overlay.size() > 0:
        return [overlay.get(i) for i in range(overlay.size())], "overlay"
    return [], "none"


def work_folder(out_dir, what):
    """``out_dir`` when given, else a new temporary folder."""
    path = path_of(out_dir)
    if path:
        if not os.path.isdir(path):
            os.makedirs(path)
        return path
    return tempfile.mkdtemp(prefix="cellseg_%s_" % what)


# ----------------------------------------------------------------- ending

def finish(result, cli):
    """Report the result; under plain Jython print it as one JSON line and exit (0 ok, 1 failed)."""
    if cli:
        sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
        sys.stdout.flush()
        System.exit(0 if result.get("ok") else 1)
    elif not result.get("ok"):
        IJ.error("Cellseg", result.get("error") or "failed")


def run_main(main, namespace):
    """Run a script's ``main(params, cli)``, turning any failure into a clear result/error."""
    cli = True
    try:
        params, cli = script_parameters(namespace)
        result = main(params, cli)
    except CellsegFailure, exc:
        IJ.log("Cellseg: " + str(exc))
        result = {"ok": False, "error": str(exc)}
    except (Exception, Throwable), exc:  # a bug or an ImageJ error: keep the traceback in the log
        import traceback
        IJ.log("Cellseg: unexpected error: %s\n%s" % (exc, traceback.format_exc()))
        result = {"ok": False, "error": str(exc)}
    finish(result, cli)
    return result
