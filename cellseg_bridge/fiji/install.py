"""Install the Jython scripts of ``fiji_scripts/`` into a user's Fiji (``cellseg fiji install``).

Copies ``fiji_scripts/scripts/Plugins/Cellseg/*.py`` into
``Fiji.app/scripts/Plugins/Cellseg/`` (menu *Plugins > Cellseg*), the helper
module ``fiji_scripts/jars/Lib/cellseg_fiji.py`` into ``Fiji.app/jars/Lib/``
(Jython's library folder in Fiji), and writes ``jars/Lib/cellseg_fiji.json``
naming the command that runs THIS Python environment's ``cellseg``
(``python -m cellseg_bridge.cli``), so the scripts find it without a PATH.

When that command is this environment's, the file also caches ``cellseg defaults`` and
the list of commands, with a stamp of ``cellseg_bridge/config.py`` (size, mtime): a
script then starts Python once per call (the command itself) instead of also asking for
the defaults; a changed ``config.py`` (an upgrade) makes the scripts ask again.

It also caches the segmentation models of ``cellseg models list`` (restoration networks left
out): the scripts whose ``model`` parameter is a choice list (``#@ String (... choices={...}
...) model``) are installed with that list, then ``auto``, the default model preselected; the
dialog shows them as a drop-down. Without the cache (another environment's command) the list
stays the one in ``fiji_scripts`` (``default``, ``auto``).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellseg_bridge.errors import InputError
from cellseg_bridge.fiji.jvm import find_fiji
from cellseg_bridge.io.atomic import atomic_output

log = logging.getLogger(__name__)

__all__ = ["InstallReport", "default_scripts_dir", "default_command", "defaults_cache", "install_scripts",
           "segmentation_models", "with_model_choices"]

#: Menu folder of the scripts inside ``Fiji.app/scripts``.
MENU_DIR = Path("scripts") / "Plugins" / "Cellseg"
#: Jython library folder inside ``Fiji.app``.
LIB_DIR = Path("jars") / "Lib"
HELPER = "cellseg_fiji.py"
CONFIG = "cellseg_fiji.json"
#: A script's ``model`` choice parameter: the choices and the preselected value are filled at install.
_MODEL_CHOICE = re.compile(r'^(#@\s*String\s*\(.*choices\s*=\s*)\{[^}]*\}(.*value\s*=\s*)"[^"]*"(.*\)\s*model\s*)$')


@dataclass
class InstallReport:
    """What :func:`install_scripts` wrote."""

    fiji: Path
    files: list[Path] = field(default_factory=list)
    command: list[str] = field(default_factory=list)


def default_scripts_dir() -> Path:
    """``fiji_scripts/`` of this checkout (beside the ``cellseg_bridge`` package)."""
    return Path(__file__).resolve().parents[2] / "fiji_scripts"


def default_command() -> list[str]:
    """The command that runs this environment's ``cellseg``: ``[python, -m, cellseg_bridge.cli]``."""
    return [sys.executable, "-m", "cellseg_bridge.cli"]


def defaults_cache(commands: list[str]) -> dict[str, Any]:
    """What the scripts may read instead of running ``cellseg defaults``: the defaults, the
    commands, and the stamp (path, size, whole-second mtime) of the ``config.py`` they come from."""
    from cellseg_bridge import config

    source = Path(config.__file__).resolve()
    stat = source.stat()
    return {
        "defaults": json.loads(json.dumps(config.DEFAULTS.to_dict())),  # exactly what `cellseg defaults` prints
        "commands": sorted(commands),
        "models": segmentation_models(),
        "stamp": {"config_py": str(source), "size": stat.st_size, "mtime": int(stat.st_mtime)},
    }


def segmentation_models() -> list[str]:
    """Names of the models ``cellseg models list`` finds that segment (restoration networks, one output, left out)."""
    from cellseg_bridge.nn.registry import list_models

    return [m.name for m in list_models() if m.active and (m.config or {}).get("nout", 3) != 1]


def with_model_choices(script: str, models: list[str], default: str) -> str:
    """``script`` with its ``model`` choice parameter listing ``models`` and ``auto``, ``default`` preselected.

    A script without such a line, or an empty ``models``, is returned unchanged.
    """
    if not models:
        return script
    names = list(dict.fromkeys([*models, default, "auto"]))
    choices = "{" + ", ".join(json.dumps(name) for name in names) + "}"
    lines = script.split("\n")
    for index, line in enumerate(lines):
        match = _MODEL_CHOICE.match(line)
        if match:
            lines[index] = f"{match.group(1)}{choices}{match.group(2)}{json.dumps(default)}{match.group(3)}"
    return "\n".join(lines)


def install_scripts(
    fiji: str | Path,
    *,
    scripts_dir: str | Path | None = None,
    command: list[str] | None = None,
    commands: list[str] | None = None,
    cache_defaults: bool | None = None,
) -> InstallReport:
    """Copy the Cellseg scripts and their helper into a Fiji installation (files replaced atomically).

    Parameters
    ----------
    fiji : str or Path
        The ``Fiji.app`` folder (must hold ``jars/``).
    scripts_dir : str or Path, optional
        The ``fiji_scripts`` folder; default the one of this checkout.
    command : list of str, optional
        How the scripts run ``cellseg``; default :func:`default_command`.
    commands : list of str, optional
        The sub-commands of that ``cellseg`` (cached with the defaults).
    cache_defaults : bool, optional
        Cache :data:`~cellseg_bridge.config.DEFAULTS` and ``commands`` for the scripts; default:
        when ``command`` is :func:`default_command` (the cache describes this environment).

    Returns
    -------
    InstallReport

    Raises
    ------
    InputError
        ``fiji`` is not a Fiji installation, or the scripts are missing.
    """
    root = find_fiji(fiji)
    if root is None:
        raise InputError("not a Fiji installation (expected a Fiji.app folder with a jars/ folder)", fiji)
    source = Path(scripts_dir) if scripts_dir is not None else default_scripts_dir()
    scripts = sorted((source / MENU_DIR).glob("*.py"))
    helper = source / LIB_DIR / HELPER
    if not scripts or not helper.is_file():
        raise InputError("no Cellseg scripts found (expected scripts/Plugins/Cellseg/*.py and jars/Lib/cellseg_fiji.py)",
                         source)
    command = list(command) if command else default_command()
    report = InstallReport(fiji=root, command=command)
    content: dict[str, Any] = {"command": command}
    if cache_defaults if cache_defaults is not None else command == default_command():
        content.update(defaults_cache(commands or []))
    for src, dest_dir in [(s, root / MENU_DIR) for s in scripts] + [(helper, root / LIB_DIR)]:
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / src.name
        with atomic_output(dest) as tmp:
            if src in scripts and content.get("models"):
                text = with_model_choices(src.read_text(encoding="utf-8"), content["models"],
                                          content["defaults"]["segment"]["model"])
                Path(tmp).write_text(text, encoding="utf-8")
            else:
                shutil.copyfile(src, tmp)
        report.files.append(dest)
    config = root / LIB_DIR / CONFIG
    with atomic_output(config) as tmp:
        Path(tmp).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    report.files.append(config)
    log.info("installed %d files into %s", len(report.files), root)
    return report
