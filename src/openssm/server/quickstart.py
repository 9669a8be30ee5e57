"""``openssm quickstart``: embedded server + local agent + a shell into it, in one command.

Each part runs as its own process, exactly as an operator would run them (server, agent, client);
quickstart only orchestrates them, so what works here works when the parts live on different hosts.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import click

READY_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _openssm(*args: str) -> list[str]:
    return [sys.executable, "-m", "openssm", *args]


def _aws_env(data_dir: pathlib.Path) -> dict[str, str]:
    env = dict(os.environ)
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(data_dir / "credentials")
    env["AWS_CONFIG_FILE"] = str(data_dir / "config")
    env["AWS_PROFILE"] = "openssm"
    return env


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise click.ClickException(f"timed out waiting for {what}")


@contextlib.contextmanager
def _process(
    argv: list[str], log_path: pathlib.Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _ssm_client(data_dir: pathlib.Path, endpoint: str, region: str) -> Any:
    import boto3

    credentials = configparser.ConfigParser()
    credentials.read(data_dir / "credentials")
    profile = credentials["openssm"]
    return boto3.client(
        "ssm",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=profile["aws_access_key_id"],
        aws_secret_access_key=profile["aws_secret_access_key"],
    )


def _console_text(data_dir: pathlib.Path, endpoint: str) -> str:
    """Where the browser console is and how to sign in (the administrator's key id; its secret stays
    in the credentials file)."""
    credentials = configparser.ConfigParser()
    credentials.read(data_dir / "credentials")
    key_id = credentials["openssm"]["aws_access_key_id"]
    return (
        f"Browser console: {endpoint}/console/ (while the shell below is open, or with --keep-running)\n"
        f"  sign in with access key id {key_id} and the aws_secret_access_key in {data_dir / 'credentials'}"
    )


@click.command("quickstart", short_help="Server + local agent + a shell on it, in one go.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    default=pathlib.Path(".data/quickstart"),
    show_default=True,
    help="Where the server keeps its database, keys and recordings, and the agent its state.",
)
@click.option("--port", type=int, default=0, help="Server port on 127.0.0.1 (default: a free one).")
@click.option("--region", default="us-east-1", show_default=True, help="Region the server answers as.")
@click.option("--keep-running", is_flag=True, help="Leave server and agent running after the shell exits.")
def quickstart_command(data_dir: pathlib.Path, port: int, region: str, keep_running: bool) -> None:
    """Start an embedded server and a local agent, then open a shell on that node.

    Runs `openssm server` (SQLite + files in DATA_DIR), creates an activation, registers a local
    `openssm agent`, waits until the node is Online, says where the browser console is and how to
    sign in to it, and runs `openssm start-session` into the node. `exit` ends the shell; the exit
    status is the session client's.
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    agent_state = data_dir / "agent"
    server_argv = _openssm(
        "server",
        "--data-dir",
        str(data_dir),
        "--listen",
        f"127.0.0.1:{port}",
        "--public-url",
        endpoint,
        "--region",
        region,
    )
    click.echo(f"Starting OpenSSM server on {endpoint} (data in {data_dir}, log: server.log)")
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(_process(server_argv, data_dir / "server.log"))

        def server_ready() -> bool:
            if server.poll() is not None:
                raise click.ClickException(
                    f"server exited with {server.returncode}; see {data_dir / 'server.log'}"
                )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return (data_dir / "credentials").exists()
            except OSError:
                return False

        _wait_for(server_ready, "the server to listen")
        env = _aws_env(data_dir)
        ssm = _ssm_client(data_dir, endpoint, region)

        state_file = agent_state / "registration.json"
        if not state_file.exists():
            activation = ssm.create_activation(
                IamRole="OpenSSMNodeRole",
                DefaultInstanceName="quickstart",
                RegistrationLimit=1,
                Description="openssm quickstart",
            )
            subprocess.run(
                _openssm(
                    "agent",
                    "register",
                    "--endpoint",
                    endpoint,
                    "--code",
                    activation["ActivationCode"],
                    "--id",
                    activation["ActivationId"],
                    "--region",
                    region,
                    "--state-dir",
                    str(agent_state),
                ),
                check=True,
                env=env,
            )
        instance_id = json.loads(state_file.read_text())["instance_id"]
        click.echo(f"Starting local agent for {instance_id} (log: agent.log)")
        agent = stack.enter_context(
            _process(_openssm("agent", "run", "--state-dir", str(agent_state)), data_dir / "agent.log")
        )

        def node_online() -> bool:
            if agent.poll() is not None:
                raise click.ClickException(
                    f"agent exited with {agent.returncode}; see {data_dir / 'agent.log'}"
                )
            status = ssm.get_connection_status(Target=instance_id)
            return bool(status["Status"] == "connected")

        _wait_for(node_online, f"{instance_id} to come online")
        click.echo(_console_text(data_dir, endpoint))
        click.echo(f"Node {instance_id} is online. Opening a shell; type `exit` to leave.\n")
        result = subprocess.run(
            _openssm(
                "start-session", "--target", instance_id, "--endpoint-url", endpoint, "--region", region
            ),
            env=env,
        )
        if keep_running:
            click.echo(f"Server and agent keep running (Ctrl-C to stop). Endpoint: {endpoint}")
            with contextlib.suppress(KeyboardInterrupt):
                server.wait()
        sys.exit(result.returncode)
