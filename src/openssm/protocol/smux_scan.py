"""Header-only smux frame scanning (sans-I/O): who opened, closed or sent how much, never the data.

Observers of an smux byte stream (the gateway's port session recorder) need each frame's command,
stream id and length, not its payload. :class:`SmuxScanner` reads the 8-byte headers and steps over
the payloads without copying them, keeping across calls only a split header (at most 7 bytes) and
how much of the current frame's payload is still to come. It reports a frame when its last byte
has arrived and checks headers as :class:`openssm.protocol.smux.FrameParser` does, so it yields
exactly the frames, and raises exactly the errors, that the parser would for the same feeds.
"""

from __future__ import annotations

from typing import NamedTuple

from openssm.protocol.smux import (
    COMMANDS,
    HEADER,
    HEADER_SIZE,
    SUPPORTED_VERSIONS,
    Command,
    SmuxError,
    SmuxProtocolError,
    check_header,
)


class FrameHeader(NamedTuple):
    version: int
    command: Command
    stream_id: int
    length: int  # payload bytes that followed the header


class SmuxScanner:
    """Incremental header scanner: feed any split of the byte stream, get whole frames' headers.

    After an error the scanner stays failed: the byte stream has no resynchronisation point.
    """

    def __init__(self, version: int | None = None) -> None:
        if version is not None and version not in SUPPORTED_VERSIONS:
            raise SmuxError(f"unsupported smux version {version}")
        self._version = version
        self._head = bytearray()  # a header split across feeds: at most 7 bytes between calls
        self._current: FrameHeader | None = None  # the frame whose payload is still arriving
        self._remaining = 0  # … and how many of its payload bytes are still to come
        self._error: SmuxProtocolError | None = None

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame seen so far (what FrameParser would hold back)."""
        if self._current is None:
            return len(self._head)
        return HEADER_SIZE + self._current.length - self._remaining

    def feed(self, data: bytes | bytearray | memoryview) -> list[FrameHeader]:
        if self._error is not None:
            raise self._error
        headers: list[FrameHeader] = []
        try:
            self._scan(data, headers)
        except SmuxProtocolError as exc:
            self._error = exc
            self._head.clear()
            self._current = None
            raise
        return headers

    def _scan(self, data: bytes | bytearray | memoryview, headers: list[FrameHeader]) -> None:
        position = 0
        end = len(data)
        while position < end:
            if self._current is not None:
                step = min(self._remaining, end - position)
                position += step
                self._remaining -= step
                if self._remaining:
                    return
                headers.append(self._current)
                self._current = None
                continue
            if self._head or end - position < HEADER_SIZE:
                take = min(HEADER_SIZE - len(self._head), end - position)
                self._head += data[position : position + take]
                position += take
                if len(self._head) < HEADER_SIZE:
                    return
                version, command, length, stream_id = HEADER.unpack(self._head)
                self._head.clear()
            else:
                version, command, length, stream_id = HEADER.unpack_from(data, position)
                position += HEADER_SIZE
            check_header(self._version, version, command, length)
            header = FrameHeader(version, COMMANDS[command], stream_id, length)
            if end - position >= length:
                headers.append(header)
                position += length
            else:
                self._current = header
                self._remaining = length - (end - position)
                return
