"""Read an HTTP body (request or response) to its end without holding more than a limit.

``StreamReader.read(n)`` returns whatever is buffered, possibly less than ``n`` while more is on
its way, so a single call may cut a body short; this loops until EOF and stops once the limit is
passed.
"""

from __future__ import annotations

import aiohttp

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
