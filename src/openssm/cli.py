"""The ``openssm`` command. Each component contributes its own commands from its own module."""

from __future__ import annotations

import importlib

import click

# (module, attribute): each is a click command or group, imported only when it is used so that an
# agent-only or client-only install never imports server code.
_COMMANDS: dict[str, tuple[str, str]] = {
    "server": ("openssm.server_cli", "server_command"),
    "quickstart": ("openssm.quickstart", "quickstart_command"),
    "agent": ("openssm.agent.cli", "agent_group"),
    "start-session": ("openssm.client.cli", "start_session_command"),
    "logs": ("openssm.logs.cli", "logs_command"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                return None  # component not installed
            raise
        command = getattr(module, attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="openssm")
def main() -> None:
    """OpenSSM: self-hosted, AWS-compatible Session Manager and Run Command.

    Shell, SSH, SCP and port forwarding to your servers without inbound ports or bastions,
    authorised by IAM-style policies and recorded server-side.
    """
