"""Headless human-in-the-loop (HITL) training with corrections made in Fiji's ROI Manager.

The cycle: :meth:`HitlProject.next_image` segments the next image and writes its
``RoiSet.zip``; the user corrects it in Fiji and saves the ROI Manager;
:meth:`HitlProject.add_correction` imports it; :meth:`HitlProject.train`
fine-tunes the initial model on all corrections (a new, crash-safe cycle);
:meth:`HitlProject.status` reports cycles, ROI counts and held-out AP.

- :mod:`~cellseg_bridge.hitl.project`: the project, ``next`` and ``add``;
- :mod:`~cellseg_bridge.hitl.cycle`: one training cycle and its crash safety;
- :mod:`~cellseg_bridge.hitl.models`: ``use`` (the current model) and ``export`` (into the model cache);
- :mod:`~cellseg_bridge.hitl.corrections`: checking a corrected RoiSet against its image;
- :mod:`~cellseg_bridge.hitl.evaluate`: held-out AP; :mod:`~cellseg_bridge.hitl.status`: the summary;
- :mod:`~cellseg_bridge.hitl.manifest`: the manifest file, fingerprints, the project lock.
"""

from cellseg_bridge.hitl.project import AddResult, HitlProject, NextResult, init_project, open_project
from cellseg_bridge.hitl.status import format_status

__all__ = ["AddResult", "HitlProject", "NextResult", "format_status", "init_project", "open_project"]
