"""Every ``openssm`` command says what it does, and every option what it means."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from openssm.cli import main


def _commands() -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []

    def walk(prefix: str, group: click.Group) -> None:
        context = click.Context(group)
        for name in group.list_commands(context):
            command = group.get_command(context, name)
            assert command is not None, f"{prefix}{name} is listed but cannot be loaded"
            found.append((f"{prefix}{name}", command))
            if isinstance(command, click.Group):
                walk(f"{prefix}{name} ", command)

    walk("", main)
    return found


@pytest.mark.parametrize(("name", "command"), _commands(), ids=lambda value: str(value))
def test_command_and_its_options_are_described(name: str, command: click.Command) -> None:
    assert (command.help or "").strip(), f"openssm {name} has no description"
    undocumented = [
        option.name
        for option in command.params
        if isinstance(option, click.Option) and not (option.help or "").strip()
    ]
    assert not undocumented, f"openssm {name}: options without help: {undocumented}"
    result = CliRunner().invoke(main, [*name.split(), "--help"], prog_name="openssm")
    assert result.exit_code == 0, result.output
    assert "Usage: openssm " + name in result.output
