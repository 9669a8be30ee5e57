"""Everything the client prints goes through one byte sink, so agent output and our own lines keep
their order."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import BinaryIO


class Console:
    """Writes bytes or text to stdout (unbuffered from the caller's point of view)."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer

    @property
    def fd(self) -> int:
        try:
            return self._stream.fileno()
        except (OSError, ValueError, AttributeError):
            return -1

    def write(self, data: bytes | memoryview) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):
            self._stream.write(data)
            self._stream.flush()

    def print(self, text: str) -> None:
        self.write(text.encode("utf-8", "replace"))


def stdout_is_tty() -> bool:
    with contextlib.suppress(OSError, ValueError):
        return os.isatty(sys.stdout.fileno())
    return False
