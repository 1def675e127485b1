"""Run a Cellseg script as in a Fiji session (Jython 2.7, ImageJ 1.x): preferences loaded first.

    java ... org.python.util.jython fiji_session.py [--changed] [--channel=N] [--labels=A,B] SCRIPT name=value ...

- ImageJ's preferences are loaded as ImageJ/Fiji does at start-up (``Prefs.load``), so
  ``Prefs.intelByteOrder`` is False and ImageJ writes big-endian TIFFs, as in any Fiji;
  a bare JVM writes little-endian ones.
- Each ImagePlus the script receives as a parameter is opened by ImageJ as Fiji would, then
  optionally given unsaved changes (``--changed``), channel labels (``--labels``, made a
  composite of that many channels) and a current channel (``--channel``, 1-based as in ImageJ).
- The result line gets ``session_images``: title, file info and ``changes`` of those images
  before and after the script ran, so a test can check that the user's image is left alone,
  and ``session_seconds``: the wall time of the script's call, from its parameters to its
  result (what a Fiji user waits for; the JVM and Jython were already running).
"""
import os
import sys
import time

from ij import Prefs

Prefs.load(None, None)  # what ImageJ does at start-up (Fiji too): intelByteOrder from the preferences

options = {}
args = list(sys.argv[1:])
while args and args[0].startswith("--"):
    key, _, value = args.pop(0)[2:].partition("=")
    options[key] = value or True
script = os.path.abspath(args[0])
sys.argv = [script] + args[1:]
sys.path.insert(0, os.path.join(os.path.dirname(script), "..", "..", "..", "jars", "Lib"))

import cellseg_fiji as cf  # noqa: E402

images = []


def _state(imp):
    info = imp.getOriginalFileInfo()
    return {"title": imp.getTitle(), "changes": bool(imp.changes),
            "file": None if info is None else [info.directory, info.fileName]}


_convert = cf._convert


def _convert_like_fiji(kind, text, name):
    value = _convert(kind, text, name)
    if kind == "ImagePlus":
        if options.get("labels"):
            from ij import CompositeImage

            labels = options["labels"].split(",")
            if value.getNChannels() != len(labels):
                value.setDimensions(len(labels), value.getStackSize() // len(labels), 1)
            if not value.isComposite():
                value = CompositeImage(value, CompositeImage.COMPOSITE)
            for index, label in enumerate(labels):
                value.getStack().setSliceLabel(label, index + 1)
        if options.get("channel"):
            value.setC(int(options["channel"]))
        if options.get("changed"):
            value.changes = True
        images.append((value, _state(value)))
        global started
        started = time.time()  # in Fiji the image is open already: the call starts now
    return value


_finish = cf.finish


def _finish_with_state(result, cli):
    result["session_images"] = [{"before": before, "after": _state(imp)} for imp, before in images]
    result["session_seconds"] = time.time() - started
    return _finish(result, cli)


cf._convert = _convert_like_fiji
cf.finish = _finish_with_state
namespace = {"__name__": "__main__", "__file__": script}
started = time.time()
execfile(script, namespace)  # noqa: F821 - Jython 2.7
