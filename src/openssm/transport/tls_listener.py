"""TLS for a listener that holds many idle connections (a fleet's control channels).

uvloop's TLS (what ``loop.create_server(ssl=...)`` gives on uvloop) gives every connection a 256 KiB
read buffer of its own for the life of the connection; on the tuned heap
(:mod:`openssm.transport.runtime`) about 19 KiB of each stays resident, so an idle TLS agent cost
about four times a plain one (``bench/bench_connection_memory.py``). Here the listener wraps each
accepted connection in the standard library's TLS protocol (``asyncio.sslproto``: a MemoryBIO pair
around an ``SSLObject``, the design uvloop's was ported from), reading every connection's encrypted
bytes into one buffer the whole process shares: the event loop asks for the buffer, reads into it and
hands the bytes over (into the connection's incoming BIO) before it reads from any other socket, so
no connection needs its own. OpenSSL's own record buffers are freed while a connection is idle
(Python sets ``SSL_MODE_RELEASE_BUFFERS`` on every context).
"""

from __future__ import annotations

import asyncio
import ssl
from asyncio import sslproto
from typing import Final

from aiohttp import web

# One read buffer for every connection of the process (the event loop reads one socket at a time).
_SHARED_READ: Final = memoryview(bytearray(sslproto.SSLProtocol.max_size))


class SharedBufferTLS(sslproto.SSLProtocol):
    """``asyncio.sslproto.SSLProtocol`` reading into :data:`_SHARED_READ`, not a buffer of its own."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        app_protocol: asyncio.BaseProtocol,
        context: ssl.SSLContext,
        handshake_timeout: float | None = None,
    ) -> None:
        # The base class allocates (and zeroes) a read buffer of ``max_size`` here: an empty one.
        self.__dict__["max_size"] = 0
        super().__init__(
            loop,
            app_protocol,
            context,
            None,  # type: ignore[arg-type]  # no waiter: a failed handshake just closes the socket
            server_side=True,
            ssl_handshake_timeout=handshake_timeout,  # type: ignore[arg-type]  # a float is fine
        )
        del self.__dict__["max_size"]
        self._ssl_buffer = _SHARED_READ.obj
        self._ssl_buffer_view = _SHARED_READ

    def get_buffer(self, n: int) -> memoryview:
        return _SHARED_READ


class SharedBufferTLSSite(web.TCPSite):
    """aiohttp's ``TCPSite`` with ``ssl_context``, each connection's TLS done by
    :class:`SharedBufferTLS` instead of the event loop's own."""

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        context = self._ssl_context
        assert server is not None and context is not None
        loop = asyncio.get_running_loop()

        def tls_protocol() -> asyncio.BaseProtocol:
            return SharedBufferTLS(loop, server(), context)

        self._server = await loop.create_server(
            tls_protocol,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port
