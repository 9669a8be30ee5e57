"""Fuzz target ``smux``: a peer's smux byte stream into :class:`SmuxSession`, interleaved with the
local side's own calls, and the same bytes through :class:`SmuxScanner` and :class:`FrameParser`.

Input: a configuration byte (bit 0: version 2, bit 1: client side, bit 2: small limits), then
operations: ``0`` to ``3`` feed a length-prefixed chunk (see ``ops.chunk``), ``4`` accept and read,
``5`` write, ``6`` close or release a stream, ``7`` open a stream and take the bytes to send.

Checks: the session raises only SmuxProtocolError for the peer's bytes and SmuxError subclasses for
local calls; the scanner reports exactly the parser's frames, and fails exactly where it fails
(its documented contract); buffered-byte accounting stays consistent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from openssm.protocol import frames
from openssm.protocol.smux import (
    FrameParser,
    SmuxConfig,
    SmuxError,
    SmuxProtocolError,
    SmuxSession,
)
from openssm.protocol.smux_scan import SmuxScanner
from tests.fuzz import captures
from tests.fuzz.ops import Ops, chunk

SMALL = {"max_streams": 4, "accept_backlog": 2, "max_stream_buffer": 1024, "max_receive_buffer": 4096}


class _Checker:
    """Feeds the same chunks to a FrameParser and a SmuxScanner and compares them."""

    def __init__(self, version: int) -> None:
        self.parser = FrameParser(version)
        self.scanner = SmuxScanner(version)
        self.failed = False

    def feed(self, chunk: bytes) -> bool:
        """True if the parser took the chunk without error."""
        if self.failed:
            return False
        parser_error = scanner_error = None
        frames = headers = []
        try:
            frames = self.parser.feed(chunk)
        except SmuxProtocolError as exc:
            parser_error = exc
        try:
            headers = self.scanner.feed(chunk)
        except SmuxProtocolError as exc:
            scanner_error = exc
        assert (parser_error is None) == (scanner_error is None), (parser_error, scanner_error)
        if parser_error is not None:
            assert str(parser_error) == str(scanner_error), (parser_error, scanner_error)
            self.failed = True
            return False
        expected = [(f.version, f.command, f.stream_id, len(f.data)) for f in frames]
        assert [tuple(h) for h in headers] == expected, (headers, expected)
        assert self.scanner.pending == self.parser.pending, (self.scanner.pending, self.parser.pending)
        return True


def _pick(session: SmuxSession, ops: Ops, opened: list[int]) -> int:
    choice = ops.byte()
    if opened and choice < 200:
        return opened[choice % len(opened)]
    return choice  # sometimes an id nobody opened


def one_input(data: bytes) -> None:
    ops = Ops(data)
    config_byte = ops.byte()
    version = 2 if config_byte & 1 else 1
    limits = SMALL if config_byte & 4 else {}
    session = SmuxSession(is_client=bool(config_byte & 2), config=SmuxConfig(version=version, **limits))
    checker = _Checker(version)
    opened: list[int] = []
    while ops:
        op = ops.byte() % 8
        if op < 4:
            chunk = ops.chunk()
            parsed = checker.feed(chunk)
            try:
                events = session.receive(chunk)
            except SmuxProtocolError:
                assert session.closed
                continue
            if session.closed:
                continue
            # The session parses as FrameParser does: it cannot take what the parser refused.
            assert parsed, "session took bytes the parser refused"
            for event in events:
                stream_id = getattr(event, "stream_id", None)
                if stream_id is not None and stream_id not in opened:
                    opened.append(stream_id)
        elif op == 4:
            accepted = session.accept()
            if accepted is not None and accepted not in opened:
                opened.append(accepted)
            stream_id = _pick(session, ops, opened)
            before = session.buffered(stream_id)
            size = ops.byte() + 1
            taken = session.read(stream_id, size)
            assert len(taken) == min(before, size), (len(taken), before, size)
        elif op == 5:
            stream_id = _pick(session, ops, opened)
            try:
                written = session.write(stream_id, ops.chunk())
            except SmuxError:
                continue
            assert written >= 0
        elif op == 6:
            stream_id = _pick(session, ops, opened)
            try:
                if ops.byte() & 1:
                    session.release_stream(stream_id)
                else:
                    session.close_stream(stream_id)
            except SmuxError:
                continue
        else:
            try:
                opened.append(session.open_stream())
            except SmuxError:
                pass
            session.data_to_send(ops.u16() or None)
        if not session.closed:
            total = sum(session.buffered(s) for s in set(opened))
            assert total == session.receive_buffered, (total, session.receive_buffered)


def setup() -> Callable[[bytes], None]:
    return one_input


def _captured_streams() -> dict[str, list[bytes]]:
    """The smux bytes each real program sent in the captured port sessions, message by message."""
    streams: dict[str, list[bytes]] = {}
    for event in captures.events("ws-binary"):
        if "Smux" not in event.get("decoded", {}):
            continue
        frame = frames.decode(bytes.fromhex(event["hex"]))
        if frame.payload_type == frames.PayloadType.OUTPUT:
            streams.setdefault(event["from"], []).append(bytes(frame.payload))
    return streams


def _v2_exchange() -> list[bytes]:
    """A v2 client's bytes: open, data larger than a frame, a window update's worth of reads, FIN."""
    config = SmuxConfig(version=2, max_frame_size=1024)
    client, server = SmuxSession(is_client=True, config=config), SmuxSession(is_client=False, config=config)
    sent: list[bytes] = []
    stream = client.open_stream()
    client.write(stream, bytes(range(256)) * 12)
    sent.append(client.data_to_send())
    server.receive(sent[-1])
    accepted = server.accept()
    assert accepted is not None
    server.read(accepted, 4096)
    server.write(accepted, b"pong")
    client.receive(server.data_to_send())
    client.read(stream, 10)
    client.close_stream(stream)
    sent.append(client.data_to_send())
    return sent


def seeds() -> Iterator[bytes]:
    for sender, messages in _captured_streams().items():
        # The plugin is the smux client: the agent's bytes reach a client session, and vice versa.
        config = 0b010 if sender == "agent" else 0b000
        yield bytes([config]) + b"".join(b"\x00" + chunk(m) for m in messages)
        # The same bytes cut into three-byte feeds, reads after each message.
        whole = b"".join(messages)
        yield bytes([config]) + b"".join(
            b"\x01" + chunk(whole[i : i + 3]) for i in range(0, min(len(whole), 600), 3)
        )
    v2 = _v2_exchange()
    yield bytes([0b001]) + b"".join(b"\x00" + chunk(m) + b"\x04\x00\xff" for m in v2)
    yield bytes([0b101]) + b"".join(
        b"\x00" + chunk(m) + b"\x05\x00" + chunk(b"reply") + b"\x06\x00\x00" for m in v2
    )
    yield bytes([0b011]) + b"\x07\x00\x00\x05\x00" + chunk(b"data") + b"\x06\x00\x01"
