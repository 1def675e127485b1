"""File input/output: readers, writers, ImageJ ROI files, tables and overlays.

- :mod:`.reader`: any supported microscope file -> lazy TCZYX ``xarray.DataArray``;
- :mod:`.writers` (OME-TIFF), :mod:`.seg_npy` (Cellpose GUI files), :mod:`.overlay` (PNG),
  :mod:`.tables` (per-cell CSV), :mod:`.atomic` (write-then-rename);
- :mod:`.roi_export` / :mod:`.roi_import`: labels <-> ImageJ ROIs; :mod:`.roi_files`: the same, file to file.

Submodules are imported where used, so that importing one does not load the others' dependencies.
"""
