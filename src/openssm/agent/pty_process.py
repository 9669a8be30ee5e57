"""A child process on a pseudo-terminal, driven from asyncio.

The child becomes a session leader with the PTY as its controlling terminal, so the line
discipline turns Ctrl-C (byte 0x03) into SIGINT and a window-size change into SIGWINCH.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import shutil
import signal
import struct
import termios
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Final

from openssm.agent.privileges import as_account, python_shim
from openssm.agent.sessions.identity import RunAs

READ_SIZE: Final = 1024
# The child must become a session leader with the PTY as its controlling terminal, which
# subprocess cannot arrange by itself (and forking the agent's threaded process by hand is
# unsafe). util-linux/busybox ``setsid --ctty`` does exactly that, then execs the program; a
# Python shim is the fallback where it is missing.
_SETSID: Final = shutil.which("setsid")
_CTTY_SHIM: Final = (
    "import fcntl,os,sys,termios\n"
    "os.setsid()\n"
    "fcntl.ioctl(0,termios.TIOCSCTTY,0)\n"
    "os.execve(sys.argv[1],sys.argv[2:],os.environ)\n"
)


# Signals a process started ignoring stay ignored across exec: an agent started under `nohup`
# (SIGHUP) or as a shell's background job (SIGINT, SIGQUIT) would hand that to every session's
# programs, so a session's background children survived its hang-up and Ctrl-C did nothing.
_DEFAULTS_FOR_PROGRAMS: Final = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)


def _ignore(signum: int, frame: object) -> None:
    """A handler that does nothing: the agent keeps ignoring the signal, and exec resets a handled
    signal to its default in the programs it starts."""


def programs_get_default_signals() -> None:
    """Make what this process ignores by inheritance a no-op handler instead (main thread only, where
    handlers can be set; the agent starts its programs from its event loop's thread)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in _DEFAULTS_FOR_PROGRAMS:
        if signal.getsignal(signum) is signal.SIG_IGN:
            signal.signal(signum, _ignore)


def _launcher(executable: str, argv: Sequence[str]) -> list[str]:
    if _SETSID:
        # Not a process-group leader when started, so setsid(1) runs setsid() in place (no fork):
        # the pid we wait for is the program's own.
        return [_SETSID, "--ctty", executable, *argv[1:]]
    return python_shim(_CTTY_SHIM, executable, *argv)


def set_window_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class PtyProcess:
    def __init__(self, process: asyncio.subprocess.Process, master_fd: int) -> None:
        self.process = process
        self.master_fd = master_fd
        self._closed = False
        # The terminal stays watched between reads (see _on_readable): a keystroke's echo then
        # costs its read, not two epoll_ctl calls and a fresh callback each time.
        self._watching: asyncio.AbstractEventLoop | None = None
        self._readable: asyncio.Future[None] | None = None
        self._unread_wakes = 0  # readable with nobody waiting, since the last read

    @classmethod
    async def spawn(
        cls,
        executable: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str,
        account: RunAs | None = None,
        cols: int = 80,
        rows: int = 24,
    ) -> PtyProcess:
        """Start ``argv`` (``executable`` first) on a new PTY, as ``account`` when given."""
        launch = _launcher(executable, argv)
        if account is not None:
            launch = as_account(launch, account)
        programs_get_default_signals()
        master, slave = os.openpty()
        try:
            set_window_size(master, cols, rows)
            os.set_blocking(master, False)
            process = await asyncio.create_subprocess_exec(
                *launch, stdin=slave, stdout=slave, stderr=slave, env=dict(env), cwd=cwd
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        return cls(process, master)

    async def read(self, stop: asyncio.Future[Any] | None = None) -> bytes | None:
        """Up to ``READ_SIZE`` bytes; ``b""`` once no process holds the terminal any more; None
        once ``stop`` is done (what is left to read is then read without it)."""
        while True:
            if self._closed:
                return b""
            if stop is not None and stop.done():
                return None
            try:
                data = os.read(self.master_fd, READ_SIZE)
            except BlockingIOError:
                await self._wait_readable(stop)
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:  # Linux: slave side closed by every holder
                    return b""
                raise
            self._unread_wakes = 0
            return data

    async def _wait_readable(self, stop: asyncio.Future[Any] | None) -> None:
        loop = asyncio.get_running_loop()
        self._readable = readable = loop.create_future()
        if self._watching is None:
            loop.add_reader(self.master_fd, self._on_readable)
            self._watching = loop
            self._unread_wakes = 0

        def wake(_: object) -> None:
            if not readable.done():
                readable.set_result(None)

        if stop is not None:
            stop.add_done_callback(wake)
        try:
            await readable
        finally:
            self._readable = None
            if stop is not None:
                stop.remove_done_callback(wake)

    def _on_readable(self) -> None:
        """Wake the reader. With no reader waiting, once may be the readiness of what it has just
        read (the loop polled before the reader ran); twice since its last read means bytes wait
        unread (its consumer is busy, or the window full): stop watching until it asks again, or
        the loop would call this at every turn."""
        readable = self._readable
        if readable is None:
            self._unread_wakes += 1
            if self._unread_wakes > 1:
                self._unwatch()
        elif not readable.done():
            readable.set_result(None)

    def _unwatch(self) -> None:
        if self._watching is not None:
            with contextlib.suppress(RuntimeError, ValueError, OSError):  # the loop may be closed
                self._watching.remove_reader(self.master_fd)
            self._watching = None

    def read_available(self, limit: int = READ_SIZE) -> bytes:
        """Whatever is buffered right now, without waiting."""
        if self._closed:
            return b""
        try:
            return os.read(self.master_fd, limit)
        except (BlockingIOError, OSError):
            return b""

    async def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view and not self._closed:
            try:
                written = os.write(self.master_fd, view)
            except BlockingIOError:
                await self._wait_fd(readable=False)
                continue
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EBADF):
                    return  # the terminal is gone; input has nowhere to go
                raise
            view = view[written:]

    def resize(self, cols: int, rows: int) -> None:
        if not self._closed:
            with contextlib.suppress(OSError):
                set_window_size(self.master_fd, cols, rows)

    async def _wait_fd(self, *, readable: bool) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        if readable:
            loop.add_reader(self.master_fd, wake)
        else:
            loop.add_writer(self.master_fd, wake)
        try:
            await ready
        finally:
            if readable:
                loop.remove_reader(self.master_fd)
            else:
                loop.remove_writer(self.master_fd)

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    async def terminate(self, grace: float = 1.0) -> None:
        """Hang up the session (SIGHUP to its group), then SIGKILL if it lingers.

        The group is signalled even after its leader exited: background children of the session
        must not outlive it. (Its id cannot be reused while any member is alive.)
        """
        self.signal_group(signal.SIGHUP)
        self.signal_group(signal.SIGCONT)
        if self.process.returncode is None:
            try:
                async with asyncio.timeout(grace):
                    await self.process.wait()
            except TimeoutError:
                self.signal_group(signal.SIGKILL)
                await self.process.wait()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._unwatch()
            os.close(self.master_fd)
