"""Fuzz target ``websocket``: a peer's bytes through :class:`openssm.protocol.websocket.FrameReader`.

Input: a configuration byte (bit 0: the reader expects masked frames, as a server does; bits 1-2:
the message limit, 125 B, 4 KiB, 70 KiB or 1 MiB), then operations: ``0``-``5`` deliver a
length-prefixed chunk of bytes (in as many reads as the reader's buffer takes), ``6`` delivers
``n`` KiB (at most 80, once per input) of one repeated byte (so frames larger than the 64 KiB
scratch area, read straight into their own buffer, are reachable from small inputs), ``7`` checks a close payload on its own.

Checks: only WebSocketProtocolError (with a close code RFC 6455 allows us to send) for bad input;
messages respect the limit; control frames carry at most 125 bytes; nothing is read after a close.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from openssm.protocol import websocket
from openssm.protocol.websocket import FrameReader, WebSocketProtocolError
from tests.fuzz.ops import Ops, chunk

LIMITS = (125, 4096, 70 * 1024, 1 << 20)
OUR_CLOSE_CODES = {
    websocket.CLOSE_PROTOCOL_ERROR,
    websocket.CLOSE_INVALID_DATA,
    websocket.CLOSE_MESSAGE_TOO_BIG,
}


def _deliver(reader: FrameReader, data: bytes, limit: int) -> None:
    position = 0
    while position < len(data):
        view = reader.buffer()
        assert len(view) > 0
        count = min(len(view), len(data) - position)
        view[:count] = data[position : position + count]
        position += count
        for message in reader.filled(count):
            if message.opcode in websocket.CONTROL_OPCODES:
                assert len(message.data) <= websocket.MAX_CONTROL_PAYLOAD
            else:
                assert message.opcode in websocket.DATA_OPCODES, message.opcode
                assert len(message.data) <= limit, (len(message.data), limit)


def one_input(data: bytes) -> None:
    ops = Ops(data)
    config = ops.byte()
    limit = LIMITS[(config >> 1) & 3]
    reader = FrameReader(masked=bool(config & 1), max_message=limit)
    filled = False
    while ops:
        op = ops.byte() % 8
        if op == 7:
            try:
                websocket.check_close_payload(ops.chunk())
            except WebSocketProtocolError as exc:
                assert exc.code in OUR_CLOSE_CODES
            continue
        if op == 6:
            fill, size = ops.byte(), ops.byte() % 81
            piece = b"" if filled else bytes([fill]) * (size * 1024)
            filled = True
        else:
            piece = ops.chunk()
        try:
            _deliver(reader, piece, limit)
        except WebSocketProtocolError as exc:
            assert exc.code in OUR_CLOSE_CODES, exc.code
            return


def setup() -> Callable[[bytes], None]:
    return one_input


def _frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool) -> bytes:
    key = b"\x12\x34\x56\x78" if masked else None
    pieces = websocket.encode(opcode, [payload], mask_key=key)
    if fin:
        return b"".join(bytes(p) for p in pieces)
    whole = bytearray(b"".join(bytes(p) for p in pieces))
    whole[0] &= 0x7F  # clear FIN (headers are never masked)
    return bytes(whole)


def seeds() -> Iterator[bytes]:
    for masked in (True, False):
        config = 1 if masked else 0
        frames = [
            _frame(websocket.OP_BINARY, b"\x00" * 200, masked=masked),
            _frame(websocket.OP_TEXT, '{"a":"ü"}'.encode(), masked=masked),
            _frame(websocket.OP_BINARY, b"x" * 300, fin=False, masked=masked)
            + _frame(websocket.OP_CONTINUATION, b"y" * 70000, masked=masked),
            _frame(websocket.OP_PING, b"ping", masked=masked),
            _frame(websocket.OP_CLOSE, websocket.close_payload(1000, "bye"), masked=masked),
        ]
        for limit_bits in (0, 2, 4, 6):
            yield bytes([config | limit_bits]) + b"".join(b"\x00" + chunk(f) for f in frames)
        # Byte by byte, then a direct-read frame announced by its header and filled by op 6.
        yield bytes([config | 6]) + b"".join(
            b"\x01" + chunk(frames[1][i : i + 1]) for i in range(len(frames[1]))
        )
        head = websocket.header(
            websocket.OP_BINARY, 70 * 1024, mask_key=b"\x00\x00\x00\x00" if masked else None
        )
        yield bytes([config | 6]) + b"\x00" + chunk(head) + b"\x06\x41\x46"
    yield b"\x00\x07" + chunk(websocket.close_payload(1001, "going"))
