"""What every command module shares: the API-call wrapper, scene/channel arguments, Dask and reader options."""

from __future__ import annotations

import dataclasses
import os
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


def use_reader(ctx: click.Context, reader: str | None) -> None:
    """Make ``reader`` the backend of every ``open_image`` of this command, in Dask workers it starts too.

    It is passed as ``$CELLSEG_READER`` (worker processes inherit it; workers of a
    remote ``--scheduler`` need it set in their own environment) and restored
    when the command ends.

    Parameters
    ----------
    ctx : click.Context
        The running command (the variable is restored when it closes).
    reader : str or None
        ``--reader``; None leaves the environment alone.
    """
    if reader is None:
        return
    from cellseg_bridge.io._backends import ENV_VAR

    before = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = reader

    def restore() -> None:
        if before is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = before

    ctx.call_on_close(restore)


class ExistingPath(click.Path):
    """``click.Path`` whose "does not exist" says why: a symbolic link loop, a broken link, no permission."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Check ``value`` as ``click.Path`` does, naming the real reason when it cannot be opened."""
        if self.exists and not os.path.exists(value):
            from cellseg_bridge.io.paths import missing_reason

            what = "folder" if not self.file_okay else "file"
            self.fail(f"{os.fspath(value)!r}: {missing_reason(value, what)}", param, ctx)
        return super().convert(value, param, ctx)


def run_api(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call an API function; a CellsegError becomes a one-line message and exit status 1."""
    try:
        return func(*args, **kwargs)
    except CellsegError as exc:
        raise click.ClickException(str(exc)) from exc


def run_batch_api(ctx: click.Context, verb: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """:func:`run_api` for a batch command: Ctrl-C prints what was done so far and exits with status 130.

    Parameters
    ----------
    ctx : click.Context
        The running command.
    verb : str
        What happened to the items done ("segmented", "restored", ...), for the summary.
    func, *args, **kwargs
        The batch function and its arguments.
    """
    from cellseg_bridge.batch.report import BatchInterrupted

    try:
        return run_api(func, *args, **kwargs)
    except BatchInterrupted as exc:
        click.echo(f"interrupted: {exc.report.summary(verb)}\noutputs written stay; run the same command again "
                   "to resume", err=True)
        ctx.exit(130)
