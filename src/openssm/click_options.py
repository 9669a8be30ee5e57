"""Click helpers the commands share: a group of options applied as one decorator, and an option
that names an optional file. Only option declarations here; no command and no I/O."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from openssm.plain_options import Option

F = TypeVar("F", bound=Callable[..., Any])


def option_group(*options: Callable[[Any], Any]) -> Callable[[F], F]:
    """One decorator adding ``options`` (``click.option``s or other groups) in the order given, as
    the same decorators stacked top to bottom would: ``--help`` lists them in that order."""

    def apply(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


def described(options: Sequence[Option]) -> Callable[[F], F]:
    """click options from their one description (:mod:`openssm.plain_options`), in its order."""

    def apply(command: F) -> F:
        for option in reversed(options):
            settings = option._asdict()
            flag, name = settings.pop("flag"), settings.pop("name")
            if settings.pop("directory"):
                settings["type"] = click.Path(file_okay=False, path_type=pathlib.Path)
            command = click.option(flag, name, **settings)(command)
        return command

    return apply


def file_option(*declarations: str, help: str, exists: bool = True, **settings: Any) -> Callable[[F], F]:
    """An option naming a file (not a directory) that arrives as a :class:`pathlib.Path`, or None
    when not given; ``exists``: click refuses a path with nothing there. ``settings``: further
    ``click.option`` arguments (a callback, eagerness)."""
    return click.option(
        *declarations,
        type=click.Path(exists=exists, dir_okay=False, path_type=pathlib.Path),
        default=None,
        help=help,
        **settings,
    )


def seconds_option(name: str, *, minimum: float, default: float, help: str) -> Callable[[F], F]:
    """A duration in seconds, at least ``minimum``, whose default ``--help`` shows."""
    return click.option(
        name, type=click.FloatRange(min=minimum), default=default, show_default=True, help=help
    )


# The data directory of the server whose files an offline command (``openssm admin``, ``openssm
# logs``) reads; None: the server's own default, which the command resolves.
server_data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    default=None,
    help="The server's data directory (default: $OPENSSM_DATA_DIR or ~/.local/share/openssm).",
)
