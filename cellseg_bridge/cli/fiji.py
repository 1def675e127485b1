"""``cellseg fiji``: set up a user's Fiji for the Cellseg scripts. Parses arguments and calls the API."""

from __future__ import annotations

import os
from pathlib import Path

import click

from cellseg_bridge.config import FIJI_HOME_ENV
from cellseg_bridge.errors import CellsegError


@click.group("fiji")
def fiji() -> None:
    """Fiji/ImageJ bridge: install the Cellseg menu scripts into a Fiji installation."""


@fiji.command("install")
@click.option("--fiji", "fiji_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=f"The Fiji.app folder (default ${FIJI_HOME_ENV}).")
@click.option("--command", "command", default=None,
              help="Command the scripts run for cellseg (default: this Python with -m cellseg_bridge.cli).")
@click.option("--scripts", "scripts_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="The fiji_scripts folder to copy (default: the one of this checkout).")
def install(fiji_dir: Path | None, command: str | None, scripts_dir: Path | None) -> None:
    """Copy the Cellseg scripts into Fiji (menu Plugins > Cellseg) and point them at this cellseg."""
    import shlex

    from cellseg_bridge.fiji.install import install_scripts

    fiji_dir = fiji_dir or (Path(os.environ[FIJI_HOME_ENV]) if os.environ.get(FIJI_HOME_ENV) else None)
    if fiji_dir is None:
        raise click.UsageError(f"give --fiji PATH (the Fiji.app folder) or set {FIJI_HOME_ENV}")
    try:
        root = click.get_current_context().find_root().command
        report = install_scripts(fiji_dir, scripts_dir=scripts_dir, command=shlex.split(command) if command else None,
                                 commands=sorted(getattr(root, "commands", {})))
    except CellsegError as exc:
        raise click.ClickException(str(exc)) from exc
    for path in report.files:
        click.echo(f"installed {path}")
    click.echo(f"scripts run: {' '.join(report.command)}; restart Fiji to see Plugins > Cellseg")
