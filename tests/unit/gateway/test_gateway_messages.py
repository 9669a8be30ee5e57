"""Gateway-written frames."""

from __future__ import annotations

import uuid

from openssm.gateway import messages
from openssm.protocol.frames import MessageType, decode
from openssm.protocol.messages import parse_channel_closed, parse_interactive_shell

ROW = {
    "session_id": "alice-0123456789abcdef0",
    "target": "mi-0123456789abcdef0",
    "document_name": "AWS-StartPortForwardingSession",
    "document_content": {
        "schemaVersion": "1.0",
        "sessionType": "Port",
        "properties": {"portNumber": "{{ portNumber }}"},
    },
    "parameters": {"portNumber": ["22"], "hosts": ["a", "b"]},
    "run_as_user": None,
    "owner_arn": "arn:aws:iam::123456789012:user/alice",
}


def test_interactive_shell_from_a_sessions_row() -> None:
    frame = decode(messages.interactive_shell(ROW))
    assert (frame.message_type, frame.sequence_number, frame.flags, frame.payload_type) == (
        MessageType.INTERACTIVE_SHELL,
        0,
        0,
        0,
    )
    shell = parse_interactive_shell(frame.payload)
    assert shell.task_id == ROW["session_id"]
    assert shell.topic == "aws.ssm.startSession"
    content = shell.content
    assert content.document_content == ROW["document_content"]
    assert content.parameters == {"portNumber": "22", "hosts": "a,b"}  # scalars for the agent
    assert content.run_as_user == ""
    assert content.session_owner == ROW["owner_arn"]


def test_channel_closed_has_the_captured_key_order() -> None:
    frame = decode(messages.channel_closed("s-1", "i-0123456789abcdef0", "Session idle timeout"))
    assert frame.message_type == MessageType.CHANNEL_CLOSED
    assert list(frame.json()) == [
        "MessageId",
        "CreatedDate",
        "DestinationId",
        "SessionId",
        "MessageType",
        "SchemaVersion",
        "Output",
    ]
    closed = parse_channel_closed(frame.payload)
    assert (closed.session_id, closed.destination_id, closed.output) == (
        "s-1",
        "i-0123456789abcdef0",
        "Session idle timeout",
    )
    uuid.UUID(closed.message_id)


def test_publication_payloads_are_never_empty() -> None:
    for data in (messages.pause_publication("s-1"), messages.start_publication("s-1")):
        assert decode(data).payload  # the agent cannot read an empty payload


def test_task_complete_acknowledgement_carries_the_message_id() -> None:
    from openssm.protocol.messages import AgentTaskComplete

    sent = AgentTaskComplete(task_id="s-1", final_task_status="Failed", output="boom").to_frame()
    task = messages.task_complete(decode(sent.encode()))
    assert (task.task_id, task.final_status, task.output, task.succeeded) == ("s-1", "Failed", "boom", False)
    ack = decode(task.acknowledgement)
    assert ack.message_type == MessageType.AGENT_TASK_ACKNOWLEDGE
    assert ack.json() == {
        "SchemaVersion": 1,
        "MessageId": str(sent.message_id),
        "TaskId": "s-1",
        "Topic": "agent_task_complete",
    }


def test_session_state_tolerates_garbage() -> None:
    assert (
        messages.session_state(b'{"SchemaVersion":1,"SessionState":"Terminating","SessionId":"s"}')
        == "Terminating"
    )
    assert messages.session_state(b"\xff") is None
    assert messages.session_state(b"[]") is None


def test_pending_frames_are_bounded_in_count_and_bytes() -> None:
    from openssm.gateway.session import Pending

    pending = Pending(max_frames=3, max_bytes=10)
    for data in (b"aaaa", b"bbbb", b"cc"):
        pending.append(data)
    pending.append(b"dddd")  # 14 bytes: the oldest goes
    assert [pending.popleft() for _ in range(3)] == [b"bbbb", b"cc", b"dddd"]
    assert not pending
    for data in (b"1", b"2", b"3", b"4"):
        pending.append(data)
    assert [pending.popleft() for _ in range(3)] == [b"2", b"3", b"4"]
