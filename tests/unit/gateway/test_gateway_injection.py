"""The gateway's own messages in a relayed stream, on real frames: a sender and a receiver run the
protocol's own StreamEndpoint, the gateway in between renumbers with SplicedStream."""

from __future__ import annotations

import json

from openssm.gateway.injection import SplicedStream
from openssm.gateway.join import tail_from
from openssm.protocol import frames
from openssm.protocol.channel import StreamEndpoint
from openssm.protocol.frames import MessageType, PayloadType
from openssm.protocol.joining import joinable


def _relay(
    stream: SplicedStream, receiver: StreamEndpoint, sender: StreamEndpoint, data: bytes
) -> list[bytes]:
    """Pass one sender frame through the gateway to the receiver; return what the receiver got in
    order, and feed its ack back through the gateway to the sender."""
    forward, answer = stream.from_sender(data)
    if answer is not None:
        sender.on_ack(frames.decode(answer))
    if forward is None:
        return []
    received = receiver.receive(frames.decode(forward, verify_digest=True))
    assert received.ack is not None
    back = stream.from_receiver(received.ack.encode())
    if back is not None:
        assert sender.on_ack(frames.decode(back, verify_digest=True))
    return [bytes(frame.payload) for frame in received.deliver]


def test_owner_and_joiner_input_reach_the_agent_in_order_and_every_ack_finds_its_sender() -> None:
    owner = StreamEndpoint(MessageType.INPUT_STREAM_DATA, syn_on_first=False)
    agent = StreamEndpoint(MessageType.OUTPUT_STREAM_DATA, syn_on_first=True)
    stream = SplicedStream(MessageType.INPUT_STREAM_DATA)
    seen = _relay(stream, agent, owner, owner.send(PayloadType.OUTPUT, b"ls"))
    injected = stream.inject(PayloadType.OUTPUT, b"pwd")
    received = agent.receive(frames.decode(injected, verify_digest=True))
    seen += [bytes(frame.payload) for frame in received.deliver]
    assert received.ack is not None
    assert stream.unacknowledged == [injected]
    assert stream.from_receiver(received.ack.encode()) is None  # the gateway's own: not the owner's
    assert stream.unacknowledged == []
    seen += _relay(stream, agent, owner, owner.send(PayloadType.OUTPUT, b"id"))
    assert seen == [b"ls", b"pwd", b"id"]
    assert owner.unacked_count == 0


def test_a_resend_of_something_acknowledged_before_the_splice_forgot_it_is_answered_here() -> None:
    owner = StreamEndpoint(MessageType.INPUT_STREAM_DATA, syn_on_first=False)
    agent = StreamEndpoint(MessageType.OUTPUT_STREAM_DATA, syn_on_first=True)
    stream = SplicedStream(MessageType.INPUT_STREAM_DATA)
    first = owner.send(PayloadType.OUTPUT, b"a")
    forward, _ = stream.from_sender(first)
    assert forward is not None
    ack = agent.receive(frames.decode(forward)).ack  # the agent's ack is lost on the way back
    assert ack is not None
    injected = stream.inject(PayloadType.OUTPUT, b"b")
    for data in (ack.encode(), agent.receive(frames.decode(injected)).ack.encode()):  # type: ignore[union-attr]
        stream.from_receiver(data)
    forward, answer = stream.from_sender(first)  # the owner resends: the agent has it
    assert forward is None and answer is not None
    assert owner.on_ack(frames.decode(answer))


def test_only_plain_shell_sessions_are_joinable() -> None:
    shell = {"session_type": "Standard_Stream", "document_content": {"inputs": {}}}
    assert joinable(shell) is None
    assert joinable({**shell, "session_type": "Port"}) is not None
    assert joinable({**shell, "document_content": {"inputs": {"kmsKeyId": "alias/x"}}}) is not None


def test_the_last_screen_starts_at_a_whole_line() -> None:
    assert tail_from(b"\x1b[0;3cut escape\r\nprompt$ ls\r\nfile\r\n") == b"prompt$ ls\r\nfile\r\n"
    assert tail_from(b"no newline at all") == b"no newline at all"
    assert tail_from(b"only the end\n") == b"only the end\n"


def test_a_restored_splice_goes_on_with_the_same_numbers_from_any_state_it_kept() -> None:
    """The gateway restarts twice in a renumbered stream: once from a state it kept before its own
    message went out (acks since then lost with it), once from its latest. Each time the new splice
    is made from the state's JSON, the owner resends what is unacknowledged, the gateway resends its
    own, and the agent gets every message once, in order."""
    owner = StreamEndpoint(MessageType.INPUT_STREAM_DATA, syn_on_first=False)
    agent = StreamEndpoint(MessageType.OUTPUT_STREAM_DATA, syn_on_first=True)
    stream = SplicedStream(MessageType.INPUT_STREAM_DATA)
    seen = _relay(stream, agent, owner, owner.send(PayloadType.OUTPUT, b"o1"))

    def inject(payload: bytes) -> dict[str, object]:
        """Inject; returns the state as the relay keeps it before the message goes out."""
        data = stream.inject(PayloadType.OUTPUT, payload)
        kept = stream.state()
        received = agent.receive(frames.decode(data, verify_digest=True))
        assert received.ack is not None and stream.from_receiver(received.ack.encode()) is None
        seen.extend(bytes(frame.payload) for frame in received.deliver)
        return kept

    def restart(state: dict[str, object]) -> SplicedStream:
        restored = SplicedStream.restored(MessageType.INPUT_STREAM_DATA, json.loads(json.dumps(state)))
        for data in restored.unacknowledged:  # the gateway's own, which the agent may have
            received = agent.receive(frames.decode(data, verify_digest=True))
            assert received.ack is not None
            assert restored.from_receiver(received.ack.encode()) is None
        return restored

    inject(b"j1")
    seen += _relay(stream, agent, owner, owner.send(PayloadType.OUTPUT, b"o2"))
    kept = inject(b"j2")
    owner.send(PayloadType.OUTPUT, b"o3")  # sent to the gateway, which dies on it
    stream = restart(kept)
    for data in owner.all_unacked():
        seen += _relay(stream, agent, owner, data)
    assert owner.unacked_count == 0
    inject(b"j3")
    seen += _relay(stream, agent, owner, owner.send(PayloadType.OUTPUT, b"o4"))
    stream = restart(stream.state())
    inject(b"j4")  # before the owner sends again: only the kept frontier says where it goes
    seen += _relay(stream, agent, owner, owner.send(PayloadType.OUTPUT, b"o5"))
    assert seen == [b"o1", b"j1", b"o2", b"j2", b"o3", b"j3", b"o4", b"j4", b"o5"]
    assert owner.unacked_count == 0 and stream.unacknowledged == []
