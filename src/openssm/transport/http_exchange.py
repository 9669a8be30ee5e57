"""HTTP calls and WebSocket dials on asyncio alone, for the agent (it never imports aiohttp).

The agent's traffic is a handful of small API calls (UpdateInstanceInformation every few minutes,
its role credentials about once an hour, CreateControlChannel/CreateDataChannel) and its WebSockets.
aiohttp alone was about 14 MB of the idle agent's resident memory, more than everything else the
agent holds (``bench/bench_agent_memory.py``), so these go through :mod:`openssm.protocol.http1`
(requests as bytes, answers parsed with bounds) over :func:`websocket_connection.open_stream`, and
the WebSockets through :func:`websocket_connection.dial`, as the client's do.

One request per connection (``Connection: close``): at the agent's rate of calls a kept-alive
connection would hold a descriptor on both ends for nothing (the server closes idle ones anyway).
Every exchange has a time limit and a bound on the answer's size; TLS checks against the system's
CAs (``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` apply), with one context for the whole process.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

from openssm.errors import OpenSSMError
from openssm.protocol import http1
from openssm.protocol import websocket as codec
from openssm.transport import websocket_connection
from openssm.transport.websocket_connection import ClientWebSocket


class HttpError(OpenSSMError, ConnectionError):
    """The answer was not one we can read (not HTTP, or larger than the caller's bound). An
    ``OSError``, like a refused or reset connection, so callers retry it alike."""


class HttpResponse(NamedTuple):
    status: int
    head: http1.ResponseHead
    body: bytes

    def header(self, name: str) -> str | None:
        return self.head.get(name.lower())


class _Target(NamedTuple):
    secure: bool
    host: str
    port: int
    default_port: int
    path: str


def _target(url: str) -> _Target:
    parts = urlsplit(url)
    secure = {"http": False, "ws": False, "https": True, "wss": True}.get(parts.scheme.lower())
    if secure is None or not parts.hostname:
        raise ValueError(f"not an http(s):// or ws(s):// URL: {url!r}")
    default_port = 443 if secure else 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(secure, parts.hostname, parts.port or default_port, default_port, path)


class HttpClient:
    """Calls with a time limit each, over TLS with one (lazily made) context."""

    def __init__(self, *, timeout: float, tls: ssl.SSLContext | None = None) -> None:
        self.timeout = timeout
        self._tls = tls

    def tls(self) -> ssl.SSLContext:
        """The TLS context, made on first use (loading the system's CAs takes time and memory)."""
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes = b"",
        limit: int,
    ) -> HttpResponse:
        """One request on a connection of its own; the whole answer (at most ``limit`` bytes of
        body). Raises ``OSError`` (:class:`HttpError` among them) or ``TimeoutError``."""
        target = _target(url)
        names = {name.lower() for name in headers}
        fields = list(headers.items())
        if "host" not in names:
            fields.append(("Host", http1.authority(target.host, target.port, target.default_port)))
        if "content-length" not in names and (body or method in {"POST", "PUT"}):
            fields.append(("Content-Length", str(len(body))))
        fields.append(("Connection", "close"))
        async with asyncio.timeout(self.timeout):
            transport, reader = await websocket_connection.open_stream(
                target.host, target.port, tls=self.tls() if target.secure else None, proxy=None
            )
            try:
                transport.write(http1.request(method, target.path, fields, body))
                head = await reader.response_head()
                return HttpResponse(head.status, head, await reader.response_body(head, limit))
            except http1.HandshakeError as exc:
                raise HttpError(f"{method} {url}: {exc}") from None
            finally:
                transport.close()

    async def post(self, url: str, *, headers: Mapping[str, str], body: bytes, limit: int) -> HttpResponse:
        return await self.request("POST", url, headers=headers, body=body, limit=limit)

    async def websocket(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        max_message: int,
        heartbeat: float | None,
        close_timeout: float,
        read_buffer: int = codec.SCRATCH_SIZE,
    ) -> ClientWebSocket:
        """Dial and upgrade ``url`` (``ws``/``wss``, or ``http``/``https``) within the time limit.
        A refusal is a :class:`websocket_connection.DialError` that names the status, never the
        (signed) request headers."""
        target = _target(url)
        async with asyncio.timeout(self.timeout):
            try:
                return await websocket_connection.dial(
                    url,
                    max_message=max_message,
                    tls=self.tls() if target.secure else None,
                    # The dial writes Host itself (the same value a signature covers).
                    headers=[(name, value) for name, value in headers.items() if name.lower() != "host"],
                    heartbeat=heartbeat,
                    close_timeout=close_timeout,
                    read_buffer=read_buffer,
                )
            except http1.HandshakeError as exc:
                raise websocket_connection.DialError(str(exc)) from None
