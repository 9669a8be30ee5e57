"""Pipe buffer sizes (Linux): ssh's ProxyCommand pipes are enlarged, and the client's output
writes at once what a pipe has room for. Elsewhere, and on anything not a pipe, these do nothing."""

from __future__ import annotations

import fcntl
import os
import stat
from typing import Final

PIPE_SIZE: Final = 1024 * 1024  # Linux's default ceiling for unprivileged processes


def _pipe_control(fd: int, name: str, *args: int) -> int | None:
    """``fcntl(fd, fcntl.<name>, *args)`` when ``fd`` is a pipe and the platform has ``name``;
    None otherwise, or when the call is refused."""
    command = getattr(fcntl, name, None)
    if command is None or fd < 0:
        return None
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
        return int(fcntl.fcntl(fd, command, *args))
    except OSError:
        return None


def grow_pipe(fd: int, size: int) -> bool:
    """Enlarge a pipe's buffer; anything else, or a refusal, leaves it as it is."""
    return _pipe_control(fd, "F_SETPIPE_SZ", size) is not None


def pipe_capacity(fd: int) -> int:
    """The buffer size of the pipe ``fd`` is, or 0 when it is not one or cannot be told."""
    return _pipe_control(fd, "F_GETPIPE_SZ") or 0
