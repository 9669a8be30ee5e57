"""The client end of a Session Manager data channel (``session-manager-protocol.md`` §2).

Dials the StreamUrl, sends the JSON open frame, numbers and resends ``input_stream_data``,
acks and orders ``output_stream_data``, and survives a dropped socket by ResumeSession +
re-dial of the original StreamUrl (§2.9). What the stream bytes mean is the
:class:`StreamHandler`'s business.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

from openssm.client.dial import open_channel
from openssm.client.trace import mark
from openssm.errors import OpenSSMError
from openssm.protocol.channel import RESEND_INTERVAL, StreamEndpoint
from openssm.protocol.frames import (
    Frame,
    FrameError,
    MessageType,
    PayloadParts,
    PayloadType,
    decode,
)
from openssm.protocol.messages import MessageError, parse_channel_closed
from openssm.transport.websocket_connection import ClientWebSocket, WsMessageType

log = logging.getLogger(__name__)

# The plugin acks these before acting on them, so the agent's handshake clock stops early.
ACK_BEFORE_HANDLING: Final = frozenset(
    {PayloadType.HANDSHAKE_REQUEST, PayloadType.HANDSHAKE_COMPLETE, PayloadType.ENC_CHALLENGE_REQUEST}
)
# Messages the plugin accepts without a creation date.
_DATELESS_OK: Final = frozenset({MessageType.START_PUBLICATION, MessageType.PAUSE_PUBLICATION})
DIAL_ATTEMPTS: Final = 5
RETRY_MAX_DELAY: Final = 5.0
PING_INTERVAL: Final = 300.0  # the plugin's keepalive ping period
PING_PAYLOAD: Final = b"keepalive"
# How long ResumeSession and dialling are tried again after the data channel is lost.
RESUME_PATIENCE: Final = 60.0
# The plugin gives up after ~3000 resends of one message (about 5 minutes).
STALL_LIMIT_SECONDS: Final = 300.0


class ChannelError(OpenSSMError):
    """The data channel cannot be used any more (dial failed, resume refused, stalled)."""


class ChannelStalled(ChannelError):
    """Our messages went unacknowledged for minutes: the session is given up (and terminated)."""


class SessionTimedOut(ChannelError):
    """ResumeSession answered without a token: the service has already ended the session."""


class StreamHandler(Protocol):
    """What the data channel hands in-order agent stream messages to."""

    def ready(self, frame: Frame) -> bool:
        """False → drop the message unacked so the agent retransmits it later."""

    async def handle(self, frame: Frame) -> None:
        """Process one in-order message."""

    async def after_ack(self) -> None:
        """Called after the ack for a batch went out (e.g. to start sending Size)."""


# Returns the new TokenValue, or None/"" if the session is gone.
ResumeCallback = Callable[[], Awaitable[str | None]]


def backoff_delays(attempts: int) -> list[float]:
    """Exponential retry delays: initial 100-200 ms, doubling, capped at 5 s."""
    delay = random.uniform(0.1, 0.2)
    delays = []
    for _ in range(attempts):
        delays.append(delay)
        delay = min(RETRY_MAX_DELAY, delay * 2)
    return delays


class DataChannel:
    """One client data channel. Use :meth:`connect`, then :meth:`run` with a handler."""

    def __init__(
        self,
        stream_url: str,
        token: str,
        *,
        resume: ResumeCallback | None = None,
        client_id: str | None = None,
        opened: ClientWebSocket | None = None,
    ) -> None:
        self.stream_url = stream_url
        self._opened = opened  # already dialled, its open frame sent (with ``client_id``)
        self._token = token
        self._resume = resume
        self.client_id = client_id or str(uuid.uuid4())
        self.endpoint = StreamEndpoint(MessageType.INPUT_STREAM_DATA, syn_on_first=False)
        self._ws: ClientWebSocket | None = None
        self._send_lock = asyncio.Lock()
        self._acked = asyncio.Condition()
        self._closing = False
        self.stalled = False
        self.acks_received = 0
        self._allow_no_digest = False
        # Set once KMS encryption is agreed: applied to outgoing Output payloads only.
        self.encrypt: Callable[[bytes], bytes] | None = None

    # -- connection ------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Dial (with retries, same token) and send the open frame."""
        last_error: Exception | None = None
        for delay in [0.0, *backoff_delays(DIAL_ATTEMPTS - 1)]:
            await asyncio.sleep(delay)
            try:
                await self._dial()
                return
            except (TimeoutError, OSError) as exc:
                last_error = exc
                log.debug("data channel dial failed: %s", exc)
        raise ChannelError(f"cannot open the data channel {self.stream_url}: {last_error}")

    async def _dial(self) -> None:
        if self._opened is not None:  # opened at start-up, while the client was being imported
            self._ws, self._opened = self._opened, None
            return
        self._ws = await open_channel(self.stream_url, self._token, self.client_id)
        mark("dial")

    async def close(self) -> None:
        """Drop the connection (the real plugin never sends a close frame either) and free it."""
        self._closing = True
        ws, self._ws = self._ws, None
        if ws is not None and not ws.closed:
            try:
                await asyncio.wait_for(ws.close(), 2.0)
            except (TimeoutError, OSError):
                pass

    def use_fast_path(self) -> None:
        """Both ends agreed to the fast path: Output goes, and may come, without digests."""
        self.endpoint.digest_output = False
        self._allow_no_digest = True

    # -- sending ---------------------------------------------------------------------------------

    async def send(self, payload_type: int, payload: bytes | PayloadParts) -> None:
        """Send one input_stream_data message; it is kept until acked and resent as needed."""
        if not self.endpoint.can_send:  # the common case skips the condition's lock
            async with self._acked:
                await self._acked.wait_for(lambda: self.endpoint.can_send)
        if self.encrypt is not None and payload_type == PayloadType.OUTPUT:
            payload = self.encrypt(payload if isinstance(payload, bytes) else b"".join(payload))
        await self._write(self.endpoint.send_pieces(payload_type, payload))

    async def _write(self, data: bytes | PayloadParts) -> None:
        """One message, whole or as pieces (joined once, into the WebSocket frame)."""
        ws = self._ws
        if ws is None or ws.closed:
            return  # reconnect replays every unacked message
        async with self._send_lock:
            try:
                await ws.send_parts((data,) if isinstance(data, bytes) else data)
            except (ConnectionError, RuntimeError) as exc:
                log.debug("data channel write failed: %s", exc)

    async def wait_all_acked(self, timeout: float) -> bool:
        """Wait until the agent has acked everything we sent (used before exiting)."""
        try:
            async with asyncio.timeout(timeout):
                async with self._acked:
                    await self._acked.wait_for(lambda: self.endpoint.unacked_count == 0)
            return True
        except TimeoutError:
            return False

    # -- receiving -------------------------------------------------------------------------------

    async def run(self, handler: StreamHandler) -> str:
        """Serve the channel until ``channel_closed``; returns its Output text.

        Raises :class:`ChannelError` when the socket is lost and cannot be resumed.
        """
        resender = asyncio.create_task(self._resend_loop())
        pinger = asyncio.create_task(self._ping_loop())
        try:
            while True:
                closed_output = await self._read_until_closed(handler)
                if closed_output is not None:
                    return closed_output
                if self.stalled:
                    raise ChannelStalled(f"the agent acknowledged nothing for {STALL_LIMIT_SECONDS:.0f} s")
                if self._closing:
                    raise ChannelError("data channel closed")
                await self._reconnect()
        finally:
            resender.cancel()
            pinger.cancel()

    async def _read_until_closed(self, handler: StreamHandler) -> str | None:
        ws = self._ws
        if ws is None:
            return None
        try:
            async for message in ws:
                if message.type == WsMessageType.BINARY:
                    output = await self._on_binary(message.data, handler)
                    if output is not None:
                        return output
                elif message.type == WsMessageType.ERROR:
                    log.debug("data channel read error: %s", ws.exception())
                    break
                # Text frames from the service carry nothing the client needs.
        except ConnectionError as exc:
            log.debug("data channel read failed: %s", exc)
        return None

    async def _on_binary(self, data: bytes | bytearray, handler: StreamHandler) -> str | None:
        try:
            # Each received message is a buffer of its own that nothing writes again.
            frame = decode(data, verify_digest=True, allow_no_digest=self._allow_no_digest, owned=True)
        except FrameError as exc:
            log.warning("dropping invalid message from the service: %s", exc)
            return None
        if frame.created_date == 0 and frame.message_type not in _DATELESS_OK:
            log.warning("dropping %s without CreatedDate", frame.message_type)
            return None
        if frame.message_type == MessageType.ACKNOWLEDGE:
            await self._on_ack(frame)
        elif frame.message_type == MessageType.OUTPUT_STREAM_DATA:
            await self._on_stream(frame, handler)
        elif frame.message_type == MessageType.CHANNEL_CLOSED:
            return channel_closed_output(frame)
        else:
            log.debug("ignoring %s", frame.message_type)
        return None

    async def _on_ack(self, frame: Frame) -> None:
        try:
            acked = self.endpoint.on_ack(frame)
        except FrameError as exc:
            log.warning("dropping bad acknowledge: %s", exc)
            return
        if acked:
            self.acks_received += 1
            async with self._acked:
                self._acked.notify_all()

    async def _on_stream(self, frame: Frame, handler: StreamHandler) -> None:
        if frame.sequence_number >= self.endpoint.expected_seq and not handler.ready(frame):
            # Not ready: no ack, the agent resends it. Later messages are refused too, or they
            # would pile up in the reorder buffer and arrive all at once when we are ready again.
            return
        received = self.endpoint.receive(frame)
        if received.ack is None:
            return
        ack_first = bool(received.deliver) and received.deliver[0].payload_type in ACK_BEFORE_HANDLING
        if ack_first:
            await self._write(received.ack.encode())
        for delivered in received.deliver:
            await handler.handle(delivered)
        if not ack_first:
            await self._write(received.ack.encode())
        await handler.after_ack()

    # -- background loops ------------------------------------------------------------------------

    async def _resend_loop(self) -> None:
        loop = asyncio.get_running_loop()
        quiet_since: float | None = None  # waiting for acks, and none came, since then
        acks_at_mark = 0
        while True:
            await asyncio.sleep(RESEND_INTERVAL)
            if self._ws is None or self._ws.closed:
                continue
            for data in self.endpoint.due_resends():
                await self._write(data)
            now = loop.time()
            if self.endpoint.unacked_count == 0 or self.acks_received != acks_at_mark or quiet_since is None:
                quiet_since, acks_at_mark = now, self.acks_received
            elif now - quiet_since > STALL_LIMIT_SECONDS:
                log.error("no acknowledgement for %.0f s; giving up", STALL_LIMIT_SECONDS)
                self.stalled = True
                self._closing = True
                await self._ws.close()
                return

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(PING_INTERVAL)
            ws = self._ws
            if ws is not None and not ws.closed:
                try:
                    await ws.ping(PING_PAYLOAD)
                except (ConnectionError, RuntimeError):
                    pass

    async def _reconnect(self) -> None:
        """ResumeSession, then re-dial the original StreamUrl with the new token (§2.9)."""
        if self._resume is None:
            raise ChannelError("the data channel was lost and this client cannot resume sessions")
        deadline = asyncio.get_running_loop().time() + RESUME_PATIENCE
        while True:
            token = await self._resume()
            if not token:
                raise SessionTimedOut("session timed out")
            self._token = token
            old = self._ws
            self._ws = None
            if old is not None and not old.closed:
                await old.close()
            try:
                await self.connect()
            except ChannelError:
                # Its node may have died: ResumeSession names another once that is known.
                if asyncio.get_running_loop().time() >= deadline:
                    raise
                continue
            break
        # Sequence numbers continue: replay what the agent has not acked yet.
        for data in self.endpoint.all_unacked():
            await self._write(data)


def channel_closed_output(frame: Frame) -> str:
    """The reason text of a ``channel_closed`` message (empty if none or unreadable)."""
    try:
        return parse_channel_closed(frame.payload).output
    except MessageError as exc:
        log.warning("unreadable channel_closed: %s", exc)
        return ""
