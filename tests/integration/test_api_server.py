"""`openssm server` as a process: bootstrap, restart idempotency, graceful SIGTERM, TLS."""

from __future__ import annotations

import pathlib
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config
from tests.integration.api_harness import ApiServer, make_user
from tests.support.net import free_port
from tests.support.tls import self_signed

pytestmark = pytest.mark.slow


def _wait_listening(port: int, proc: subprocess.Popen[bytes], marker: pathlib.Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited early"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if marker.exists():
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("server did not listen")


def _start(data_dir: pathlib.Path, port: int, log: pathlib.Path) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "openssm",
        "server",
        "--data-dir",
        str(data_dir),
        "--listen",
        f"127.0.0.1:{port}",
        "--account-id",
        "123456789012",
    ]
    proc = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    _wait_listening(port, proc, data_dir / "credentials")
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=15)


def test_process_bootstrap_restart_and_sigterm(tmp_path: pathlib.Path) -> None:
    data, port, log = tmp_path / "data", free_port(), tmp_path / "server.log"
    proc = _start(data, port, log)
    credentials = (data / "credentials").read_text()
    assert "[openssm]" in credentials and "aws_access_key_id = AKIA" in credentials
    config = (data / "config").read_text()
    assert "[profile openssm]" in config and f"endpoint_url = http://127.0.0.1:{port}" in config
    assert _stop(proc) == 0
    output = log.read_text()
    assert "AWS_SHARED_CREDENTIALS_FILE" in output and "--profile openssm" in output

    proc = _start(data, port, log)
    try:
        assert (data / "credentials").read_text() == credentials  # same administrator key after restart
        key = credentials.split("aws_access_key_id = ")[1].split()[0]
        secret = credentials.split("aws_secret_access_key = ")[1].split()[0]
        ssm = boto3.client(
            "ssm",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )
        created = ssm.create_activation(IamRole="OpenSSMNodeRole")
        assert created["ActivationId"]  # the admin's key and policy survived the restart
    finally:
        assert _stop(proc) == 0


def test_tls_listener_and_secure_transport(tmp_path: pathlib.Path) -> None:
    cert, key = self_signed(tmp_path)
    server = ApiServer(tmp_path / "data", tls_cert=cert, tls_key=key)
    server.endpoint = server.endpoint.replace("http://", "https://")
    server.start()
    try:
        access_key, secret = server.admin_credentials
        ssm = boto3.client(
            "ssm",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            verify=str(cert),
            aws_access_key_id=access_key,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1}),
        )
        assert ssm.describe_sessions(State="Active")["Sessions"] == []
        tls_only = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "ssm:DescribeSessions",
                    "Resource": "*",
                    "Condition": {"Bool": {"aws:SecureTransport": "true"}},
                }
            ],
        }
        user_key, user_secret = make_user(server, "tlsuser", tls_only)
        user = boto3.client(
            "ssm",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            verify=str(cert),
            aws_access_key_id=user_key,
            aws_secret_access_key=user_secret,
            config=Config(retries={"max_attempts": 1}),
        )
        assert user.describe_sessions(State="Active")["Sessions"] == []
        # The console over TLS tells the browser to keep to HTTPS for this host.
        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(f"{server.endpoint}/console/signin", context=context, timeout=30) as page:
            assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
    finally:
        server.stop()


def test_a_different_master_key_is_refused(tmp_path: pathlib.Path) -> None:
    data, port, log = tmp_path / "data", free_port(), tmp_path / "server.log"
    assert _stop(_start(data, port, log)) == 0
    (data / "master.key").write_bytes(bytes(32))
    out = subprocess.run(
        [sys.executable, "-m", "openssm", "server", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert "master key" in out.stderr and "Traceback" not in out.stderr
