"""A command's options described once, for click and for a plain parser that needs no click.

Start-up is on the way to every prompt and click is about a third of a short command's imports
(and 1.6 MiB of a long-running agent's memory), so the commands that run often or long
(``openssm start-session``, ``openssm agent run``) describe their options as :class:`Option`\\ s:
click builds its command from them (``click_options.described``: ``--help`` and every error, in
click's words), and :func:`parse_plain` reads a plain command line itself. Anything it does not
take (help, an unknown option, a missing value or required option, a value that looks like an
option, a directory that is a file) returns None and goes to click, whose answer is the command's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, NamedTuple


class Option(NamedTuple):
    """One option. The fields past ``flag`` and ``name`` are click.option's parameters of the same
    names, except ``directory`` (a directory's path, as a :class:`pathlib.Path`)."""

    flag: str
    name: str
    help: str
    required: bool = False
    multiple: bool = False
    default: str | None = None
    metavar: str | None = None
    show_default: bool = False
    is_flag: bool = False
    envvar: str | None = None
    directory: bool = False


def parse_plain(options: Sequence[Option], args: Sequence[str]) -> dict[str, Any] | None:
    """The values of a plain command line (``--name value``, ``--name=value``, ``--flag``), as click
    would pass them to the command; None for anything else, which is left to click."""
    by_flag = {option.flag: option for option in options}
    values: dict[str, Any] = {}
    rest = list(args)
    while rest:
        word = rest.pop(0)
        flag, equals, value = word.partition("=")
        option = by_flag.get(flag)
        if option is None or (option.is_flag and equals):
            return None
        if option.is_flag:
            values[option.name] = True
            continue
        if not equals:
            if not rest:
                return None
            value = rest.pop(0)
        if value.startswith("-"):
            return None
        if option.multiple:
            values.setdefault(option.name, []).append(value)
        else:
            values[option.name] = value  # given twice, the last counts (as click)
    for option in options:
        if option.name not in values:
            if option.required:
                return None
            given = os.environ.get(option.envvar) or None if option.envvar else None  # click skips ""
            values[option.name] = [] if option.multiple else given if given is not None else option.default
        if option.directory and values[option.name] is not None:
            import pathlib  # only here: the client's way to a prompt imports no pathlib

            path = pathlib.Path(values[option.name])
            if path.exists() and not path.is_dir():
                return None
            values[option.name] = path
    return {name: tuple(value) if isinstance(value, list) else value for name, value in values.items()}
