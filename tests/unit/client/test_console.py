"""The client's output sink: in order, never blocking the event loop, with back-pressure."""

from __future__ import annotations

import asyncio
import io
import os
import threading
import tty
from collections.abc import Iterator

import pytest

from openssm.client.output import Console

MiB = 1024 * 1024


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    yield read_end, write_end
    for fd in (read_end, write_end):
        try:
            os.close(fd)
        except OSError:
            pass


def read_all(fd: int, size: int) -> bytes:
    chunks = []
    while size > 0 and (chunk := os.read(fd, min(size, 1 << 16))):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


async def test_writes_come_out_in_order_and_drain_waits_for_them() -> None:
    sink = io.BytesIO()
    console = Console(sink)
    console.print("one ")
    console.write(b"two ")
    console.write(memoryview(b"three ").toreadonly())
    console.print("four")
    await asyncio.wait_for(console.drain(), 5)
    assert sink.getvalue() == b"one two three four"
    assert console.pending == 0


async def test_a_reader_that_stops_does_not_block_the_caller(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    console = Console(open(write_end, "wb", closefd=False), high_water=MiB)
    data = os.urandom(3 * MiB)  # far more than the pipe holds
    for start in range(0, len(data), 64 * 1024):
        console.write(data[start : start + 64 * 1024])  # returns at once every time
    assert console.pending > MiB
    waiting = asyncio.create_task(console.wait_writable())
    await asyncio.sleep(0.2)  # a negative check (nothing happens to wait for): it stays blocked
    assert not waiting.done()  # back-pressure: over the high-water mark until the reader reads

    reader = threading.Thread(target=lambda: received.append(read_all(read_end, len(data))))
    received: list[bytes] = []
    reader.start()
    await asyncio.wait_for(waiting, 5)
    await asyncio.wait_for(console.drain(), 5)
    reader.join(5)
    assert received == [data]


async def test_writable_buffers_are_copied_and_read_only_views_kept() -> None:
    sink = io.BytesIO()
    console = Console(sink)
    reused = bytearray(b"abc")
    console.write(reused)
    console.write(memoryview(reused))
    reused[:] = b"xyz"
    await asyncio.wait_for(console.drain(), 5)
    assert sink.getvalue() == b"abcabc"


async def test_a_reader_that_went_away_drops_output_without_raising(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    os.close(read_end)
    console = Console(open(write_end, "wb", closefd=False))
    console.write(b"x" * 100_000)
    await asyncio.wait_for(console.drain(), 5)
    await asyncio.wait_for(console.wait_writable(), 5)
    console.write(b"more")  # dropped, as writes to a closed pipe were
    assert console.pending == 0


async def test_unbuffered_streams_are_written_in_full(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    console = Console(open(write_end, "wb", buffering=0, closefd=False))  # may take part of a write
    data = os.urandom(2 * MiB)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(read_all(read_end, len(data))))
    reader.start()
    console.write(data)
    await asyncio.wait_for(console.drain(), 5)
    reader.join(5)
    assert received == [data]


def test_flush_waits_outside_the_event_loop() -> None:
    sink = io.BytesIO()
    console = Console(sink)
    console.write(b"done")
    assert console.flush(timeout=5)
    assert sink.getvalue() == b"done"


def test_the_high_water_mark_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Console(io.BytesIO(), high_water=0)


def test_a_pipe_with_room_is_written_at_once_without_the_thread(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    console = Console(open(write_end, "wb", closefd=False))
    console.write(b"now")  # the pipe is empty: this cannot block
    assert os.read(read_end, 10) == b"now"
    assert console.pending == 0 and console._writer is None


async def test_a_stream_that_fails_oddly_ends_the_output_without_hanging() -> None:
    class Failing(io.BytesIO):
        def write(self, data: object) -> int:
            raise RuntimeError("unexpected")

    console = Console(Failing())
    console.write(b"lost")
    await asyncio.wait_for(console.drain(), 5)
    assert console.pending == 0


async def test_a_terminal_takes_what_it_can_at_once_and_the_rest_in_order_from_the_thread() -> None:
    """A keystroke's echo is written at once (no hand-over to the thread), through a non-blocking
    description of the terminal of its own: stdout's, shared with the shell, stays blocking; what
    a full terminal does not take is written by the thread, after what went before it."""
    master, slave = os.openpty()
    tty.setraw(slave)  # bytes as they are (no \n → \r\n)
    try:
        console = Console(open(slave, "wb", closefd=False))
        console.write(b"k")
        assert os.read(master, 10) == b"k"
        assert console.pending == 0 and console._writer is None and os.get_blocking(slave)
        data = os.urandom(MiB)  # more than the terminal holds while nobody reads it
        console.write(data)
        assert 0 < console.pending < len(data)
        console.write(b"after")
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.append(read_all(master, len(data) + 5)))
        reader.start()
        await asyncio.wait_for(console.drain(), 10)
        reader.join(10)
        assert received == [data + b"after"]
    finally:
        os.close(master)
        os.close(slave)
