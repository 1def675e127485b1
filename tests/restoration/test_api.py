"""restore(): the pipeline against a hand-run network, channels, chaining, Cellpose files, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellseg_bridge.core import transforms
from cellseg_bridge.datasets.synthetic import NucleiSpec, synthetic_nuclei
from cellseg_bridge.errors import InputError
from cellseg_bridge.nn.inference import run_network
from cellseg_bridge.nn.net import CellposeUNet
from cellseg_bridge.restoration.api import load_restore_model, model_name_for, parse_types, restore


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return synthetic_nuclei(NucleiSpec(shape=(96, 80), n_nuclei=8), seed=3)[0]


def _by_hand(net, plane: np.ndarray) -> np.ndarray:
    x = transforms.normalize_percentile(plane, 1, 99, channel_axis=None)[None]
    y, _ = run_network(net, x, tile_size=224)
    return y[0]


def test_restore_equals_normalise_then_network(tiny_restore_path, image):
    model = load_restore_model(tiny_restore_path, device="cpu")
    result = restore(image, model=model)
    assert result.image.shape == (1, 1, 1, 96, 80) and result.image.dtype == np.float32
    np.testing.assert_allclose(result.image[0, 0, 0], _by_hand(model.net, image), rtol=1e-5, atol=1e-5)
    assert result.types == ["model"] and result.restored_channels == [0]
    assert np.isfinite(result.image).all()


def test_restore_with_diameter_runs_at_the_model_scale(tiny_restore_path, image):
    model = load_restore_model(tiny_restore_path, device="cpu")
    result = restore(image, model=model, diameter=34.0)  # diam_mean 17: half size
    x = transforms.normalize_percentile(image, 1, 99, channel_axis=None)
    small = transforms.resize(x, transforms.scaled_shape(x.shape, 0.5))
    y, _ = run_network(model.net, small[None], tile_size=224)
    expected = transforms.resize(y[0], image.shape)
    np.testing.assert_allclose(result.image[0, 0, 0], expected, rtol=1e-5, atol=1e-5)


def test_only_the_chosen_channel_is_restored_and_stacks_go_plane_by_plane(tiny_restore_path, image):
    model = load_restore_model(tiny_restore_path, device="cpu")
    other = (image[::-1] * 0.5).astype(np.float32)
    data = np.stack([np.stack([image, other]), np.stack([other, image])])  # (C=2, Z=2, Y, X)
    result = restore(data, model=model, axes="CZYX", channel=1)
    assert result.restored_channels == [1]
    np.testing.assert_array_equal(result.image[0, 0], data[0])  # untouched channel
    np.testing.assert_allclose(result.image[0, 1, 0], _by_hand(model.net, other), atol=1e-5)
    np.testing.assert_allclose(result.image[0, 1, 1], _by_hand(model.net, image), atol=1e-5)


def test_chained_models_apply_in_order(tiny_restore_path, image):
    model = load_restore_model(tiny_restore_path, device="cpu")
    once = restore(image, model=model).image[0, 0, 0]
    twice = restore(image, model=[model, model])
    np.testing.assert_allclose(twice.image[0, 0, 0], _by_hand(model.net, once), atol=1e-5)
    assert twice.models == [model.name, model.name]


def test_types_name_models_and_unknown_types_are_refused():
    assert parse_types("denoise, deblur") == ("denoise", "deblur")
    assert model_name_for("upsample", "cyto3") == "upsample_cyto3"
    with pytest.raises(InputError, match="unknown restoration type"):
        parse_types("sharpen")


def test_restoration_by_type_finds_a_cellpose3_file_by_name(tmp_path, monkeypatch, image):
    """A bare Cellpose 3 state dict named denoise_cyto3 in Cellpose's folder loads as the denoise model."""
    folder = tmp_path / "cellpose"
    folder.mkdir()
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(folder))
    monkeypatch.setenv("CELLSEG_BRIDGE_MODELS", str(tmp_path / "cache"))
    torch.manual_seed(2)
    net = CellposeUNet((1, 32, 64, 128, 256), nout=1, diam_mean=17.0)  # full Cellpose 3 width
    torch.save(net.state_dict(), folder / "denoise_cyto3")  # as Cellpose writes it: no suffix, no config
    small = image[:32, :32]
    result = restore(small, "denoise", target="cyto3", device="cpu")
    assert result.types == ["denoise"] and result.models == ["denoise_cyto3"]
    net.eval()
    np.testing.assert_allclose(result.image[0, 0, 0], _by_hand(net, small), atol=1e-4)


def test_a_segmentation_model_is_not_a_restoration_model(tiny_seg_path, image):
    with pytest.raises(InputError, match="not a restoration network"):
        restore(image, model=tiny_seg_path)


def test_bad_input_gets_clear_errors(tiny_restore_path, image):
    model = load_restore_model(tiny_restore_path, device="cpu")
    nan = image.astype(np.float32)
    nan[5, 5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        restore(nan, model=model)
    with pytest.raises(InputError, match="at least 8x8"):
        restore(np.ones((4, 4), np.float32), model=model)
    with pytest.raises(InputError, match="channel 3 does not exist"):
        restore(np.stack([image, image]), model=model, axes="CYX", channel=3)
    with pytest.raises(InputError, match="needs axes"):
        restore(np.stack([image, image, image], axis=-1), model=model)
    with pytest.raises(InputError, match="unknown restore option"):
        restore(image, model=model, sharpen=True)
    with pytest.raises(InputError, match="too small"):
        restore(image, model=model, diameter=1000.0)
    with pytest.raises(InputError, match="not found"):
        restore(image, model=str(tiny_restore_path) + ".missing")
