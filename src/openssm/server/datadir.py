"""The lock a running server holds on its data directory (``DATA_DIR/server.lock``).

With the embedded SQLite database the data directory *is* the server's state, so one server at a
time: a second one refuses to start, and ``openssm admin restore`` refuses to replace the
database under a running one. An ``flock`` is released by the kernel when its holder dies, so a
crashed server leaves nothing to clean up; the file names the holder's pid for the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
from typing import Final

from openssm.errors import OpenSSMError

LOCK_FILE: Final = "server.lock"


class DataDirBusy(OpenSSMError):
    """A server is running on this data directory."""

    def __init__(self, data_dir: pathlib.Path, pid: int | None) -> None:
        self.data_dir = data_dir
        self.pid = pid
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"an OpenSSM server ({who}) is running on {data_dir}")


class DataDirLock:
    def __init__(self, data_dir: pathlib.Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`DataDirBusy`."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DataDirBusy(self.path.parent, pid) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
