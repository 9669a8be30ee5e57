"""Python side of the per-stream test protocol ``go_smux_peer`` speaks (see its main.go).

The opener sends a mode byte, an 8-byte big-endian length N and N bytes. Mode ``E``: the acceptor
echoes the data as it arrives, then sends its SHA-256; the opener checks both and closes.
Mode ``H`` (half-close): the opener closes right after its data; the acceptor reads to EOF and only
then sends the SHA-256 — so the answer travels after the opener's FIN.
"""

from __future__ import annotations

import asyncio
import hashlib
import random

from openssm.transport.mux import MuxSession, MuxStream

ECHO = ord("E")
HALF_CLOSE = ord("H")
MAX_SIZE = 64 << 20


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def read_exactly(stream: MuxStream, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = await stream.read(count - len(data))
        if not chunk:
            raise EOFError(f"stream {stream.stream_id}: EOF after {len(data)} of {count} bytes")
        data += chunk
    return bytes(data)


async def expect_eof(stream: MuxStream) -> None:
    extra = await stream.read()
    if extra:
        raise AssertionError(f"stream {stream.stream_id}: {len(extra)} bytes where EOF was expected")


async def drive(session: MuxSession, mode: int, data: bytes) -> int:
    """Open a stream, run one exchange, check echo and digest; returns the stream id."""
    stream = await session.open_stream()
    header = bytes([mode]) + len(data).to_bytes(8, "big")
    digest = hashlib.sha256(data).digest()
    if mode == ECHO:
        sending = asyncio.create_task(stream.write(header + data))
        answer = await read_exactly(stream, len(data) + len(digest))
        await sending
        assert answer[: len(data)] == data, f"stream {stream.stream_id}: echo differs"
        await stream.close()
    else:
        await stream.write(header + data)
        await stream.close()
        answer = data + await read_exactly(stream, len(digest))
    assert answer[len(data) :] == digest, f"stream {stream.stream_id}: digest differs"
    await expect_eof(stream)
    return stream.stream_id


async def serve(stream: MuxStream) -> int:
    """Answer one exchange as the acceptor; returns the number of data bytes."""
    head = await read_exactly(stream, 9)
    mode, size = head[0], int.from_bytes(head[1:], "big")
    assert mode in (ECHO, HALF_CLOSE) and size <= MAX_SIZE, f"bad header {head!r}"
    digest = hashlib.sha256()
    remaining = size
    while remaining:
        chunk = await stream.read(min(remaining, 65536))
        if not chunk:
            raise EOFError(f"stream {stream.stream_id}: EOF with {remaining} bytes to come")
        digest.update(chunk)
        remaining -= len(chunk)
        if mode == ECHO:
            await stream.write(chunk)
    if mode == ECHO:
        await stream.write(digest.digest())
        await expect_eof(stream)
    else:
        await expect_eof(stream)
        await stream.write(digest.digest())
    await stream.close()
    return size


async def serve_forever(session: MuxSession, results: list[int]) -> None:
    """Accept and serve streams until the session closes; each served size lands in ``results``."""
    async with asyncio.TaskGroup() as group:
        while True:
            try:
                stream = await session.accept_stream()
            except ConnectionError:
                return

            async def one(stream: MuxStream = stream) -> None:
                results.append(await serve(stream))

            group.create_task(one())
