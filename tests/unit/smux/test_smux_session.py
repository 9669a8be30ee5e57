"""The sans-I/O smux session: stream ids, FIN semantics, v2 windows, limits, keepalive."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openssm.protocol.smux import (
    INITIAL_PEER_WINDOW,
    Command,
    DataReceived,
    FrameParser,
    SmuxConfig,
    SmuxError,
    SmuxFrame,
    SmuxGoAwayError,
    SmuxProtocolError,
    SmuxSession,
    SmuxSessionClosedError,
    SmuxStreamError,
    SmuxStreamResetError,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
    encode_frame,
    encode_update,
)


def sent(session: SmuxSession) -> list[SmuxFrame]:
    return FrameParser(session.version).feed(session.data_to_send())


def pair(version: int = 1, **limits: int) -> tuple[SmuxSession, SmuxSession]:
    config = SmuxConfig(version=version, **limits)
    return SmuxSession(is_client=True, config=config), SmuxSession(is_client=False, config=config)


def deliver(source: SmuxSession, target: SmuxSession) -> list[object]:
    return list(target.receive(source.data_to_send()))


def test_client_ids_are_odd_from_3_and_server_ids_even_from_2() -> None:
    client, server = pair()
    assert [client.open_stream() for _ in range(3)] == [3, 5, 7]
    assert [server.open_stream() for _ in range(3)] == [2, 4, 6]
    assert sent(client) == [SmuxFrame(1, Command.SYN, sid) for sid in (3, 5, 7)]


def test_a_run_of_data_frames_on_one_stream_is_one_event_in_order() -> None:
    client, server = pair()
    first, second = client.open_stream(), client.open_stream()
    for chunk in (b"ab", b"cde", b"f"):
        client.write(first, chunk)
    client.write(second, b"xy")
    client.write(first, b"gh")
    client.close_stream(first)
    client.write(second, b"z")
    assert deliver(client, server) == [
        StreamOpened(first),
        StreamOpened(second),
        DataReceived(first, 6),
        DataReceived(second, 2),
        DataReceived(first, 2),
        StreamEnded(first),
        DataReceived(second, 1),
    ]
    assert server.read(first, 100) == b"abcdefgh"
    assert server.read(second, 100) == b"xyz"


def test_stream_ids_run_out_with_go_away() -> None:
    client = SmuxSession(is_client=True)
    client._next_stream_id = 2**32 - 3
    assert client.open_stream() == 2**32 - 1
    with pytest.raises(SmuxGoAwayError):
        client.open_stream()


def test_peer_syn_is_queued_for_accept_and_duplicates_ignored() -> None:
    client, server = pair()
    client.open_stream()
    assert deliver(client, server) == [StreamOpened(3)]
    assert server.receive(encode_frame(1, Command.SYN, 3)) == []
    assert server.accept() == 3
    assert server.accept() is None


@pytest.mark.parametrize("stream_id", [0, 2, 4])
def test_client_may_not_open_server_ids(stream_id: int) -> None:
    server = SmuxSession(is_client=False)
    with pytest.raises(SmuxProtocolError, match="owns"):
        server.receive(encode_frame(1, Command.SYN, stream_id))
    assert server.closed
    with pytest.raises(SmuxSessionClosedError):
        server.open_stream()


def test_fin_is_a_half_close() -> None:
    client, server = pair()
    sid = client.open_stream()
    client.write(sid, b"request")
    client.close_stream(sid)
    assert deliver(client, server) == [StreamOpened(sid), DataReceived(sid, 7), StreamEnded(sid)]
    assert not server.at_eof(sid), "buffered data is still readable after FIN"
    assert server.read(sid, 100) == b"request"
    assert server.at_eof(sid)
    # The side that received FIN can still answer; the side that sent it can still read.
    server.write(sid, b"response")
    with pytest.raises(SmuxStreamError, match="closed for writing"):
        client.write(sid, b"more")
    server.close_stream(sid)
    assert server.stream_count == 0
    assert deliver(server, client) == [DataReceived(sid, 8), StreamEnded(sid)]
    assert client.stream_count == 1, "kept until its data is read"
    assert client.read(sid, 100) == b"response"
    assert client.stream_count == 0
    with pytest.raises(SmuxStreamError):
        client.write(sid, b"late")


def test_data_after_fin_or_for_unknown_streams_is_discarded() -> None:
    client, server = pair()
    sid = client.open_stream()
    client.close_stream(sid)
    deliver(client, server)
    assert server.receive(encode_frame(1, Command.PSH, sid, b"after fin")) == []
    assert server.receive(encode_frame(1, Command.PSH, 99, b"never opened")) == []
    assert server.receive_buffered == 0


def test_release_drops_buffered_data_and_returns_capacity() -> None:
    client, server = pair()
    sid = client.open_stream()
    client.write(sid, b"x" * 1000)
    deliver(client, server)
    assert server.receive_buffered == 1000
    server.release_stream(sid)
    assert server.receive_buffered == 0
    assert sent(server) == [SmuxFrame(1, Command.FIN, sid)] * 2, "FIN, then FIN again: reset"
    assert not server.is_open(sid)


def test_a_second_fin_resets_the_stream() -> None:
    client, server = pair()
    sid = client.open_stream()
    client.write(sid, b"sent before the reset")
    deliver(client, server)
    server.write(sid, b"will be dropped")
    client.release_stream(sid)
    assert deliver(client, server) == [StreamEnded(sid), StreamReset(sid)]
    with pytest.raises(SmuxStreamResetError):
        server.write(sid, b"more")
    assert server.read(sid, 100) == b"sent before the reset", "received data stays readable"
    assert server.stream_count == 0
    assert server.pending_send == len(encode_frame(1, Command.PSH, sid, b"will be dropped")), "no FIN back"
    assert client.receive(server.data_to_send()) == [], "discarded by the side that dropped it"


def test_release_after_the_peers_fin_sends_a_single_fin() -> None:
    client, server = pair()
    sid = client.open_stream()
    client.close_stream(sid)
    deliver(client, server)
    server.release_stream(sid)
    assert sent(server) == [SmuxFrame(1, Command.FIN, sid)]


def test_data_is_split_at_max_frame_size() -> None:
    client, _ = pair()
    sid = client.open_stream()
    client.data_to_send()
    assert client.write(sid, bytes(70000)) == 70000
    assert [len(frame.data) for frame in sent(client)] == [32768, 32768, 4464]


def test_read_only_data_is_queued_as_views_and_writable_data_is_copied() -> None:
    client, _ = pair()
    sid = client.open_stream()
    client.data_to_send()
    data = bytes(range(256)) * 4
    client.write(sid, memoryview(data)[100:])  # a view of bytes: never copied
    queued = [part for part in client.parts_to_send() if len(part) > 8]
    assert all(isinstance(part, memoryview) and part.obj is data for part in queued)
    owned = bytearray(b"handed over")
    client.write(sid, memoryview(owned).toreadonly())  # read-only: its owner leaves it alone
    (queued_view,) = [part for part in client.parts_to_send() if len(part) > 8]
    assert isinstance(queued_view, memoryview) and queued_view.obj is owned
    mutable = bytearray(b"before")
    client.write(sid, memoryview(mutable))
    mutable[:] = b"after!"  # the caller may reuse its buffer at once
    assert client.data_to_send().endswith(b"before")


def test_v1_has_no_window_and_never_sends_upd() -> None:
    client, server = pair(version=1)
    sid = client.open_stream()
    assert client.write(sid, bytes(1_000_000)) == 1_000_000
    deliver(client, server)
    while server.read(sid, 1000):
        pass
    assert server.pending_send == 0
    assert server.receive(encode_frame(1, Command.UPD, sid, encode_update(0, 0))) == [], "ignored in v1"


def test_v2_sender_starts_with_256k_and_follows_updates() -> None:
    client, server = pair(version=2)
    sid = client.open_stream()
    assert client.send_window(sid) == INITIAL_PEER_WINDOW
    assert client.write(sid, bytes(300_000)) == INITIAL_PEER_WINDOW
    assert client.write(sid, b"more") == 0
    deliver(client, server)
    server.accept()
    # First read reports at once; then every half stream buffer (32 KiB) consumed.
    server.read(sid, 1000)
    (update,) = sent(server)
    assert update.command is Command.UPD
    assert update.update_fields() == (1000, 65536)
    assert client.receive(update.encode()) == [WindowUpdated(sid)]
    assert client.send_window(sid) == 0, "in flight 255 KiB exceeds the advertised 64 KiB"
    server.read(sid, 32767)
    assert server.pending_send == 0
    server.read(sid, 1)
    (update,) = sent(server)
    assert update.update_fields() == (33768, 65536)
    assert server.read(sid, 200_000) == bytes(200_000)
    client.receive(server.data_to_send())
    consumed = 1000 + 32768 + 200_000
    assert client.send_window(sid) == 65536 - (INITIAL_PEER_WINDOW - consumed)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 50_000), min_size=1, max_size=40), st.integers(1, 70_000))
def test_v2_transfers_everything_within_windows(writes: list[int], read_size: int) -> None:
    """Whatever the write and read sizes, data arrives whole and the receiver never overflows."""
    client, server = pair(version=2)
    sid = client.open_stream()
    expected = b"".join(bytes([i % 251]) * size for i, size in enumerate(writes))
    offset = 0
    received = bytearray()
    while offset < len(expected) or client.pending_send or server.buffered(sid):
        offset += client.write(sid, expected[offset : offset + 50_000])
        server.receive(client.data_to_send())
        assert server.buffered(sid) <= INITIAL_PEER_WINDOW
        received += server.read(sid, read_size)
        client.receive(server.data_to_send())
    assert bytes(received) == expected


def test_v2_peer_overrunning_its_window_is_cut_off() -> None:
    server = SmuxSession(is_client=False, config=SmuxConfig(version=2))
    server.receive(encode_frame(2, Command.SYN, 3))
    chunk = encode_frame(2, Command.PSH, 3, bytes(32768))
    server.receive(chunk * (INITIAL_PEER_WINDOW // 32768))
    with pytest.raises(SmuxProtocolError, match="overran"):
        server.receive(encode_frame(2, Command.PSH, 3, b"!"))
    assert server.closed and server.receive_buffered == 0


def test_v2_acknowledging_unsent_data_is_an_error() -> None:
    client = SmuxSession(is_client=True, config=SmuxConfig(version=2))
    sid = client.open_stream()
    client.write(sid, b"abc")
    with pytest.raises(SmuxProtocolError, match="more than was sent"):
        client.receive(encode_frame(2, Command.UPD, sid, encode_update(4, 65536)))


def test_session_receive_buffer_is_bounded() -> None:
    config = SmuxConfig(max_receive_buffer=100_000, max_stream_buffer=65536, receive_hard_limit=150_000)
    server = SmuxSession(is_client=False, config=config)
    server.receive(encode_frame(1, Command.SYN, 3))
    server.receive(encode_frame(1, Command.PSH, 3, bytes(60_000)) * 2)
    assert server.receive_capacity == -20_000, "callers stop feeding here"
    with pytest.raises(SmuxProtocolError, match="receive buffer limit"):
        server.receive(encode_frame(1, Command.PSH, 3, bytes(40_000)))
    assert server.closed


def test_streams_beyond_limits_are_refused_with_a_reset() -> None:
    server = SmuxSession(is_client=False, config=SmuxConfig(max_streams=3, accept_backlog=2))
    events = server.receive(b"".join(encode_frame(1, Command.SYN, sid) for sid in (3, 5, 7)))
    assert events == [StreamOpened(3), StreamOpened(5)]
    assert sent(server) == [SmuxFrame(1, Command.FIN, 7)] * 2, "backlog full: reset"
    assert server.accept() == 3
    server.receive(encode_frame(1, Command.SYN, 9) + encode_frame(1, Command.SYN, 11))
    assert sent(server) == [SmuxFrame(1, Command.FIN, 11)] * 2, "three streams open: reset"
    with pytest.raises(SmuxStreamError, match="too many"):
        server.open_stream()


def test_no_nop_unless_asked_and_keepalive_check() -> None:
    client, server = pair()
    sid = client.open_stream()
    client.write(sid, b"x")
    client.close_stream(sid)
    deliver(client, server)
    server.read(sid, 10)
    server.close_stream(sid)
    assert Command.NOP not in [frame.command for frame in sent(server)]
    assert server.keepalive_check() is True
    assert server.keepalive_check() is False, "nothing arrived since the last check"
    server.receive(encode_frame(1, Command.NOP, 0))
    assert server.keepalive_check() is True
    server.send_keepalive()
    assert sent(server) == [SmuxFrame(1, Command.NOP, 0)]


def test_close_can_finish_streams() -> None:
    client, _ = pair()
    first, second = client.open_stream(), client.open_stream()
    client.close_stream(first)
    client.data_to_send()
    client.close(finish_streams=True)
    assert sent(client) == [SmuxFrame(1, Command.FIN, second)]
    assert client.receive(encode_frame(1, Command.PSH, first, b"ignored")) == []
    with pytest.raises(SmuxSessionClosedError):
        client.write(second, b"x")


@pytest.mark.parametrize(
    "limits",
    [
        {"version": 3},
        {"max_frame_size": 65536},
        {"max_frame_size": 0},
        {"max_stream_buffer": 8 << 20},
        {"keepalive_interval": 40.0},
        {"receive_hard_limit": 1},
        {"max_streams": 0},
    ],
)
def test_config_is_validated(limits: dict[str, float]) -> None:
    with pytest.raises(SmuxError):
        SmuxConfig(**limits)  # type: ignore[arg-type]


def test_data_to_send_splits_anywhere() -> None:
    client, _ = pair()
    sid = client.open_stream()
    client.write(sid, b"hello")
    wire = encode_frame(1, Command.SYN, sid) + encode_frame(1, Command.PSH, sid, b"hello")
    pieces = [client.data_to_send(3) for _ in range(7)]
    assert b"".join(pieces) == wire
    assert client.pending_send == 0 and client.data_to_send() == b""
