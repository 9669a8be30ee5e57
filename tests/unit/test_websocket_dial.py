"""The client's own WebSocket dial (``websocket_connection.dial``): against the server side the
gateway uses (aiohttp's upgrade, our framing), over TLS, and through a real HTTP proxy (tinyproxy)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import pathlib
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator

import pytest
from aiohttp import web
from tests.conftest import require
from tests.support.proxy import HttpProxy, run_tinyproxy, tinyproxy_available
from tests.support.tls import self_signed
from tests.unit.test_websocket_connection import echo, serve_ours

from openssm.protocol import http1 as handshake
from openssm.protocol import websocket as codec
from openssm.transport import websocket_connection
from openssm.transport.websocket_connection import ClientWebSocket, DialError, WsMessageType


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpProxy]:
    require(tinyproxy_available(), "tinyproxy is not installed (scripts/install-system-deps installs it)")
    with run_tinyproxy(tmp_path_factory.mktemp("proxy"), credentials=("alice", "s3cret")) as running:
        yield running


def tls_pair(tmp_path: pathlib.Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = self_signed(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=str(cert))


async def serve_tls(tls: ssl.SSLContext) -> tuple[web.AppRunner, str]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        accepted = await websocket_connection.accept(request, max_message=1 << 21, heartbeat=None)
        if not isinstance(accepted, websocket_connection.WebSocketConnection):
            return accepted
        await echo(accepted)
        await accepted.close()
        assert accepted.response is not None
        return accepted.response

    app = web.Application()
    app.router.add_get("/ws", endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    return runner, f"wss://127.0.0.1:{runner.addresses[0][1]}/ws"


async def round_trip(connection: ClientWebSocket) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB: several reads, masked by the compiled XOR
    await connection.send_bytes(payload)
    message = await connection.receive()
    assert message.type == WsMessageType.BINARY and bytes(message.data) == payload
    await connection.send_str("open frame")
    message = await connection.receive()
    assert message.type == WsMessageType.TEXT and message.data == "OPEN FRAME"
    assert await connection.close()
    assert (await connection.receive()).type == WsMessageType.CLOSE  # the server's answer
    assert (await connection.receive()).type == WsMessageType.CLOSED


async def test_dial_upgrades_and_frames_with_our_codec() -> None:
    runner, url = await serve_ours(echo)
    try:
        connection = await websocket_connection.dial(url.replace("http://", "ws://"), max_message=1 << 21)
        raw = connection._transport.get_extra_info("socket")  # type: ignore[union-attr]
        assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # a keystroke is not held back
        await round_trip(connection)
    finally:
        await runner.cleanup()


async def test_dial_over_tls_checks_the_certificate(tmp_path: pathlib.Path) -> None:
    server_tls, client_tls = tls_pair(tmp_path)
    runner, url = await serve_tls(server_tls)
    try:
        await round_trip(await websocket_connection.dial(url, max_message=1 << 21, tls=client_tls))
        with pytest.raises(ssl.SSLCertVerificationError):  # not trusted by the system's roots
            await websocket_connection.dial(url, max_message=1 << 21, tls=ssl.create_default_context())
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
async def test_dial_through_an_http_connect_proxy(
    tmp_path: pathlib.Path, proxy: HttpProxy, secure: bool
) -> None:
    if secure:
        server_tls, client_tls = tls_pair(tmp_path)
        runner, url = await serve_tls(server_tls)
    else:
        client_tls = None
        runner, url = await serve_ours(echo)
        url = url.replace("http://", "ws://")
    port = int(url.split(":")[2].split("/")[0])
    try:
        connection = await websocket_connection.dial(
            url, max_message=1 << 21, tls=client_tls, proxy=proxy.url
        )
        await round_trip(connection)
        assert f"CONNECT 127.0.0.1:{port}" in proxy.requests()
        wrong = proxy.url.replace("s3cret", "wrong")
        with pytest.raises(DialError, match=r"proxy refused to connect: 40[17]"):  # tinyproxy says 401
            await websocket_connection.dial(url, max_message=1 << 21, tls=client_tls, proxy=wrong)
    finally:
        await runner.cleanup()


async def raw_server(answer: bytes) -> tuple[asyncio.Server, str]:
    """A peer that reads the upgrade request and writes ``answer`` (``{accept}`` filled in)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1((key + handshake.WEBSOCKET_GUID).encode()).digest())
        writer.write(answer.replace(b"{accept}", accept))
        await writer.drain()
        await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


async def test_a_frame_sent_with_the_101_is_not_lost() -> None:
    hello = b"".join(codec.encode(codec.OP_BINARY, [b"hello"]))
    server, url = await raw_server(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: {accept}\r\n\r\n" + hello
    )
    async with server:
        connection = await websocket_connection.dial(url, max_message=1024)
        message = await connection.receive()
        assert message.type == WsMessageType.BINARY and bytes(message.data) == b"hello"
        await connection.close()


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", "403"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         b"Sec-WebSocket-Accept: AAAA\r\n\r\n", "does not match"),
    ],
)  # fmt: skip
async def test_refused_or_forged_upgrades(answer: bytes, match: str) -> None:
    server, url = await raw_server(answer)
    async with server:
        with pytest.raises(DialError, match=match):
            await websocket_connection.dial(url, max_message=1024)


async def test_an_endless_head_is_cut_off() -> None:
    server, url = await raw_server(b"HTTP/1.1 101 Switching Protocols\r\n" + b"X-Filler: y\r\n" * 10000)
    async with server:
        with pytest.raises(handshake.HandshakeError, match="longer than"):
            await websocket_connection.dial(url, max_message=1024)


def test_the_clients_xor_loads_the_compiled_one_for_the_first_large_frame() -> None:
    """In a process without aiohttp (the client), small frames are masked in Python and the first
    large one loads aiohttp's compiled XOR (its module, not the package); both give RFC 6455's masking."""
    probe = """
import os, sys
from openssm.protocol import websocket as codec
from openssm.transport import websocket_connection as wc
assert wc.MASK is wc._lazy_mask and "aiohttp" not in sys.modules
key = os.urandom(4)
for size in (0, 1, 5, wc.LAZY_MASK_LIMIT - 1):
    data = os.urandom(size); masked = bytearray(data); wc.MASK(key, masked)
    expected = bytearray(data); codec.mask_python(key, expected)
    assert masked == expected
assert "aiohttp" not in sys.modules and wc._compiled is None
data = os.urandom(1 << 20); masked = bytearray(data); wc.MASK(key, masked)
expected = bytearray(data); codec.mask_python(key, expected)
assert masked == expected and wc._compiled is not None and wc._compiled is not codec.mask_python
# Its compiled module alone: the package's imports cost the agent 0.3 s in its first bulk download.
assert "aiohttp" not in sys.modules, "loading the compiled XOR imported the aiohttp package"
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
