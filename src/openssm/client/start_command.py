"""The click command of ``openssm start-session``: its ``--help`` and its errors, in click's words.

Built from :data:`openssm.client.cli.OPTIONS`, the one description of the options; a plain
command line never gets here (:func:`openssm.client.cli.fast_start_session` runs it without
importing click), anything else does, and runs the same :func:`openssm.client.cli.run_start_session`.
"""

from __future__ import annotations

from typing import Any

import click

from openssm.click_options import described
from openssm.client import cli


@click.command(
    cli.COMMAND,
    short_help="Open a shell or port forwarding to a managed node.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@described(cli.OPTIONS)
def start_session_command(**options: Any) -> None:
    """Open a shell or port forwarding session to a managed node (like `aws ssm start-session`)."""
    try:
        requests = cli.session_requests(**options)
    except cli.OptionError as exc:
        raise click.BadParameter(str(exc), param_hint=exc.param_hint) from exc
    except cli.UsageProblem as exc:
        raise click.UsageError(str(exc)) from exc
    cli.run_start_session(requests, **options)
