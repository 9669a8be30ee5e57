"""Replays of captured real-program requests against a real server, byte for byte (clock-skew check off)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import pathlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from tests.integration.api_harness import ApiServer

from openssm.store.secrets import SecretCipher
from openssm.store.tables import access_keys, iam_inline_policies, iam_users, instances

DUMMY_KEY = "AKIDEXAMPLE"
DUMMY_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"  # the AWS documentation dummy


def _events(path: pathlib.Path) -> dict[int, dict[str, Any]]:
    return {event["n"]: event for event in map(json.loads, path.read_text().splitlines())}


def _raw_http(event: dict[str, Any]) -> bytes:
    lines = [f"{event['method']} {event['path']} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in event["headers"].items()]
    head = "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n"
    text: str = event["text"]
    return head + text.encode("utf-8")


def _send(server: ApiServer, raw: bytes) -> tuple[int, dict[str, Any]]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw)  # the connection stays open (keep-alive): read one complete response
        data = b""
        while b"\r\n\r\n" not in data:
            data += _recv(sock)
        head, _, body = data.partition(b"\r\n\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
        }
        if headers.get(b"transfer-encoding") == b"chunked":
            while not body.endswith(b"0\r\n\r\n"):
                body += _recv(sock)
            body = _dechunk(body)
        else:
            while len(body) < int(headers[b"content-length"]):
                body += _recv(sock)
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("server closed the connection before a full response")
    return chunk


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


@pytest.fixture
def replay_server(tmp_path: pathlib.Path) -> Iterator[ApiServer]:
    server = ApiServer(tmp_path / "data", clock_skew_seconds=0).start()
    try:
        yield server
    finally:
        server.stop()


def _seed_tester(server: ApiServer, target: str) -> None:
    """The capture's caller (user "tester" with the dummy key) and its target, online on this node."""

    async def work(engine: Any) -> None:
        now = dt.datetime.now(dt.UTC)
        cipher = SecretCipher.for_data_dir(server.config.data_dir)
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "*"}],
        }
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(iam_users).values(
                    name="tester",
                    user_id="AIDAEXAMPLEEXAMPLE001",
                    arn="arn:aws:iam::123456789012:user/tester",
                    path="/",
                    created_at=now,
                    tags={},
                    is_admin_bootstrap=False,
                )
            )
            await conn.execute(
                sa.insert(iam_inline_policies).values(
                    principal_type="user",
                    principal_name="tester",
                    policy_name="sessions",
                    document=json.dumps(policy),
                )
            )
            await conn.execute(
                sa.insert(access_keys).values(
                    access_key_id=DUMMY_KEY,
                    secret_encrypted=cipher.encrypt(DUMMY_SECRET.encode()),
                    status="Active",
                    principal_type="user",
                    principal_name="tester",
                    created_at=now,
                )
            )
            await conn.execute(
                sa.insert(instances).values(
                    instance_id=target,
                    public_key=base64.b64encode(b"unused").decode(),
                    public_key_type="Rsa",
                    fingerprint="capture",
                    registration_date=now,
                    control_node_id=server.config.node_id,
                    control_connected_at=now,
                    tags={},
                    deregistered=False,
                )
            )

    server.db(work)


def test_cli_start_session_is_accepted_byte_for_byte(
    replay_server: ApiServer, captures: pathlib.Path
) -> None:
    events = _events(captures / "cli-start-session.jsonl")
    request = events[2]
    assert request["headers"]["X-Amz-Target"] == "AmazonSSM.StartSession"
    _seed_tester(replay_server, json.loads(request["text"])["Target"])
    status, answer = _send(replay_server, _raw_http(request))
    assert status == 200, answer
    assert list(answer) == ["SessionId", "TokenValue", "StreamUrl"]  # exactly what the CLI copies
    assert answer["SessionId"].startswith("tester-") and len(answer["SessionId"]) == len("tester-") + 17
    assert answer["StreamUrl"].endswith(f"/v1/data-channel/{answer['SessionId']}?role=publish_subscribe")


def test_one_changed_body_byte_fails_the_signature(replay_server: ApiServer, captures: pathlib.Path) -> None:
    request = dict(_events(captures / "cli-start-session.jsonl")[2])
    _seed_tester(replay_server, json.loads(request["text"])["Target"])
    request["text"] = request["text"].replace("i-0123456789abcdef0", "i-0123456789abcdef1")
    status, answer = _send(replay_server, _raw_http(request))
    assert status in (400, 403)
    assert answer["__type"] == "InvalidSignatureException"


def test_agent_role_token_request_verifies_with_the_registered_key(
    replay_server: ApiServer, captures: pathlib.Path
) -> None:
    """RequestManagedInstanceRoleToken #7 (chunked, RSA-PSS) is accepted with the key sent at #2."""
    events = _events(captures / "agent-register.jsonl")
    registration = json.loads(events[2]["text"])
    token_request = events[7]

    async def work(engine: Any) -> None:
        now = dt.datetime.now(dt.UTC)
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(instances).values(
                    instance_id="mi-0123456789abcdef0",
                    iam_role="OpenSSMNodeRole",
                    public_key=registration["PublicKey"],
                    public_key_type="Rsa",
                    fingerprint=registration["Fingerprint"],
                    registration_date=now,
                    tags={},
                    deregistered=False,
                )
            )

    replay_server.db(work)
    raw = _raw_http(token_request)
    head, _, body = raw.partition(b"\r\n\r\n")
    chunked = head + b"\r\n\r\n" + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    status, answer = _send(replay_server, chunked)
    assert status == 200, answer
    assert answer["AccessKeyId"].startswith("ASIA") and answer["UpdateKeyPair"] is False
    assert isinstance(answer["TokenExpirationDate"], float | int)


def _seed_agent_credentials(server: ApiServer, events: dict[int, dict[str, Any]]) -> None:
    """The registered node of agent-register.jsonl and the temporary credentials #8 handed it."""
    from openssm.store.secrets import hash_token

    registration = json.loads(events[2]["text"])
    issued = json.loads(events[8]["text"])

    async def work(engine: Any) -> None:
        now = dt.datetime.now(dt.UTC)
        cipher = SecretCipher.for_data_dir(server.config.data_dir)
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(instances).values(
                    instance_id="mi-0123456789abcdef0",
                    iam_role="OpenSSMNodeRole",
                    public_key=registration["PublicKey"],
                    public_key_type="Rsa",
                    fingerprint=registration["Fingerprint"],
                    registration_date=now,
                    tags={},
                    deregistered=False,
                )
            )
            await conn.execute(
                sa.insert(access_keys).values(
                    access_key_id=issued["AccessKeyId"],
                    secret_encrypted=cipher.encrypt(issued["SecretAccessKey"].encode()),
                    status="Active",
                    principal_type="managed-instance",
                    principal_name="mi-0123456789abcdef0",
                    role_name="OpenSSMNodeRole",
                    session_token_hash=hash_token(issued["SessionToken"]),
                    created_at=now,
                    expires_at=now + dt.timedelta(hours=1),
                )
            )

    server.db(work)


def test_agent_health_pings_with_temporary_credentials(
    replay_server: ApiServer, captures: pathlib.Path
) -> None:
    """UpdateInstanceInformation #9 (short) and #11 (full), signed with the role token and its session token."""
    events = _events(captures / "agent-register.jsonl")
    _seed_agent_credentials(replay_server, events)
    for number in (9, 11):
        status, answer = _send(replay_server, _raw_http(events[number]))
        assert (status, answer) == (200, {}), number

    async def platform(engine: Any) -> tuple[str | None, str | None]:
        async with engine.connect() as conn:
            row = (await conn.execute(sa.select(instances.c.agent_version, instances.c.platform_type))).one()
            return row[0], row[1]

    assert replay_server.db(platform) == ("3.3.0.0", "Linux")
    tampered = dict(events[9])
    tampered["headers"] = dict(tampered["headers"], **{"X-Amz-Security-Token": "forged"})
    status, answer = _send(replay_server, _raw_http(tampered))
    assert status in (400, 403) and answer["__type"] in (
        "UnrecognizedClientException",
        "InvalidSignatureException",
    )
