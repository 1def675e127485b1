"""The ``cellseg`` command group: global options, ``info``, ``defaults``; the other commands are registered here.

Each command (group) lives in its own module of :mod:`cellseg_bridge.cli` and only parses,
calls the API and reports.
"""

from __future__ import annotations

import json

import click

from cellseg_bridge import _logging
from cellseg_bridge.cli.convert import convert
from cellseg_bridge.cli.fiji import fiji
from cellseg_bridge.cli.hitl import hitl
from cellseg_bridge.cli.models import models
from cellseg_bridge.cli.restore import restore
from cellseg_bridge.cli.rois import rois
from cellseg_bridge.cli.segment import segment
from cellseg_bridge.cli.train import train
from cellseg_bridge.config import DEFAULTS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cellseg-bridge")
@click.option("-v", "--verbose", count=True, help="More log output (-v: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def main(verbose: int, quiet: bool) -> None:
    """Cellpose-class cell segmentation for Fiji/ImageJ users, headless."""
    _logging.configure(verbose, quiet)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(as_json: bool) -> None:
    """Print versions, compute device, and whether Java and ImageJ were found."""
    from cellseg_bridge.system.info import environment_info

    data = environment_info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"python      {data['python']} ({data['platform']})")
    for name, version in data["packages"].items():
        click.echo(f"{name:<15} {version or 'not installed'}")
    reader = data["reader"]
    versions = ", ".join(f"{name} {version}" for name, version in reader["versions"].items() if version)
    click.echo(f"reader      {reader['backend']} ({versions})")
    if reader["fallback"]:
        click.echo(f"            fallback {reader['fallback']} ({reader['fallback_version']})")
    click.echo(f"device      {data['device']} (precision auto: network {data['precision']['inference']}, "
               f"training {data['precision']['training']})")
    java = data["java"]
    click.echo(f"java        {java['version'] + ' at ' + java['path'] if java['path'] else 'not found'}")
    click.echo(f"imagej jar  {data['imagej_jar'] or 'not found (apt-get install libij-java, or set IJ_JAR)'}")


@main.command()
def defaults() -> None:
    """Print the defaults shared by the API, the CLI and the Fiji scripts, as JSON."""
    click.echo(json.dumps(DEFAULTS.to_dict(), indent=2))


for _command in (convert, segment, rois, models, train, hitl, restore, fiji):
    main.add_command(_command)
