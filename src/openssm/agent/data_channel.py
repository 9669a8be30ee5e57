"""The agent's end of one session's data channel (§2, §4.2).

It opens the channel (token, WebSocket, open frame, ``Connected``), numbers and retransmits the
agent's ``output_stream_data``, sequences and acks the client's ``input_stream_data`` and hands it
to the session handler in order, honours pause/start publication, and notices every way a session
can be ended from outside: client Flag TerminateSession, ``channel_closed``, a lost connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Final

import aiohttp

from openssm.agent.mgs import MgsClient, MgsError
from openssm.errors import OpenSSMError
from openssm.protocol.channel import RESEND_INTERVAL, StreamEndpoint
from openssm.protocol.frames import (
    FLAG_ACK,
    Frame,
    FrameError,
    MessageType,
    PayloadFlag,
    PayloadParts,
    PayloadType,
    decode,
    go_json,
    parse_flag,
)
from openssm.transport.websocket_connection import WebSocketConnection

log = logging.getLogger(__name__)

MAX_CHUNK: Final = 1024  # the real agent's largest stream payload for PTY/port bytes
# About 60 s of tries (the last ones 5 s apart): long enough for the server to restart.
RECONNECT_ATTEMPTS: Final = 16
RECONNECT_INITIAL: Final = 0.1
RECONNECT_MAX: Final = 5.0
# Bounds on what a client can make the agent hold: real clients send <= 1024-byte chunks and
# small JSON, and resend anything dropped, so larger or far-ahead messages are refused.
MAX_INPUT_PAYLOAD: Final = 64 * 1024
MAX_REORDER: Final = 1024

InputHandler = Callable[[Frame], Awaitable[None]]


class EndReason(enum.Enum):
    CLIENT_TERMINATED = "client sent TerminateSession"
    CHANNEL_CLOSED = "channel closed by the service"
    CONNECTION_LOST = "data channel connection lost"
    AGENT_STOPPING = "agent is stopping"


class ChannelEnded(OpenSSMError):
    """The data channel was ended from outside; the session must stop."""


class DataChannel:
    def __init__(
        self,
        mgs: MgsClient,
        *,
        session_id: str,
        instance_id: str,
        reconnect_attempts: int = RECONNECT_ATTEMPTS,
    ) -> None:
        self._mgs = mgs
        self.session_id = session_id
        self.instance_id = instance_id
        self._reconnect_attempts = reconnect_attempts
        self.stream = StreamEndpoint(
            MessageType.OUTPUT_STREAM_DATA, syn_on_first=True, reorder_limit=MAX_REORDER
        )
        self.max_input_payload = MAX_INPUT_PAYLOAD
        self._ws: WebSocketConnection | None = None
        self._input_handler: InputHandler | None = None
        self._paused = False
        self._changed = asyncio.Event()
        self.ended = asyncio.Event()
        self.end_reason: EndReason | None = None
        self.close_output = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # -- life cycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Token, WebSocket, open frame, then ``agent_session_state Connected``."""
        await self._connect()
        await self._send_state("Connected")
        self._tasks = [
            asyncio.create_task(self._read_loop(), name=f"data-read-{self.session_id}"),
            asyncio.create_task(self._resend_loop(), name=f"data-resend-{self.session_id}"),
        ]

    async def _connect(self) -> None:
        token = await self._mgs.create_data_channel(self.session_id)
        ws = await self._mgs.connect_data(self.session_id)
        opening = {
            "MessageSchemaVersion": "1.0",
            "RequestId": str(uuid.uuid4()),
            "TokenValue": token,
            "ClientInstanceId": self.instance_id,
            "ClientId": "",
        }
        await ws.send_str(go_json(opening).decode())
        self._ws = ws

    async def close(self, *, send_terminating: bool) -> None:
        """``Terminating`` (on a normal end) and then drop the socket, as the real agent does."""
        self._closing = True
        self._input_handler = None
        if send_terminating and not self.ended.is_set():
            await self._send_state("Terminating")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        self._notify()

    def end(self, reason: EndReason, output: str = "") -> None:
        """Mark the session as ended from outside (idempotent: the first reason wins)."""
        if self.ended.is_set():
            return
        self.end_reason = reason
        self.close_output = output
        self._input_handler = None
        self.ended.set()
        self._notify()

    # -- the handler's side --------------------------------------------------------------------

    def accept_input(self, handler: InputHandler) -> None:
        """From now on client stream messages are acked and delivered. Before this call they are
        dropped unacked ("not ready"), so the client keeps resending them."""
        self._input_handler = handler

    def allow_large_input(self, limit: int, reorder_limit: int) -> None:
        """Take client messages of up to ``limit`` bytes (a handler offered the fast path), holding
        fewer out of order so the reorder buffer stays as small in bytes."""
        self.max_input_payload = max(self.max_input_payload, limit)
        self.stream.reorder_limit = min(self.stream.reorder_limit, reorder_limit)

    def send_without_digests(self) -> None:
        """The client agreed to the fast path: Output payloads go with a zero PayloadDigest."""
        self.stream.digest_output = False

    async def send(self, payload_type: int, payload: bytes | PayloadParts) -> None:
        """Send one stream message, waiting while publication is paused or the window is full."""
        while self._paused or not self.stream.can_send:
            if self.ended.is_set() or self._closing:
                raise ChannelEnded(self.end_reason.value if self.end_reason else "closed")
            await self._wait_change()
        if self.ended.is_set() or self._closing:
            raise ChannelEnded(self.end_reason.value if self.end_reason else "closed")
        pieces = self.stream.send_pieces(payload_type, payload)
        log.debug(
            "session %s: sending seq %d type %d", self.session_id, self.stream.next_send_seq - 1, payload_type
        )
        await self._send_raw(pieces)

    async def send_output(self, data: bytes, payload_type: int = PayloadType.OUTPUT) -> None:
        for start in range(0, len(data), MAX_CHUNK):
            await self.send(payload_type, data[start : start + MAX_CHUNK])

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` until the client acked everything. True if it did."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.stream.unacked_count and not self.ended.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await self._wait_change(remaining)
        return self.stream.unacked_count == 0

    # -- internals -----------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, timeout: float | None = None) -> None:
        event = self._changed
        async with asyncio.timeout(timeout):
            await event.wait()

    def _set_paused(self, paused: bool) -> None:
        if self._paused != paused:
            log.debug("session %s publication %s", self.session_id, "paused" if paused else "resumed")
        self._paused = paused
        self._notify()

    async def _send_state(self, state: str) -> None:
        body = {"SchemaVersion": 1, "SessionState": state, "SessionId": self.session_id}
        frame = Frame(MessageType.AGENT_SESSION_STATE, 0, FLAG_ACK, PayloadType.NONE, go_json(body))
        await self._send_raw(frame.encode())

    async def _send_raw(self, data: bytes | PayloadParts) -> None:
        """Best effort: a message lost with a dying socket is replayed after the reconnect.
        ``data`` may come as pieces, joined once into the WebSocket frame."""
        ws = self._ws
        if ws is None or ws.closed:
            return
        try:
            await ws.send_parts((data,) if isinstance(data, bytes) else data)
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            log.debug("session %s: send failed: %s", self.session_id, exc)

    async def _resend_loop(self) -> None:
        while True:
            await asyncio.sleep(RESEND_INTERVAL)
            if self._paused:
                continue
            for data in self.stream.due_resends():
                log.debug("session %s: resending the oldest unacked message", self.session_id)
                await self._send_raw(data)

    async def _read_loop(self) -> None:
        while True:
            ws = self._ws
            assert ws is not None
            async for message in ws:
                if message.type == aiohttp.WSMsgType.BINARY:
                    await self._on_frame(message.data)
                elif message.type == aiohttp.WSMsgType.ERROR:
                    break
            if self._closing or self.ended.is_set():
                return
            log.warning("session %s: data channel connection lost; reconnecting", self.session_id)
            if not await self._reconnect():
                self.end(EndReason.CONNECTION_LOST, "data channel connection lost")
                return

    async def _reconnect(self) -> bool:
        delay = RECONNECT_INITIAL * (1 + random.random())
        for attempt in range(1, self._reconnect_attempts + 1):
            try:
                await self._connect()
            except MgsError as exc:
                log.warning("session %s: reconnect %d failed: %s", self.session_id, attempt, exc)
                if exc.session_gone:
                    return False
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("session %s: reconnect %d failed: %s", self.session_id, attempt, exc)
            else:
                for data in self.stream.all_unacked():
                    await self._send_raw(data)
                return True
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX, delay * 2)
        return False

    async def _on_frame(self, data: bytes | bytearray) -> None:
        try:
            # Each received message is a buffer of its own that nothing writes again.
            frame = decode(data, owned=True)
        except FrameError as exc:
            log.warning("session %s: dropped undecodable frame: %s", self.session_id, exc)
            return
        kind = frame.message_type
        log.debug(
            "session %s: received %s seq %d type %d (%d bytes)",
            self.session_id,
            kind,
            frame.sequence_number,
            frame.payload_type,
            len(frame.payload),
        )
        if kind == MessageType.ACKNOWLEDGE:
            self._paused = False
            try:
                self.stream.on_ack(frame)
            except FrameError as exc:
                log.warning("session %s: bad acknowledge: %s", self.session_id, exc)
            self._notify()
        elif kind == MessageType.INPUT_STREAM_DATA:
            if self._paused:
                self._set_paused(False)
            await self._on_input(frame)
        elif kind == MessageType.CHANNEL_CLOSED:
            self.end(EndReason.CHANNEL_CLOSED, _closed_output(frame))
        elif kind == MessageType.START_PUBLICATION:
            self._set_paused(False)
        elif kind == MessageType.PAUSE_PUBLICATION:
            self._set_paused(True)
        else:
            log.debug("session %s: ignoring %s on the data channel", self.session_id, kind)

    async def _on_input(self, frame: Frame) -> None:
        if self._input_handler is None:
            return  # not ready: no ack, the client retransmits
        if len(frame.payload) > self.max_input_payload:
            log.warning(
                "session %s: dropped a %d-byte input message (limit %d)",
                self.session_id,
                len(frame.payload),
                self.max_input_payload,
            )
            return
        received = self.stream.receive(frame)
        terminate = False
        for item in received.deliver:
            if _is_terminate(item):
                terminate = True
                break
            handler = self._input_handler
            if handler is None:
                break
            try:
                await handler(item)
            except ChannelEnded:
                break
            except Exception:
                log.exception("session %s: input handler failed", self.session_id)
        if received.ack is not None:
            await self._send_raw(received.ack.encode())
        if terminate:
            self.end(EndReason.CLIENT_TERMINATED)


def _is_terminate(frame: Frame) -> bool:
    if frame.payload_type != PayloadType.FLAG:
        return False
    try:
        return parse_flag(frame.payload) == PayloadFlag.TERMINATE_SESSION
    except FrameError:
        return False


def _closed_output(frame: Frame) -> str:
    with contextlib.suppress(FrameError):
        body = frame.json()
        if isinstance(body, dict) and isinstance(body.get("Output"), str):
            return str(body["Output"])
    return ""
