"""``openssm server --config FILE``: the server's options from a TOML file (``tomllib``).

Every option of the command has a key, spelt as its long flag without the dashes (``listen``,
``tls-cert``, ``trusted-proxy``, ``session-recording``…); an option given on the command line wins
over the file (the file's values become the command's defaults, click's ``default_map``), and an
environment variable an option reads wins over the file too. A key the command does not know is an
error naming it, so a misspelt key is never silently ignored. Relative paths in the file are read
relative to the file's directory, so a file and the certificates beside it can move together.
"""

from __future__ import annotations

import pathlib
import tomllib
from collections.abc import Mapping
from typing import Any, Final

import click

from openssm.errors import OpenSSMError

CONFIG_OPTION: Final = "config"


def key_of(option: click.Option) -> str:
    """The file key of an option: its longest flag without the leading dashes."""
    return max(option.opts, key=len).lstrip("-")


def keys(command: click.Command) -> dict[str, click.Option]:
    """Every key the file may use for ``command``, and the option it sets."""
    return {
        key_of(param): param
        for param in command.params
        if isinstance(param, click.Option) and param.name != CONFIG_OPTION and not param.hidden
    }


class ConfigFileError(click.BadParameter, OpenSSMError):
    """The file cannot be read, or says something the server does not take (click shows the message)."""


def read(path: pathlib.Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path} is not valid TOML: {exc}") from exc


def _value(option: click.Option, key: str, value: Any, base: pathlib.Path, path: pathlib.Path) -> Any:
    if isinstance(value, dict):
        raise ConfigFileError(f"{path}: {key!r} must be a value, not a table")
    if option.multiple:
        values = value if isinstance(value, list) else [value]
    elif isinstance(value, list):
        raise ConfigFileError(f"{path}: {key!r} takes one value, not a list")
    else:
        values = [value]
    if isinstance(option.type, click.Path):
        values = [
            str(base / pathlib.Path(item).expanduser()) if isinstance(item, str) else item for item in values
        ]
    return values if option.multiple else values[0]


def default_map(command: click.Command, path: pathlib.Path) -> dict[str, Any]:
    """The file's settings as click defaults (parameter name → value) for ``command``."""
    settings = read(path)
    known = keys(command)
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ConfigFileError(
            f"{path}: unknown key {unknown[0]!r}"
            + (f" (and {', '.join(repr(k) for k in unknown[1:])})" if unknown[1:] else "")
            + f"; the keys are the options' long names: {', '.join(sorted(known))}"
        )
    base = path.resolve().parent
    return {
        known[key].name: _value(known[key], key, value, base, path)
        for key, value in settings.items()
        if known[key].name is not None
    }


def load_into(ctx: click.Context, path: pathlib.Path | None) -> None:
    """Make the file's settings the defaults of ``ctx``'s command (an eager option's callback)."""
    if path is None:
        return
    defaults: Mapping[str, Any] = default_map(ctx.command, path)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
