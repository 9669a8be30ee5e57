"""Real processes on loopback: an OpenSSM server, agents registered with it, and AWS clients.

Everything here runs the installed commands (`python -m openssm …`) exactly as an operator would,
so an end-to-end test proves the same path users take.
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

import boto3

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def openssm_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "openssm", *args]


def wait_until(
    predicate: Callable[[], bool], what: str, timeout: float = 30.0, interval: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:  # keep polling; report the last error on timeout
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(
        f"timed out waiting for {what}" + (f" (last error: {last_error!r})" if last_error else "")
    )


class Process:
    """A child process whose output goes to a log file that tests can read on failure."""

    def __init__(self, argv: list[str], log_path: pathlib.Path, env: dict[str, str] | None = None) -> None:
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
    ) -> None:
        self.region = region
        self.data_dir = data_dir
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.extra_args = extra_args
        self.env = env  # None: inherit this process's environment
        self.process: Process | None = None

    def start(self) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = openssm_argv(
            "server",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--public-url",
            self.endpoint,
            "--region",
            self.region,
            *self.extra_args,
        )
        self.process = Process(argv, self.data_dir / "server.log", env=self.env)
        wait_until(self._ready, "server to listen", timeout=60)
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
        self, server: Server, state_dir: pathlib.Path, failover_endpoints: tuple[str, ...] = ()
    ) -> None:
        self.server = server
        self.state_dir = state_dir
        self.failover_endpoints = failover_endpoints  # more server nodes, tried in order after `server`
        self.process: Process | None = None
        self.instance_id: str | None = None

    def register(self, name: str = "test-node") -> str:
        ssm = self.server.client("ssm")
        activation = ssm.create_activation(
            IamRole="OpenSSMNodeRole", DefaultInstanceName=name, RegistrationLimit=1
        )
        out = subprocess.run(
            openssm_argv(
                "agent",
                "register",
                "--endpoint",
                self.server.endpoint,
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
            openssm_argv("agent", "run", "--state-dir", str(self.state_dir)),
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


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)
