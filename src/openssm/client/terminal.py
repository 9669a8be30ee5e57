"""Local terminal handling: cbreak/no-echo mode, window size, and stdin as async chunks (§2.6)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import termios
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

READ_CHUNK: Final = 1024  # the plugin reads stdin and sockets in chunks of at most 1 KiB
NOT_A_TTY_SIZE: Final = (300, 100)  # cols, rows sent when stdout is not a terminal
RESIZE_POLL_SECONDS: Final = 0.5
_QUEUE_HIGH_WATER: Final = 64


class TerminalMode:
    """``stty cbreak -echo`` on a tty for the lifetime of the object; restored on :meth:`restore`.

    Signals stay enabled (ISIG) so Ctrl-C reaches us as SIGINT and can be forwarded as a byte.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._saved: list[Any] | None = None

    def enter(self) -> None:
        if self._saved is not None or not os.isatty(self.fd):
            return
        saved = termios.tcgetattr(self.fd)
        mode = termios.tcgetattr(self.fd)
        mode[3] &= ~(termios.ICANON | termios.ECHO)
        mode[6][termios.VMIN] = 1
        mode[6][termios.VTIME] = 0
        # TCSADRAIN like stty: TCSAFLUSH would discard what the user typed ahead of the prompt.
        termios.tcsetattr(self.fd, termios.TCSADRAIN, mode)
        self._saved = saved

    def restore(self) -> None:
        saved, self._saved = self._saved, None
        if saved is not None:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)

    def __enter__(self) -> TerminalMode:
        self.enter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


def terminal_size(fd: int) -> tuple[int, int]:
    """(cols, rows) of the terminal on ``fd`` (stdout), or 300x100 when it is not a terminal."""
    if not os.isatty(fd):
        return NOT_A_TTY_SIZE
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return NOT_A_TTY_SIZE
    return size.columns, size.lines


class ResizeWatcher:
    """Calls ``on_change(cols, rows)`` when the size changes: polled every 500 ms, and on SIGWINCH."""

    def __init__(self, fd: int, on_change: Callable[[int, int], None]) -> None:
        self.fd = fd
        self._on_change = on_change
        self._last = terminal_size(fd)
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._signal_installed = False

    @property
    def size(self) -> tuple[int, int]:
        return self._last

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(signal.SIGWINCH, self._wakeup.set)
            self._signal_installed = True
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RESIZE_POLL_SECONDS):
                    await self._wakeup.wait()
            self._wakeup.clear()
            current = terminal_size(self.fd)
            if current != self._last:
                self._last = current
                self._on_change(*current)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._signal_installed:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGWINCH)
            self._signal_installed = False


async def read_chunks(fd: int, size: int = READ_CHUNK) -> AsyncIterator[bytes]:
    """Yield what arrives on ``fd`` in chunks of at most ``size`` bytes until EOF.

    Uses the event loop for ttys, pipes and sockets; regular files (which epoll refuses) are read
    by a daemon thread so a blocked read never holds up interpreter exit.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
    paused = False

    def on_readable() -> None:
        nonlocal paused
        try:
            data = os.read(fd, size)
        except BlockingIOError:
            return
        except OSError as exc:
            loop.remove_reader(fd)
            queue.put_nowait(exc)
            return
        if not data or queue.qsize() >= _QUEUE_HIGH_WATER:
            loop.remove_reader(fd)  # EOF, or back-pressure until the consumer catches up
            paused = bool(data)
        queue.put_nowait(data)

    threaded = False
    try:
        loop.add_reader(fd, on_readable)
    except (PermissionError, OSError, ValueError):
        threaded = True
        threading.Thread(target=_read_in_thread, args=(loop, queue, fd, size), daemon=True).start()
    try:
        while True:
            item = await queue.get()
            if isinstance(item, BaseException) or not item:
                return
            if paused and queue.empty():
                paused = False
                loop.add_reader(fd, on_readable)
            yield item
    finally:
        if not threaded:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(fd)


def _read_in_thread(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | BaseException], fd: int, size: int
) -> None:
    while True:
        try:
            data = os.read(fd, size)
        except OSError as exc:
            data = b""
            item: bytes | BaseException = exc
        else:
            item = data
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:
            return  # loop gone
        if not data:
            return
