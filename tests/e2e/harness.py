"""Real processes on loopback: an OpenSSM server, agents registered with it, and AWS clients.

Everything here runs the installed commands (`python -m openssm …`) exactly as an operator would,
so an end-to-end test proves the same path users take.
"""

from __future__ import annotations

import configparser
import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import boto3

from tests.support.faultproxy import ProxyThread
from tests.support.net import free_port as free_port
from tests.support.wait import wait_until as wait_until

REGION = "us-east-1"


def openssm_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "openssm", *args]


class Process:
    """A child process whose output goes to a log file that tests can read on failure."""

    def __init__(
        self,
        argv: list[str],
        log_path: pathlib.Path,
        env: dict[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=preexec,  # e.g. a lower resource limit for the child alone
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class Server:
    def __init__(
        self,
        data_dir: pathlib.Path,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        region: str = REGION,
        public_url: str | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.region = region
        self.preexec = preexec  # run in the server's process before exec (resource limits)
        self.data_dir = data_dir
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._public_url = public_url
        self.extra_args = extra_args
        self.env = env  # None: inherit this process's environment
        self.process: Process | None = None
        self.start_timeout = 60.0  # a bench tracing allocations starts it slower

    @property
    def public_url(self) -> str:
        """What StreamUrls point at (a fault proxy in front of this server carries clients' data
        channels); by default the endpoint, as it is when the server starts."""
        return self._public_url or self.endpoint

    @public_url.setter
    def public_url(self, url: str) -> None:
        self._public_url = url

    def start(self) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = openssm_argv(
            "server",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--public-url",
            self.public_url,
            "--region",
            self.region,
            *self.extra_args,
        )
        self.process = Process(argv, self.data_dir / "server.log", env=self.env, preexec=self.preexec)
        wait_until(self._ready, "server to listen", timeout=self.start_timeout)
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if not self.process.alive():
            raise RuntimeError(f"server exited:\n{self.process.log()}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
            return (self.data_dir / "credentials").exists()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    @property
    def admin_credentials(self) -> tuple[str, str]:
        parser = configparser.ConfigParser()
        parser.read(self.data_dir / "credentials")
        section = parser["openssm"]
        return section["aws_access_key_id"], section["aws_secret_access_key"]

    def aws_env(self) -> dict[str, str]:
        """Environment for the real `aws` CLI and for `openssm start-session` as the admin."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_SHARED_CREDENTIALS_FILE=str(self.data_dir / "credentials"),
            AWS_CONFIG_FILE=str(self.data_dir / "config"),
            AWS_PROFILE="openssm",
            AWS_DEFAULT_REGION=self.region,
            PATH=f"{pathlib.Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        )
        return env

    def client(self, service: str, credentials: tuple[str, str] | None = None) -> Any:
        key, secret = credentials or self.admin_credentials
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )

    def session_record(self, session_id: str) -> dict[str, Any] | None:
        """The session as describe-sessions shows it (Active or History), or None if not listed."""
        ssm = self.client("ssm")
        for state in ("Active", "History"):
            for session in ssm.describe_sessions(State=state)["Sessions"]:
                if session["SessionId"] == session_id:
                    return dict(session)
        return None


def port_forwarding_argv(server: Server, target: str, port: int, *extra: str) -> list[str]:
    """`openssm start-session` forwarding an ephemeral local port to ``port`` on the target."""
    return openssm_argv(
        "start-session",
        "--target",
        target,
        "--endpoint-url",
        server.endpoint,
        "--document-name",
        "AWS-StartPortForwardingSession",
        "--parameters",
        f"portNumber={port}",
        *extra,
    )


def start_tls_server(
    data_dir: pathlib.Path,
    cert: pathlib.Path,
    key: pathlib.Path,
    trusted: pathlib.Path,
    monkeypatch: Any,
    extra_args: tuple[str, ...] = (),
) -> Server:
    """A server on HTTPS with ``cert``/``key``; the agents and clients this test starts (they inherit
    its environment, set through pytest's ``monkeypatch``) trust ``trusted``: a CA or the cert itself."""
    monkeypatch.setenv("SSL_CERT_FILE", str(trusted))  # Python's ssl: the agent, the client
    monkeypatch.setenv("AWS_CA_BUNDLE", str(trusted))  # botocore
    server = Server(data_dir, extra_args=("--tls-cert", str(cert), "--tls-key", str(key), *extra_args))
    server.endpoint = server.endpoint.replace("http://", "https://")
    return server.start()


class Agent:
    def __init__(
        self,
        server: Server,
        state_dir: pathlib.Path,
        failover_endpoints: tuple[str, ...] = (),
        *,
        endpoint: str | None = None,
        mgs_endpoint: str | None = None,
        netns: str | None = None,
    ) -> None:
        self.server = server
        self.state_dir = state_dir
        self.failover_endpoints = failover_endpoints  # more server nodes, tried in order after `server`
        self.endpoint = endpoint or server.endpoint  # the API endpoint it registers with
        # Its control and data channels' URL (e.g. a fault proxy in front of the server); None: the API's.
        self.mgs_endpoint = mgs_endpoint
        self.netns = netns  # run it inside this network namespace (tests/support/netns.py)
        self.process: Process | None = None
        self.instance_id: str | None = None

    def register(self, name: str = "test-node") -> str:
        ssm = self.server.client("ssm")
        activation = ssm.create_activation(
            IamRole="OpenSSMNodeRole", DefaultInstanceName=name, RegistrationLimit=1
        )
        out = subprocess.run(
            self._netns_prefix()
            + openssm_argv(
                "agent",
                "register",
                "--endpoint",
                self.endpoint,
                *(("--mgs-endpoint", self.mgs_endpoint) if self.mgs_endpoint else ()),
                *(arg for endpoint in self.failover_endpoints for arg in ("--endpoint", endpoint)),
                "--code",
                activation["ActivationCode"],
                "--id",
                activation["ActivationId"],
                "--region",
                self.server.region,
                "--state-dir",
                str(self.state_dir),
            ),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        self.instance_id = _find_instance_id(out.stdout)
        return self.instance_id

    def start(self, wait_online: bool = True) -> Agent:
        env = dict(os.environ)
        env["OPENSSM_AGENT_HEARTBEAT_SECONDS"] = "5"
        self.process = Process(
            self._netns_prefix() + openssm_argv("agent", "run", "--state-dir", str(self.state_dir)),
            self.state_dir / "agent.log",
            env=env,
        )
        if wait_online:
            self.wait_online()
        return self

    def wait_online(self, timeout: float = 30.0) -> None:
        ssm = self.server.client("ssm")

        def online() -> bool:
            assert self.process is not None
            if not self.process.alive():
                raise RuntimeError(f"agent exited:\n{self.process.log()}")
            return bool(ssm.get_connection_status(Target=self.instance_id)["Status"] == "connected")

        wait_until(online, f"{self.instance_id} online", timeout=timeout)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def _netns_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns] if self.netns else []


def _find_instance_id(text: str) -> str:
    for token in text.replace('"', " ").split():
        if token.startswith("mi-") and len(token) >= 20:
            return token[:20]
    raise AssertionError(f"no mi- instance id in agent register output: {text!r}")


@contextlib.contextmanager
def running_system(
    tmp_path: pathlib.Path, server_args: tuple[str, ...] = ()
) -> Iterator[tuple[Server, Agent]]:
    server = Server(tmp_path / "server", extra_args=server_args).start()
    agent = Agent(server, tmp_path / "agent")
    try:
        agent.register()
        agent.start()
        yield server, agent
    finally:
        agent.stop()
        server.stop()


@dataclasses.dataclass
class ProxiedSystem:
    """A server and an agent with a fault proxy on each data path: ``client_path`` is the server's
    public URL (what StreamUrls point at: clients' data channels), ``agent_path`` the agent's message
    gateway endpoint (its control channel and data channels). API calls go direct."""

    server: Server
    agent: Agent
    client_path: ProxyThread
    agent_path: ProxyThread


@contextlib.contextmanager
def proxied_system(tmp_path: pathlib.Path) -> Iterator[ProxiedSystem]:
    server = Server(tmp_path / "server")
    with (
        ProxyThread("127.0.0.1", server.port) as client_path,
        ProxyThread("127.0.0.1", server.port) as agent_path,
    ):
        server.public_url = client_path.url
        server.start()
        agent = Agent(server, tmp_path / "agent", mgs_endpoint=agent_path.url)
        try:
            agent.register()
            agent.start()
            yield ProxiedSystem(server, agent, client_path, agent_path)
        finally:
            agent.stop()
            server.stop()


def key_env(server: Server, key: dict[str, str], tmp_path: pathlib.Path) -> dict[str, str]:
    """The environment of a user whose access key (``create_access_key``'s answer) is all it has."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=key["AccessKeyId"],
        AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"],
        AWS_DEFAULT_REGION=server.region,
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        PATH=f"{pathlib.Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    )
    return env


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)
