"""Bad input on every route of a running server gets a clear 4xx (or a WebSocket policy close),
never a 500 or a traceback: broken JSON, wrong types, deep nesting, huge headers and bodies, wrong
content types, garbage Authorization headers, binary or garbage first WebSocket frames."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import pathlib
import re
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

import aiohttp
import pytest
from tests.integration.api_harness import ApiServer, HttpResult
from tests.support.wait import wait_until

from openssm.api import handlers, registry  # noqa: F401 - registers every operation
from openssm.protocol.frames import decode

pytestmark = pytest.mark.slow

K = TypeVar("K")
Op = TypeVar("Op", registry.JsonOperation, registry.QueryOperation)
DEEP = b"[" * 100_000
GARBAGE_VALUES: list[Any] = [None, -1, 2**70, 1.5, True, "", "x" * 3000, [], [1], {}, {"a": [1]}, [{}]]
BAD_AUTHORIZATION = [
    "garbage",
    "AWS4-HMAC-SHA256",
    "AWS4-HMAC-SHA256 Credential=, SignedHeaders=, Signature=",
    "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host, Signature=zz",
    "AWS4-HMAC-SHA256 Credential=AKIAXXXXXXXXXXXXXXXX/20240101/us-east-1/ssm/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
    "AWS4-HMAC-SHA256 " + "A" * 6000,
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    running = ApiServer(tmp_path_factory.mktemp("malformed") / "data").start()
    try:
        yield running
    finally:
        running.stop()


def assert_client_error(result: HttpResult, what: object) -> None:
    assert 400 <= result.status < 500, (what, result.status, result.body[:300])
    assert b"Traceback" not in result.body, what


def _operation_members(handler_module: str) -> list[str]:
    """Capitalised names the operation's module mentions: its request members, among others."""
    source = pathlib.Path(str(sys.modules[handler_module].__file__)).read_text()
    return sorted(set(re.findall(r'"([A-Z][A-Za-z0-9]+)"', source)))


def _own_operations(registered: Mapping[K, Op]) -> dict[K, Op]:
    """The server's own operations (other test modules in this process may register test-only ones)."""
    return {
        key: operation
        for key, operation in registered.items()
        if operation.handler.__module__.startswith("openssm.")
    }


# -- JSON 1.1 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [b"{", b"[]", b"null", b'"x"', b"\xff\xfe", DEEP, b'{"a":' * 1000], ids=lambda b: repr(b[:8])
)
def test_unparseable_json_bodies_are_validation_errors(server: ApiServer, body: bytes) -> None:
    result = server.call_json("AmazonSSM.DescribeSessions", body)
    assert_client_error(result, body[:20])
    assert result.json()["__type"] == "ValidationException"


def test_every_json_operation_refuses_wrong_types(server: ApiServer) -> None:
    operations = _own_operations(registry._json_operations)
    assert len(operations) > 20
    for target, operation in sorted(operations.items()):
        members = _operation_members(operation.handler.__module__)
        for value in GARBAGE_VALUES:
            result = server.call_json(target, {member: value for member in members})
            # null members count as absent (as AWS reads them), so some of these calls succeed
            assert result.status < 500 and b"Traceback" not in result.body, (target, value, result.body[:300])


def test_nested_next_token_is_an_invalid_token(server: ApiServer) -> None:
    token = base64.urlsafe_b64encode(DEEP).decode()
    result = server.call_json("AmazonSSM.ListCommands", {"NextToken": token})
    assert_client_error(result, "NextToken")
    assert result.json()["__type"] == "InvalidNextToken"


# -- Query (IAM, STS) -----------------------------------------------------------------------------


def test_every_query_operation_refuses_garbage(server: ApiServer) -> None:
    operations = _own_operations(registry._query_operations)
    assert operations
    for (service, action), operation in sorted(operations.items()):
        members = _operation_members(operation.handler.__module__)
        for value in ["", "-5", "9" * 30, "x" * 3000, "{", DEEP.decode()[:60_000], "\x00"]:
            form = {"Action": action, "Version": "2010-05-08"} | {member: value for member in members}
            result = server.call_query(service, form)
            assert result.status < 500, (service, action, value[:10], result.body[:300])
            assert b"Traceback" not in result.body


def test_query_body_that_is_not_utf8(server: ApiServer) -> None:
    result = server.post({"Content-Type": "application/x-www-form-urlencoded"}, b"Action=%ff%fe&\xff=\xfe")
    assert_client_error(result, "not utf-8")


# -- HTTP framing, headers, content types ---------------------------------------------------------


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATION)
def test_garbage_authorization_is_refused_on_every_route(server: ApiServer, authorization: str) -> None:
    headers = {
        "Authorization": authorization,
        "X-Amz-Date": "garbage",
        "X-Amz-Target": "AmazonSSM.StartSession",
    }
    assert_client_error(server.post(headers, b"{}"), authorization[:30])
    for path in ("/v1/control-channel/mi-0123456789abcdef0", "/v1/data-channel/user-0123456789abcdef0"):
        request = urllib.request.Request(server.endpoint + path, data=b"{}", headers=headers, method="POST")
        assert_client_error(_open(request), (path, authorization[:30]))


def _open(request: urllib.request.Request) -> HttpResult:
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return HttpResult(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return HttpResult(error.code, dict(error.headers), error.read())


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/", "text/plain", b"hello"),
        ("/", "multipart/form-data; boundary=x", b"--x\r\n\r\n--x--"),
        ("/", "application/json", b"x" * (2 << 20)),
        ("/v1/control-channel/mi-0123456789abcdef0", "application/json", DEEP),
        ("/v1/data-channel/x", "application/json", b"x" * (1 << 17)),
        ("/console/api/signin", "text/plain", b"{}"),
        ("/console/api/signin", "application/json", DEEP[:60_000]),
        ("/console/api/signin", "application/json", b"{" + b" " * 70_000 + b"}"),
        ("/console/api/signin", "application/json", b'{"userName":1,"password":[],"accessKeyId":{}}'),
    ],
    ids=lambda value: str(value)[:40],
)
def test_wrong_content_types_and_bodies(server: ApiServer, path: str, content_type: str, body: bytes) -> None:
    headers = {"Content-Type": content_type, "Origin": server.endpoint}  # the console's same-origin check
    request = urllib.request.Request(server.endpoint + path, data=body, headers=headers, method="POST")
    assert_client_error(_open(request), (path, content_type, body[:20]))


def _raw_status(server: ApiServer, data: bytes) -> int:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        head = sock.recv(64)
    assert head.startswith(b"HTTP/1."), head
    return int(head.split()[1])


@pytest.mark.parametrize(
    "data",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(300)) + b"\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /v1/data-channel/x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 99\r\n\r\n",
    ],
    ids=["huge-header", "many-headers", "negative-length", "huge-length", "bad-chunk", "bad-upgrade"],
)
def test_broken_http_framing_is_a_4xx(server: ApiServer, data: bytes) -> None:
    assert 400 <= _raw_status(server, data) < 500
    still_serving = server.call_json("AmazonSSM.DescribeSessions", {"State": "Active"})
    assert still_serving.status == 200


def test_broken_http_is_logged_in_one_line_without_a_traceback(
    server: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="aiohttp.server"):
        assert _raw_status(server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n") == 400
        # the server thread logs after answering
        wait_until(lambda: any(r.name == "aiohttp.server" for r in caplog.records), "aiohttp's log line", 5)
    records = [record for record in caplog.records if record.name == "aiohttp.server"]
    assert records, "aiohttp no longer logs malformed requests: drop the filter in openssm.server.process"
    assert all(record.exc_info is None and record.levelno == logging.INFO for record in records)
    assert "Content-Length" in records[-1].getMessage()


# -- WebSockets -----------------------------------------------------------------------------------

FIRST_FRAMES: list[tuple[str, bytes | str]] = [
    ("binary", b"\x00" * 200),
    ("binary", b""),
    ("text", "not json"),
    ("text", "[]"),
    ("text", "[" * 60_000),
    ("text", json.dumps({"TokenValue": 1})),
    ("text", json.dumps({"TokenValue": "x" * 70_000})),
    ("text", json.dumps({"MessageSchemaVersion": "1.0", "RequestId": [1], "TokenValue": "t"})),
    (
        "text",
        json.dumps(
            {"MessageSchemaVersion": "1.0", "RequestId": "r", "TokenValue": "t", "ClientInstanceId": {}}
        ),
    ),
]


@pytest.mark.parametrize(("kind", "first"), FIRST_FRAMES, ids=lambda value: repr(value)[:30])
async def test_garbage_first_websocket_frame_gets_a_policy_close(
    server: ApiServer, kind: str, first: bytes | str
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(server.endpoint + "/v1/data-channel/user-0123456789abcdef0", max_msg_size=0) as ws,
    ):
        if isinstance(first, bytes):
            await ws.send_bytes(first)
        else:
            await ws.send_str(first)
        message = await ws.receive(timeout=10)
        assert message.type is aiohttp.WSMsgType.CLOSE, message
        assert ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
        assert "Traceback" not in str(message.extra)


async def test_unsigned_control_channel_upgrade_is_refused(server: ApiServer) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await asyncio.wait_for(
                http.ws_connect(server.endpoint + "/v1/control-channel/mi-0123456789abcdef0"), 10
            )
    assert refused.value.status == 403


async def test_unknown_token_in_a_well_formed_open_frame_is_told_then_closed(server: ApiServer) -> None:
    opening = {"MessageSchemaVersion": "1.0", "RequestId": "r", "TokenValue": "not-a-token"}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(server.endpoint + "/v1/data-channel/user-0123456789abcdef0") as ws,
    ):
        await ws.send_str(json.dumps(opening))
        told = await ws.receive(timeout=10)
        assert told.type is aiohttp.WSMsgType.BINARY
        closed = decode(told.data)
        assert closed.message_type == "channel_closed"
        assert "token is invalid" in closed.json()["Output"]
        assert (await ws.receive(timeout=10)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


# -- console (signed in) --------------------------------------------------------------------------


def _console(
    server: ApiServer, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> HttpResult:
    sent = {"Origin": server.endpoint, "Content-Type": "application/json", **headers}
    request = urllib.request.Request(server.endpoint + path, data=body, headers=sent, method=method)
    return _open(request)


def test_signed_in_console_routes_refuse_garbage(server: ApiServer) -> None:
    key, secret = server.admin_credentials
    signed_in = _console(
        server,
        "POST",
        "/console/api/signin",
        json.dumps({"access_key_id": key, "secret_access_key": secret}).encode(),
        {},
    )
    assert signed_in.status == 200
    cookie = {"Cookie": signed_in.headers["Set-Cookie"].split(";", 1)[0]}
    csrf = json.loads(_console(server, "GET", "/console/api/me", None, cookie).body)["csrf_token"]
    headers = {**cookie, "X-CSRF-Token": csrf}
    fields = ["target", "document_name", "parameters", "reason", "iam_role", "description"]
    fields += ["default_instance_name", "registration_limit"]
    bodies = [b"{", DEEP[:60_000], b"\xff", b"[]", b"null"]
    bodies += [json.dumps({field: value for field in fields}).encode() for value in GARBAGE_VALUES]
    for path in ("/console/api/sessions", "/console/api/activations", "/console/api/sessions/x%00/terminate"):
        for body in bodies:
            result = _console(server, "POST", path, body, headers)
            assert result.status < 500 and b"Traceback" not in result.body, (
                path,
                body[:30],
                result.body[:300],
            )
    for path in ("/console/api/sessions?state=%ff", "/console/api/sessions/..%2f..%2fetc/recording"):
        result = _console(server, "GET", path, None, headers)
        assert_client_error(result, path)
