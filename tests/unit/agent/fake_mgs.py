"""A stand-in for the service as the agent sees it: SSM JSON API, MGS REST and both WebSockets.

The data channel's far end behaves like a gateway with a real client behind it: every agent
``output_stream_data`` is acked at once (retransmits re-acked, not recorded twice), and tests send
client input with ``FakeClient.send_input`` and wait on what the agent sends back. Every HTTP
request is recorded with its raw headers so tests can check signatures.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web
from tests.conftest import SSM_USER_ENV

from openssm.auth import sigv4
from openssm.auth.credentials_file import Credentials
from openssm.protocol.frames import (
    DIGEST_OFFSET,
    NO_DIGEST,
    Frame,
    MessageType,
    PayloadType,
    ack_for,
    acked_sequence,
    decode,
    go_json,
)

CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
CONTROL_TOKEN = "control-token-EXAMPLE"
DATA_TOKEN = "data-token-EXAMPLE"


@dataclasses.dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)

    def signed_headers(self) -> str:
        return ";".join(sigv4.parse_request(self.http_request()).signed_headers)

    def http_request(self) -> sigv4.HttpRequest:
        return sigv4.HttpRequest(self.method, self.path, self.query, tuple(self.headers), self.body)

    def verify(self, secret: str = CREDENTIALS.secret_access_key) -> sigv4.ParsedSignature:
        request = self.http_request()
        parsed = sigv4.parse_request(request)
        sigv4.verify_hmac(request, parsed, secret)
        return parsed


class FakeClient:
    """The client behind the gateway on one data channel."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[Frame] = []  # every agent frame, in arrival order (retransmits dropped)
        self.outputs: dict[int, Frame] = {}
        self.acked_inputs: set[int] = set()
        self.next_seq = 0
        self.closed = asyncio.Event()
        # Called with each agent stream message in sequence order (as a client processes them).
        self.output_listener: Callable[[Frame], None] | None = None
        self._delivered = 0
        self.ack_outputs = True  # False: behave like a client that is not ready yet
        self.times_received: dict[int, int] = {}  # output seq → how often it arrived
        self.digestless_outputs: set[int] = set()  # output seqs sent with a zero PayloadDigest
        self._changed = asyncio.Event()

    @property
    def output_bytes(self) -> bytes:
        return b"".join(
            frame.payload
            for _seq, frame in sorted(self.outputs.items())
            if frame.payload_type == PayloadType.OUTPUT
        )

    def outputs_of(self, payload_type: int) -> list[Frame]:
        return [f for _s, f in sorted(self.outputs.items()) if f.payload_type == payload_type]

    async def on_agent_frame(self, frame: Frame, digest: bytes | None = None) -> None:
        if frame.message_type == MessageType.OUTPUT_STREAM_DATA:
            seq = frame.sequence_number
            if digest == NO_DIGEST:
                self.digestless_outputs.add(seq)
            self.times_received[seq] = self.times_received.get(seq, 0) + 1
            if not self.ack_outputs:
                self._notify()
                return
            if frame.sequence_number not in self.outputs:
                self.outputs[frame.sequence_number] = frame
                self.frames.append(frame)
            await self.ws.send_bytes(ack_for(frame).encode())
            while self._delivered in self.outputs:
                if self.output_listener is not None:
                    self.output_listener(self.outputs[self._delivered])
                self._delivered += 1
        else:
            if frame.message_type == MessageType.ACKNOWLEDGE:
                self.acked_inputs.add(acked_sequence(frame))
            self.frames.append(frame)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def send_raw(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def send_input(self, payload_type: int, payload: bytes) -> Frame:
        frame = Frame(MessageType.INPUT_STREAM_DATA, self.next_seq, 0, payload_type, payload)
        self.next_seq += 1
        await self.ws.send_bytes(frame.encode())
        return frame

    async def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    event = self._changed
                    if self.closed.is_set():
                        raise AssertionError(f"data channel closed while waiting for {what}")
                    await event.wait()
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; agent sent {self.describe()}") from None

    def describe(self) -> list[str]:
        return [
            f"{f.message_type}#{f.sequence_number}/{f.payload_type}:{f.payload[:60]!r}" for f in self.frames
        ]


class FakeMgs:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.control_open: dict[str, Any] | None = None
        self.data_open: dict[str, Any] | None = None
        self.control_frames: list[Frame] = []
        self.task_completes: list[Frame] = []
        self.control_connected = asyncio.Event()
        self.task_complete_received = asyncio.Event()
        self.acknowledge_tasks = True
        self.clients: asyncio.Queue[FakeClient] = asyncio.Queue()
        # X-Amz-Target → answer builder for the JSON API (default: ``{}``).
        self.api_answers: dict[str, Callable[[Recorded], dict[str, Any]]] = {}
        self._control_ws: web.WebSocketResponse | None = None
        self._runner: web.AppRunner | None = None
        self.endpoint = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/", self._api)
        app.router.add_post("/v1/control-channel/{iid}", self._rest)
        app.router.add_post("/v1/data-channel/{sid}", self._rest)
        app.router.add_get("/v1/control-channel/{iid}", self._control)
        app.router.add_get("/v1/data-channel/{sid}", self._data)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.endpoint = f"http://127.0.0.1:{port}"
        return self.endpoint

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, request: web.Request) -> Recorded:
        recorded = Recorded(
            request.method,
            request.raw_path.split("?", 1)[0],
            request.query_string,
            [(k.decode(), v.decode()) for k, v in request.raw_headers],
            await request.read(),
        )
        self.requests.append(recorded)
        return recorded

    def requests_to(self, path_prefix: str, target: str | None = None) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if r.path.startswith(path_prefix) and (target is None or r.header("X-Amz-Target") == target)
        ]

    async def _api(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        answer = self.api_answers.get(recorded.header("X-Amz-Target") or "")
        try:
            body = answer(recorded) if answer is not None else {}
        except Exception as exc:  # the test's check failed: answer as the service would
            return web.json_response(
                {"__type": "InvalidSignatureException", "message": str(exc)},
                status=400,
                content_type="application/x-amz-json-1.1",
            )
        return web.json_response(body, content_type="application/x-amz-json-1.1")

    async def _rest(self, request: web.Request) -> web.Response:
        await self._record(request)
        if "control-channel" in request.path:
            root, token = "CreateControlChannelOutput", CONTROL_TOKEN
        else:
            root, token = "CreateDataChannelOutput", DATA_TOKEN
        body = f"<{root}><MessageSchemaVersion>1.0</MessageSchemaVersion><TokenValue>{token}</TokenValue></{root}>"
        return web.Response(status=201, text=body, content_type="application/xml")

    async def _control(self, request: web.Request) -> web.WebSocketResponse:
        await self._record(request)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        first = await ws.receive()
        assert first.type == WSMsgType.TEXT, first
        self.control_open = json.loads(first.data)
        self._control_ws = ws
        self.control_connected.set()
        async for message in ws:
            if message.type != WSMsgType.BINARY:
                continue
            frame = decode(message.data)
            self.control_frames.append(frame)
            if frame.message_type == MessageType.AGENT_TASK_COMPLETE:
                self.task_completes.append(frame)
                self.task_complete_received.set()
                if self.acknowledge_tasks:
                    await ws.send_bytes(task_acknowledge(frame).encode())
        self.control_connected.clear()
        return ws

    async def send_control(self, data: bytes) -> None:
        await asyncio.wait_for(self.control_connected.wait(), 10)
        assert self._control_ws is not None
        await self._control_ws.send_bytes(data)

    async def drop_control(self) -> None:
        if self._control_ws is not None:
            await self._control_ws.close()

    async def _data(self, request: web.Request) -> web.WebSocketResponse:
        await self._record(request)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        first = await ws.receive()
        assert first.type == WSMsgType.TEXT, first
        self.data_open = json.loads(first.data)
        client = FakeClient(ws)
        await self.clients.put(client)
        try:
            async for message in ws:
                if message.type == WSMsgType.BINARY:
                    digest = message.data[DIGEST_OFFSET : DIGEST_OFFSET + len(NO_DIGEST)]
                    await client.on_agent_frame(decode(message.data), digest)
        finally:
            client.closed.set()
            client._notify()
        return ws

    async def next_client(self, timeout: float = 10.0) -> FakeClient:
        return await asyncio.wait_for(self.clients.get(), timeout)


def task_acknowledge(frame: Frame) -> Frame:
    body = frame.json()
    ack = {
        "SchemaVersion": 1,
        "MessageId": str(frame.message_id),
        "TaskId": body["TaskId"],
        "Topic": "agent_task_complete",
    }
    return Frame(MessageType.AGENT_TASK_ACKNOWLEDGE, payload=go_json(ack))


def interactive_shell(session_id: str, content: dict[str, Any]) -> bytes:
    payload = {
        "Content": json.dumps(content, separators=(",", ":")),
        "TaskId": session_id,
        "Topic": "aws.ssm.startSession",
        "SchemaVersion": 1,
    }
    return Frame(MessageType.INTERACTIVE_SHELL, payload=go_json(payload)).encode()


def session_content(
    session_id: str,
    session_type: str,
    properties: Any,
    parameters: dict[str, str] | None = None,
    *,
    inputs: dict[str, Any] | None = None,
    run_as_user: str = "",
    document_name: str = "Test-Document",
) -> dict[str, Any]:
    return {
        "SessionId": session_id,
        "DocumentName": document_name,
        "DocumentContent": {
            "schemaVersion": "1.0",
            "description": "test",
            "sessionType": session_type,
            "parameters": {},
            "inputs": inputs or {},
            "properties": properties,
        },
        "Parameters": parameters or {},
        "RunAsUser": run_as_user,
        "SessionOwner": "arn:aws:iam::123456789012:user/tester",
    }


@contextlib.asynccontextmanager
async def agent_session(content: dict[str, Any], **settings: Any):  # type: ignore[no-untyped-def]
    """A fake service, an agent connected to it, and the client end of one started session."""
    fake = FakeMgs()
    await fake.start()
    try:
        async with running_agent(fake, **settings):
            await fake.send_control(interactive_shell(content["SessionId"], content))
            yield fake, await fake.next_client()
    finally:
        await fake.close()


@contextlib.asynccontextmanager
async def running_agent(  # type: ignore[no-untyped-def]
    fake: FakeMgs, instance_id: str = "i-0123456789abcdef0", failover: tuple[str, ...] = (), **settings: Any
):
    """An ``Agent`` with static test credentials against ``fake`` (then the ``failover``
    endpoints, as a scale-out server's other nodes), stopped on exit."""

    from openssm.agent.config import AgentSettings
    from openssm.agent.runner import Agent
    from openssm.agent.signing import StaticCredentials
    from openssm.transport.http_exchange import HttpClient

    defaults: dict[str, Any] = {"reconnect_initial_seconds": 0.05, "reconnect_max_seconds": 0.5}
    if SSM_USER_ENV in os.environ:  # the test session's own default account (tests/conftest.py)
        defaults["ssm_user"] = os.environ[SSM_USER_ENV]
    defaults.update(settings)
    stop = asyncio.Event()
    http = HttpClient(timeout=15.0)
    agent = Agent(
        http=http,
        instance_id=instance_id,
        region="us-east-1",
        endpoint=fake.endpoint,
        gateway_endpoint=fake.endpoint,
        credentials=StaticCredentials(CREDENTIALS),
        settings=AgentSettings.from_mapping(defaults),
        failover_endpoints=failover,
    )
    task = asyncio.create_task(agent.run(stop))
    try:
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def handshake_response(
    client_version: str = "1.2.677.0", status: int = 1, extensions: dict[str, str] | None = None
) -> bytes:
    return go_json(
        {
            "ClientVersion": client_version,
            "ProcessedClientActions": [
                {"ActionType": "SessionType", "ActionStatus": status, "ActionResult": None, "Error": ""}
            ],
            "Errors": None,
            **(extensions or {}),
        }
    )


async def client_handshake(
    client: FakeClient, client_version: str = "1.2.677.0", extensions: dict[str, str] | None = None
) -> dict[str, Any]:
    """Answer the agent's HandshakeRequest as the plugin does (plus any extension answers);
    returns the request body."""
    await client.wait_for(lambda: bool(client.outputs_of(PayloadType.HANDSHAKE_REQUEST)), "HandshakeRequest")
    request = client.outputs_of(PayloadType.HANDSHAKE_REQUEST)[0].json()
    await client.send_input(
        PayloadType.HANDSHAKE_RESPONSE, handshake_response(client_version, extensions=extensions)
    )
    await client.wait_for(
        lambda: bool(client.outputs_of(PayloadType.HANDSHAKE_COMPLETE)), "HandshakeComplete"
    )
    assert isinstance(request, dict)
    return request


async def task_result(fake: FakeMgs, timeout: float = 15.0) -> dict[str, Any]:
    await asyncio.wait_for(fake.task_complete_received.wait(), timeout)
    body = fake.task_completes[-1].json()
    assert isinstance(body, dict)
    return body
