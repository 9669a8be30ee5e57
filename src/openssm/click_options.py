"""Click helpers the commands share: a group of options applied as one decorator, and an option
that names an optional file. Only option declarations here; no command and no I/O."""

from __future__ import annotations

import os
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


MAX_SECRET_BYTES = 4096  # a secret file is read no further: a key or a token, never a large file


def read_secret(path: pathlib.Path | None, *, env: str, option: str, min_bytes: int = 1) -> bytes | None:
    """A secret from the file an option names, else from the environment variable ``env``
    (surrounding white space dropped); None when neither holds one. A file that cannot be read, is
    larger than :data:`MAX_SECRET_BYTES` or (given anything at all) a secret shorter than
    ``min_bytes`` is click's BadParameter for ``option``, never a traceback with the secret in it."""
    if path is not None:
        try:
            with path.open("rb") as file:
                data = file.read(MAX_SECRET_BYTES + 1)
        except OSError as exc:
            raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}", param_hint=option) from exc
        if len(data) > MAX_SECRET_BYTES:
            raise click.BadParameter(
                f"{path} is larger than a secret ({MAX_SECRET_BYTES} bytes)", param_hint=option
            )
        secret = data.strip()
    else:
        secret = os.environ.get(env, "").strip().encode()
    if not secret:
        return None
    if len(secret) < min_bytes:
        raise click.BadParameter(f"the secret must be at least {min_bytes} bytes", param_hint=option)
    return secret


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
