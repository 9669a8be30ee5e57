"""The gateway's own messages in a relayed stream, on real frames: a sender and a receiver run the
protocol's own StreamEndpoint, the gateway in between renumbers with SplicedStream."""

from __future__ import annotations

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
