"""What every command module shares: the API-call wrapper, scene/channel arguments, Dask options."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import click

from cellseg_bridge.cli.options import options_from
from cellseg_bridge.config import DEFAULTS
from cellseg_bridge.errors import CellsegError

F = TypeVar("F", bound=Callable[..., Any])


def is_quiet(ctx: click.Context) -> bool:
    """Whether ``cellseg -q`` was given (the root group's option)."""
    return bool(ctx.find_root().params.get("quiet"))


def dask_options(func: F) -> F:
    """--workers / --scheduler (Dask), shared by the batch commands."""
    return options_from(DEFAULTS.distributed, only=["workers", "scheduler"])(func)


def help_of(cls: type, name: str) -> str:
    """The help text of option field ``name`` of dataclass ``cls`` (for options named differently)."""
    return next(f.metadata["help"] for f in dataclasses.fields(cls) if f.name == name)


def scene_arg(scene: str | None) -> int | str | None:
    """A scene option as an index when it is a number, else as a name."""
    return int(scene) if scene is not None and scene.lstrip("-").isdigit() else scene


def run_api(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call an API function; a CellsegError becomes a one-line message and exit status 1."""
    try:
        return func(*args, **kwargs)
    except CellsegError as exc:
        raise click.ClickException(str(exc)) from exc
