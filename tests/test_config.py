import json

from click.testing import CliRunner

from cellseg_bridge.cli import main
from cellseg_bridge.config import DEFAULTS


def test_defaults_command_prints_the_dataclass_defaults():
    result = CliRunner().invoke(main, ["defaults"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data == DEFAULTS.to_dict()
    assert data["rois"]["name_format"] == "cell_{label:04d}"


def test_options_validate_themselves_and_derive_with_overrides():
    import pytest

    from cellseg_bridge.config import RestoreOptions, SegmentOptions, TrainOptions
    from cellseg_bridge.errors import InputError

    opts = SegmentOptions.derive(diameter=17, normalize_percentiles=[2, 98])
    assert opts.normalize_percentiles == (2, 98) and opts.diameter == 17
    assert SegmentOptions.derive(opts, tile_size=0).diameter == 17  # derived from a base
    for bad, match in [({"diameter": -1}, "diameter must be > 0"), ({"diameter": float("nan")}, "finite"),
                       ({"channel": 1.5}, "channel must be int or str"), ({"precision": "half"}, "one of"),
                       ({"normalize_percentiles": (99, 1)}, "percentiles"), ({"colour": 1}, "unknown option")]:
        with pytest.raises(InputError, match=match):
            SegmentOptions.derive(**bad)
    with pytest.raises(InputError, match="unknown training option"):
        TrainOptions.derive(epochs=3)
    assert RestoreOptions.derive(types="denoise,deblur").types == ("denoise", "deblur")
    assert TrainOptions(nbase=[2, 8]).nbase == (2, 8)
