"""The stdio (SSH) fast path enlarges ssh's pipes so messages are not capped at 64 KiB."""

from __future__ import annotations

import fcntl
import os
import pathlib
import sys

import pytest

from openssm.client.pipes import PIPE_SIZE, grow_pipe


@pytest.mark.requires(sys.platform.startswith("linux"), "F_SETPIPE_SZ is Linux's")
def test_a_pipe_grows() -> None:
    read_end, write_end = os.pipe()
    try:
        before = fcntl.fcntl(read_end, fcntl.F_GETPIPE_SZ)
        assert grow_pipe(read_end, PIPE_SIZE)
        assert fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ) == PIPE_SIZE > before  # one buffer, both ends
    finally:
        os.close(read_end)
        os.close(write_end)


def test_anything_else_is_left_alone(tmp_path: pathlib.Path) -> None:
    with open(tmp_path / "file", "wb") as regular:
        assert not grow_pipe(regular.fileno(), PIPE_SIZE)
    assert not grow_pipe(-1, PIPE_SIZE)
    closed_read, closed_write = os.pipe()
    os.close(closed_read)
    os.close(closed_write)
    assert not grow_pipe(closed_read, PIPE_SIZE)  # a closed descriptor: refused, not raised
