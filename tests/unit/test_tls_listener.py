"""The server's TLS listener (``transport.tls_listener``): every connection's encrypted bytes go
through one shared read buffer, so connections that read at the same time must still each get
exactly their own bytes; a peer that fails the handshake is closed without disturbing the others."""

from __future__ import annotations

import asyncio
import pathlib
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import pytest
import uvloop
from aiohttp import WSMsgType, web
from tests.support.tls import self_signed

from openssm.transport import tls_listener, websocket_connection
from openssm.transport.websocket_connection import WsMessageType

# Both event loops: the server runs on uvloop, whose transports call the buffer protocol themselves.
Run = Callable[[Coroutine[Any, Any, None]], None]
LOOPS = pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])


async def serve(tmp_path: pathlib.Path) -> tuple[web.AppRunner, int, ssl.SSLContext]:
    """An aiohttp app on a SharedBufferTLSSite: /ws echoes binary messages (aiohttp's framing, as the
    control channels), /data echoes them through websocket_connection (our framing, a buffered
    protocol, as the data channels), /http answers a body."""

    async def aiohttp_echo(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 21)
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        return ws

    async def own_echo(request: web.Request) -> web.StreamResponse:
        accepted = await websocket_connection.accept(request, max_message=1 << 21, heartbeat=None)
        if not isinstance(accepted, websocket_connection.WebSocketConnection):
            return accepted
        async for message in accepted:
            if message.type is WSMsgType.BINARY:
                await accepted.send_bytes(message.data)
        await accepted.close()
        assert accepted.response is not None
        return accepted.response

    async def body(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 300_000)

    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    app = web.Application()
    app.router.add_get("/ws", aiohttp_echo)
    app.router.add_get("/data", own_echo)
    app.router.add_get("/http", body)
    runner = web.AppRunner(app)
    await runner.setup()
    site = tls_listener.SharedBufferTLSSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await site.start()
    assert site.name.startswith("https://")
    return runner, site.port, ssl.create_default_context(cafile=str(cert))


@LOOPS
def test_concurrent_connections_each_get_their_own_bytes(run: Run, tmp_path: pathlib.Path) -> None:
    run(concurrent_connections(tmp_path))


async def concurrent_connections(tmp_path: pathlib.Path) -> None:
    runner, port, client_tls = await serve(tmp_path)
    try:

        async def one(index: int, path: str) -> None:
            ws = await websocket_connection.dial(
                f"wss://127.0.0.1:{port}{path}", max_message=1 << 21, tls=client_tls
            )
            try:
                for size in (1, 100, 20_000, 300_000):  # up to many TLS records and socket reads
                    payload = bytes([index]) * size + index.to_bytes(4, "big")
                    await ws.send_bytes(payload)
                    message = await ws.receive(timeout=30)
                    assert message.type is WsMessageType.BINARY
                    assert message.data == payload
            finally:
                await ws.close()

        async with aiohttp.ClientSession() as http:

            async def fetch() -> None:
                async with http.get(f"https://127.0.0.1:{port}/http", ssl=client_tls) as response:
                    assert await response.read() == b"x" * 300_000

            await asyncio.gather(
                *(one(i, "/ws" if i % 2 else "/data") for i in range(24)), *(fetch() for _ in range(4))
            )
    finally:
        await runner.cleanup()


@LOOPS
def test_a_failed_handshake_closes_that_connection_only(run: Run, tmp_path: pathlib.Path) -> None:
    run(failed_handshake(tmp_path))


async def failed_handshake(tmp_path: pathlib.Path) -> None:
    runner, port, client_tls = await serve(tmp_path)
    try:
        good = await websocket_connection.dial(
            f"wss://127.0.0.1:{port}/ws", max_message=1 << 20, tls=client_tls
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP to the TLS port
        assert await asyncio.wait_for(reader.read(), 30) == b""  # closed, nothing answered
        writer.close()
        untrusting = ssl.create_default_context()  # the self-signed certificate fails its check
        try:
            await websocket_connection.dial(f"wss://127.0.0.1:{port}/ws", max_message=1 << 20, tls=untrusting)
        except ssl.SSLCertVerificationError:
            pass
        else:
            raise AssertionError("a client that does not trust the certificate was let in")
        await good.send_bytes(b"still here")
        message = await good.receive(timeout=30)
        assert message.data == b"still here"
        await good.close()
    finally:
        await runner.cleanup()
