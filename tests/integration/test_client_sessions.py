"""OpenSSM's client session code, in process, against a fake service playing gateway and agent:
reconnect via ResumeSession, time-out, handshake answers, stdio and basic port modes."""

from __future__ import annotations

import asyncio
import base64
import datetime
import io
import ipaddress
import json
import logging
import os
import pathlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID
from tests.integration.client_fakes import (
    CREDENTIALS_ENV,
    SESSION_ID,
    TIMEOUT,
    FakeService,
    handshake_complete_payload,
    handshake_payload,
)
from tests.support.net import free_port
from tests.support.wait import wait_for

from openssm.client import datachannel
from openssm.client.api import ApiTarget, StartedSession
from openssm.client.output import Console
from openssm.client.session import ClientOptions, run_session
from openssm.protocol.datachannel import NOT_READY
from openssm.protocol.frames import PayloadFlag, PayloadType, flag_payload, parse_flag
from openssm.protocol.messages import (
    ActionStatus,
    EncryptionChallenge,
    HandshakeRequest,
    RequestedAction,
    handshake_request,
    parse_encryption_challenge,
    parse_handshake_response,
)
from openssm.transport.datachannel import log as driver_log


@pytest.fixture
async def service(monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]) -> AsyncIterator[FakeService]:
    for key, value in CREDENTIALS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.path.join(tmp_path, "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.path.join(tmp_path, "credentials"))
    fake = await FakeService().start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", fake.endpoint)
    yield fake
    await fake.stop()


class Client:
    """run_session in a task, with a pipe for stdin and a buffer for stdout."""

    def __init__(self, service: FakeService, target: str = "") -> None:
        self.stdout = io.BytesIO()
        self._stdin_read, self.stdin = os.pipe()
        response = service.start_response()
        started = StartedSession(response["SessionId"], response["TokenValue"], response["StreamUrl"])
        options = ClientOptions(
            console=Console(self.stdout),
            stdin_fd=self._stdin_read,
            api=ApiTarget(region="us-east-1", endpoint_url=service.endpoint),
            target=target,
        )
        self.task = asyncio.create_task(run_session(started, options))
        service.clients.append(self.task)

    def type(self, data: bytes) -> None:
        os.write(self.stdin, data)

    def end_input(self) -> None:
        os.close(self.stdin)
        self.stdin = -1

    async def exit_code(self) -> int:
        try:
            return await asyncio.wait_for(self.task, TIMEOUT)
        finally:
            for fd in (self.stdin, self._stdin_read):
                if fd >= 0:
                    os.close(fd)
            self.stdin = self._stdin_read = -1

    @property
    def printed(self) -> str:
        return self.stdout.getvalue().decode()


async def test_lost_socket_is_resumed_with_a_new_token_and_sequence_continues(service: FakeService) -> None:
    client = Client(service)
    await service.next_connection()
    await service.send(PayloadType.OUTPUT, b"$ ")
    await service.expect(PayloadType.SIZE)  # input seq 0

    await service.drop()
    client.type(b"ab")  # sent while the socket is down: replayed after the reconnect
    await service.next_connection()
    assert [call[0] for call in service.calls] == ["ResumeSession"]
    first, second = service.open_frames
    assert second.token_value == "resumed-token"
    assert second.client_id == first.client_id
    typed = await service.expect(PayloadType.OUTPUT)
    assert (typed.sequence_number, typed.payload) == (1, b"ab")

    await service.send(PayloadType.OUTPUT, b"ab\r\n$ ")  # agent seq 1
    await service.wait_acked()
    await service.close_channel()
    assert await client.exit_code() == 0
    assert client.printed == (
        f"\nStarting session with SessionId: {SESSION_ID}\n$ ab\r\n$ "
        f"\n\nExiting session with sessionId: {SESSION_ID}.\n\n"
    )
    assert service.agent.unacked_count == 0


async def test_resume_without_token_means_the_session_timed_out(service: FakeService) -> None:
    service.resume_token = None
    client = Client(service)
    await service.next_connection()
    await service.send(PayloadType.OUTPUT, b"$ ")
    await service.expect(PayloadType.SIZE)
    await service.drop()
    assert await client.exit_code() == 0
    assert client.printed.endswith(f"Session: {SESSION_ID} timed out.\n")


async def test_resume_waits_through_an_outage_and_says_so(
    service: FakeService, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server that answers ResumeSession with 503 for a while (a restart): the client keeps trying
    within its window, tells the user on stderr, and goes on where it was."""
    client = Client(service)
    await service.next_connection()
    await service.send(PayloadType.OUTPUT, b"$ ")
    await service.expect(PayloadType.SIZE)
    service.resume_unavailable = 5  # a failed ResumeSession (tried 4 times inside), then one more 503
    await service.drop()
    client.type(b"ab")
    await service.next_connection()
    typed = await service.expect(PayloadType.OUTPUT)
    assert (typed.sequence_number, typed.payload) == (1, b"ab")
    assert service.resume_unavailable == 0
    await service.close_channel()
    assert await client.exit_code() == 0
    err = capsys.readouterr().err
    assert "[openssm] connection lost, reconnecting\u2026" in err
    assert "[openssm] connection back" in err


async def test_past_the_resume_window_the_client_exits_cleanly(
    service: FakeService, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(datachannel.RESUME_WINDOW_ENV, "2")
    client = Client(service)
    await service.next_connection()
    await service.send(PayloadType.OUTPUT, b"$ ")
    await service.expect(PayloadType.SIZE)
    service.resume_unavailable = 10_000
    await service.drop()
    assert await client.exit_code() == 1
    err = capsys.readouterr().err
    assert "[openssm] connection lost, reconnecting" in err
    assert "[openssm] no connection for 2 s; giving up on the session" in err


async def test_stdin_eof_ends_a_shell_session(service: FakeService) -> None:
    client = Client(service)
    await service.next_connection()
    await service.send(PayloadType.OUTPUT, b"$ ")
    await service.expect(PayloadType.SIZE)
    client.type(b"\n")
    assert (await service.expect(PayloadType.OUTPUT)).payload == b"\r"  # a lone newline is Enter
    client.end_input()
    assert await client.exit_code() == 0


async def test_non_interactive_handshake_then_every_stream_type_is_printed(service: FakeService) -> None:
    client = Client(service)
    await service.next_connection()
    await service.send(
        PayloadType.HANDSHAKE_REQUEST, handshake_payload("NonInteractiveCommands", None, "3.3.987.0")
    )
    response = parse_handshake_response((await service.expect(PayloadType.HANDSHAKE_RESPONSE)).payload)
    assert [a.action_status for a in response.actions] == [ActionStatus.SUCCESS]
    await service.send(PayloadType.HANDSHAKE_COMPLETE, handshake_complete_payload("Hello from the agent."))
    await service.expect(PayloadType.SIZE)
    await service.send(PayloadType.OUTPUT, b"out\n")
    await service.send(PayloadType.STDERR, b"err\n")
    await service.send(PayloadType.EXIT_CODE, b"EXIT_CODE: 3")
    await service.wait_acked()
    await service.close_channel()
    assert await client.exit_code() == 0
    assert "Hello from the agent.\nout\nerr\nEXIT_CODE: 3" in client.printed


async def test_unknown_session_type_and_failed_kms_are_refused_in_the_handshake(service: FakeService) -> None:
    service.kms_error = ("AccessDeniedException", "not allowed to use the key")
    client = Client(service)
    await service.next_connection()
    request = handshake_request("Standard_Stream", None, kms_key_id="alias/key", challenge="AAAA")
    request = HandshakeRequest(request.agent_version, (*request.actions, RequestedAction("Telepathy", {})))
    await service.send(PayloadType.HANDSHAKE_REQUEST, request.encode())
    response = parse_handshake_response((await service.expect(PayloadType.HANDSHAKE_RESPONSE)).payload)
    assert [(a.action_type, a.action_status) for a in response.actions] == [
        ("SessionType", ActionStatus.SUCCESS),
        ("KMSEncryption", ActionStatus.FAILED),
        ("Telepathy", ActionStatus.UNSUPPORTED),
    ]
    assert "not allowed to use the key" in response.actions[1].error
    await service.close_channel("Handshake failed.")
    assert await client.exit_code() == 0
    assert client.printed.endswith(f"\n\nSessionId: {SESSION_ID} : Handshake failed.\n\n")


async def test_kms_encrypted_shell_session(service: FakeService) -> None:
    client = Client(service, target="i-0123456789abcdef0")
    await service.next_connection()
    request = handshake_request("Standard_Stream", None, kms_key_id="alias/sessions", challenge="AAAA")
    await service.send(PayloadType.HANDSHAKE_REQUEST, request.encode())
    response = parse_handshake_response((await service.expect(PayloadType.HANDSHAKE_RESPONSE)).payload)
    assert service.kms_requests == [
        {
            "KeyId": "alias/sessions",
            "NumberOfBytes": 64,
            "EncryptionContext": {"aws:ssm:SessionId": SESSION_ID, "aws:ssm:TargetId": "i-0123456789abcdef0"},
        }
    ]
    kms_action = response.actions[1]
    assert kms_action.action_status == ActionStatus.SUCCESS
    assert kms_action.action_result == {
        "KMSCipherTextKey": base64.b64encode(service.data_key_blob).decode(),
        "KMSCipherTextHash": None,
    }
    # The agent's side of the key: 0-31 agent→client, 32-63 client→agent.
    to_client, to_agent = AESGCM(service.data_key[:32]), AESGCM(service.data_key[32:])
    secret = os.urandom(64)
    nonce = os.urandom(12)
    challenge = EncryptionChallenge(nonce + to_client.encrypt(nonce, secret, None))
    await service.send(PayloadType.ENC_CHALLENGE_REQUEST, challenge.encode())
    answer = parse_encryption_challenge((await service.expect(PayloadType.ENC_CHALLENGE_RESPONSE)).payload)
    assert to_agent.decrypt(answer.challenge[:12], answer.challenge[12:], None) == secret
    await service.send(
        PayloadType.HANDSHAKE_COMPLETE, handshake_complete_payload("This session is encrypted using AWS KMS.")
    )
    size = await service.expect(PayloadType.SIZE)
    assert json.loads(bytes(size.payload)) == {"cols": 300, "rows": 100}  # Size is never encrypted
    nonce = os.urandom(12)
    await service.send(PayloadType.OUTPUT, nonce + to_client.encrypt(nonce, b"$ ", None))
    client.type(b"ls")
    typed = (await service.expect(PayloadType.OUTPUT)).payload
    assert typed != b"ls" and to_agent.decrypt(typed[:12], typed[12:], None) == b"ls"
    await service.wait_acked()
    await service.close_channel()
    assert await client.exit_code() == 0
    assert "This session is encrypted using AWS KMS.\n$ \n\nExiting session" in client.printed


async def test_stdio_port_session_for_ssh_proxy_command(service: FakeService) -> None:
    client = Client(service)
    await service.next_connection()
    await service.send(
        PayloadType.HANDSHAKE_REQUEST, handshake_payload("Port", {"portNumber": "22"}, "3.3.987.0")
    )
    await service.expect(PayloadType.HANDSHAKE_RESPONSE)
    await service.send(PayloadType.HANDSHAKE_COMPLETE, handshake_complete_payload())
    client.type(b"SSH-2.0-client\r\n")
    assert (await service.expect(PayloadType.OUTPUT)).payload == b"SSH-2.0-client\r\n"
    await service.send(PayloadType.OUTPUT, b"SSH-2.0-server\r\n")
    await wait_for(
        lambda: client.printed.endswith("SSH-2.0-server\r\n"), TIMEOUT, "the server's banner on stdout"
    )
    client.end_input()
    flag = await service.expect(PayloadType.FLAG)
    assert parse_flag(flag.payload) == PayloadFlag.TERMINATE_SESSION
    assert await client.exit_code() == 0
    assert client.printed.endswith("SSH-2.0-server\r\n")


async def test_basic_port_holds_agent_data_until_a_local_client_connects(
    service: FakeService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=driver_log.name)
    port = free_port()
    client = Client(service)
    await service.next_connection()
    properties = {"localPortNumber": str(port), "portNumber": "80", "type": "LocalPortForwarding"}
    await service.send(PayloadType.HANDSHAKE_REQUEST, handshake_payload("Port", properties, "3.0.100.0"))
    await service.expect(PayloadType.HANDSHAKE_RESPONSE)
    await service.send(PayloadType.HANDSHAKE_COMPLETE, handshake_complete_payload())
    await service.send(PayloadType.OUTPUT, b"early")
    await service.send(PayloadType.OUTPUT, b"-later")
    await wait_for(lambda: "opened for sessionId" in client.printed, TIMEOUT, "the local port to open")
    # The client had its chance to take the data: both frames were read and dropped (the driver logs
    # each), neither acked (nor buffered).
    await wait_for(lambda: caplog.text.count(NOT_READY) >= 2, TIMEOUT, "both frames dropped")
    assert service.agent.unacked_count == 2

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await wait_for(lambda: "Connection accepted" in client.printed, TIMEOUT, "the local connection accepted")
    await service.resend_unacked()  # what the agent's retransmission would do
    assert await asyncio.wait_for(reader.readexactly(11), TIMEOUT) == b"early-later"
    await service.send(PayloadType.FLAG, flag_payload(PayloadFlag.CONNECT_TO_PORT_ERROR))
    writer.close()
    flag = await service.expect(PayloadType.FLAG)
    assert parse_flag(flag.payload) == PayloadFlag.DISCONNECT_TO_PORT
    await service.close_channel()
    assert await client.exit_code() == 0
    assert f"Port {port} opened for sessionId {SESSION_ID}.\n" in client.printed
    assert f"Connection accepted for session {SESSION_ID}.\n" in client.printed
    assert "\nConnection to destination port failed, check SSM Agent logs.\n" in client.printed


async def test_ephemeral_local_port_is_announced(service: FakeService) -> None:
    client = Client(service)
    await service.next_connection()
    properties = {"localPortNumber": "0", "portNumber": "80", "type": "LocalPortForwarding"}
    await service.send(PayloadType.HANDSHAKE_REQUEST, handshake_payload("Port", properties, "3.3.987.0"))
    await service.expect(PayloadType.HANDSHAKE_RESPONSE)
    await service.send(PayloadType.HANDSHAKE_COMPLETE, handshake_complete_payload())
    await wait_for(lambda: "Waiting for connections" in client.printed, TIMEOUT, "the port announced")
    line = client.printed.splitlines()[2]
    port = int(line.split()[1])
    assert port > 0 and line == f"Port {port} opened for sessionId {SESSION_ID}."
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    syn = await service.expect(PayloadType.OUTPUT)
    assert syn.payload == bytes.fromhex("0100000003000000")  # smux v1 SYN, stream 3
    writer.close()
    await service.close_channel()
    assert await client.exit_code() == 0
    assert json.dumps(properties)  # properties were plain strings, as the agent sends them


def write_test_ca(directory: pathlib.Path) -> tuple[pathlib.Path, ssl.SSLContext]:
    """A throwaway CA (written as PEM) and a server context with a 127.0.0.1 certificate it signed."""
    now = datetime.datetime.now(datetime.UTC)

    def build(
        subject: str, issuer: x509.Name | None, key: ec.EllipticCurvePrivateKey, signer: Any, ca: bool
    ) -> Any:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("openssm test CA", None, ca_key, ca_key, True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = build("127.0.0.1", ca_cert.subject, server_key, ca_key, False)
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return ca_path, context


async def test_wss_stream_url_trusts_the_ca_in_ssl_cert_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    ca_path, server_context = write_test_ca(tmp_path)
    tls_service = await FakeService(tls=server_context).start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_path))
        client = Client(tls_service)
        await tls_service.next_connection()
        await tls_service.send(PayloadType.OUTPUT, b"$ ")
        await tls_service.expect(PayloadType.SIZE)
        await tls_service.close_channel()
        assert await client.exit_code() == 0
    finally:
        await tls_service.stop()


async def test_wss_without_the_ca_fails_cleanly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    _ca_path, server_context = write_test_ca(tmp_path)
    tls_service = await FakeService(tls=server_context).start()
    try:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        client = Client(tls_service)
        assert await asyncio.wait_for(client.exit_code(), 30) == 1
        assert not tls_service.open_frames
    finally:
        await tls_service.stop()


async def test_unacknowledged_input_ends_with_terminate_session(
    service: FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datachannel, "STALL_LIMIT_SECONDS", 0.5)
    client = Client(service)
    await service.next_connection()
    await service.send(PayloadType.OUTPUT, b"$ ")
    await service.expect(PayloadType.SIZE)
    service.ack_input = False
    client.type(b"x")
    assert await client.exit_code() == 1
    assert [call[0] for call in service.calls] == ["TerminateSession"]


async def test_unix_socket_listener(service: FakeService, tmp_path: pathlib.Path) -> None:
    socket_path = str(tmp_path / "forward.sock")
    client = Client(service)
    await service.next_connection()
    properties = {
        "localConnectionType": "unix",
        "localUnixSocket": socket_path,
        "portNumber": "5432",
        "type": "LocalPortForwarding",
    }
    await service.send(PayloadType.HANDSHAKE_REQUEST, handshake_payload("Port", properties, "3.0.100.0"))
    await service.expect(PayloadType.HANDSHAKE_RESPONSE)
    await service.send(PayloadType.HANDSHAKE_COMPLETE, handshake_complete_payload())
    await wait_for(lambda: os.path.exists(socket_path), TIMEOUT, "the unix socket to appear")
    reader, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(b"ping")
    assert (await service.expect(PayloadType.OUTPUT)).payload == b"ping"
    await service.send(PayloadType.OUTPUT, b"pong")
    assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == b"pong"
    writer.close()
    await service.expect(PayloadType.FLAG)
    await service.close_channel()
    assert await client.exit_code() == 0
    assert f"Unix socket {socket_path} opened for sessionId {SESSION_ID}.\n" in client.printed
    assert not os.path.exists(socket_path)
