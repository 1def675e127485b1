"""Regenerate the synthetic sample images of ``sample_data/`` (run: ``python sample_data/generate.py``).

Writes, for seeds 0..2, ``nuclei_0N.ome.tif`` (uint16 fluorescence, one channel named
"DAPI", 0.65 µm pixels) and ``nuclei_0N_masks.ome.tif`` (its exact ground-truth labels),
using :func:`cellseg_bridge.datasets.synthetic.synthetic_nuclei`. Outputs are deterministic.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei
from cellseg_bridge.io.writers import write_labels, write_ome_tiff

HERE = Path(__file__).resolve().parent
PIXEL_SIZE_UM = 0.65
SPECS = {
    0: NucleiSpec(shape=(256, 256), n_nuclei=40, diameter=22.0),
    1: NucleiSpec(shape=(256, 320), n_nuclei=60, diameter=18.0, photons=150.0),
    2: NucleiSpec(shape=(320, 256), n_nuclei=30, diameter=28.0, psf_sigma=2.0),
}


def main() -> None:
    """Write the sample images and their labels next to this script."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sizes = {"Z": None, "Y": PIXEL_SIZE_UM, "X": PIXEL_SIZE_UM}
    for seed, spec in SPECS.items():
        image, labels = synthetic_nuclei(spec, seed=seed)
        write_ome_tiff(image, HERE / f"nuclei_{seed:02d}.ome.tif", physical_pixel_sizes=sizes,
                       channel_names=["DAPI"], dims="YX")
        write_labels(labels, HERE / f"nuclei_{seed:02d}_masks.ome.tif", physical_pixel_sizes=sizes, dims="YX")
        logging.info("nuclei_%02d: %s, %d nuclei", seed, image.shape, labels.max())


if __name__ == "__main__":
    main()
