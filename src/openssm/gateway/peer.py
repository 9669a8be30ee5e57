"""One accepted WebSocket (client, agent data or agent control) as the gateway uses it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Protocol

from aiohttp import WSMessage

log = logging.getLogger(__name__)

# How long close() waits for a close frame the real peers never send (they drop TCP instead).
CLOSE_TIMEOUT = 2.0
# How long a peer gets to hang up by itself after channel_closed before we close the socket.
LINGER = 2.0


class Socket(Protocol):
    """What the gateway uses of a WebSocket: a
    :class:`openssm.transport.websocket_connection.WebSocketConnection` (control and data channels)."""

    @property
    def closed(self) -> bool: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...

    async def receive(self, timeout: float | None = None) -> WSMessage: ...

    def __aiter__(self) -> AsyncIterator[WSMessage]: ...


class Peer:
    """A WebSocket plus the event its reader sets when the connection ends."""

    def __init__(self, ws: Socket, label: str) -> None:
        self.ws = ws
        self.label = label
        self.gone = asyncio.Event()  # set by the connection's handler when its read loop ends

    @property
    def open(self) -> bool:
        return not self.gone.is_set() and not self.ws.closed

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
            await asyncio.wait_for(self.gone.wait(), linger)
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.close()
