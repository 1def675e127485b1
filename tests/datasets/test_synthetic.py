import numpy as np

from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei


def test_synthetic_nuclei_is_reproducible_and_consistent():
    image, labels = synthetic_nuclei(NucleiSpec(shape=(128, 160), n_nuclei=12), seed=3)
    again, labels_again = synthetic_nuclei(NucleiSpec(shape=(128, 160), n_nuclei=12), seed=3)
    assert image.shape == labels.shape == (128, 160)
    assert image.dtype == np.uint16 and labels.dtype == np.uint16
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(labels, labels_again)
    ids = np.unique(labels)[1:]
    assert 5 <= len(ids) <= 12
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    # Nuclei are brighter than background.
    assert image[labels > 0].mean() > image[labels == 0].mean() + 50


def test_different_seeds_differ():
    a, _ = synthetic_nuclei(NucleiSpec(shape=(64, 64), n_nuclei=4), seed=0)
    b, _ = synthetic_nuclei(NucleiSpec(shape=(64, 64), n_nuclei=4), seed=1)
    assert not np.array_equal(a, b)


def test_committed_sample_data_is_what_the_generator_makes():
    import importlib.util
    from pathlib import Path

    from cellseg_bridge.io.reader import open_image

    sample = Path(__file__).resolve().parents[2] / "sample_data"
    spec = importlib.util.spec_from_file_location("generate", sample / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    for seed, nuclei_spec in generate.SPECS.items():
        image, labels = synthetic_nuclei(nuclei_spec, seed=seed)
        np.testing.assert_array_equal(open_image(sample / f"nuclei_{seed:02d}.ome.tif").values[0, 0, 0], image)
        np.testing.assert_array_equal(open_image(sample / f"nuclei_{seed:02d}_masks.ome.tif").values[0, 0, 0], labels)
