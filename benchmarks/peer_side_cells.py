"""The peer's side of ``peer_train_cells.py``: Cellpose 3.1.1.3 trains and scores itself.

Runs with the PEER's interpreter (``.peer_venv``), called as ``peer_side.py train SPEC.json``
and ``peer_side.py eval SPEC.json`` (2 threads, set by ``peer_side``). Only Cellpose's own
public functions do the work:

* ``train``: ``models.CellposeModel(gpu=False, pretrained_model=False, diam_mean, nchan=2)``
  builds the network as ``python -m cellpose --train`` does (``CPnet([2, 32, 64, 128, 256])``);
  another width replaces ``model.net`` by ``resnet_torch.CPnet(nbase, 3, sz=3,
  mkldnn=model.mkldnn, max_pool=True, diam_mean)``. Then ``train.train_seg(model.net, ...)``
  with the images, labels and per-image ``train_probs`` of the spec. ``train_seg`` itself sets
  ``net.diam_labels`` to the mean diameter of the training masks and saves
  ``OUT/models/<model_name>``. A post-step hook on torch's optimizers (a public torch API; it
  changes nothing in the training) counts the steps, logs progress and, when the spec gives
  ``minutes``, stops the run at the first step past the budget (the net is then saved as it
  is and the report says ``stopped: "budget"``).
* ``eval``: ``CellposeModel(gpu=False, pretrained_model=CHECKPOINT)`` for Cellpose's own width
  (another width: the same network swap as above, then ``net.load_model``, and
  ``diam_mean`` / ``diam_labels`` read from the checkpoint as ``CellposeModel`` does; since
  ``core.run_net`` of 3.1.1.3 holds styles in a fixed 256-wide array, the swapped network's
  style vector, which only a size model would read, is zero-padded to 256: outputs and masks
  are untouched);
  ``model.eval(img, channels=[0, 0], diameter=None)``, i.e. ``rescale = diam_mean /
  diam_labels`` for every image (a model without a size model); ``metrics.average_precision``
  at IoU 0.5 / 0.75 / 0.9 against the ground truth. Per-image scores are written after each
  image, and a rerun on the same checkpoint goes on where it stopped.

Data come as ``.npz`` files written by the driver (never the repository): ``names``,
``img_0000``, ``lbl_0000``, ... (train), ``val_names``, ``val_img_0000``, ... (held out,
Cellpose's ``test_data`` for its test loss); for eval ``keys``, ``img_0000``, ``lbl_0000``, ....
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("peer_side_cells")
#: CellposeModel's own network widths for nchan = 2 (``nbase = [nchan, 32, 64, 128, 256]``).
CELLPOSE_NBASE = [2, 32, 64, 128, 256]
THRESHOLDS = [0.5, 0.75, 0.9]
#: ``cellpose.core.run_net`` keeps styles in an (n, 256) array, whatever the network's width.
STYLE_SIZE = 256


class _BudgetSpent(Exception):
    """Raised from the optimizer hook when the time budget is spent."""


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _n_masks(labels: np.ndarray) -> int:
    return int(np.unique(labels[labels > 0]).size)


def _pairs(z, prefix: str, n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return ([z[f"{prefix}img_{i:04d}"].astype(np.float32) for i in range(n)],
            [z[f"{prefix}lbl_{i:04d}"].astype(np.int32) for i in range(n)])


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def _build_model(nbase: list[int] | None, diam_mean: float):
    """A CellposeModel without weights; its net replaced by ``CPnet(nbase)`` for another width."""
    from cellpose import models, resnet_torch

    model = models.CellposeModel(gpu=False, pretrained_model=False, diam_mean=diam_mean, nchan=2)
    if nbase is not None and list(nbase) != list(model.nbase):
        model.net = resnet_torch.CPnet(list(nbase), 3, sz=3, mkldnn=model.mkldnn, max_pool=True,
                                       diam_mean=diam_mean).to(model.device)
        model.nbase = list(nbase)
    return model


def train(spec: dict) -> dict:
    """``train_seg`` on the spec's datasets; returns the report (the driver stores it)."""
    from cellpose import train as cp_train
    import torch.optim.optimizer as topt

    t_start, cpu_start = time.perf_counter(), _cpu_s()
    torch.manual_seed(spec["seed"])
    np.random.seed(spec["seed"])
    min_masks = spec["min_train_masks"]
    images, labels, probs, datasets = [], [], [], []
    val_images, val_labels = [], []
    for d in spec["datasets"]:
        with np.load(d["file"]) as z:
            names = [str(v) for v in z["names"]]
            imgs, lbls = _pairs(z, "", len(names))
            vnames = [str(v) for v in z["val_names"]]
            vi, vl = _pairs(z, "val_", len(vnames))
        # train_seg drops images with fewer than min_train_masks masks and renormalises the
        # probabilities of the rest; dropping them here first keeps each dataset's share exact.
        keep = [i for i, lab in enumerate(lbls) if _n_masks(lab) >= min_masks]
        if not keep:
            raise ValueError(f"{d['name']}: no train image has >= {min_masks} masks")
        images += [imgs[i] for i in keep]
        labels += [lbls[i] for i in keep]
        probs += [d["weight"] / len(keep)] * len(keep)
        val_images += vi
        val_labels += vl
        datasets.append({"name": d["name"], "weight": d["weight"], "n_images": len(names), "n_used": len(keep),
                         "dropped_lt_min_masks": [names[i] for i in range(len(names)) if i not in keep],
                         "prob_per_image": d["weight"] / len(keep), "n_val": len(vnames)})
    probs = np.asarray(probs, np.float64)
    probs /= probs.sum()
    nimg_per_epoch = spec["nimg_per_epoch"]
    if len(images) == nimg_per_epoch:
        log.warning("nimg_per_epoch == number of train images (%d): train_seg then draws a permutation "
                    "and ignores train_probs", len(images))

    model = _build_model(spec["nbase"], spec["diam_mean"])
    net = model.net
    n_params = int(sum(p.numel() for p in net.parameters() if p.requires_grad))
    steps_per_epoch = math.ceil(nimg_per_epoch / spec["batch_size"])
    planned = spec["n_epochs"] * steps_per_epoch
    deadline = t_start + 60.0 * spec["minutes"] if spec.get("minutes") else None
    state = {"steps": 0, "first_step_at": None, "first_step_cpu": None}
    every = max(1, planned // 20)

    def step_hook(_opt, _args, _kwargs):
        state["steps"] += 1
        now = time.perf_counter()
        if state["first_step_at"] is None:
            state["first_step_at"], state["first_step_cpu"] = now, _cpu_s()
        k = state["steps"]
        if k % every == 0 or k == planned:
            rate = (now - state["first_step_at"]) / max(1, k - 1)
            log.info("step %d/%d, %.0f s, %.2f s/step, eta %.0f min", k, planned, now - t_start, rate,
                     (planned - k) * rate / 60)
        if deadline is not None and now > deadline and k < planned:
            raise _BudgetSpent()

    handle = topt.register_optimizer_step_post_hook(step_hook)
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "models" / spec["model_name"]
    kwargs = dict(train_data=images, train_labels=labels, train_probs=probs,
                  test_data=val_images or None, test_labels=val_labels or None,
                  batch_size=spec["batch_size"], learning_rate=spec["learning_rate"], n_epochs=spec["n_epochs"],
                  weight_decay=spec["weight_decay"], momentum=spec["momentum"], SGD=spec["SGD"],
                  channels=[0, 0], normalize=True, save_path=str(out), save_every=spec["save_every"],
                  nimg_per_epoch=nimg_per_epoch, rescale=True, bsize=224, min_train_masks=min_masks,
                  model_name=spec["model_name"])
    stopped, train_losses, test_losses = "done", None, None
    try:
        path, train_losses, test_losses = cp_train.train_seg(net, **kwargs)
        checkpoint = Path(path)
    except _BudgetSpent:
        stopped = "budget"
        net.save_model(str(checkpoint))
        log.warning("time budget of %.1f min spent after %d of %d steps: saved %s", spec["minutes"],
                    state["steps"], planned, checkpoint)
    finally:
        handle.remove()
    t_end, cpu_end = time.perf_counter(), _cpu_s()
    first = state["first_step_at"] or t_end
    more = state["steps"] > 1
    report = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        "stopped": stopped, "steps": state["steps"], "steps_planned": planned, "steps_per_epoch": steps_per_epoch,
        "wall_s": round(t_end - t_start, 1), "cpu_s": round(cpu_end - cpu_start, 1),
        "setup_s": round(first - t_start, 1),  # loading, flows, normalisation, the first step
        # steps 2..n (the first holds the set-up); None with a single step
        "s_per_step": round((t_end - first) / (state["steps"] - 1), 3) if more else None,
        "cpu_s_per_step": round((cpu_end - state["first_step_cpu"]) / (state["steps"] - 1), 3) if more else None,
        "diam_mean": float(net.diam_mean.item()), "diam_labels": float(net.diam_labels.item()),
        "nbase": list(net.nbase), "n_params": n_params, "mkldnn": bool(model.mkldnn),
        "n_train_images": len(images), "datasets": datasets,
        "train_seg_kwargs": {k: v for k, v in kwargs.items()
                             if k not in ("train_data", "train_labels", "train_probs", "test_data", "test_labels")},
        "train_losses": None if train_losses is None else [round(float(v), 5) for v in train_losses],
        "test_losses": None if test_losses is None else
        {str(i): round(float(v), 5) for i, v in enumerate(test_losses) if v != 0},
        "threads": torch.get_num_threads(),
    }
    return report


def _load_model(checkpoint: str, nbase: list[int] | None):
    from cellpose import models, resnet_torch

    if nbase is None or list(nbase) == CELLPOSE_NBASE:
        return models.CellposeModel(gpu=False, pretrained_model=checkpoint)

    class StylePadded(resnet_torch.CPnet):
        """CPnet whose style vector is zero-padded to 256: ``core.run_net`` (3.1.1.3) stores styles
        in a fixed (n, 256) buffer. The style only feeds a size model (none here); the network's
        output, hence the masks, are unchanged."""

        def forward(self, data):
            y, style, t0 = super().forward(data)
            if style.shape[1] < STYLE_SIZE:
                style = torch.nn.functional.pad(style, (0, STYLE_SIZE - style.shape[1]))
            return y, style, t0

    model = _build_model(None, 30.0)
    model.net = StylePadded(list(nbase), 3, sz=3, mkldnn=model.mkldnn, max_pool=True,
                            diam_mean=30.0).to(model.device)
    model.nbase = list(nbase)
    model.net.load_model(checkpoint, device=model.device)
    model.pretrained_model = checkpoint
    model.diam_mean = float(model.net.diam_mean.item())
    model.diam_labels = float(model.net.diam_labels.item())
    return model


def eval(spec: dict) -> dict:  # noqa: A001  (the subcommand's name)
    """Segment and score every image of ``spec['test_file']``; per-image results in ``spec['out']``."""
    from cellpose import metrics, utils

    t0, cpu0 = time.perf_counter(), _cpu_s()
    checkpoint = spec["checkpoint"]
    sha = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
    model = _load_model(checkpoint, spec["nbase"])
    out = Path(spec["out"])
    old = json.loads(out.read_text()) if out.is_file() else {}
    same = old.get("checkpoint_sha256") == sha and old.get("true_diameter") == spec["true_diameter"]
    results = old.get("results", {}) if same else {}
    report = {"checkpoint": checkpoint, "checkpoint_sha256": sha, "true_diameter": spec["true_diameter"],
              "diam_mean": float(model.diam_mean), "diam_labels": float(model.diam_labels),
              "call": ("CellposeModel.eval(img, channels=[0, 0], diameter="
                       + ("cellpose.utils.diameters(truth)[0])" if spec["true_diameter"] else
                          "None)  # rescale = diam_mean / diam_labels")),
              "results": results}
    n_new = 0
    with np.load(spec["test_file"]) as z:
        keys = [str(k) for k in z["keys"]]
        for i, key in enumerate(keys):
            if key in results:
                continue
            img, truth = z[f"img_{i:04d}"].astype(np.float32), z[f"lbl_{i:04d}"].astype(np.int32)
            diameter = float(utils.diameters(truth)[0]) if spec["true_diameter"] else None
            tic = time.perf_counter()
            masks, _flows, _styles = model.eval(img, channels=[0, 0], diameter=diameter)
            seconds = time.perf_counter() - tic
            ap = metrics.average_precision([truth], [masks.astype(np.int32)], threshold=THRESHOLDS)[0][0]
            results[key] = {"ap": [float(v) for v in ap], "n": int(masks.max()),
                            "diameter": diameter if diameter is not None else float(model.diam_labels),
                            "seconds": round(seconds, 2)}
            n_new += 1
            log.info("%s: %d masks, AP@0.5 %.3f, %.1f s", key, int(masks.max()), ap[0], seconds)
            _write_json(out, report)
    _write_json(out, report)
    return {"n_images": len(keys), "n_scored_now": n_new, "wall_s": round(time.perf_counter() - t0, 1),
            "cpu_s": round(_cpu_s() - cpu0, 1), "diam_labels": report["diam_labels"]}
