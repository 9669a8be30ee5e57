"""The I/O around :class:`openssm.protocol.datachannel.DataChannelCore`, shared by the agent's and the
client's data channels: write what the core queues, read frames into it, run its timer, wait for the
window, and swap the WebSocket when the caller's ``reconnect`` brings a new one.

Who writes: a sender writes its own message (and whatever the core queued before it) and waits
while the socket's buffer is full, which is its back-pressure. Everything else the core queues
(acks, resends, the backlog after a reconnect) is written by the writer task, never by the read loop
or the timer: a read loop that waited on a full socket would stop reading, and a peer doing the
same (both ends sending bulk, or both replaying a backlog after a reconnect) would wait on us for
ever.

What differs between the two ends stays with them: how to dial and re-dial (the agent asks the
gateway for a new token, the client calls ResumeSession within its window) and what the stream
bytes mean (their :class:`ChannelHandler`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Final, Protocol

from openssm.clock import SYSTEM_CLOCK, Clock
from openssm.errors import OpenSSMError
from openssm.protocol.datachannel import (
    IDLE_POLL,
    ChannelClosed,
    DataChannelCore,
    Dropped,
    Event,
    HandshakeStep,
    KeepaliveDue,
    State,
    StreamData,
    log_dropped,
)
from openssm.protocol.frames import Frame, PayloadParts, PayloadType
from openssm.protocol.values import Value
from openssm.transport.websocket_connection import WsMessageType

log = logging.getLogger(__name__)

# The plugin acks these before acting on them (a KMS call may follow), so the agent's handshake
# clock stops early and it does not resend them meanwhile.
ACK_BEFORE_HANDLING: Final = frozenset(
    {PayloadType.HANDSHAKE_REQUEST, PayloadType.HANDSHAKE_COMPLETE, PayloadType.ENC_CHALLENGE_REQUEST}
)
_SEND_ERRORS: Final = (ConnectionError, RuntimeError, OSError)
# How long a closing channel waits for its last acks to be taken by the socket.
CLOSE_FLUSH_SECONDS: Final = 1.0
# How long the acks of a message whose handler expects to answer it at once (a keystroke written to
# a PTY, which echoes it) wait for that answer, to leave in the same write (see expect_reply).
REPLY_WAIT: Final = 0.002


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ChannelEnded(OpenSSMError):
    """The data channel has ended; nothing more can be sent on it."""


class ChannelSocket(Protocol):
    """What the driver needs of a WebSocket (both of ``websocket_connection``'s kinds have it)."""

    @property
    def closed(self) -> bool: ...

    async def send_parts(self, parts: Sequence[bytes | memoryview]) -> None: ...

    async def send_messages(self, messages: Sequence[Sequence[bytes | memoryview]]) -> None: ...

    async def ping(self, payload: bytes = b"") -> None: ...

    async def close(self) -> bool: ...

    def __aiter__(self) -> AsyncIterator[Any]: ...


class Delivered(Value):
    """Driver event: the acks for what was just handed over are queued, ahead of anything sent
    from now on (the writer task writes them; the read loop never waits on the socket)."""

    __slots__ = ()


class ChannelHandler(Protocol):
    """One contract for whatever takes a data channel's in-order messages, agent or client."""

    def ready(self, frame: Frame) -> bool:
        """False → the message is dropped unacked, and the peer resends it later."""

    async def on_event(self, event: StreamData | Delivered) -> None:
        """An in-order message (:class:`StreamData`, :class:`HandshakeStep`), or :class:`Delivered`
        once the acks for a batch are queued ahead of anything the handler sends next."""


# Returns a new, open socket (its open frame sent); raises when the channel cannot come back.
Reconnect = Callable[[], Awaitable[ChannelSocket]]


class ChannelDriver:
    """Runs one :class:`DataChannelCore` over a (replaceable) WebSocket."""

    def __init__(self, core: DataChannelCore, *, peer: str, clock: Clock = SYSTEM_CLOCK) -> None:
        self.core = core
        self.peer = peer  # names the other end in logs
        self.clock = clock
        self.ws: ChannelSocket | None = None
        self.handler: ChannelHandler | None = None
        self._write_lock = asyncio.Lock()
        self._changed = asyncio.Event()  # set on every change a sender may wait for
        self._queued = asyncio.Event()  # the core queued something for the writer task
        self._reply_expected = False  # see expect_reply
        self._reply: asyncio.Future[None] | None = None  # the writer task waits for a reply in it
        self.closed_event: ChannelClosed | None = None

    # -- the socket --------------------------------------------------------------------------------

    async def attach(self, ws: ChannelSocket) -> None:
        """Use ``ws`` from now on: everything unacked goes again on it (written by the writer task,
        or by the next sender, whichever comes first: never here, so a reconnecting read loop starts
        reading before its backlog is through)."""
        self.ws = ws
        self.core.connected(self.clock.monotonic())
        self._wake_writer()
        self._notify()

    def detach(self) -> ChannelSocket | None:
        ws, self.ws = self.ws, None
        self.core.connection_lost()
        return ws

    def set_handler(self, handler: ChannelHandler | None) -> None:
        self.handler = handler
        self.core.ready = handler.ready if handler is not None else None

    # -- sending -----------------------------------------------------------------------------------

    async def send(self, payload_type: int, payload: bytes | PayloadParts) -> None:
        """Send one stream message, waiting while the window is full or publication is paused."""
        core = self.core
        while not core.can_send:
            if core.state is State.CLOSED:
                raise ChannelEnded(self.end_text())
            await self._wait_change()
        core.send(payload_type, payload, self.clock.monotonic())
        await self.flush()

    async def send_unsequenced(self, frame: Frame) -> None:
        self.core.send_unsequenced(frame)
        await self.flush()

    async def flush(self) -> None:
        """Write what the core has queued, in order, waiting while the socket's buffer is full (the
        send path's and the writer task's way; the read loop and the timer call
        :meth:`_wake_writer`). Best effort: a message lost with a dying socket is unacked, and
        replayed after the reconnect."""
        if not self.core.has_data_to_send:
            return
        async with self._write_lock:
            batch = self.core.data_to_send()
            ws = self.ws
            if ws is None or ws.closed:
                return
            try:
                await ws.send_messages(batch)  # in one write when small: one wake-up of the peer
            except _SEND_ERRORS as exc:
                log.debug("data channel to %s: write failed: %s", self.peer, exc)
            finally:
                if self._reply is not None:
                    _settle(self._reply)  # the acks it held went with this batch

    async def wait_acked(self, timeout: float, *, until_closed: bool = False) -> bool:
        """Wait up to ``timeout`` until the peer acked everything (or, ``until_closed``, the channel
        closed). True if it did."""
        try:
            async with asyncio.timeout(timeout):
                while self.core.unacked_count and not (until_closed and self.core.state is State.CLOSED):
                    await self._wait_change()
        except TimeoutError:
            pass
        return self.core.unacked_count == 0

    def end_text(self) -> str:
        reason = self.core.close_reason
        return reason.value if reason is not None else "the data channel is closing"

    def _wake_writer(self) -> None:
        if self.core.has_data_to_send:
            self._queued.set()

    def expect_reply(self) -> None:
        """The handler has just taken a message it will answer at once (a keystroke written to a
        PTY, which echoes it): the acks queued with it wait up to REPLY_WAIT for that answer and go
        out in the same write, so the gateway and the peer wake once for both instead of twice,
        which is what an echo's round trip costs on a busy machine. Without an answer by then they
        go alone, as before (the peer's RTT sample grows by that much at most)."""
        self._reply_expected = True

    async def _writer(self) -> None:
        """Writes what the read loop and the timer leave queued (acks, resends, backlogs)."""
        while True:
            await self._queued.wait()
            self._queued.clear()
            if self._reply_expected:
                self._reply_expected = False
                await self._wait_reply()
            await self.flush()

    async def _wait_reply(self) -> None:
        """Until a sender's flush has written what is queued, or REPLY_WAIT has passed."""
        loop = asyncio.get_running_loop()
        self._reply = reply = loop.create_future()
        timer = loop.call_later(REPLY_WAIT, _settle, reply)
        try:
            await reply
        finally:
            timer.cancel()
            self._reply = None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self) -> None:
        await self._changed.wait()

    def close(self) -> None:
        """End the channel locally (senders waiting for room are released)."""
        self.core.close()
        self._notify()

    # -- receiving ---------------------------------------------------------------------------------

    async def serve(self, reconnect: Reconnect | None) -> ChannelClosed:
        """Read, hand over, resend, until the channel closes (returned). A lost socket is replaced by
        ``reconnect`` (None: lost for good); its exception ends the channel and is raised."""
        timer = asyncio.create_task(self._timer(), name=f"data-channel-timer-{self.peer}")
        writer = asyncio.create_task(self._writer(), name=f"data-channel-writer-{self.peer}")
        self._wake_writer()  # what attach() queued before we ran
        try:
            while True:
                closed = await self._read()
                if closed is not None:
                    await self._last_writes()
                    return closed
                ws = self.detach()
                if ws is not None and not ws.closed:
                    await ws.close()
                if reconnect is None:
                    raise ChannelEnded("data channel connection lost")
                await self.attach(await reconnect())
        finally:
            timer.cancel()
            writer.cancel()
            self._notify()

    async def _last_writes(self) -> None:
        """The acks queued with the end (the client's TerminateSession flag): written if the socket
        takes them within CLOSE_FLUSH_SECONDS."""
        try:
            async with asyncio.timeout(CLOSE_FLUSH_SECONDS):
                await self.flush()
        except TimeoutError:
            log.debug("data channel to %s: the last acks did not go out", self.peer)

    async def _read(self) -> ChannelClosed | None:
        ws = self.ws
        if ws is None:
            return self.closed_event
        try:
            async for message in ws:
                if message.type == WsMessageType.BINARY:
                    events = self.core.receive_data(message.data, self.clock.monotonic())
                    await self._dispatch(events)
                elif message.type == WsMessageType.ERROR:
                    log.debug("data channel to %s: read error", self.peer)
                    break
                # Text frames from the service carry nothing a data-channel end needs.
                if self.closed_event is not None:
                    return self.closed_event
        except ConnectionError as exc:
            log.debug("data channel to %s: read failed: %s", self.peer, exc)
        return self.closed_event

    async def _dispatch(self, events: list[Event]) -> None:
        delivered = False
        if any(isinstance(e, HandshakeStep) and e.frame.payload_type in ACK_BEFORE_HANDLING for e in events):
            self._wake_writer()  # written as soon as the handler waits for anything (or sends)
        for event in events:
            if isinstance(event, StreamData):  # HandshakeStep too
                delivered = True
                handler = self.handler
                if handler is not None and self.closed_event is None:
                    try:
                        await handler.on_event(event)
                    except ChannelEnded:
                        pass
                    except Exception:
                        log.exception("data channel to %s: the handler failed", self.peer)
            elif isinstance(event, Dropped):
                log_dropped(log, self.peer, event)
            else:
                self._on_control(event)
        self._wake_writer()  # the acks, after the handler (as AWS's programs do)
        if delivered and self.handler is not None and self.closed_event is None:
            await self.handler.on_event(Delivered())

    def _on_control(self, event: Event) -> None:
        """Acked, PublicationStarted/Paused, ChannelClosed: wake senders waiting for the window."""
        if isinstance(event, ChannelClosed):
            self.closed_event = event
        self._notify()

    async def _timer(self) -> None:
        core = self.core
        while core.state is not State.CLOSED:
            # AWS's programs look at the oldest unacked message every 100 ms, not at its deadline:
            # with keystrokes' RTO near 10 ms, waking at each deadline resent many whose ack was
            # merely late (more work at both ends; the keystroke echo's p50 rose by half).
            await asyncio.sleep(IDLE_POLL)
            events = core.tick(self.clock.monotonic())
            for event in events:
                if isinstance(event, KeepaliveDue):
                    await self._ping()
                elif isinstance(event, ChannelClosed):
                    self.closed_event = event
                    log.error("data channel to %s: %s", self.peer, event.reason.value)
                    ws = self.ws
                    if ws is not None:
                        await ws.close()  # the reader sees the end and returns it
                    self._notify()
            self._wake_writer()

    async def _ping(self) -> None:
        ws = self.ws
        if ws is not None and not ws.closed:
            try:
                await ws.ping(b"keepalive")
            except _SEND_ERRORS:
                pass
