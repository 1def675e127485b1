"""File input/output: readers, writers, ImageJ ROIs, training pairs."""

from cellseg_bridge.io.reader import list_scenes, open_image
from cellseg_bridge.io.seg_npy import read_seg_npy, write_seg_npy
from cellseg_bridge.io.writers import write_labels, write_ome_tiff
