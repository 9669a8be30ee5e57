"""DataChannelCore, the sans-I/O data-channel end that the agent, the client (and, in JavaScript, the
browser) drive: exactly-once in-order delivery between two cores whatever the network does to the
frames, retransmission timing on a ManualClock, pause/start, outage recovery, handshake and fast
path, endings, and malformed frames."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openssm.clock import ManualClock
from openssm.errors import LocalProtocolError
from openssm.protocol.channel import INITIAL_RTO, MAX_RTO
from openssm.protocol.datachannel import (
    FAST_PATH_PAYLOAD,
    FAST_PATH_PROPERTY,
    FAST_PATH_VERSION,
    Acked,
    ChannelClosed,
    CloseReason,
    DataChannelCore,
    Dropped,
    Event,
    Handshake,
    HandshakeStep,
    KeepaliveDue,
    PublicationPaused,
    PublicationStarted,
    Role,
    State,
    StreamData,
)
from openssm.protocol.frames import (
    FLAG_SYN,
    Frame,
    FrameError,
    MessageType,
    PayloadFlag,
    PayloadParts,
    PayloadType,
    decode,
    flag_payload,
)
from openssm.protocol.messages import ChannelClosed as ChannelClosedMessage
from openssm.protocol.messages import pause_publication, start_publication


def handshake_of(end: DataChannelCore) -> Handshake:
    """Read afresh (an assert on the attribute would narrow it for mypy for the rest of a test)."""
    return end.handshake


def state_of(end: DataChannelCore) -> State:
    return end.state


def wire(parts: PayloadParts) -> bytes:
    return b"".join(parts)


def pair(clock: ManualClock) -> tuple[DataChannelCore, DataChannelCore]:
    agent = DataChannelCore(Role.AGENT, now=clock.monotonic())
    client = DataChannelCore(Role.CLIENT, now=clock.monotonic(), verify_digest=True, require_dates=True)
    agent.ready = client.ready = lambda frame: True
    agent.connected(clock.monotonic())
    client.connected(clock.monotonic())
    return agent, client


def payloads(events: list[Event]) -> list[bytes]:
    return [bytes(e.frame.payload) for e in events if isinstance(e, StreamData)]


# -- exactly once, in order, whatever the network does ---------------------------------------------


@dataclasses.dataclass
class Network:
    """Frames in flight each way; the test decides which arrive, twice, late or never."""

    to_client: list[bytes] = dataclasses.field(default_factory=list)
    to_agent: list[bytes] = dataclasses.field(default_factory=list)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.booleans(), st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("deliver"), st.booleans(), st.integers(0, 50)),
        st.tuples(st.just("drop"), st.booleans(), st.integers(0, 50)),
        st.tuples(st.just("duplicate"), st.booleans(), st.integers(0, 50)),
        st.tuples(st.just("wait"), st.booleans(), st.floats(0.0, 1.5)),
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_two_cores_deliver_everything_once_in_order_under_loss_duplication_and_reordering(
    ops: list[tuple[str, bool, object]],
) -> None:
    clock = ManualClock()
    agent, client = pair(clock)
    net = Network()
    sent: dict[bool, list[bytes]] = {True: [], False: []}  # True: agent → client
    got: dict[bool, list[bytes]] = {True: [], False: []}

    def pump() -> None:
        net.to_client.extend(wire(p) for p in agent.data_to_send())
        net.to_agent.extend(wire(p) for p in client.data_to_send())

    def arrive(to_client: bool, data: bytes) -> None:
        core = client if to_client else agent
        got[to_client].extend(payloads(core.receive_data(bytearray(data), clock.monotonic())))

    for op, direction, arg in ops:
        queue = net.to_client if direction else net.to_agent
        if op == "send":
            core = agent if direction else client
            assert isinstance(arg, bytes)
            if core.can_send:
                core.send(PayloadType.OUTPUT, arg, clock.monotonic())
                sent[direction].append(arg)
        elif op in ("deliver", "drop", "duplicate") and queue:
            assert isinstance(arg, int)
            index = arg % len(queue)
            data = queue[index] if op == "duplicate" else queue.pop(index)
            if op != "drop":
                arrive(direction, data)
        elif op == "wait":
            assert isinstance(arg, float)
            clock.advance(arg)
            agent.tick(clock.monotonic())
            client.tick(clock.monotonic())
        pump()

    # Then the network heals: everything in flight arrives, and the timers resend what was lost.
    for _ in range(400):
        while net.to_client or net.to_agent:
            for direction, queue in ((True, net.to_client), (False, net.to_agent)):
                while queue:
                    arrive(direction, queue.pop(0))
            pump()
        if agent.unacked_count == 0 and client.unacked_count == 0:
            break
        clock.advance(MAX_RTO)
        agent.tick(clock.monotonic())
        client.tick(clock.monotonic())
        pump()
    assert agent.unacked_count == client.unacked_count == 0
    assert got[True] == sent[True]
    assert got[False] == sent[False]


# -- retransmission timing -------------------------------------------------------------------------


def test_the_oldest_unacked_message_is_resent_after_the_rto_byte_identical() -> None:
    clock = ManualClock()
    agent, _client = pair(clock)
    agent.send(PayloadType.OUTPUT, b"one", clock.monotonic())
    agent.send(PayloadType.OUTPUT, b"two", clock.monotonic())
    first, _second = (wire(p) for p in agent.data_to_send())
    assert decode(first).flags == FLAG_SYN
    assert agent.next_deadline() == pytest.approx(clock.monotonic() + INITIAL_RTO)
    clock.advance(INITIAL_RTO - 0.01)
    assert agent.tick(clock.monotonic()) == [] and agent.data_to_send() == []
    clock.advance(0.01)
    agent.tick(clock.monotonic())
    assert [wire(p) for p in agent.data_to_send()] == [first]  # the oldest only
    clock.advance(INITIAL_RTO / 2)
    agent.tick(clock.monotonic())
    assert agent.data_to_send() == []  # its resend time was recorded


def test_rto_follows_aws_formula() -> None:
    clock = ManualClock()
    agent, client = pair(clock)
    agent.send(PayloadType.OUTPUT, b"x", clock.monotonic())
    (message,) = agent.data_to_send()
    clock.advance(0.3)
    client.receive_data(bytearray(wire(message)), clock.monotonic())
    (ack,) = client.data_to_send()
    events = agent.receive_data(bytearray(wire(ack)), clock.monotonic())
    assert events == [Acked(0)]
    # R = 0.3: RTTVAR = ¼·|0.1 - 0.3| = 0.05; SRTT = ⅞·0.1 + ⅛·0.3 = 0.125; RTO = 0.125 + 4·0.05
    assert agent.stream.rttvar == pytest.approx(0.05)
    assert agent.stream.srtt == pytest.approx(0.125)
    assert agent.stream.rto == pytest.approx(0.325)
    assert agent.next_deadline() is None  # nothing unacked, no stall or keepalive timer


def test_after_an_outage_everything_unacked_goes_at_once() -> None:
    """Issue 15: when the peer answers again after a silence, every overdue message is resent in
    one go, not one per RTO."""
    clock = ManualClock()
    agent, client = pair(clock)
    for index in range(20):
        client.send(PayloadType.OUTPUT, b"%d" % index, clock.monotonic())
    lost = client.data_to_send()
    assert len(lost) == 20
    resent_heads = []
    for _ in range(3):  # the agent is away: the head alone is resent, per RTO
        clock.advance(MAX_RTO)
        client.tick(clock.monotonic())
        resent_heads.extend(client.data_to_send())
    assert [wire(p) for p in resent_heads] == [wire(lost[0])] * 3
    agent.receive_data(bytearray(wire(resent_heads[-1])), clock.monotonic())  # the agent is back
    (ack,) = agent.data_to_send()
    client.receive_data(bytearray(wire(ack)), clock.monotonic())
    burst = [wire(p) for p in client.data_to_send()]
    assert burst == [wire(p) for p in lost[1:]]


def test_start_publication_resends_everything_and_pause_holds_sending() -> None:
    clock = ManualClock()
    agent, _client = pair(clock)
    agent.send(PayloadType.OUTPUT, b"a", clock.monotonic())
    agent.send(PayloadType.OUTPUT, b"b", clock.monotonic())
    original = [wire(p) for p in agent.data_to_send()]
    pause = pause_publication("s").to_frame()
    assert agent.receive_frame(pause, clock.monotonic()) == [PublicationPaused()]
    assert agent.state is State.PAUSED and not agent.can_send
    with pytest.raises(LocalProtocolError):
        agent.send(PayloadType.OUTPUT, b"c", clock.monotonic())
    clock.advance(10 * MAX_RTO)
    agent.tick(clock.monotonic())
    assert agent.data_to_send() == []  # no resend while paused
    assert agent.receive_frame(start_publication("s").to_frame(), clock.monotonic()) == [PublicationStarted()]
    assert state_of(agent) is State.OPEN
    assert [wire(p) for p in agent.data_to_send()] == original


def test_a_lost_transport_holds_messages_and_replays_them_on_connect() -> None:
    clock = ManualClock()
    agent, _client = pair(clock)
    agent.send(PayloadType.OUTPUT, b"before", clock.monotonic())
    agent.connection_lost()
    assert agent.state is State.CONNECTING
    agent.send(PayloadType.OUTPUT, b"during", clock.monotonic())
    assert agent.data_to_send() == []
    clock.advance(5.0)
    agent.tick(clock.monotonic())
    assert agent.data_to_send() == []  # nothing to resend into
    agent.connected(clock.monotonic())
    replay = [decode(wire(p)) for p in agent.data_to_send()]
    assert [(f.sequence_number, bytes(f.payload)) for f in replay] == [(0, b"before"), (1, b"during")]


# -- flow control and endings ----------------------------------------------------------------------


def test_not_ready_messages_go_unacked_and_are_taken_later() -> None:
    clock = ManualClock()
    agent, client = pair(clock)
    agent.ready = None  # the agent's handler is not there yet
    client.send(PayloadType.OUTPUT, b"early", clock.monotonic())
    (message,) = client.data_to_send()
    events = agent.receive_data(bytearray(wire(message)), clock.monotonic())
    assert events == [Dropped("not ready for it yet", malformed=False)]
    assert agent.data_to_send() == []  # no ack
    agent.ready = lambda frame: True
    clock.advance(INITIAL_RTO)
    client.tick(clock.monotonic())
    (again,) = client.data_to_send()
    assert payloads(agent.receive_data(bytearray(wire(again)), clock.monotonic())) == [b"early"]


def test_oversized_messages_are_dropped_unacked_until_the_fast_path_is_offered() -> None:
    clock = ManualClock()
    agent = DataChannelCore(Role.AGENT, now=clock.monotonic(), max_payload=64 * 1024)
    agent.ready = lambda frame: True
    agent.connected(clock.monotonic())
    big = Frame(MessageType.INPUT_STREAM_DATA, 0, 0, PayloadType.OUTPUT, bytes(100_000))
    (dropped,) = agent.receive_frame(big, clock.monotonic())
    assert isinstance(dropped, Dropped) and "limit 65536" in dropped.reason
    agent.offer_fast_path()
    assert agent.max_payload == FAST_PATH_PAYLOAD
    assert payloads(agent.receive_frame(big, clock.monotonic())) == [bytes(100_000)]


def test_terminate_flag_and_channel_closed_end_the_channel() -> None:
    clock = ManualClock()
    agent, client = pair(clock)
    client.send(PayloadType.FLAG, flag_payload(PayloadFlag.TERMINATE_SESSION), clock.monotonic())
    (flag,) = client.data_to_send()
    events = agent.receive_data(bytearray(wire(flag)), clock.monotonic())
    assert events == [ChannelClosed(CloseReason.TERMINATED)]
    assert agent.state is State.CLOSED
    assert len(agent.data_to_send()) == 1  # the flag is still acked
    with pytest.raises(LocalProtocolError):
        agent.send(PayloadType.OUTPUT, b"late", clock.monotonic())
    closed = ChannelClosedMessage("s", "i-1", output="Session ended by the administrator").to_frame()
    assert client.receive_frame(closed, clock.monotonic()) == [
        ChannelClosed(CloseReason.CHANNEL_CLOSED, "Session ended by the administrator")
    ]


def test_a_stalled_channel_closes_and_keepalives_come_due() -> None:
    clock = ManualClock()
    client = DataChannelCore(Role.CLIENT, now=clock.monotonic(), stall_limit=300.0, keepalive_interval=120.0)
    client.connected(clock.monotonic())
    assert client.next_deadline() == pytest.approx(clock.monotonic() + 120.0)
    clock.advance(120.0)
    assert client.tick(clock.monotonic()) == [KeepaliveDue()]
    client.send(PayloadType.OUTPUT, b"x", clock.monotonic())
    events: list[Event] = []
    for _ in range(400):
        clock.advance(1.0)
        events += client.tick(clock.monotonic())
    assert ChannelClosed(CloseReason.STALLED) in events
    assert client.state is State.CLOSED


def test_malformed_frames_are_reported_and_dropped() -> None:
    clock = ManualClock()
    agent, client = pair(clock)
    (event,) = client.receive_data(bytearray(b"\x00\x00\x00\x74garbage"), clock.monotonic())
    assert isinstance(event, Dropped) and event.malformed
    dateless = Frame(MessageType.OUTPUT_STREAM_DATA, 0, 0, PayloadType.OUTPUT, b"x", created_date=0)
    (event,) = client.receive_data(bytearray(dateless.encode()), clock.monotonic())
    assert isinstance(event, Dropped) and "CreatedDate" in event.reason
    bad_ack = Frame(MessageType.ACKNOWLEDGE, 0, 3, PayloadType.NONE, b"{}")
    (event,) = agent.receive_frame(bad_ack, clock.monotonic())
    assert isinstance(event, Dropped) and "acknowledge" in event.reason
    assert client.data_to_send() == [] and agent.data_to_send() == []


# -- handshake and fast path -----------------------------------------------------------------------


def handshake(clock: ManualClock, *, offer: bool, accept: bool) -> tuple[DataChannelCore, DataChannelCore]:
    agent, client = pair(clock)
    properties = {"portNumber": "22"} | ({FAST_PATH_PROPERTY: FAST_PATH_VERSION} if offer else {})
    if offer:
        agent.offer_fast_path()
    request = {
        "AgentVersion": "3.3.0.0",
        "RequestedClientActions": [
            {
                "ActionType": "SessionType",
                "ActionParameters": {"SessionType": "Port", "Properties": properties},
            }
        ],
    }
    agent.send(PayloadType.HANDSHAKE_REQUEST, json.dumps(request).encode(), clock.monotonic())
    assert agent.handshake is Handshake.REQUESTED
    (message,) = agent.data_to_send()
    (step,) = client.receive_data(bytearray(wire(message)), clock.monotonic())
    assert isinstance(step, HandshakeStep) and step.handshake is Handshake.REQUESTED
    assert client.fast_path_offered is offer
    extensions = client.accept_fast_path() if accept else ()
    response: dict[str, Any] = {"ClientVersion": "1.2.677.0", "ProcessedClientActions": [], "Errors": None}
    response |= dict(extensions)
    client.send(PayloadType.HANDSHAKE_RESPONSE, json.dumps(response).encode(), clock.monotonic())
    assert client.handshake is Handshake.RESPONDED
    for message in client.data_to_send():
        agent.receive_data(bytearray(wire(message)), clock.monotonic())
    assert handshake_of(agent) is Handshake.RESPONDED
    agent.send(
        PayloadType.HANDSHAKE_COMPLETE,
        b'{"HandshakeTimeToComplete":1,"CustomerMessage":""}',
        clock.monotonic(),
    )
    for message in agent.data_to_send():
        client.receive_data(bytearray(wire(message)), clock.monotonic())
    assert handshake_of(agent) is handshake_of(client) is Handshake.COMPLETE
    return agent, client


def test_fast_path_is_used_only_when_offered_and_accepted() -> None:
    clock = ManualClock()
    agent, client = handshake(clock, offer=True, accept=True)
    assert agent.fast_path and client.fast_path
    agent.send(PayloadType.OUTPUT, b"fast", clock.monotonic())
    (message,) = agent.data_to_send()
    with pytest.raises(FrameError):  # sent without a digest
        decode(wire(message), verify_digest=True)
    frame = decode(wire(message), verify_digest=True, allow_no_digest=True)
    assert payloads(client.receive_frame(frame, clock.monotonic())) == [b"fast"]
    plain_agent, plain_client = handshake(ManualClock(), offer=True, accept=False)
    assert not plain_agent.fast_path and not plain_client.fast_path
    with pytest.raises(LocalProtocolError):
        handshake(ManualClock(), offer=False, accept=True)


def test_fast_path_output_without_digest_is_refused_before_negotiation() -> None:
    clock = ManualClock()
    _agent, client = pair(clock)
    digestless = Frame(MessageType.OUTPUT_STREAM_DATA, 0, 0, PayloadType.OUTPUT, b"x").encode(digest=False)
    (event,) = client.receive_data(bytearray(digestless), clock.monotonic())
    assert isinstance(event, Dropped)
    fast_agent, fast_client = handshake(clock, offer=True, accept=True)
    fast_agent.send(PayloadType.OUTPUT, b"y", clock.monotonic())
    (message,) = fast_agent.data_to_send()
    assert payloads(fast_client.receive_data(bytearray(wire(message)), clock.monotonic())) == [b"y"]


def test_an_ack_past_a_gap_resends_every_overdue_message_before_it() -> None:
    """The agent re-dialled: messages in flight to its old socket were lost, later ones (held by the
    gateway) arrive and are acked. The first such ack sends all the overdue ones again at once."""
    clock = ManualClock()
    agent, client = pair(clock)
    for index in range(10):
        client.send(PayloadType.OUTPUT, b"%d" % index, clock.monotonic())
    sent = client.data_to_send()
    clock.advance(0.5)  # longer than the RTO: 0-7 are overdue
    agent.ready = lambda frame: frame.sequence_number >= 8 or agent.stream.expected_seq > 0
    for message in sent[8:]:
        agent.receive_data(bytearray(wire(message)), clock.monotonic())
    acks = agent.data_to_send()
    assert len(acks) == 2  # 8 and 9, held out of order
    client.receive_data(bytearray(wire(acks[0])), clock.monotonic())
    assert [wire(p) for p in client.data_to_send()] == [wire(p) for p in sent[:8]]
    client.receive_data(bytearray(wire(acks[1])), clock.monotonic())
    assert client.data_to_send() == []  # just resent: not overdue again


def test_on_the_fast_path_small_messages_out_of_order_are_bounded_by_bytes_not_count() -> None:
    clock = ManualClock()
    agent = DataChannelCore(Role.AGENT, now=clock.monotonic(), reorder_limit=1024)
    agent.ready = lambda frame: True
    agent.connected(clock.monotonic())
    agent.offer_fast_path()
    for seq in range(1, 201):  # seq 0 lost: 200 small ones wait for it, all held and acked
        agent.receive_frame(
            Frame(MessageType.INPUT_STREAM_DATA, seq, 0, PayloadType.OUTPUT, b"x" * 16), clock.monotonic()
        )
    assert len(agent.data_to_send()) == 200
    big = bytes(FAST_PATH_PAYLOAD)
    for seq in range(201, 240):  # full-size ones: held only up to 16 messages' worth of bytes
        agent.receive_frame(
            Frame(MessageType.INPUT_STREAM_DATA, seq, 0, PayloadType.OUTPUT, big), clock.monotonic()
        )
    assert len(agent.data_to_send()) == 15  # 200 x 16 bytes and 15 full ones fit under 16 full ones
    first = agent.receive_frame(
        Frame(MessageType.INPUT_STREAM_DATA, 0, 0, PayloadType.OUTPUT, b"0"), clock.monotonic()
    )
    assert len(payloads(first)) == 1 + 200 + 15
