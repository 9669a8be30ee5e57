"""Replay every WebSocket message of the golden captures through the protocol core.

Bytes in the captures were written by the real plugin, agent or a fake gateway they accepted;
decoding and re-encoding must reproduce them exactly.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from openssm.protocol import documents, messages
from openssm.protocol.channel import StreamEndpoint
from openssm.protocol.frames import (
    FLAG_ACK,
    Frame,
    MessageType,
    PayloadType,
    ack_for,
    acked_sequence,
    decode,
    parse_flag,
)

Event = dict[str, Any]

STREAM_JSON_TYPES = {
    PayloadType.HANDSHAKE_REQUEST,
    PayloadType.HANDSHAKE_RESPONSE,
    PayloadType.HANDSHAKE_COMPLETE,
    PayloadType.SIZE,
}


def frame_of(event: Event) -> Frame:
    return decode(bytes.fromhex(event["hex"]), verify_digest=True)


def test_frame_decodes_and_reencodes_identically(ws_binary_event: Event) -> None:
    raw = bytes.fromhex(ws_binary_event["hex"])
    frame = decode(raw, verify_digest=True)
    expected = ws_binary_event["decoded"]
    assert frame.message_type == expected["MessageType"]
    assert frame.sequence_number == expected["SequenceNumber"]
    assert frame.flags == expected["Flags"]
    assert frame.payload_type == expected["PayloadType"]
    assert frame.message_id == uuid.UUID(expected["MessageId"])
    assert frame.created_date == expected["CreatedDate"]
    assert len(frame.payload) == expected["PayloadLength"]
    assert frame.encode() == raw


def test_json_payload_parses_and_rebuilds_byte_identical(ws_binary_event: Event) -> None:
    frame = frame_of(ws_binary_event)
    if frame.message_type == MessageType.ACKNOWLEDGE:
        assert frame.flags == FLAG_ACK
        assert acked_sequence(frame) >= 0
        return
    if frame.is_stream:
        if frame.payload_type in STREAM_JSON_TYPES:
            parsed = messages.parse_stream_json(frame)
            assert parsed.encode() == frame.payload
        elif frame.payload_type == PayloadType.FLAG:
            assert parse_flag(frame.payload) == ws_binary_event["decoded"]["Flag"]["value"]
        else:
            assert frame.payload_type in (PayloadType.OUTPUT, PayloadType.STDERR, PayloadType.EXIT_CODE)
        return
    message = messages.parse_service_message(frame)
    assert message.encode() == frame.payload


def test_open_frame_parses_to_its_kind_and_rebuilds(ws_text_event: Event) -> None:
    opened = messages.parse_open_frame(ws_text_event["text"])
    if ws_text_event["from"] == "plugin":
        assert isinstance(opened, messages.ClientOpen)
        assert opened.client_version == "1.2.677.0"
    elif ws_text_event["channel"] == "ws-control":
        assert isinstance(opened, messages.ControlOpen)
        assert opened.platform_type == "linux"
    else:
        assert isinstance(opened, messages.AgentDataOpen)
        assert opened.client_instance_id.startswith(("i-", "mi-"))
    assert opened.token_value
    assert opened.to_text() == ws_text_event["text"]


def _binary_frames(events: list[Event]) -> list[tuple[Event, Frame]]:
    return [(event, frame_of(event)) for event in events if event["kind"] == "ws-binary"]


def test_ack_for_matches_every_captured_ack(capture_name: str, load_capture: Any) -> None:
    frames = _binary_frames(load_capture(capture_name))
    stream = {
        (event["from"], frame.message_type, frame.sequence_number): frame
        for event, frame in frames
        if frame.is_stream
    }
    checked = 0
    for event, ack in frames:
        if ack.message_type != MessageType.ACKNOWLEDGE:
            continue
        body = ack.json()
        # The acked frame came from whoever this ack goes to.
        acked = stream[
            (event["to"], body["AcknowledgedMessageType"], body["AcknowledgedMessageSequenceNumber"])
        ]
        rebuilt = ack_for(acked)
        assert rebuilt.payload == ack.payload
        assert (rebuilt.sequence_number, rebuilt.flags, rebuilt.payload_type) == (0, FLAG_ACK, 0)
        checked += 1
    has_stream = any(frame.is_stream for _event, frame in frames)
    assert checked > 0 or not has_stream


def test_stream_endpoint_acks_like_the_real_receivers(capture_name: str, load_capture: Any) -> None:
    """Feeding each side's received stream frames in capture order yields the acks it really sent."""
    frames = _binary_frames(load_capture(capture_name))
    real_parties = {"plugin", "agent"}
    for receiver in {event["to"] for event, frame in frames if frame.is_stream} & real_parties:
        endpoint = StreamEndpoint(MessageType.OUTPUT_STREAM_DATA, syn_on_first=True)
        produced = []
        for event, frame in frames:
            if event["to"] == receiver and frame.is_stream:
                received = endpoint.receive(frame)
                assert received.deliver == [frame]
                assert received.ack is not None
                produced.append(received.ack.payload)
        sent = [
            frame.payload
            for event, frame in frames
            if event["from"] == receiver and frame.message_type == MessageType.ACKNOWLEDGE
        ]
        assert produced == sent


def test_interactive_shell_resolves_to_the_agents_handshake_properties(load_capture: Any) -> None:
    """Our parameter substitution gives the properties the real agent put in its HandshakeRequest."""
    frames = _binary_frames(load_capture("agent-port"))
    shell = next(f for _e, f in frames if f.message_type == MessageType.INTERACTIVE_SHELL)
    request = next(f for _e, f in frames if f.payload_type == PayloadType.HANDSHAKE_REQUEST)
    content = messages.parse_interactive_shell(shell.payload).content
    resolved = documents.resolve(content.document_content, content.parameters)
    handshake = messages.parse_handshake_request(request.payload)
    assert handshake.session_type == resolved["sessionType"] == "Port"
    assert handshake.properties == resolved["properties"]
    rebuilt = messages.handshake_request(
        "Port", resolved["properties"], agent_version=handshake.agent_version
    )
    assert rebuilt.encode() == request.payload


@pytest.mark.parametrize("name", ["agent-session", "agent-shell-input", "agent-port"])
def test_task_acknowledge_for_captured_task_complete(name: str, load_capture: Any) -> None:
    frames = _binary_frames(load_capture(name))
    complete = next(f for _e, f in frames if f.message_type == MessageType.AGENT_TASK_COMPLETE)
    acknowledge = next(f for _e, f in frames if f.message_type == MessageType.AGENT_TASK_ACKNOWLEDGE)
    assert messages.task_acknowledge_for(complete).encode() == acknowledge.payload


def test_interactive_shell_inner_content_is_readable(load_capture: Any) -> None:
    frames = _binary_frames(load_capture("agent-session"))
    shell = next(f for _e, f in frames if f.message_type == MessageType.INTERACTIVE_SHELL)
    parsed = messages.parse_interactive_shell(shell.payload)
    assert parsed.task_id == parsed.content.session_id == "tester-0a1b2c3d4e5f60718"
    assert parsed.content.document_name == "AWS-StartInteractiveCommand"
    assert parsed.content.parameters == {"command": "echo hello"}
    resolved = documents.resolve(parsed.content.document_content, parsed.content.parameters)
    assert resolved["properties"]["linux"] == {"commands": "echo hello", "runAsElevated": True}
    prefs = documents.preferences_from_document(parsed.content.document_content)
    assert prefs.idle_session_timeout == 20
    assert prefs.max_session_duration is None
