"""StreamEndpoint: in-order exactly-once delivery under reordering and duplication, acks,
retransmission timing (injected clock) and the send window."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.protocol.channel import (
    INITIAL_RTO,
    MAX_RTO,
    StreamEndpoint,
    WindowFull,
)
from openssm.protocol.frames import (
    FLAG_DATA,
    FLAG_SYN,
    Frame,
    MessageType,
    PayloadType,
    ack_for,
    acked_sequence,
    decode,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def agent(clock: FakeClock | None = None, *, send_window: int = 10_000) -> StreamEndpoint:
    return StreamEndpoint(
        MessageType.OUTPUT_STREAM_DATA,
        syn_on_first=True,
        monotonic=clock or FakeClock(),
        send_window=send_window,
    )


def client(*, reorder_limit: int = 10_000) -> StreamEndpoint:
    return StreamEndpoint(MessageType.INPUT_STREAM_DATA, syn_on_first=False, reorder_limit=reorder_limit)


def sent_frames(count: int) -> list[Frame]:
    sender = agent()
    return [decode(sender.send(PayloadType.OUTPUT, f"chunk {i}".encode())) for i in range(count)]


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[int, list[int]]:
    """A frame count and an arrival order: a permutation of all of them plus duplicates anywhere."""
    count = draw(st.integers(1, 40))
    order = draw(st.permutations(range(count)))
    extras = draw(st.lists(st.integers(0, count - 1), max_size=30))
    arrival = list(order)
    for seq in extras:
        arrival.insert(draw(st.integers(0, len(arrival))), seq)
    return count, arrival


@given(deliveries())
def test_any_arrival_order_delivers_each_frame_once_in_order(case: tuple[int, list[int]]) -> None:
    count, arrival = case
    frames = sent_frames(count)
    receiver = client()
    delivered: list[Frame] = []
    for seq in arrival:
        result = receiver.receive(frames[seq])
        assert result.ack is not None
        assert acked_sequence(result.ack) == seq
        assert result.ack.payload == ack_for(frames[seq]).payload
        delivered.extend(result.deliver)
    assert delivered == frames
    assert receiver.expected_seq == count


def test_frames_beyond_the_reorder_limit_are_not_acked() -> None:
    frames = sent_frames(5)
    receiver = client(reorder_limit=2)
    assert receiver.receive(frames[1]).ack is not None
    assert receiver.receive(frames[2]).ack is not None
    dropped = receiver.receive(frames[3])
    assert dropped.ack is None and dropped.deliver == []
    assert [f.sequence_number for f in receiver.receive(frames[0]).deliver] == [0, 1, 2]


def test_sequence_numbers_and_syn_flag() -> None:
    sender = agent()
    first, second = (decode(sender.send(PayloadType.OUTPUT, b"x")) for _ in range(2))
    assert (first.sequence_number, first.flags) == (0, FLAG_SYN)
    assert (second.sequence_number, second.flags) == (1, FLAG_DATA)
    plugin = client()
    assert decode(plugin.send(PayloadType.SIZE, b"{}")).flags == FLAG_DATA


def test_oldest_unacked_is_resent_after_the_rto_and_not_before() -> None:
    clock = FakeClock()
    sender = agent(clock)
    first = sender.send(PayloadType.OUTPUT, b"a")
    sender.send(PayloadType.OUTPUT, b"b")
    clock.advance(INITIAL_RTO - 0.01)
    assert sender.due_resends() == []
    clock.advance(0.02)
    assert sender.due_resends() == [first]  # only the oldest, byte-identical
    assert sender.due_resends() == []  # its resend time was recorded
    clock.advance(INITIAL_RTO + 0.01)
    assert sender.due_resends() == [first]


def test_ack_removes_pending_and_next_oldest_becomes_due() -> None:
    clock = FakeClock()
    sender = agent(clock)
    first = decode(sender.send(PayloadType.OUTPUT, b"a"))
    second = sender.send(PayloadType.OUTPUT, b"b")
    assert sender.on_ack(ack_for(first)) is True
    assert sender.on_ack(ack_for(first)) is False  # duplicate ack
    clock.advance(MAX_RTO + 0.01)
    assert sender.due_resends() == [second]
    assert sender.unacked_count == 1


@given(st.lists(st.floats(0.0, 5.0), min_size=1, max_size=30))
def test_rto_follows_the_rtt_estimate_and_stays_within_bounds(samples: list[float]) -> None:
    clock = FakeClock()
    sender = agent(clock)
    srtt, rttvar = 0.1, 0.0
    for sample in samples:
        frame = decode(sender.send(PayloadType.OUTPUT, b"x"))
        clock.advance(sample)
        assert sender.on_ack(ack_for(frame))
        rttvar = 0.75 * rttvar + 0.25 * abs(srtt - sample)
        srtt = 0.875 * srtt + 0.125 * sample
        assert sender.rto == pytest.approx(min(1.0, srtt + max(0.01, 4 * rttvar)))
        assert 0.01 <= sender.rto <= MAX_RTO


def test_all_unacked_replays_everything_oldest_first() -> None:
    sender = agent()
    sent = [sender.send(PayloadType.OUTPUT, bytes([i])) for i in range(4)]
    sender.on_ack(ack_for(decode(sent[1])))
    assert sender.all_unacked() == [sent[0], sent[2], sent[3]]


def test_window_full_until_an_ack_frees_a_slot() -> None:
    sender = agent(send_window=3)
    sent = [decode(sender.send(PayloadType.OUTPUT, b"x")) for _ in range(3)]
    assert not sender.can_send
    with pytest.raises(WindowFull):
        sender.send(PayloadType.OUTPUT, b"overflow")
    assert sender.next_send_seq == 3  # the refused message took no sequence number
    sender.on_ack(ack_for(sent[1]))
    assert sender.can_send
    assert decode(sender.send(PayloadType.OUTPUT, b"y")).sequence_number == 3


def test_rejects_non_stream_message_types() -> None:
    with pytest.raises(ValueError, match="not a stream"):
        StreamEndpoint(MessageType.ACKNOWLEDGE, syn_on_first=False)
