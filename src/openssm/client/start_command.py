"""The click command of ``openssm start-session``: its ``--help`` and its errors, in click's words.

Built from :data:`openssm.client.cli.OPTIONS`, the one description of the options; a plain
command line never gets here (:func:`openssm.client.cli.fast_start_session` runs it without
importing click), anything else does, and runs the same :func:`openssm.client.cli.run_start_session`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from openssm.client import cli


def _options(command: Callable[..., None]) -> Callable[..., None]:
    # An Option's fields past its flag and name are named after click.option's parameters, so a
    # field added there reaches click without being listed here again.
    for option in reversed(cli.OPTIONS):
        settings = option._asdict()
        command = click.option(settings.pop("flag"), settings.pop("name"), **settings)(command)
    return command


@click.command(
    cli.COMMAND,
    short_help="Open a shell or port forwarding to a managed node.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@_options
def start_session_command(**options: Any) -> None:
    """Open a shell or port forwarding session to a managed node (like `aws ssm start-session`)."""
    try:
        requests = cli.session_requests(**options)
    except cli.OptionError as exc:
        raise click.BadParameter(str(exc), param_hint=exc.param_hint) from exc
    except cli.UsageProblem as exc:
        raise click.UsageError(str(exc)) from exc
    cli.run_start_session(requests, **options)
