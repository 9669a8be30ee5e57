"""Operating a real server process: its metrics move with a real session, its JSON log carries the
request ids clients get, a refused agent is in the log, and SIGHUP swaps the TLS certificate
without dropping the sessions or the agents' channels."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import pathlib
import signal
import socket
import ssl
import subprocess
import urllib.request
from typing import Any

import botocore.exceptions
import pexpect
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.harness import Agent, Server, free_port, openssm_argv, start_tls_server, wait_until
from tests.e2e.test_spine import spawn, start_session_argv

pytestmark = pytest.mark.slow

UNKNOWN_INSTANCE = "mi-0000000000000beef"


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def json_lines(server: Server) -> list[dict[str, Any]]:
    assert server.process is not None
    lines = [line for line in server.process.log().splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


SHELL = 'openssm_sessions_active{type="shell"}'
OUT = 'openssm_relayed_bytes_total{direction="agent_to_client"}'
IN = 'openssm_relayed_bytes_total{direction="client_to_agent"}'


def test_metrics_move_with_a_real_session_and_json_logs_carry_request_ids(tmp_path: pathlib.Path) -> None:
    metrics_port = free_port()
    server = Server(
        tmp_path / "server",
        extra_args=("--metrics-listen", f"127.0.0.1:{metrics_port}", "--log-format", "json"),
    ).start()
    agent = Agent(server, tmp_path / "agent")
    try:
        agent.register()
        agent.start()
        wait_until(lambda: scrape(metrics_port)["openssm_agents_connected"] == 1, "the agent counted")
        idle = scrape(metrics_port)
        assert idle[SHELL] == 0

        child = spawn(start_session_argv(server, agent), server.aws_env())
        child.expect(r"Starting session with SessionId: (\S+)")
        child.sendline("echo $((6*7))")
        child.expect("42")
        live = scrape(metrics_port)
        assert live[SHELL] == 1
        assert live['openssm_sessions_active{type="port"}'] == 0
        child.sendline("head -c 200000 /dev/zero | tr '\\0' x; echo; echo done-$((2*4))")
        child.expect("done-8", timeout=60)
        wait_until(lambda: scrape(metrics_port)[OUT] >= live[OUT] + 200_000, "200 kB more counted out")
        assert scrape(metrics_port)[IN] > live[IN]  # what was typed
        child.sendline("exit")
        child.expect(pexpect.EOF)
        child.close()

        wait_until(lambda: scrape(metrics_port)[SHELL] == 0, "the session no longer active")
        ended = scrape(metrics_port)
        assert ended[OUT] >= live[OUT] + 200_000  # a counter: the ended session's bytes stay
        assert ended['openssm_api_requests_total{action="ssm:StartSession",code="200"}'] >= 1
        assert ended['openssm_api_request_duration_seconds_count{action="ssm:StartSession"}'] >= 1
        assert "openssm_log_upload_backlog" in ended

        # A refused API call: the id the client got is the one on the server's log line.
        ssm = server.client("ssm", credentials=(server.admin_credentials[0], "wrong" * 8))
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            ssm.get_connection_status(Target=agent.instance_id)
        request_id = refused.value.response["ResponseMetadata"]["RequestId"]
        wait_until(lambda: any(line.get("request_id") == request_id for line in json_lines(server)), "log")
        [line] = [line for line in json_lines(server) if line.get("request_id") == request_id]
        assert line["logger"] == "openssm.refused" and line["level"] == "INFO"
        assert line["action"] == "ssm:GetConnectionStatus" and line["code"] == "InvalidSignatureException"
        assert line["principal"] == f"unauthenticated ({server.admin_credentials[0]})"
        assert server.admin_credentials[1] not in server.process.log()  # type: ignore[union-attr]
        assert {"time", "level", "logger", "message"} <= set(json_lines(server)[0])
    finally:
        agent.stop()
        server.stop()


def test_an_agent_with_an_unknown_instance_id_is_in_the_log(tmp_path: pathlib.Path) -> None:
    """The issue's case: an agent configured with an instance id the server does not know."""
    server = Server(tmp_path / "server", extra_args=("--log-format", "json")).start()
    key, secret = server.admin_credentials
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret)
    argv = openssm_argv(
        "agent",
        "run",
        "--instance-id",
        UNKNOWN_INSTANCE,
        "--endpoint",
        server.endpoint,
        "--region",
        server.region,
    )
    agent = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:

        def refused() -> list[dict[str, Any]]:
            return [
                line
                for line in json_lines(server)
                if line.get("logger") == "openssm.refused" and UNKNOWN_INSTANCE in line.get("resource", "")
            ]

        wait_until(lambda: bool(refused()), "the refused agent in the server's log", timeout=60)
        line = refused()[0]
        assert line["action"] == "ssm:UpdateInstanceInformation"
        assert line["code"] == "InvalidInstanceId"
        assert line["principal"].endswith(":user/admin")
        assert line["resource"].endswith(f":managed-instance/{UNKNOWN_INSTANCE}")
        assert "is not registered" in line["reason"]
        assert secret not in server.process.log()  # type: ignore[union-attr]
    finally:
        os.killpg(agent.pid, signal.SIGTERM)
        agent.wait(timeout=20)
        server.stop()


# -- SIGHUP: the TLS certificate ------------------------------------------------------------------


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class Authority:
    """A test CA and the server certificates it signs (for 127.0.0.1)."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OpenSSM test CA")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, common_name: str) -> tuple[bytes, bytes, int]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return _pem(cert), _key_pem(key), serial


def _replace(path: pathlib.Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".new")
    temporary.write_bytes(data)
    temporary.replace(path)


def served_serial(port: int, ca: pathlib.Path) -> int:
    """The serial number of the certificate a new TLS connection gets."""
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def test_sighup_reloads_the_certificate_without_dropping_sessions(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    authority = Authority()
    ca = tmp_path / "ca.pem"
    ca.write_bytes(_pem(authority.cert))
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    first_cert, first_key, first_serial = authority.issue("first")
    cert.write_bytes(first_cert)
    key.write_bytes(first_key)
    server = start_tls_server(tmp_path / "server", cert, key, ca, monkeypatch)  # all trust the test CA
    agent = Agent(server, tmp_path / "agent")
    try:
        agent.register()
        agent.start()
        assert served_serial(server.port, ca) == first_serial
        env = server.aws_env()
        env.update(SSL_CERT_FILE=str(ca), AWS_CA_BUNDLE=str(ca))
        child = spawn(start_session_argv(server, agent), env)
        child.expect(r"Starting session with SessionId: (\S+)")
        child.sendline("echo $((6*7))")
        child.expect("42")

        second_cert, second_key, second_serial = authority.issue("second")
        _replace(key, second_key)
        _replace(cert, second_cert)
        assert server.process is not None
        server.process.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: served_serial(server.port, ca) == second_serial, "the new certificate served")

        child.sendline("echo $((7*8))")  # the session made with the first certificate goes on
        child.expect("56")

        _replace(cert, b"-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        server.process.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "kept the TLS certificate in use" in server.process.log(), "the refusal logged")  # type: ignore[union-attr]
        assert served_serial(server.port, ca) == second_serial  # a bad file changes nothing

        child.sendline("exit")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert server.process.alive()
        log = server.process.log()
        assert log.count(f"control channel open: {agent.instance_id}") == 1  # the agent never re-dialled
        assert "reloaded the TLS certificate" in log
    finally:
        agent.stop()
        server.stop()
