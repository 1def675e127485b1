"""Click options generated from the option dataclasses of :mod:`cellseg_bridge.config`.

Every field becomes one option: its name (``--field-name``, or the field's
``flag``), its type (from the annotation), its default (from :data:`DEFAULTS`)
and its help text (the field's ``help``), so each help text exists once and
every field can be set from the command line. :func:`collect` turns the parsed
values back into the dataclass, which validates them.

=============================  ==========================================
annotation                     option
=============================  ==========================================
``bool`` / ``bool | None``     ``--name/--no-name``
``int``, ``float``, ``str``    ``--name VALUE`` (``choices``: one of them)
``int | str``                  ``--name VALUE`` (digits: an index)
``tuple[float, float]``        ``--name LOW HIGH``
``tuple[int, ...]``            ``--name 2,32,64`` (comma separated)
=============================  ==========================================
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import click

from cellseg_bridge.config import Options
from cellseg_bridge.errors import InputError

F = TypeVar("F", bound=Callable[..., Any])
OptionsT = TypeVar("OptionsT", bound=Options)

__all__ = ["collect", "option_decls", "options_from"]


class CommaList(click.ParamType):
    """``"a,b,c"`` -> a tuple of ``item`` values."""

    name = "list"

    def __init__(self, item: type) -> None:
        self.item = item

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple:
        if isinstance(value, tuple):
            return value
        try:
            return tuple(self.item(v) for v in str(value).replace(" ", "").split(",") if v)
        except ValueError:
            self.fail(f"expected comma-separated {self.item.__name__} values, got {value!r}", param, ctx)


def _members(hint: Any) -> tuple[Any, ...]:
    """The types of a union other than None (``(hint,)`` for other hints)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(a for a in typing.get_args(hint) if a is not type(None))
    return (hint,)


def option_decls(f: dataclasses.Field) -> list[str]:
    """The option's names: ``--field-name`` or the field's ``flag`` (``-r/--recursive``: short and long)."""
    flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
    return flag.split("/")


def _click_option(f: dataclasses.Field, hint: Any, default: Any, aliases: Iterable[str] = ()) -> Callable[[F], F]:
    meta = f.metadata
    decls = option_decls(f)
    long = decls[-1]
    members = _members(hint)
    kwargs: dict[str, Any] = {"help": meta["help"], "default": default, "show_default": default is not None}
    if members == (bool,):
        decls = decls[:-1] + [f"{long}/--no-{long[2:]}"]
    elif typing.get_origin(members[0]) is tuple:
        args = typing.get_args(members[0])
        if args[-1] is Ellipsis:
            kwargs["type"] = CommaList(args[0])
            kwargs["default"] = ",".join(map(str, default)) if default is not None else None
        else:
            kwargs.update(type=args[0], nargs=len(args))
    elif meta.get("choices"):
        kwargs["type"] = click.Choice(meta["choices"], case_sensitive=False)
    elif members in ((int,), (float,)):
        kwargs["type"] = members[0]
    else:  # str, or int | str (an index or a name)
        kwargs["type"] = str
        if members == (int, str) and default is not None:
            kwargs["default"] = str(default)
    return click.option(*decls, *aliases, f.name, **kwargs)


def options_from(
    defaults: Options, *, only: Iterable[str] | None = None, exclude: Iterable[str] = (),
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> Callable[[F], F]:
    """Decorator adding one click option per field of the options object ``defaults``.

    Parameters
    ----------
    defaults : Options
        An instance (e.g. ``DEFAULTS.segment``): its class gives the fields, its values the defaults.
    only : iterable of str, optional
        Just these fields (in this order); default: every field in declaration order.
    exclude : iterable of str
        Fields left out (the command sets them another way).
    aliases : mapping of str to sequence of str, optional
        Other flag names of a field (e.g. Cellpose's ``--flow_threshold``).
    """
    fields = {f.name: f for f in dataclasses.fields(defaults)}  # type: ignore[arg-type]
    names = [n for n in (only if only is not None else fields) if n not in set(exclude)]
    hints = typing.get_type_hints(type(defaults))
    decorators = [_click_option(fields[n], hints[n], getattr(defaults, n), (aliases or {}).get(n, ())) for n in names]

    def apply(func: F) -> F:
        for decorate in reversed(decorators):
            func = decorate(func)
        return func

    return apply


def collect(cls: type[OptionsT], params: dict[str, Any], base: OptionsT | None = None) -> OptionsT:
    """Take ``cls``'s fields out of the parsed ``params`` (removed from it) and build the options object.

    Strings of digits given for ``int | str`` fields (channels, scenes) become indices.

    Raises
    ------
    click.UsageError
        A value the dataclass refuses (exit status 2, with the reason).
    """
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in params:
            continue
        value = params.pop(f.name)
        if int in _members(hints[f.name]) and str in _members(hints[f.name]) and isinstance(value, str):
            value = int(value) if value.lstrip("-").isdigit() else value
        values[f.name] = value
    try:
        return cls.derive(base, **values)
    except InputError as exc:
        raise click.UsageError(str(exc)) from exc
