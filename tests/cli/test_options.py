"""Every option field can be set from the command line, with the dataclass's help text and default."""

from __future__ import annotations

import dataclasses
import typing

import click
import pytest

from cellseg_bridge.cli import main
from cellseg_bridge.cli.options import collect, option_decls
from cellseg_bridge.config import DEFAULTS, Options, SegmentOptions, TrainOptions


def _members(hint) -> tuple:
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, type(int | None)) else (hint,)
    return tuple(a for a in args if a is not type(None))


def _other_value(f: dataclasses.Field, hint, default) -> tuple[list[str], object]:
    """Command-line words that set field ``f`` to a value other than its default, and that value."""
    long = option_decls(f)[-1]
    members = _members(hint)
    choices = f.metadata.get("choices")
    if members == (bool,):
        value = not default if default is not None else True
        return [long if value else "--no-" + long[2:]], value
    if choices:
        value = next(c for c in choices if c != default)
        return [long, value], value
    if typing.get_origin(members[0]) is tuple:
        args = typing.get_args(members[0])
        if args[-1] is Ellipsis:
            return [long, "2,8,16"], (2, 8, 16)
        return [long, "2", "98"], (2.0, 98.0)
    if members == (int,):
        value = 3 if default is None else default + 1
        return [long, str(value)], value
    if members == (float,):
        value = 1.5 if default is None else default + 0.5
        return [long, str(value)], value
    if int in members and str in members:
        return [long, "2"], 2
    return [long, "something"], "something"


@pytest.mark.parametrize(("command", "cls", "fixed"), [
    ("segment", SegmentOptions, ["IN.tif", "--out", "out"]),
    ("train", TrainOptions, ["FOLDER", "--out", "out"]),
])
def test_every_field_is_settable_from_the_cli(command: str, cls: type[Options], fixed: list[str]):
    defaults = getattr(DEFAULTS, {"segment": "segment", "train": "train"}[command])
    hints = typing.get_type_hints(cls)
    argv = list(fixed)
    expected = {}
    for f in dataclasses.fields(cls):
        words, value = _other_value(f, hints[f.name], getattr(defaults, f.name))
        argv += words
        expected[f.name] = value
    ctx = main.commands[command].make_context(command, argv)
    options = collect(cls, dict(ctx.params))
    got = {name: getattr(options, name) for name in expected}
    assert got == expected
    assert all(got[name] != getattr(defaults, name) for name in expected)  # every field moved


@pytest.mark.parametrize(("command", "cls"), [("segment", SegmentOptions), ("train", TrainOptions)])
def test_defaults_and_help_come_from_the_dataclass(command: str, cls: type[Options]):
    params = {p.name: p for p in main.commands[command].params if isinstance(p, click.Option)}
    defaults = getattr(DEFAULTS, command)
    for f in dataclasses.fields(cls):
        assert f.name in params, f.name
        assert params[f.name].help == f.metadata["help"], f.name
    ctx = main.commands[command].make_context(command, ["IN", "--out", "out"])
    assert collect(cls, dict(ctx.params)) == defaults


def test_a_refused_value_is_a_usage_error():
    from click.testing import CliRunner

    result = CliRunner().invoke(main, ["segment", "x.tif", "--out", "o", "--normalize-percentiles", "99", "1"])
    assert result.exit_code == 2 and "percentiles" in result.output
    result = CliRunner().invoke(main, ["train", "x", "--out", "o", "--crop-size", "8"])
    assert result.exit_code == 2 and "crop_size must be >= 16" in result.output
