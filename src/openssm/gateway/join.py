"""Live-session join as a gateway node extension: watchers and co-typists of a running shell session.

A joiner's JoinSession token (``join-read`` / ``join-write``) opens the session's own StreamUrl on
the node that relays it; the node hands that data channel to this extension
(``NodeExtension.channel_kinds``). Toward the joiner the gateway is the far end of a data channel
of its own: it numbers, sends and resends the joiner's output and acknowledges the joiner's input
with a :class:`~openssm.protocol.channel.StreamEndpoint`, as an agent would for a shell session
(no handshake: the first Output makes the client a terminal, §2.4).

- Output: the session's tap (:meth:`SessionJoins.session_tap`) fans the agent's Output out to every
  joiner, each through a bounded queue of its own (a joiner too slow to keep up is dropped, never
  the session), and keeps the last :data:`TAIL_BYTES` for ``--last-screen``.
- Input: a read-write joiner's keystrokes go into the agent-bound stream in order with the owner's
  (``LiveSession.inject_input``: the relay renumbers that stream, ``openssm.gateway.injection``);
  a read-only joiner's input is acknowledged and dropped, and so is a joiner's terminal size.
- ``[openssm] alice joined (read-only)`` / ``left`` go to the owner's terminal
  (``LiveSession.inject_output``), and through the tap to every joiner and the recording.
- The owner refusing joins (``openssm.store.session_joins``) keeps new joiners out and, through the
  bus message :data:`JOINS_REFUSED`, ends the joiners already there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncEngine

from openssm.bus.node_channel import JOINS_REFUSED
from openssm.gateway import messages
from openssm.gateway.extension import (
    ExtensionChannel,
    ExtensionHost,
    LiveSession,
    NodeExtension,
    SessionCounters,
)
from openssm.gateway.node import SessionRefused
from openssm.gateway.peer import LINGER
from openssm.gateway.tap import Payload, SessionTap
from openssm.protocol import frames
from openssm.protocol.channel import RESEND_INTERVAL, StreamEndpoint, WindowFull
from openssm.protocol.frames import FrameError, MessageType, PayloadFlag, PayloadType
from openssm.protocol.joining import (
    LAST_SCREEN_OPTION,
    JoinMode,
    joinable,
    joined_line,
    left_line,
    principal_name,
)
from openssm.store import session_joins
from openssm.store.channel_tokens import TokenKind

log = logging.getLogger(__name__)

TAIL_BYTES: Final = 8 * 1024  # the "last screenful" kept per session
MAX_JOINERS: Final = 32  # per session
QUEUE_FRAMES: Final = 2_000  # a joiner's output waiting for its socket; more and it is dropped
CHUNK: Final = 1024  # output chunks to a joiner, as the agent sends them
TOO_SLOW: Final = "Dropped: this connection could not keep up with the session's output"
REFUSED: Final = "The session's owner refuses joins"
SESSION_ENDED: Final = "The session ended"
UNKNOWN_NUMBERING: Final = (
    "The session cannot be joined: its server was killed while it ran, before anyone joined it, so"
    " the server does not know where its stream is"
)
MODES: Final = {TokenKind.JOIN_READ_ONLY: JoinMode.READ_ONLY, TokenKind.JOIN_READ_WRITE: JoinMode.READ_WRITE}


def tail_from(tail: bytes) -> bytes:
    """The kept tail from its first whole line (a cut escape sequence or character stays out)."""
    newline = tail.find(b"\n")
    return tail[newline + 1 :] if 0 <= newline < len(tail) - 1 else tail


class _Joiner:
    """One joiner's data channel: the gateway's endpoint toward it and its send queue."""

    def __init__(self, channel: ExtensionChannel, mode: JoinMode, host: ExtensionHost) -> None:
        self.channel = channel
        self.mode = mode
        self.name = principal_name(channel.principal_arn)
        self.endpoint = StreamEndpoint(MessageType.OUTPUT_STREAM_DATA, syn_on_first=True)
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_FRAMES)
        self.dropped: str | None = None  # why the gateway ends this joiner's channel
        self.gone = asyncio.Event()
        label = f"{channel.session_id}-{self.name}"
        self._tasks = [
            host.background(self._send_loop(), f"join-send-{label}"),
            host.background(self._resend_loop(), f"join-resend-{label}"),
        ]

    def offer(self, payload: bytes) -> None:
        """Queue output for this joiner; a joiner that cannot keep up is dropped."""
        if self.dropped is not None:
            return
        for start in range(0, len(payload), CHUNK):
            try:
                self.queue.put_nowait(payload[start : start + CHUNK])
            except asyncio.QueueFull:
                self.drop(TOO_SLOW)
                return

    def drop(self, reason: str) -> None:
        if self.dropped is None:
            self.dropped = reason
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)
            self.gone.set()

    async def _send_loop(self) -> None:
        while (payload := await self.queue.get()) is not None:
            while not self.endpoint.can_send:  # the joiner is not acknowledging: wait for it
                await asyncio.sleep(RESEND_INTERVAL)
                if self.dropped is not None:
                    return
            try:
                data = self.endpoint.send(PayloadType.OUTPUT, payload)
            except WindowFull:
                self.drop(TOO_SLOW)
                return
            if not await self.channel.peer.send(data):
                self.gone.set()
                return

    async def _resend_loop(self) -> None:
        while not self.gone.is_set():
            await asyncio.sleep(RESEND_INTERVAL)
            for data in self.endpoint.due_resends():
                await self.channel.peer.send(data)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class _Watched:
    """One joinable session's tap: keeps the tail and fans the output out to its joiners."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.tail = bytearray()
        self.joiners: set[_Joiner] = set()
        self.ended = False

    async def on_start(self, session: Mapping[str, Any]) -> None:
        pass

    async def on_output(self, payload: Payload, payload_type: int, t: float) -> None:
        if payload_type != PayloadType.OUTPUT:
            return
        data = bytes(payload)
        self.tail += data
        if len(self.tail) > TAIL_BYTES:
            del self.tail[: len(self.tail) - TAIL_BYTES]
        for joiner in list(self.joiners):
            joiner.offer(data)

    async def on_input(self, payload: Payload, payload_type: int, t: float) -> None:
        pass

    async def on_end(self, status: str, reason: str, t: float) -> None:
        self.ended = True
        for joiner in list(self.joiners):
            joiner.drop(SESSION_ENDED)


class SessionJoins(NodeExtension):
    """Live-session join on one gateway node (see the module docstring)."""

    bus_messages = frozenset({JOINS_REFUSED})
    channel_kinds = frozenset(MODES)

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._host: ExtensionHost | None = None
        self._watched: dict[str, _Watched] = {}

    async def start(self, node: ExtensionHost) -> None:
        self._host = node

    def session_tap(self, session: Mapping[str, Any]) -> SessionTap | None:
        if joinable(session) is not None:
            return None
        watched = _Watched(str(session["session_id"]))
        self._watched[watched.session_id] = watched
        return watched

    def on_session_closed(self, session: SessionCounters) -> None:
        self._watched.pop(session.session_id, None)

    async def on_bus_message(self, message: Mapping[str, Any]) -> None:
        watched = self._watched.get(str(message.get("session_id")))
        if watched is not None:
            for joiner in list(watched.joiners):
                joiner.drop(REFUSED)

    async def serve_channel(self, channel: ExtensionChannel) -> None:
        host = self._host
        assert host is not None, "the node starts its extensions before it serves channels"
        session_id = channel.session_id
        live = host.live_session(session_id)
        watched = self._watched.get(session_id)
        if live is None or watched is None or watched.ended:
            raise SessionRefused(f"Session {session_id} is not live on this gateway node")
        if not live.takes_joins:
            raise SessionRefused(UNKNOWN_NUMBERING)
        if await session_joins.refuses(self._engine, session_id):
            raise SessionRefused(REFUSED)
        if len(watched.joiners) >= MAX_JOINERS:
            raise SessionRefused(f"Session {session_id} already has {MAX_JOINERS} joiners")
        joiner = _Joiner(channel, MODES[TokenKind(channel.kind)], host)
        if channel.options.get(LAST_SCREEN_OPTION) == "1" and watched.tail:
            joiner.offer(tail_from(bytes(watched.tail)))
        watched.joiners.add(joiner)
        log.info("session %s: %s joined (%s)", session_id, joiner.name, joiner.mode)
        await _announce(live, watched, joined_line(joiner.name, joiner.mode))
        try:
            await _serve(joiner, live)
        finally:
            watched.joiners.discard(joiner)
            await joiner.close()
            log.info("session %s: %s left", session_id, joiner.name)
            if not watched.ended:
                await _announce(live, watched, left_line(joiner.name))
            if joiner.dropped is not None:
                await channel.peer.send(messages.channel_closed(session_id, "", joiner.dropped))
                await channel.peer.close_after(LINGER)


async def _announce(live: LiveSession, watched: _Watched, line: bytes) -> None:
    """A line for every party: the owner's terminal and, through the tap, the joiners and the
    recording; before the shell has started, only the joiners."""
    if not await live.inject_output(line):
        for joiner in list(watched.joiners):
            joiner.offer(line)


async def _serve(joiner: _Joiner, live: LiveSession) -> None:
    """Read the joiner's frames until its socket ends or the gateway drops it."""
    reader = asyncio.ensure_future(_read(joiner, live))
    gone = asyncio.ensure_future(joiner.gone.wait())
    try:
        await asyncio.wait({reader, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, gone):
            task.cancel()
        await asyncio.gather(reader, gone, return_exceptions=True)


async def _read(joiner: _Joiner, live: LiveSession) -> None:
    async for data in joiner.channel.frames:
        try:
            frame = frames.decode(data, verify_digest=True)
        except FrameError as exc:
            log.info("session %s: dropping a malformed frame from %s: %s", live.session_id, joiner.name, exc)
            continue
        if frame.message_type == MessageType.ACKNOWLEDGE:
            with contextlib.suppress(FrameError):
                joiner.endpoint.on_ack(frame)
            continue
        if frame.message_type != MessageType.INPUT_STREAM_DATA:
            continue
        received = joiner.endpoint.receive(frame)
        if received.ack is not None:
            await joiner.channel.peer.send(received.ack.encode())
        for message in received.deliver:
            if message.payload_type == PayloadType.FLAG:
                with contextlib.suppress(FrameError):
                    if frames.parse_flag(message.payload) == PayloadFlag.TERMINATE_SESSION:
                        return  # the joiner's client is leaving (the session goes on)
            elif message.payload_type == PayloadType.OUTPUT and joiner.mode is JoinMode.READ_WRITE:
                await live.inject_input(bytes(message.payload))
