"""A tiny reader of fuzz inputs laid out as operations: ``Ops(data).byte()``, ``.chunk()``, ….

Targets that drive a state machine read their input as a sequence of operations rather than
through atheris's FuzzedDataProvider, so that the seed corpus can be written by hand (and from the
captures) in the same layout: an operation byte, then its operands.
"""

from __future__ import annotations


class Ops:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def __bool__(self) -> bool:
        return self._pos < len(self._data)

    def byte(self) -> int:
        if self._pos >= len(self._data):
            return 0
        value = self._data[self._pos]
        self._pos += 1
        return value

    def u16(self) -> int:
        return self.byte() | self.byte() << 8

    def take(self, count: int) -> bytes:
        piece = self._data[self._pos : self._pos + count]
        self._pos += len(piece)
        return piece

    def chunk(self) -> bytes:
        """A length-prefixed piece (u16 little-endian length, cut short at the input's end)."""
        return self.take(self.u16())


def chunk(data: bytes) -> bytes:
    """The layout :meth:`Ops.chunk` reads (for seeds), split if longer than 65,535 bytes."""
    out = bytearray()
    for start in range(0, max(len(data), 1), 0xFFFF):
        piece = data[start : start + 0xFFFF]
        out += len(piece).to_bytes(2, "little") + piece
    return bytes(out)
