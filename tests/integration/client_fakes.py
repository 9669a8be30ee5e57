"""A fake SSM endpoint + data channel for client tests: one aiohttp server that answers the JSON 1.1
session calls and plays the agent on the data channel (its own sequence numbers and acks)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import ssl
from typing import Any

from aiohttp import WSMsgType, web

from openssm.protocol.channel import StreamEndpoint
from openssm.protocol.frames import Frame, MessageType, decode
from openssm.protocol.messages import ChannelClosed, HandshakeComplete, handshake_request, parse_open_frame

SESSION_ID = "tester-0a1b2c3d4e5f60718"
TARGET = "i-0123456789abcdef0"
TIMEOUT = 10.0
CREDENTIALS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class FakeService:
    """SSM JSON 1.1 (StartSession/ResumeSession/TerminateSession) and the data channel, as the agent."""

    def __init__(
        self, *, start_error: tuple[int, str, str] | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        self.tls = tls
        self.start_error = start_error  # (status, code, message) to fail StartSession with
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.authorizations: list[str] = []
        self.kms_requests: list[dict[str, Any]] = []
        self.ack_input = True
        self.kms_error: tuple[str, str] | None = None
        self.data_key = b""
        self.data_key_blob = b""
        self.tokens: list[str] = []
        self.resume_token: str | None = "resumed-token"
        self.resume_unavailable = 0  # answer this many ResumeSession requests with 503 (a restarting server)
        self.open_frames: list[Any] = []
        self.paths: list[str] = []
        self.agent = StreamEndpoint(MessageType.OUTPUT_STREAM_DATA, syn_on_first=True)
        self.inbox: asyncio.Queue[Frame | None] = asyncio.Queue()  # None: the client's socket ended
        self.connections = asyncio.Queue[web.WebSocketResponse]()
        self.ws: web.WebSocketResponse | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.clients: list[asyncio.Task[Any]] = []  # cancelled on stop, so a failed test cannot hang

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stream_url(self, session_id: str = SESSION_ID) -> str:
        scheme = "wss" if self.tls else "ws"
        return f"{scheme}://127.0.0.1:{self.port}/v1/data-channel/{session_id}?role=publish_subscribe"

    async def start(self) -> FakeService:
        app = web.Application()
        app.router.add_post("/", self._api)
        app.router.add_get("/v1/data-channel/{session_id}", self._data_channel)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        for task in self.clients:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if self._runner is not None:
            await self._runner.cleanup()

    def start_response(self) -> dict[str, str]:
        token = secrets.token_urlsafe(16)
        self.tokens.append(token)
        return {"SessionId": SESSION_ID, "TokenValue": token, "StreamUrl": self.stream_url()}

    # -- JSON 1.1 API ------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        operation = request.headers.get("X-Amz-Target", "").partition(".")[2]
        body = json.loads(await request.read() or b"{}")
        self.calls.append((operation, body))
        self.authorizations.append(request.headers.get("Authorization", ""))
        if operation == "StartSession":
            if self.start_error is not None:
                status, code, message = self.start_error
                return web.json_response(
                    {"__type": code, "message": message}, status=status, headers={"x-amzn-ErrorType": code}
                )
            return self._json(self.start_response())
        if operation == "ResumeSession":
            if self.resume_unavailable > 0:
                self.resume_unavailable -= 1
                return web.json_response(
                    {"__type": "ServiceUnavailable", "message": "restarting"}, status=503
                )
            if self.resume_token is None:
                return self._json({"SessionId": body["SessionId"]})
            self.tokens.append(self.resume_token)
            return self._json(
                {
                    "SessionId": body["SessionId"],
                    "TokenValue": self.resume_token,
                    "StreamUrl": self.stream_url(),
                }
            )
        if operation == "GenerateDataKey":  # KMS (AWS_ENDPOINT_URL_KMS pointed here)
            self.kms_requests.append(body)
            if self.kms_error is not None:
                code, message = self.kms_error
                return web.json_response({"__type": code, "message": message}, status=400)
            self.data_key = secrets.token_bytes(body["NumberOfBytes"])
            blob = b"ciphertext-of:" + secrets.token_bytes(16)
            self.data_key_blob = blob
            return self._json(
                {
                    "CiphertextBlob": base64.b64encode(blob).decode(),
                    "Plaintext": base64.b64encode(self.data_key).decode(),
                    "KeyId": body["KeyId"],
                }
            )
        if operation == "TerminateSession":
            return self._json({"SessionId": body["SessionId"]})
        return web.json_response({"__type": "UnknownOperationException", "message": operation}, status=400)

    @staticmethod
    def _json(body: dict[str, Any]) -> web.Response:
        return web.Response(body=json.dumps(body), content_type="application/x-amz-json-1.1")

    # -- data channel (gateway + agent) ---------------------------------------------------------

    async def _data_channel(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.paths.append(request.path_qs)
        opened = await ws.receive(timeout=TIMEOUT)
        assert opened.type == WSMsgType.TEXT
        self.open_frames.append(parse_open_frame(opened.data))
        self.ws = ws
        await self.connections.put(ws)
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                await self._on_client_frame(decode(message.data, verify_digest=True))
        await self.inbox.put(None)
        return ws

    async def _on_client_frame(self, frame: Frame) -> None:
        if frame.message_type == MessageType.ACKNOWLEDGE:
            self.agent.on_ack(frame)
            return
        if not self.ack_input:
            return  # an agent that has stopped processing input
        received = self.agent.receive(frame)
        if received.ack is not None and self.ws is not None:
            await self.ws.send_bytes(received.ack.encode())
        for delivered in received.deliver:
            await self.inbox.put(delivered)

    async def next_connection(self) -> web.WebSocketResponse:
        return await asyncio.wait_for(self.connections.get(), TIMEOUT)

    async def send(self, payload_type: int, payload: bytes) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(self.agent.send(payload_type, payload))

    async def resend_unacked(self) -> None:
        assert self.ws is not None
        for data in self.agent.all_unacked():
            await self.ws.send_bytes(data)

    async def expect(self, payload_type: int | None = None) -> Frame:
        """The client's next in-order stream message (acked already)."""
        frame = None
        while frame is None:  # skip the ends of earlier sockets (reconnect tests)
            frame = await asyncio.wait_for(self.inbox.get(), TIMEOUT)
        if payload_type is not None:
            assert frame.payload_type == payload_type, (frame.payload_type, frame.payload)
        return frame

    async def expect_disconnect(self) -> None:
        while (item := await asyncio.wait_for(self.inbox.get(), TIMEOUT)) is not None:
            del item

    async def close_channel(self, output: str = "") -> None:
        assert self.ws is not None
        await self.ws.send_bytes(ChannelClosed(SESSION_ID, TARGET, output).to_frame().encode())

    async def drop(self) -> None:
        """Lose the client's socket without channel_closed (a network failure)."""
        assert self.ws is not None
        await self.ws.close()


def handshake_payload(session_type: str, properties: dict[str, str] | None, agent_version: str) -> bytes:
    return handshake_request(session_type, properties, agent_version=agent_version).encode()


def handshake_complete_payload(message: str = "") -> bytes:
    return HandshakeComplete(1_000_000, message).encode()
