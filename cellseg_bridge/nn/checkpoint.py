"""Load and save network checkpoints: Cellpose-compatible state dicts plus ``config.json``.

A checkpoint is a plain ``torch.save(state_dict)`` file (as Cellpose writes,
so files from ``~/.cellpose/models`` and ``train_seg`` load unchanged), with an
optional ``config.json`` beside it holding what the weights alone do not say
(channels, provenance) and, redundantly, the architecture. Files are read
with ``torch.load(..., weights_only=True)`` only: arbitrary pickled objects
are refused, never executed. ``.safetensors`` files are read when the
``safetensors`` package is installed.

The architecture (``nbase``, ``nout``, ``kernel_size``) is inferred from the
tensor shapes, so a bare Cellpose file needs no config. ``config.json`` applies
to a weights file only if its ``"weights"`` entry names that file (or is
absent), so several checkpoints may share a folder without mixing configs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import pickle
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from cellseg_bridge.errors import CellsegError, InputError
from cellseg_bridge.io.atomic import atomic_output
from cellseg_bridge.io.paths import missing_reason
from cellseg_bridge.nn.net import CellposeUNet
from cellseg_bridge.nn.pickle_scan import pickled_globals

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
FORMAT = "cellpose-cpnet-state-dict"
#: Keys whose absence is tolerated (older checkpoints); defaults are kept.
_OPTIONAL_KEYS = frozenset({"diam_mean", "diam_labels"})
#: Containers in which training scripts commonly nest the state dict.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net")
_MAX_LISTED = 8

#: torch's words for a global it refuses: "Unsupported global: GLOBAL x" (<= 2.5),
#: "unsupported GLOBAL x whose module y is blocked" (2.6 ... 2.13).
_UNSAFE_GLOBAL = re.compile(r"unsupported global:? (?:GLOBAL )?([\w.]+)", re.IGNORECASE)
#: Words of torch's weights-only refusals that do not name the global.
_WEIGHTS_ONLY_WORDS = ("Weights only load failed", "WeightsUnpickler", "is blocked", "Unsupported operand")
#: Globals a plain tensor state dict pickles (torch's own rebuild functions and storages).
_TENSOR_GLOBALS = ("torch.", "collections.OrderedDict", "_codecs.encode", "builtins.set")
_DOWN_CONV0 = re.compile(r"^downsample\.down\.res_down_(\d+)\.conv\.conv_0\.2\.weight$")


def config_path_for(weights: str | Path) -> Path:
    """Path of the ``config.json`` that accompanies ``weights``."""
    return Path(weights).parent / CONFIG_NAME


def _read_raw(path: Path, device: torch.device) -> Any:
    """Deserialise ``path`` safely; every failure becomes an :class:`InputError` naming the file."""
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise InputError("reading .safetensors needs the 'safetensors' package", path) from exc
        try:
            return load_file(str(path), device=str(device))
        except Exception as exc:  # noqa: BLE001 - untrusted bytes (SafetensorError, OSError, ...)
            raise InputError(f"not a readable safetensors file ({_first_line(exc)})", path) from exc
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _refused_globals(str(exc), path)
        if refused is not None:
            raise InputError(
                f"refused: this file pickles Python objects ({refused}), not only tensors; loading it "
                "could run code. Checkpoints are read with torch.load(weights_only=True) and must be "
                "plain state dicts (torch.save(model.state_dict()))",
                path,
            ) from exc
        raise InputError("not a PyTorch checkpoint or corrupt (unpickling failed)", path) from exc
    except OSError as exc:
        raise InputError(f"cannot read checkpoint ({exc.strerror or exc})", path) from exc
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: torch raises anything on garbage
        raise InputError(f"not a PyTorch checkpoint or corrupt ({_what_it_is(path) or _first_line(exc)})",
                         path) from exc


def _what_it_is(path: Path) -> str | None:
    """A few words on a file that is neither a zip (torch >= 1.6) nor a pickle (older torch), else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    if not head:
        return "the file is empty"
    if head.startswith(b"PK") or head[0] == 0x80:
        return None
    return f"neither a zip archive nor a pickle: it starts with {head[:12]!r}"


def _refused_globals(message: str, path: Path) -> str | None:
    """What a pickle that ``torch.load(weights_only=True)`` refused would have imported, or None.

    torch names the global in its message ("Unsupported global: GLOBAL x" in older
    versions, "unsupported GLOBAL x whose module y is blocked" in 2.13); when it
    stops earlier (an opcode it does not support, e.g. a plain ``pickle.dump``), the
    pickle's opcodes are listed without running them and the globals named.
    """
    found = _UNSAFE_GLOBAL.search(message)
    if found:
        return found.group(1)
    if not any(word in message for word in _WEIGHTS_ONLY_WORDS):
        return None
    names = [n for n in pickled_globals(path) if not n.startswith(_TENSOR_GLOBALS)]
    if names:
        return ", ".join(sorted(set(names))[:_MAX_LISTED])
    return None


def _is_tensor_mapping(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _as_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensor mapping in ``obj``: plain, nested under a usual key, or ``module.``-prefixed."""
    if not _is_tensor_mapping(obj) and isinstance(obj, Mapping):
        for key in _NESTED_KEYS:
            if _is_tensor_mapping(obj.get(key)):
                logger.info("%s: using the state dict stored under %r", path, key)
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise InputError(f"not a state dict: the file holds a {type(obj).__name__}", path)
    if not obj:
        raise InputError("not a state dict: the file holds an empty mapping", path)
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        shown = ", ".join(f"{k!r} ({type(obj[k]).__name__})" for k in bad[:_MAX_LISTED])
        raise InputError(f"not a state dict: entries that are not tensors: {shown}", path)
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def infer_architecture(
    state: Mapping[str, torch.Tensor], path: str | Path | None = None
) -> dict[str, Any]:
    """Infer ``nbase``, ``nout`` and ``kernel_size`` of a CPnet-style state dict.

    Parameters
    ----------
    state : mapping of str to Tensor
        The state dict.
    path : str or Path, optional
        File named in errors.

    Returns
    -------
    dict
        ``{"nbase": [...], "nout": int, "kernel_size": int}``.

    Raises
    ------
    InputError
        If the keys needed to read the architecture are missing, or the
        checkpoint is of a kind this network does not implement (3D
        convolutions, Cellpose 4).
    """
    if "W2" in state:
        raise InputError(
            "this is a Cellpose 4 (Cellpose-SAM) checkpoint, not a Cellpose 2/3 U-Net: "
            "it segments (cellseg segment --model PATH) and fine-tunes, but cannot be used "
            "where a U-Net is needed (restoration)",
            path,
        )
    levels = sorted(int(m.group(1)) for k in state if (m := _DOWN_CONV0.match(k)))
    if not levels or levels != list(range(len(levels))):
        found = ", ".join(sorted(state)[:_MAX_LISTED])
        raise InputError(
            "not a Cellpose CPnet state dict: missing keys "
            "downsample.down.res_down_{i}.conv.conv_0.2.weight "
            f"(found {len(state)} keys: {found}{', ...' if len(state) > _MAX_LISTED else ''})",
            path,
        )
    if "output.2.weight" not in state:
        raise InputError("not a Cellpose CPnet state dict: missing key output.2.weight", path)
    first = state["downsample.down.res_down_0.conv.conv_0.2.weight"]
    if first.ndim == 5:
        raise InputError(
            "checkpoint has 3D convolutions (conv_3D); only 2D networks are supported", path
        )
    if first.ndim != 4 or first.shape[-1] != first.shape[-2]:
        raise InputError(
            f"unexpected shape {list(first.shape)} for "
            "downsample.down.res_down_0.conv.conv_0.2.weight",
            path,
        )
    nbase = [int(first.shape[1])]
    for i in levels:
        nbase.append(int(state[f"downsample.down.res_down_{i}.conv.conv_0.2.weight"].shape[0]))
    return {
        "nbase": nbase,
        "nout": int(state["output.2.weight"].shape[0]),
        "kernel_size": int(first.shape[-1]),
    }


def _check_keys(net: CellposeUNet, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Raise an :class:`InputError` naming missing, unexpected and mis-shaped keys."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and k not in _OPTIONAL_KEYS]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {list(state[k].shape)} (expected {list(expected[k].shape)})"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = []
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("mismatched shapes", mismatched),
    ):
        if items:
            more = f", ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:_MAX_LISTED])}{more}")
    if problems:
        arch = f"nbase {list(net.nbase)}, nout {net.nout}"
        raise InputError(
            f"state dict does not fit a CPnet with {arch}: " + "; ".join(problems), path
        )


def _read_config(weights: Path) -> dict[str, Any]:
    """The ``config.json`` beside ``weights`` if it belongs to that file, else ``{}``."""
    cfg_path = config_path_for(weights)
    if not cfg_path.is_file():
        return {}
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read model config ({exc})", cfg_path) from exc
    if not isinstance(config, dict):
        raise InputError("model config must be a JSON object", cfg_path)
    owner = config.get("weights")
    if owner is not None and owner != weights.name:
        logger.debug("%s describes %s, not %s: ignored", cfg_path, owner, weights.name)
        return {}
    return config


def _resolve_weights(path: Path) -> Path:
    """Accept a weights file, or a model folder whose config.json names its weights."""
    if path.is_dir():
        cfg_path = path / CONFIG_NAME
        if not cfg_path.is_file():
            raise InputError(f"folder has no {CONFIG_NAME} naming the weights file", path)
        try:
            name = json.loads(cfg_path.read_text(encoding="utf-8")).get("weights")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
            raise InputError(f"cannot read model config ({exc})", cfg_path) from exc
        if not isinstance(name, str) or not name:
            raise InputError('model config has no "weights" entry', cfg_path)
        path = path / name
    if not path.is_file():
        raise InputError(missing_reason(path, "checkpoint file"), path)
    return path


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[CellposeUNet, dict[str, Any]]:
    """Load a network from a Cellpose-style state-dict file.

    Parameters
    ----------
    path : str or Path
        A weights file (``torch.save(state_dict)``, e.g. a Cellpose model such
        as ``cyto3`` or a ``train_seg`` output, or ``.safetensors``), or a model
        folder whose ``config.json`` names its weights file.
    device : str or torch.device
        Where the network is placed (the file is read onto the CPU first).

    Returns
    -------
    net : CellposeUNet
        The network in eval mode on ``device``.
    config : dict
        The accompanying ``config.json`` (if any) updated with the facts read
        from the weights: ``nbase``, ``nout``, ``kernel_size``, ``diam_mean``,
        ``diam_labels``, and ``weights`` (the file name).

    Raises
    ------
    InputError
        Naming the file, when it is missing, unreadable, corrupt, pickles
        objects other than tensors, holds a state dict whose keys or shapes
        do not fit the network or whose values are not finite, or when its
        ``config.json`` contradicts it.
    """
    weights, state = read_state_dict(path)
    return unet_from_state(weights, state, device)


def read_state_dict(path: str | Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """The weights file ``path`` names (file or model folder) and its state dict, on the CPU.

    Tensors are read onto the CPU (a network is moved afterwards: a device that is not
    available then fails as such, not as an unreadable file).

    Raises
    ------
    InputError
        Missing, unreadable or corrupt file, objects other than tensors, NaN or infinite values.
    """
    weights = _resolve_weights(Path(path))
    with _file_errors(weights):
        state = _as_state_dict(_read_raw(weights, torch.device("cpu")), weights)
    bad = next(
        (k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()), None
    )
    if bad is not None:
        raise InputError(f"weights contain NaN or infinite values (first in {bad})", weights)
    return weights, state


def read_config(weights: Path) -> dict[str, Any]:
    """The ``config.json`` beside ``weights`` if it belongs to that file, else ``{}``."""
    return _read_config(weights)


def unet_from_state(
    weights: Path, state: dict[str, torch.Tensor], device: str | torch.device = "cpu"
) -> tuple[CellposeUNet, dict[str, Any]]:
    """The U-Net of a state dict read by :func:`read_state_dict` (see :func:`load_checkpoint`)."""
    device = torch.device(device)
    with _file_errors(weights):
        net, config = _unet_on_cpu(weights, state)
    net.to(device).eval()
    config = {**config, **net.architecture(), "weights": weights.name}
    logger.info(
        "loaded %s: nbase %s, nout %d, diam_mean %.3g, diam_labels %.3g",
        weights,
        config["nbase"],
        config["nout"],
        config["diam_mean"],
        config["diam_labels"],
    )
    return net, config


@contextlib.contextmanager
def _file_errors(weights: Path) -> Iterator[None]:
    """Turn any failure on untrusted bytes into one InputError naming ``weights``."""
    try:
        yield
    except CellsegError:
        raise
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: any failure is the file's
        raise InputError(f"not a usable checkpoint ({_first_line(exc)})", weights) from exc


def _first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` of an exception, for one-line reports."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _unet_on_cpu(weights: Path, state: dict[str, torch.Tensor]) -> tuple[CellposeUNet, dict[str, Any]]:
    """The U-Net (on the CPU) and config of a state dict; see :func:`load_checkpoint`."""
    arch = infer_architecture(state, weights)
    config = _read_config(weights)
    for key in ("nbase", "nout", "kernel_size"):
        if key in config and config[key] != arch[key]:
            raise InputError(
                f"{CONFIG_NAME} says {key} = {config[key]} but the weights have {arch[key]}",
                weights,
            )
    try:
        diam_mean = float(config.get("diam_mean", 30.0))
        diam_labels = float(config.get("diam_labels", diam_mean))
    except (TypeError, ValueError) as exc:
        raise InputError(f"diameters must be numbers ({exc})", config_path_for(weights)) from exc
    net = CellposeUNet(arch["nbase"], arch["nout"], arch["kernel_size"], diam_mean=diam_mean)
    _check_keys(net, state, weights)
    absent = sorted(_OPTIONAL_KEYS - set(state))
    if absent:
        logger.warning(
            "%s: no %s in the state dict; using %s", weights, " or ".join(absent), diam_mean
        )
    for key in absent:
        state[key] = net.state_dict()[key]
    if "diam_labels" in absent:
        state["diam_labels"] = torch.full((1,), diam_labels)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # dtype/shape problems not caught above
        raise InputError(f"state dict does not load: {exc}", weights) from exc
    for key in ("diam_mean", "diam_labels"):
        value = float(getattr(net, key).item())
        if not math.isfinite(value) or value <= 0:
            raise InputError(
                f"{key} in the state dict is {value}, not a positive diameter", weights
            )
    return net, config


def _json_ready(value: Any) -> Any:
    """Convert numpy/torch scalars, tuples and paths inside ``value`` to JSON types."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


def _config_owner(cfg_path: Path) -> str | None:
    """The ``weights`` entry of an existing ``config.json``, or None."""
    try:
        owner = json.loads(cfg_path.read_text(encoding="utf-8")).get("weights")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return owner if isinstance(owner, str) else None


def save_checkpoint(
    net: CellposeUNet, path: str | Path, config: Mapping[str, Any] | None = None
) -> Path:
    """Save ``net`` as a plain state dict, plus ``config.json`` beside it.

    Both files are written atomically. The weights file loads with Cellpose's
    ``CPnet.load_model`` as well as :func:`load_checkpoint`.

    Parameters
    ----------
    net : CellposeUNet
        The network; its architecture and diameters are written to the config
        (they win over the same keys in ``config``).
    path : str or Path
        Weights file to write (any name; Cellpose-style names have no suffix,
        ``.pth`` is usual).
    config : mapping, optional
        Further entries for ``config.json``, e.g. ``channels`` and
        ``provenance`` (training data, recipe, code version). Must be
        JSON-serialisable (numpy scalars, tuples and paths are converted).

    Returns
    -------
    Path
        The ``config.json`` written.
    """
    path = Path(path)
    if path.name == CONFIG_NAME:
        raise InputError(f"weights cannot be named {CONFIG_NAME}", path)
    state = {k: v.detach().to("cpu").clone() for k, v in net.state_dict().items()}
    full = {
        "format": FORMAT,
        **_json_ready(dict(config or {})),
        **net.architecture(),
        "weights": path.name,
    }
    full.setdefault("channels", None)
    full.setdefault("provenance", {})
    try:
        text = json.dumps(full, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"model config is not JSON-serialisable ({exc})", config_path_for(path)
        ) from exc
    cfg_path = config_path_for(path)
    previous = _config_owner(cfg_path)
    if previous is not None and previous != path.name:
        logger.warning("%s described %s; it now describes %s", cfg_path, previous, path.name)
    with atomic_output(path) as tmp:
        torch.save(state, tmp)
    with atomic_output(cfg_path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    logger.info("saved %s and %s", path, cfg_path)
    return cfg_path
