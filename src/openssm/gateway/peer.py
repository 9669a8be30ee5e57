"""One accepted WebSocket (client, agent data or agent control) as the gateway uses it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Protocol

from aiohttp import WSMessage, web

from openssm.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

# How long close() waits for a close frame the real peers never send (they drop TCP instead).
CLOSE_TIMEOUT = 2.0
# How long a peer gets to hang up by itself after channel_closed before we close the socket.
LINGER = 2.0


def make_websocket(settings: GatewaySettings) -> web.WebSocketResponse:
    """A control channel's WebSocket (aiohttp's: see :class:`Socket`)."""
    return web.WebSocketResponse(
        timeout=CLOSE_TIMEOUT,
        autoping=True,  # pongs for the agent's 54-second pings
        heartbeat=settings.control_heartbeat,  # our pings find agents that vanished without FIN
        compress=False,
        max_msg_size=settings.max_message_bytes,
    )


class Socket(Protocol):
    """What the gateway uses of a WebSocket: aiohttp's (control channels) or
    :class:`openssm.transport.websocket_connection.WebSocketConnection` (data channels)."""

    @property
    def closed(self) -> bool: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...

    async def receive(self, timeout: float | None = None) -> WSMessage: ...

    def __aiter__(self) -> AsyncIterator[WSMessage]: ...


class Peer:
    """A WebSocket plus whether its reader has ended (the connection's handler says so)."""

    __slots__ = ("_ended", "_gone", "label", "ws")

    def __init__(self, ws: Socket, label: str) -> None:
        self.ws = ws
        self.label = label
        self._gone = False
        # Made only when someone waits for the end: an idle fleet's control channels are never
        # waited on, and an Event (its waiters' deque) costs 0.9 KB each.
        self._ended: asyncio.Event | None = None

    def set_gone(self) -> None:
        """The connection's read loop has ended."""
        self._gone = True
        if self._ended is not None:
            self._ended.set()

    async def wait_gone(self) -> None:
        if self._gone:
            return
        if self._ended is None:
            self._ended = asyncio.Event()
        await self._ended.wait()

    @property
    def open(self) -> bool:
        return not self._gone and not self.ws.closed

    async def send(self, data: bytes) -> bool:
        """Send one binary frame; False (never an exception) if the socket is gone."""
        if not self.open:
            return False
        try:
            await self.ws.send_bytes(data)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("send to %s failed: %s", self.label, exc)
            return False
        return True

    async def close_after(self, linger: float) -> None:
        """Give the peer ``linger`` seconds to hang up by itself (the plugin exits on
        channel_closed and drops TCP), then close from our side."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait_gone(), linger)
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.close()
