"""Read an HTTP body (request or response) to its end without holding more than a limit.

``StreamReader.read(n)`` returns whatever is buffered, possibly less than ``n`` while more is on
its way, so a single call may cut a body short; this loops until EOF and stops once the limit is
passed.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from openssm.errors import OpenSSMError

CHUNK_BYTES = 64 * 1024


class BodyTooLarge(OpenSSMError, ValueError):
    """More than ``limit`` bytes arrived."""

    def __init__(self, limit: int, seen: int) -> None:
        super().__init__(f"body exceeds {limit} bytes")
        self.limit = limit
        self.seen = seen


async def read_bounded(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """The whole body, or ``BodyTooLarge`` once more than ``limit`` bytes have been read."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = await stream.read(min(CHUNK_BYTES, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise BodyTooLarge(limit, total)
        chunks.append(chunk)


async def read_request_body(request: web.Request, limit: int) -> bytes:
    """A server's request body of at most ``limit`` bytes; HTTP 413 when the declared or the actual
    length is larger."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    try:
        return await read_bounded(request.content, limit)
    except BodyTooLarge as exc:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=exc.seen) from exc
