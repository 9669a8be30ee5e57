"""``openssm agent register``, ``openssm agent run`` and ``openssm agent install|uninstall`` (systemd)."""

from __future__ import annotations

import asyncio
import logging
import pathlib
from collections.abc import Coroutine
from typing import Any

import click

from openssm import systemd
from openssm.agent import main
from openssm.agent.config import (
    Registration,
    StateError,
    default_state_dir,
)
from openssm.agent.registration import RegistrationError, ServerAddress, register, register_iam
from openssm.agent.signing import CredentialsError
from openssm.click_options import described

log = logging.getLogger("openssm.agent")

_state_dir_option = described([main.STATE_DIR])


@click.group("agent", short_help="Register this node, then serve its sessions.")
def agent_group() -> None:
    """Run the OpenSSM agent on a managed node: register it once, then keep it connected.

    The agent dials out to the server (no inbound ports) and runs shell, command and port
    forwarding sessions. It speaks the same protocol as amazon-ssm-agent.
    """


@agent_group.command(
    "register", short_help="Register this node (once): with an activation, or IAM credentials."
)
@click.option(
    "--endpoint",
    "endpoints",
    required=True,
    multiple=True,
    help="The server's API endpoint URL, e.g. https://ssm.example.com. Repeat it to name every node "
    "of a scale-out server: the agent registers with the first and fails over in order.",
)
@click.option("--code", "code", default=None, help="Activation code from CreateActivation.")
@click.option("--id", "activation_id", default=None, help="Activation id from CreateActivation.")
@click.option(
    "--iam",
    is_flag=True,
    help="Join without an activation, as an EC2 instance does: sign with IAM credentials from the "
    "standard AWS chain (environment, ~/.aws files, --profile, instance metadata …) as --instance-id.",
)
@click.option(
    "--instance-id",
    default=None,
    help="With --iam: this node's id, i- and 17 hex digits (e.g. its EC2 instance id). The "
    "credentials must allow ssm:UpdateInstanceInformation on that instance's ARN.",
)
@click.option(
    "--profile", default=None, help="With --iam: the AWS profile to sign with (default: the default chain)."
)
@click.option("--region", required=True, help="Region of the server, e.g. us-east-1.")
@click.option("--name", default=None, help="Optional name for this node (activations).")
@click.option("--mgs-endpoint", default=None, help="Message gateway URL, if not the API endpoint.")
@_state_dir_option
def register_command(
    endpoints: tuple[str, ...],
    code: str | None,
    activation_id: str | None,
    iam: bool,
    instance_id: str | None,
    profile: str | None,
    region: str,
    name: str | None,
    mgs_endpoint: str | None,
    state_dir: pathlib.Path | None,
) -> None:
    """Register this node; prints its instance id.

    With --code and --id (an activation): generates the node's RSA key pair, calls
    RegisterManagedInstance and saves the new mi-… id and the private key (0600) in the state
    directory. With --iam --instance-id i-…: no activation; the node appears as that id on its first
    UpdateInstanceInformation, signed with the AWS credential chain (as AWS's agent does on EC2),
    and `openssm agent run` keeps signing with it.
    """
    directory = state_dir or default_state_dir()
    server = ServerAddress(endpoints[0], region, mgs_endpoint, endpoints[1:])
    joining: Coroutine[Any, Any, Registration]
    if iam:
        if not instance_id or code or activation_id:
            raise click.UsageError("--iam takes --instance-id i-…, and no --code or --id")
        joining = register_iam(server, instance_id=instance_id, state_dir=directory, profile=profile)
    else:
        if not code or not activation_id or instance_id or profile:
            raise click.UsageError(
                "register with --code and --id (an activation), or with --iam --instance-id"
            )
        joining = register(server, code=code, activation_id=activation_id, state_dir=directory, name=name)
    try:
        registration = asyncio.run(joining)
    except (RegistrationError, StateError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(registration.instance_id)


@agent_group.command("run", short_help="Stay connected and serve sessions until stopped.", help=main.RUN_HELP)
@described(main.RUN_OPTIONS)
def run_command(**options: Any) -> None:
    try:
        main.serve(**options)
    except (StateError, CredentialsError) as exc:
        raise click.ClickException(str(exc)) from exc


systemd.add_service_commands(
    agent_group,
    systemd.agent_service,
    "--state-dir",
    "The state directory the service runs with (default: /var/lib/openssm-agent, where "
    "`openssm agent register` run as root keeps the registration).",
)
