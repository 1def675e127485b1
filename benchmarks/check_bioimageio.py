"""Export bundled models as bioimage.io packages (as the CLI does) and check them with bioimageio.spec/core.

Usage: ``python benchmarks/check_bioimageio.py [MODEL ...] [--out DIR]`` (default: ``nuclei``). Prints, per
model, the ``bioimageio.core.test_model`` status (format validation + test tensors reproduced from every
weights format), the largest absolute difference between bioimageio.core's prediction (its own
preprocessing) and the packaged test output per weights format,
and the largest absolute difference between the TorchScript weights and our network's flows on a random
image of another size. Needs ``pip install -e '.[bioimageio]'``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from cellseg_bridge.nn.bioimageio import export_bioimageio, scale_range
from cellseg_bridge.nn.checkpoint import load_checkpoint
from cellseg_bridge.nn.registry import resolve_model


def _reproduction_diffs(package: Path) -> dict[str, float]:
    """Max abs difference between bioimageio.core's prediction on the test input (its own preprocessing)
    and the packaged test output, per weights format."""
    from bioimageio.core import create_prediction_pipeline, load_description
    from bioimageio.core.digest_spec import get_test_inputs, get_test_outputs

    descr = load_description(package)
    inputs, expected = get_test_inputs(descr), get_test_outputs(descr)
    diffs = {}
    for fmt in ("pytorch_state_dict", "torchscript"):
        with create_prediction_pipeline(descr, weight_format=fmt) as pipeline:
            got = pipeline.predict_sample_without_blocking(inputs)
        diffs[fmt] = float(np.abs(got.members["flows"].data.values - expected.members["flows"].data.values).max())
    return diffs


def check(model: str, out: Path) -> dict:
    from bioimageio.core import test_model

    package = export_bioimageio(model, out / f"{model}.zip", overwrite=True)
    summary = test_model(package)
    with zipfile.ZipFile(package) as zf:
        scripted = torch.jit.load(io.BytesIO(zf.read("weights.torchscript")))
        test_in = np.load(io.BytesIO(zf.read("test_input.npy")))
        test_out = np.load(io.BytesIO(zf.read("test_output.npy")))
    net, config = load_checkpoint(resolve_model(model), "cpu")
    rng = np.random.default_rng(0)
    x = torch.from_numpy(scale_range(rng.gamma(2.0, 50.0, (1, config["nbase"][0], 176, 240)), 1, 99))
    with torch.no_grad():
        diff = float(np.abs(net(x)[0].numpy() - scripted(x).numpy()).max())
        ours = net(torch.from_numpy(scale_range(test_in, 1, 99)))[0].numpy()
    return {
        "model": model,
        "package": str(package),
        "bioimageio.core test_model": summary.status,
        "failed checks": [d.name for d in summary.details if d.status == "failed"],
        "torchscript vs CellposeUNet, max abs diff (176x240)": diff,
        "packaged test output vs CellposeUNet, max abs diff": float(np.abs(ours - test_out).max()),
        "bioimageio.core prediction vs packaged test output, max abs diff": _reproduction_diffs(package),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["nuclei"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="bioimageio-"))
    out.mkdir(parents=True, exist_ok=True)
    results = [check(m, out) for m in args.models]
    print(json.dumps(results, indent=1))
    return 0 if all(r["bioimageio.core test_model"] == "passed" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
