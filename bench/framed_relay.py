"""The cheapest relay Python can be with OpenSSM's framing: a floor for `bench_port_throughput.py`.

`bare_relay.py` copies bytes and nothing else, so its CPU per GiB is what any three Python
processes cost in the kernel and the event loop. This relay adds exactly the per-byte and
per-message work that the AWS-compatible wire makes every OpenSSM hop do, with OpenSSM's own codecs
(`openssm.protocol.websocket`, `openssm.protocol.frames`, `openssm.protocol.smux`'s header), and
nothing else: no acknowledgements, no resends, no smux streams or windows, no recording, no
authorisation, no coalescing. Three in a row (client → gateway → agent roles) therefore show the
lowest CPU per GiB any Python design keeping that wire could reach, and the gap between them and
OpenSSM is what OpenSSM's protocol work (sessions, acks, smux state, recording) costs.

Roles (the WebSocket roles follow OpenSSM's: the client and the agent both dial the gateway, so
both mask what they send and the gateway masks nothing):

* ``client``: accepts plain TCP, read into one 1 MiB buffer; what arrived becomes one WebSocket
  binary frame, masked (a copy: the buffer is free again at once), holding one SSM
  ``output_stream_data`` message (120-byte header, no digest, as on OpenSSM's fast path) whose
  payload is smux frames of at most 65,528 bytes. As OpenSSM's sender does, a message goes once
  960 KiB are there or after two turns of the loop, so that reads arriving together make one
  message. Frames the other way are unframed back to the plain socket.
* ``gateway``: reads masked frames from the client side (unmasked in place by the reader), reads
  the SSM header (``frames.peek``, as the real relay does) and forwards the message unmasked; the
  same from the agent side.
* ``agent``: reads unmasked frames, strips the SSM header and the smux headers and writes the data
  views to the plain socket; plain reads from there are framed and masked as the client does.

An empty message stands for end of file (OpenSSM sends an smux FIN).

Run: `python bench/framed_relay.py ROLE LISTEN_PORT TARGET_PORT` (prints "ready" once listening).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import cast

from bare_relay import Passing, serve  # (this directory: run as a script)

from openssm.protocol import frames
from openssm.protocol import websocket as codec
from openssm.protocol.buffers import receive_buffer
from openssm.protocol.smux import HEADER as SMUX_HEADER
from openssm.protocol.smux import Command
from openssm.transport.runtime import run
from openssm.transport.websocket_connection import MASK

READ_SIZE = 1024 * 1024
MIN_READ_ROOM = 64 * 1024
MESSAGE = 15 * 64 * 1024  # OpenSSM's fast-path message payload (with its smux headers)
SMUX_FRAME = 65_528  # OpenSSM's fast-path smux frame data size
MAX_MESSAGE = 2 * 1024 * 1024
STREAM_ID = 1

Parts = list[bytes | memoryview]


class Side(Passing):
    """One socket of a relayed pair. ``framed``: it speaks WebSocket frames (``reads_masked`` and
    ``masks`` say which way round); otherwise plain bytes. ``through``: a gateway side, which
    forwards messages whole instead of framing and unframing payloads."""

    def __init__(
        self, *, framed: bool, reads_masked: bool = False, masks: bool = False, through: bool = False
    ):
        self.framed = framed
        self.masks = masks
        self.through = through
        self.transport: asyncio.Transport | None = None
        self.peer: Side | None = None
        self.pending: list[Callable[[], None]] = []  # what arrived before the peer was connected
        self.sequence = 0
        self.reader = (
            codec.FrameReader(masked=reads_masked, max_message=MAX_MESSAGE, mask=MASK) if framed else None
        )
        self.buffer = receive_buffer(READ_SIZE) if not framed else None
        self.filled = 0  # bytes read into the buffer and not sent on yet
        self.flush_due = False

    # -- asyncio ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.reader is not None:
            return self.reader.buffer()
        assert self.buffer is not None
        if len(self.buffer) - self.filled < MIN_READ_ROOM:
            self.flush()
        return memoryview(self.buffer)[self.filled :]

    def buffer_updated(self, nbytes: int) -> None:
        if self.reader is None:
            self.filled += nbytes
            if self.filled >= MESSAGE:
                self.flush()
            elif not self.flush_due:
                # As OpenSSM's sender: let the loop turn twice, so that the next reads join the message.
                self.flush_due = True
                loop = asyncio.get_running_loop()
                loop.call_soon(loop.call_soon, self.flush)
            return
        for message in self.reader.filled(nbytes):
            if message.opcode == codec.OP_BINARY:
                self._deliver(self._forward(message.data))

    def _forward(self, data: bytes | bytearray) -> Callable[[], None]:
        """What to do with a received message once the peer is there."""

        def forward() -> None:
            if self.peer is None:
                return
            if self.through:
                self.peer.message(data)
            else:
                self.peer.payload(unframe(data))

        return forward

    def flush(self) -> None:
        """Send what the plain socket gave since the last message, as one message."""
        self.flush_due = False
        assert self.buffer is not None
        if not self.filled:
            return
        data = memoryview(self.buffer)[: self.filled]
        if self.peer is None or self.peer.transport is None:
            data = memoryview(bytes(data))  # kept until the peer is there
        # The masked frame is a copy (or the line above made one): the buffer is free again.
        self.filled = 0
        self._deliver(lambda: self.peer.payload([data]) if self.peer else None)

    def _deliver(self, action: Callable[[], None]) -> None:
        if self.peer is None or self.peer.transport is None:
            self.pending.append(action)
        else:
            action()

    def paired(self, peer: Side) -> None:
        self.peer = peer
        for action in self.pending:
            action()
        self.pending.clear()

    def peer_transport(self) -> asyncio.Transport | None:
        return None if self.peer is None else self.peer.transport

    def eof_received(self) -> bool:
        if not self.framed:
            self.flush()
            self._deliver(lambda: self.peer.payload([]) if self.peer else None)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    # -- sending ---------------------------------------------------------------------------------

    def payload(self, parts: Parts) -> None:
        """Bytes to pass on (empty: end of file)."""
        assert self.transport is not None
        if self.transport.is_closing():
            return
        if not self.framed:
            if parts:
                self.transport.writelines(parts)
            elif self.transport.can_write_eof():
                self.transport.write_eof()
            return
        pieces: Parts = []
        for part in parts:
            view = memoryview(part)
            for start in range(0, len(view), SMUX_FRAME):
                piece = view[start : start + SMUX_FRAME]
                pieces.append(SMUX_HEADER.pack(2, Command.PSH, len(piece), STREAM_ID))
                pieces.append(piece)
        message = frames.encode_pieces(
            frames.MessageType.OUTPUT_STREAM_DATA,
            self.sequence,
            0,
            frames.PayloadType.OUTPUT,
            pieces,
            digest=False,
        )
        self.sequence += 1
        self._send(message)

    def message(self, data: bytes | bytearray) -> None:
        """A whole SSM message from the other side of a gateway: its header read, then sent on."""
        frames.peek(data)  # type: ignore[arg-type]  # (reads a bytearray as well)
        self._send([memoryview(data)])

    def _send(self, parts: Parts) -> None:
        assert self.transport is not None
        if self.transport.is_closing():
            return
        key = codec.new_mask_key() if self.masks else None
        self.transport.writelines(codec.encode(codec.OP_BINARY, parts, mask_key=key, mask=MASK))


def unframe(message: bytes | bytearray) -> Parts:
    """The data of one message: the smux frames' payloads, as views of the message (empty: EOF)."""
    head = frames.peek(message)  # type: ignore[arg-type]
    view = memoryview(message)
    position, end = head.payload_offset, len(message)
    parts: Parts = []
    while position < end:
        _version, _command, length, _stream = SMUX_HEADER.unpack_from(view, position)
        position += SMUX_HEADER.size
        parts.append(view[position : position + length])
        position += length
    return parts


def sides(role: str) -> tuple[Callable[[], Side], Callable[[], Side]]:
    """(the accepted side, the dialled side) of a role."""
    if role == "client":
        return (lambda: Side(framed=False)), (lambda: Side(framed=True, masks=True))
    if role == "gateway":
        return (lambda: Side(framed=True, reads_masked=True, through=True)), (
            lambda: Side(framed=True, reads_masked=True, through=True)
        )
    if role == "agent":
        return (lambda: Side(framed=True, masks=True)), (lambda: Side(framed=False))
    raise SystemExit(f"unknown role {role!r}: client, gateway or agent")


def pair(inbound: Side, outbound: Side) -> None:
    assert inbound.transport is not None and outbound.transport is not None
    if inbound.transport.is_closing():
        outbound.transport.close()
        return
    outbound.paired(inbound)
    inbound.paired(outbound)


if __name__ == "__main__":
    accepted_side, dialled_side = sides(sys.argv[1])
    run(serve(int(sys.argv[2]), int(sys.argv[3]), accepted_side, dialled_side, pair))
