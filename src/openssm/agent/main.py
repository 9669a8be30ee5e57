"""``openssm agent run``: the agent's long-running process, started without click.

An agent runs for months on every node, so what it imports stays resident: click (1.6 MiB) and
the ``agent install`` machinery it does not need to serve sessions. Its options are described once
(:data:`RUN_OPTIONS`, :mod:`openssm.plain_options`): the ``openssm`` entry point reads a plain
``agent run`` command line with :func:`fast_run`, and anything else (``--help``, a bad option) goes
to the click command built from the same description (:mod:`openssm.agent.cli`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pathlib
import signal
import sys
from collections.abc import Sequence
from typing import Final

from openssm.agent.config import IAM, AgentSettings, StateError, default_state_dir, load_registration
from openssm.agent.credentials import RoleCredentials
from openssm.agent.runner import Agent
from openssm.agent.signing import CredentialsError, CredentialSource
from openssm.plain_options import Option, parse_plain
from openssm.transport import runtime
from openssm.transport.http_exchange import HttpClient

log = logging.getLogger("openssm.agent")

STATE_DIR: Final = Option(
    "--state-dir",
    "state_dir",
    "Where the agent keeps its registration and key "
    "(default: $OPENSSM_AGENT_STATE, /var/lib/openssm-agent as root, else ~/.local/state/openssm-agent).",
    directory=True,
)
RUN_OPTIONS: Final = (
    STATE_DIR,
    Option(
        "--instance-id",
        "instance_id",
        "Run without registration as this instance id, with IAM credentials from the standard AWS "
        "chain (environment, ~/.aws files, instance metadata …); needs --endpoint and --region.",
    ),
    Option("--endpoint", "endpoint", "API endpoint URL (with --instance-id)."),
    Option("--mgs-endpoint", "mgs_endpoint", "Message gateway URL (default: the API endpoint)."),
    Option("--region", "region", "Region (with --instance-id)."),
    Option(
        "--log-level",
        "log_level",
        "DEBUG, INFO, WARNING or ERROR (env OPENSSM_AGENT_LOG_LEVEL).",
        default="INFO",
        show_default=True,
        envvar="OPENSSM_AGENT_LOG_LEVEL",
    ),
    Option(
        "--ssm-user-sudo",
        "ssm_user_sudo",
        "Give ssm-user (a root agent's account for sessions without a run-as user) sudo through "
        "/etc/sudoers.d/ssm-agent-users, as AWS's agent does. Off by default (setting ssm_user_sudo).",
        is_flag=True,
    ),
)
RUN_HELP: Final = """\
Connect to the server and serve sessions until stopped (SIGTERM/SIGINT).

Uses the registration `openssm agent register` left in the state directory (or --instance-id
with credentials from the AWS chain), keeps the control channel to the gateway open and runs
the shell, command, Run Command and port forwarding sessions the server sends.
"""


def fast_run(args: Sequence[str]) -> None:
    """``openssm agent run ARGS…`` without click when the command line is plain (then it does not
    return: it exits as click would, 1 with ``Error: …`` on stderr for a bad state or credentials);
    otherwise returns, and click takes the command line."""
    options = parse_plain(RUN_OPTIONS, args)
    if options is None:
        return
    try:
        serve(**options)
    except (StateError, CredentialsError) as exc:
        sys.stderr.write(f"Error: {exc}\n")
        sys.exit(1)
    sys.exit(0)


def serve(
    state_dir: pathlib.Path | None,
    instance_id: str | None,
    endpoint: str | None,
    mgs_endpoint: str | None,
    region: str | None,
    log_level: str,
    ssm_user_sudo: bool | None,
) -> None:
    """Run the agent until SIGTERM/SIGINT (:data:`RUN_HELP`)."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    directory = state_dir or default_state_dir()
    settings = AgentSettings.load(directory if directory.is_dir() else None)
    if ssm_user_sudo:
        settings = dataclasses.replace(settings, ssm_user_sudo=True)
    runtime.run(_run(directory, settings, instance_id, endpoint, mgs_endpoint, region))


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
