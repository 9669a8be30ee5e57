"""``openssm agent register``, ``openssm agent run`` and ``openssm agent install|uninstall`` (systemd)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pathlib
import signal
import sys
from collections.abc import Coroutine
from typing import Any

import click

from openssm import systemd
from openssm.agent.config import (
    IAM,
    AgentSettings,
    Registration,
    StateError,
    default_state_dir,
    load_registration,
)
from openssm.agent.credentials import RoleCredentials
from openssm.agent.registration import RegistrationError, ServerAddress, register, register_iam
from openssm.agent.runner import Agent
from openssm.agent.signing import CredentialsError, CredentialSource
from openssm.transport import runtime
from openssm.transport.http_exchange import HttpClient

log = logging.getLogger("openssm.agent")

_state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    default=None,
    help="Where the agent keeps its registration and key "
    "(default: $OPENSSM_AGENT_STATE, /var/lib/openssm-agent as root, else ~/.local/state/openssm-agent).",
)


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


@agent_group.command("run", short_help="Stay connected and serve sessions until stopped.")
@_state_dir_option
@click.option(
    "--instance-id",
    default=None,
    help="Run without registration as this instance id, with IAM credentials from the standard AWS "
    "chain (environment, ~/.aws files, instance metadata …); needs --endpoint and --region.",
)
@click.option("--endpoint", default=None, help="API endpoint URL (with --instance-id).")
@click.option("--mgs-endpoint", default=None, help="Message gateway URL (default: the API endpoint).")
@click.option("--region", default=None, help="Region (with --instance-id).")
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    envvar="OPENSSM_AGENT_LOG_LEVEL",
    help="DEBUG, INFO, WARNING or ERROR (env OPENSSM_AGENT_LOG_LEVEL).",
)
@click.option(
    "--ssm-user-sudo",
    is_flag=True,
    default=None,
    help="Give ssm-user (a root agent's account for sessions without a run-as user) sudo through "
    "/etc/sudoers.d/ssm-agent-users, as AWS's agent does. Off by default (setting ssm_user_sudo).",
)
def run_command(
    state_dir: pathlib.Path | None,
    instance_id: str | None,
    endpoint: str | None,
    mgs_endpoint: str | None,
    region: str | None,
    log_level: str,
    ssm_user_sudo: bool | None,
) -> None:
    """Connect to the server and serve sessions until stopped (SIGTERM/SIGINT).

    Uses the registration `openssm agent register` left in the state directory (or --instance-id
    with credentials from the AWS chain), keeps the control channel to the gateway open and runs
    the shell, command, Run Command and port forwarding sessions the server sends.
    """
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        directory = state_dir or default_state_dir()
        settings = AgentSettings.load(directory if directory.is_dir() else None)
        if ssm_user_sudo:
            settings = dataclasses.replace(settings, ssm_user_sudo=True)
        runtime.run(_run(directory, settings, instance_id, endpoint, mgs_endpoint, region))
    except (StateError, CredentialsError) as exc:
        raise click.ClickException(str(exc)) from exc


async def _run(
    state_dir: pathlib.Path,
    settings: AgentSettings,
    instance_id: str | None,
    endpoint: str | None,
    mgs_endpoint: str | None,
    region: str | None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    http = HttpClient(timeout=settings.http_timeout_seconds)
    credentials: CredentialSource
    failover_endpoints: tuple[str, ...] = ()
    # botocore (the AWS credential chain, ~10 MB resident) only for nodes with an IAM identity:
    # imported in the two branches that use it, never by an activated node.
    if instance_id:
        if not endpoint or not region:
            raise StateError("--instance-id needs --endpoint and --region")
        from openssm.agent.chain_credentials import ChainCredentials

        credentials = ChainCredentials()
        await credentials.current()  # no credentials at all: say so now, not on every retry
        api_endpoint, gateway = endpoint, mgs_endpoint or endpoint
    else:
        registration, key_pem = load_registration(state_dir)
        if registration.identity == IAM:
            from openssm.agent.chain_credentials import ChainCredentials

            credentials = ChainCredentials(registration.profile)
            await credentials.current()
        else:
            credentials = RoleCredentials(http, registration, key_pem, settings, state_dir=state_dir)
        instance_id, region = registration.instance_id, registration.region
        api_endpoint, gateway = registration.endpoint, mgs_endpoint or registration.gateway_endpoint
        failover_endpoints = registration.failover_endpoints
    agent = Agent(
        http=http,
        instance_id=instance_id,
        region=region,
        endpoint=api_endpoint,
        gateway_endpoint=gateway,
        credentials=credentials,
        settings=settings,
        failover_endpoints=failover_endpoints,
    )
    log.info("agent %s starting (endpoint %s, gateway %s)", instance_id, api_endpoint, gateway)
    await agent.run(stop)
    log.info("agent stopped")


systemd.add_service_commands(
    agent_group,
    systemd.agent_service,
    "--state-dir",
    "The state directory the service runs with (default: /var/lib/openssm-agent, where "
    "`openssm agent register` run as root keeps the registration).",
)
