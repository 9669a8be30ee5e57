"""The ``openssm`` command. Each component contributes its own commands from its own module."""

from __future__ import annotations

from collections.abc import Callable

import click

# Each command's module is imported only when that command is used, so that ``openssm agent`` or
# ``openssm start-session`` never loads server code; the imports are still static (in functions),
# so mypy and import-linter see them.


def _server() -> click.Command:
    from openssm.server.cli import server_command

    return server_command


def _quickstart() -> click.Command:
    from openssm.server.quickstart import quickstart_command

    return quickstart_command


def _admin() -> click.Command:
    from openssm.server.admin import admin_group

    return admin_group


def _audit() -> click.Command:
    from openssm.server.audit_cli import audit_group

    return audit_group


def _agent() -> click.Command:
    from openssm.agent.cli import agent_group

    return agent_group


def _start_session() -> click.Command:
    from openssm.client.start_command import start_session_command

    return start_session_command


def _run() -> click.Command:
    from openssm.client.run import run_command

    return run_command


def _login() -> click.Command:
    from openssm.login.cli import login_command

    return login_command


def _access() -> click.Command:
    from openssm.client.access_cli import access_group

    return access_group


def _join_session() -> click.Command:
    from openssm.client.join_cli import join_session_command

    return join_session_command


def _set_session_join_policy() -> click.Command:
    from openssm.client.join_cli import set_join_policy_command

    return set_join_policy_command


def _logs() -> click.Command:
    from openssm.logs.cli import logs_command

    return logs_command


_COMMANDS: dict[str, Callable[[], click.Command]] = {
    "server": _server,
    "quickstart": _quickstart,
    "admin": _admin,
    "audit": _audit,
    "agent": _agent,
    "start-session": _start_session,
    "logs": _logs,
    "run": _run,
    "login": _login,
    "access": _access,
    "join-session": _join_session,
    "set-session-join-policy": _set_session_join_policy,
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        load = _COMMANDS.get(cmd_name)
        return load() if load is not None else None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="openssm")
def main() -> None:
    """OpenSSM: self-hosted, AWS-compatible Session Manager and Run Command.

    Shell, SSH, SCP and port forwarding to your servers without inbound ports or bastions,
    authorised by IAM-style policies and recorded server-side.
    """
