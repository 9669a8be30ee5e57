"""Everything the client prints goes through one byte sink, so agent output and our own lines keep
their order.

The sink writes from a thread of its own. A consumer that stops reading (ssh paused, output piped
into ``less``) then blocks that thread only: the event loop keeps acknowledging, answering and
sending keepalives, so the session outlives the pause. Callers take back-pressure from
:meth:`Console.wait_writable`, which holds the data channel's reader while too much is queued.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import logging
import os
import select
import struct
import sys
import termios
import threading
from collections.abc import Callable, Sequence
from typing import BinaryIO, Final

from openssm.client.pipes import pipe_capacity

log = logging.getLogger(__name__)

DEFAULT_HIGH_WATER: Final = 4 * 1024 * 1024  # bytes queued before wait_writable() waits
IDLE_SECONDS: Final = 5.0  # an idle writer thread ends; the next write starts another
# A pipe's pages can be partly read at the head and partly filled at the tail.
PIPE_SLACK: Final = 2 * 4096
DEFAULT_LISTEN_ADDRESS: Final = "localhost"  # where a port session listens unless told otherwise


def exiting_message(session_id: str) -> str:
    """What the plugin prints when a session ends without a word from the agent."""
    return f"\n\nExiting session with sessionId: {session_id}.\n\n"


class Console:
    """Writes bytes or text to stdout (or ``stream``) in order, without blocking the caller."""

    def __init__(self, stream: BinaryIO | None = None, *, high_water: int = DEFAULT_HIGH_WATER) -> None:
        if high_water <= 0:
            raise ValueError("high_water must be positive")
        self._stream = stream if stream is not None else sys.stdout.buffer
        self.high_water = high_water
        self._queue: collections.deque[bytes | memoryview] = collections.deque()
        self._pending = 0  # bytes queued or being written
        self._changed = threading.Condition()
        self._writer: threading.Thread | None = None
        self._broken = False  # the reader went away: what follows is dropped, as a closed pipe would
        # Event-loop tasks waiting for the queue to shrink, woken after each write.
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._on_pipe = pipe_capacity(self.fd) > 0
        self._tty = _nonblocking_twin(self.fd)

    @property
    def fd(self) -> int:
        try:
            return self._stream.fileno()
        except (OSError, ValueError, AttributeError):
            return -1

    @property
    def pending(self) -> int:
        """Bytes accepted by :meth:`write` and not yet written out."""
        return self._pending

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` for writing; returns at once. Read-only views are kept as they are (their
        owner never writes them again); anything writable is copied, as its owner may reuse it."""
        if not len(data) or self._broken:
            return
        if not self._pending and len(data) <= self._pipe_room():
            # Nothing queued, and the pipe can take it all: the write cannot block, so it is made
            # here, sparing a hand-over to the thread (ssh's stream runs this way while ssh keeps up).
            if not self._write_out([data]):
                self._broken = True
            return
        if not self._pending and self._tty is not None:
            # A terminal: what it takes now goes at once, through a description of its own that
            # cannot block; a keystroke's echo is shown without waking the thread (a wait for a
            # CPU on a busy machine). What it does not take goes to the thread, in order.
            written = _write_nonblocking(self._tty, data)
            if written == len(data):
                return
            data = memoryview(data)[written:]
        if isinstance(data, bytearray) or (isinstance(data, memoryview) and not data.readonly):
            data = bytes(data)
        with self._changed:
            self._queue.append(data)
            self._pending += len(data)
            self._changed.notify()
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_queued, name="console-writer", daemon=True)
                self._writer.start()

    def _pipe_room(self) -> int:
        """Bytes the pipe on stdout takes now without blocking; 0 if not a pipe or unknown."""
        if not self._on_pipe:
            return 0
        fd = self.fd
        try:
            capacity = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)  # asked anew: grow_pipe may have changed it
            (unread,) = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, bytes(4)))
        except (OSError, AttributeError):
            return 0
        return int(capacity) - int(unread) - PIPE_SLACK

    def print(self, text: str) -> None:
        self.write(text.encode("utf-8", "replace"))

    async def wait_writable(self) -> None:
        """Return once fewer than ``high_water`` bytes wait to be written (or the reader has gone)."""
        await self._wait_until(lambda: self._pending < self.high_water)

    async def drain(self) -> None:
        """Return once everything written so far is out (or the reader has gone)."""
        await self._wait_until(lambda: not self._pending)

    def flush(self, timeout: float | None = None) -> bool:
        """:meth:`drain` for code outside the event loop; False if ``timeout`` ran out first."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._pending or self._broken, timeout)

    async def _wait_until(self, done: Callable[[], bool]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with self._changed:  # checked and registered under the lock: no wake-up is missed
                if done() or self._broken:
                    return
                future = loop.create_future()
                self._waiters.append((loop, future))
            await future

    # -- the writer thread -------------------------------------------------------------------------

    def _write_queued(self) -> None:
        while True:
            with self._changed:
                if not self._queue and not self._changed.wait_for(lambda: bool(self._queue), IDLE_SECONDS):
                    self._writer = None
                    return
                batch = list(self._queue)  # everything queued so far, written with one flush
                self._queue.clear()
            written = self._write_out(batch)
            with self._changed:
                self._pending -= sum(len(data) for data in batch)
                if not written:
                    self._broken = True
                    self._pending -= sum(len(data) for data in self._queue)
                    self._queue.clear()
                self._changed.notify_all()
                waiters, self._waiters = self._waiters, []
            for loop, future in waiters:
                with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits any more
                    loop.call_soon_threadsafe(_resolve, future)

    def _write_out(self, batch: Sequence[bytes | bytearray | memoryview]) -> bool:
        """Write all of ``batch``; False once the reader has gone (or the stream was closed)."""
        try:
            for data in batch:
                view = memoryview(data)
                while view:
                    try:
                        written = self._stream.write(view)
                    except BlockingIOError as exc:  # someone made the descriptor non-blocking
                        written = exc.characters_written
                    if not written:
                        select.select([], [self.fd], [])
                    view = view[written or 0 :]  # unbuffered streams may write only part
            self._stream.flush()
        except (OSError, ValueError):  # EPIPE and its like; ValueError: the stream was closed
            return False
        except Exception:  # whatever else a stream raises must not leave the queue stuck
            log.warning("writing the session's output failed; the rest of it is dropped", exc_info=True)
            return False
        return True


def _write_nonblocking(fd: int, data: bytes | bytearray | memoryview) -> int:
    """Bytes of ``data`` that ``fd`` (non-blocking) took; errors are left to the thread's write on
    the stream, which reports them as the stream's own."""
    try:
        return os.write(fd, data)
    except OSError:
        return 0


def _nonblocking_twin(fd: int) -> int | None:
    """When ``fd`` is a terminal, a second open file description of it, non-blocking: writes through
    it cannot block the event loop, and the flag is not set on the description stdout shares with
    the shell that started us (and with whatever else writes to the terminal). None otherwise."""
    try:
        if fd < 0 or not os.isatty(fd):
            return None
        return os.open(os.ttyname(fd), os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def stdout_is_tty() -> bool:
    with contextlib.suppress(OSError, ValueError):
        return os.isatty(sys.stdout.fileno())
    return False
