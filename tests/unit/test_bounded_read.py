"""read_bounded reads a body that arrives in pieces to its end and refuses one over the limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.base_protocol import BaseProtocol

from openssm.transport.bounded_read import BodyTooLarge, read_bounded


def _stream(pieces: list[bytes]) -> aiohttp.StreamReader:
    loop = asyncio.get_running_loop()
    protocol = BaseProtocol(loop)
    protocol.connection_made(asyncio.Transport())  # an open connection; the pieces are fed below
    stream = aiohttp.StreamReader(protocol, 2**16, loop=loop)

    async def feed() -> None:
        for piece in pieces:
            await asyncio.sleep(0)  # a separate arrival: read(n) would return just this piece
            stream.feed_data(piece)
        stream.feed_eof()

    asyncio.get_running_loop().create_task(feed())
    return stream


async def test_body_in_pieces_is_read_whole() -> None:
    assert await read_bounded(_stream([b'{"a":', b' "b"', b"}"]), 100) == b'{"a": "b"}'


async def test_body_at_the_limit_is_accepted() -> None:
    assert await read_bounded(_stream([b"x" * 60, b"y" * 40]), 100) == b"x" * 60 + b"y" * 40


async def test_body_over_the_limit_is_refused() -> None:
    with pytest.raises(BodyTooLarge) as caught:
        await read_bounded(_stream([b"x" * 60, b"y" * 41]), 100)
    assert caught.value.limit == 100


async def test_empty_body() -> None:
    assert await read_bounded(_stream([]), 100) == b""


async def test_a_request_body_over_the_limit_is_http_413_declared_or_not() -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from openssm.transport.bounded_read import read_request_body

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await read_request_body(request, 10))

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        yield data[:6]
        yield data[6:]

    app = web.Application()
    app.router.add_post("/", echo)
    async with TestClient(TestServer(app)) as client:
        ok = await client.post("/", data=b"0123456789")
        assert (ok.status, await ok.read()) == (200, b"0123456789")
        declared = await client.post("/", data=b"x" * 11)  # Content-Length: 11
        assert declared.status == 413
        streamed = await client.post("/", data=chunks(b"y" * 11))  # chunked: no length to check first
        assert streamed.status == 413
