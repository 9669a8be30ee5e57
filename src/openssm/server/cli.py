"""``openssm server``: run the control plane (AWS SSM API) and the message gateway; ``openssm server
install|uninstall``: as a systemd service."""

from __future__ import annotations

import ipaddress
import os
import pathlib
import socket
from typing import Any

import click

from openssm import systemd
from openssm.click_options import file_option, seconds_option
from openssm.logs.options import logging_config, logging_options
from openssm.ops.logformat import FORMATS, LogFormat, configure
from openssm.server import config_file
from openssm.server.access_options import access_config, access_options
from openssm.server.oidc_options import oidc_config, oidc_options
from openssm.services import ServerConfig
from openssm.store.db import PoolSettings

DEFAULT_PORT = 8080


def default_data_dir() -> pathlib.Path:
    configured = os.environ.get("OPENSSM_DATA_DIR")
    if configured:
        return pathlib.Path(configured)
    return pathlib.Path.home() / ".local" / "share" / "openssm"


def _load_config(ctx: click.Context, _: click.Parameter, path: pathlib.Path | None) -> pathlib.Path | None:
    config_file.load_into(ctx, path)
    return path


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, str(DEFAULT_PORT)
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not HOST:PORT") from None
    if not 0 <= number <= 65535:
        raise click.BadParameter(f"port {number} is out of range")
    return host, number


def is_loopback(host: str) -> bool:
    """Only this machine can reach ``host``: a loopback address, or the name ``localhost`` (RFC 6761
    keeps it, and names under it, on the loopback interface). Any other name may resolve anywhere."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


PLAIN_HTTP_REFUSED = (
    "refusing to serve plain HTTP on {host}, which is not a loopback address: access keys' "
    "signatures, console passwords and cookies, session tokens and every session's bytes would "
    "cross the network in clear. Serve TLS with --tls-cert and --tls-key (TOML keys tls-cert and "
    "tls-key), or, when a TLS-terminating proxy in front of this node is the only thing that can "
    "reach it, pass --insecure-http (TOML: insecure-http = true)."
)


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IP address or CIDR") from None


@click.group(
    "server",
    invoke_without_command=True,
    short_help="Run the API and session gateway (one node); install it as a service.",
)
@file_option(
    "--config",
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    help='TOML file of options: each key is an option\'s long name (listen = "0.0.0.0:8443"); '
    "options given on the command line win over it.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=pathlib.Path),
    default=None,
    help="State directory (database, master key, recordings). Default: $OPENSSM_DATA_DIR or ~/.local/share/openssm.",
)
@click.option(
    "--listen", default=f"127.0.0.1:{DEFAULT_PORT}", show_default=True, help="HOST:PORT to listen on."
)
@click.option(
    "--public-url",
    default=None,
    help="URL clients and agents reach this node at (StreamUrls point here). Default: from --listen.",
)
@click.option(
    "--region", default="us-east-1", show_default=True, help="AWS region name this server answers as."
)
@click.option(
    "--account-id", default="000000000000", show_default=True, help="12-digit account id used in ARNs."
)
@file_option(
    "--tls-cert",
    help="PEM certificate chain: serve HTTPS/WSS.",
)
@file_option(
    "--tls-key",
    help="PEM private key for --tls-cert.",
)
@click.option(
    "--insecure-http",
    is_flag=True,
    default=False,
    help="Serve plain HTTP on an address that is not loopback (refused without it): only behind a "
    "TLS-terminating proxy, or on a network nobody else can reach.",
)
@click.option(
    "--database-url",
    default=None,
    help="SQLAlchemy async URL (e.g. postgresql+asyncpg://…). Default: SQLite in the data dir.",
)
@click.option(
    "--database-pool-size",
    type=click.IntRange(min=1),
    default=PoolSettings().size,
    show_default=True,
    help="PostgreSQL connections this node keeps open; up to twice as many more in a burst.",
)
@seconds_option(
    "--database-pool-timeout",
    minimum=0.1,
    default=PoolSettings().timeout,
    help="Seconds a request waits for a PostgreSQL connection when all are in use; past that it is "
    "answered with ThrottlingException, which AWS clients and agents retry with backoff.",
)
@click.option(
    "--redis-url",
    default=None,
    help="Redis URL for node-to-node signalling (scale-out; default: in-process, one node).",
)
@click.option(
    "--node-id", default=None, help="This node's unique id in a scale-out cluster (default: node-1)."
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    help="CIDR of a reverse proxy whose X-Forwarded-For/-Proto are believed (repeatable).",
)
@click.option(
    "--metrics-listen",
    default=None,
    help="HOST:PORT of a separate listener serving Prometheus metrics at /metrics (off unless given).",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    help="Least severe log messages written to stderr.",
)
@click.option(
    "--log-format",
    default="text",
    show_default=True,
    type=click.Choice(FORMATS),
    help="text: a line for people; json: one object a line (time, level, logger, message, request_id…).",
)
@seconds_option(
    "--session-resume-window",
    minimum=1.0,
    default=120.0,
    help="Seconds a session waits for its ends to come back (a client that dropped, this server "
    "restarting) before it ends as 'Session resume window expired'.",
)
@click.option(
    "--api-rate-limit",
    type=click.FloatRange(min=0.001),
    default=None,
    help="API calls a second allowed per principal and action family (reads: Describe/Get/List; "
    "writes: the rest; per service), in bursts of --api-rate-burst; past it calls get "
    "ThrottlingException, which AWS clients retry with backoff. Default: no limit.",
)
@click.option(
    "--api-rate-burst",
    type=click.FloatRange(min=1.0),
    default=None,
    help="Calls a principal may make at once before --api-rate-limit applies (default: twice the rate).",
)
@logging_options  # session recording and log sinks (openssm.logs)
@oidc_options  # identity providers: CA bundle, the console's "Sign in with …" (--oidc-…)
@access_options  # just-in-time access: the webhook (--access-webhook …)
@click.pass_context
def server_command(
    ctx: click.Context,
    /,
    data_dir: pathlib.Path | None,
    listen: str,
    public_url: str | None,
    region: str,
    account_id: str,
    tls_cert: pathlib.Path | None,
    tls_key: pathlib.Path | None,
    insecure_http: bool,
    database_url: str | None,
    database_pool_size: int,
    database_pool_timeout: float,
    redis_url: str | None,
    node_id: str | None,
    trusted_proxies: tuple[str, ...],
    metrics_listen: str | None,
    log_level: str,
    log_format: LogFormat,
    session_resume_window: float,
    api_rate_limit: float | None,
    api_rate_burst: float | None,
    **logging_settings: Any,
) -> None:
    """Run the OpenSSM server: the AWS SSM-compatible API (aws CLI, boto3, amazon-ssm-agent), the
    session gateway and the browser console, on one port. The first start creates an administrator
    and writes AWS CLI credentials and config files (profile "openssm") into the data directory.

    SIGHUP reloads the TLS certificate and key (sessions stay up). `openssm server install` runs it
    as a systemd service."""
    if ctx.invoked_subcommand is not None:
        return
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if not (len(account_id) == 12 and account_id.isdigit()):
        raise click.BadParameter("must be 12 digits", param_hint="--account-id")
    host, port = _listen(listen)
    if tls_cert is None and not insecure_http and not is_loopback(host):
        raise click.UsageError(PLAIN_HTTP_REFUSED.format(host=host))
    scheme = "https" if tls_cert else "http"
    # A wildcard listen address is not somewhere a client can connect to: advertise the host name.
    advertised = socket.getfqdn() if host in ("0.0.0.0", "::", "") else host
    shown_host = f"[{advertised}]" if ":" in advertised else advertised
    config = ServerConfig(
        data_dir=(data_dir or default_data_dir()).expanduser().resolve(),
        listen_host=host,
        listen_port=port,
        public_url=(public_url or f"{scheme}://{shown_host}:{port}").rstrip("/"),
        region=region,
        account_id=account_id,
        node_id=node_id or "node-1",
        database_url=database_url,
        database_pool=PoolSettings(database_pool_size, 2 * database_pool_size, database_pool_timeout),
        redis_url=redis_url,
        tls_cert=tls_cert,
        tls_key=tls_key,
        trusted_proxies=tuple(_cidr(value) for value in trusted_proxies),
        metrics_listen=_listen(metrics_listen) if metrics_listen else None,
        resume_window_seconds=session_resume_window,
        api_rate_limit=api_rate_limit,
        api_rate_burst=api_rate_burst,
        **logging_config(logging_settings),
        **oidc_config(logging_settings),
        **access_config(logging_settings),
    )
    configure(log_level, log_format)
    # Server code is imported only when the command runs.
    from openssm.logs.integrity import IntegrityError
    from openssm.server.bootstrap import BootstrapError
    from openssm.server.process import run
    from openssm.store.secrets import SecretCipherError

    try:
        run(config)
    except (BootstrapError, SecretCipherError, IntegrityError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # e.g. the port is taken
        raise click.ClickException(f"cannot serve on {listen}: {exc}") from exc


systemd.add_service_commands(
    server_command,
    systemd.server_service,
    "--config",
    "The TOML file the service runs with (openssm server --config FILE), e.g. /etc/openssm/server.toml.",
)
