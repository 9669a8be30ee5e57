"""Parse a whole frame by what its header says it carries: a service message by MessageType, a
stream frame's JSON by PayloadType."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeAlias

from openssm.protocol.frames import Frame, MessageType, Payload, PayloadType
from openssm.protocol.messages import control, data_channel
from openssm.protocol.messages.codec import MessageError

ServiceMessage: TypeAlias = (
    data_channel.ChannelClosed
    | data_channel.AgentSessionState
    | data_channel.Publication
    | control.InteractiveShell
    | control.AgentTaskComplete
    | control.AgentTaskAcknowledge
    | control.AgentJob
    | control.AgentJobAck
    | control.AgentJobReply
    | control.AgentJobReplyAck
)

_PARSERS: Final[dict[str, Callable[[Payload], ServiceMessage]]] = {
    MessageType.CHANNEL_CLOSED: data_channel.parse_channel_closed,
    MessageType.AGENT_SESSION_STATE: data_channel.parse_agent_session_state,
    MessageType.START_PUBLICATION: data_channel.publication_parser(MessageType.START_PUBLICATION),
    MessageType.PAUSE_PUBLICATION: data_channel.publication_parser(MessageType.PAUSE_PUBLICATION),
    MessageType.INTERACTIVE_SHELL: control.parse_interactive_shell,
    MessageType.AGENT_TASK_COMPLETE: control.parse_agent_task_complete,
    MessageType.AGENT_TASK_ACKNOWLEDGE: control.parse_agent_task_acknowledge,
    MessageType.AGENT_JOB: control.parse_agent_job,
    MessageType.AGENT_JOB_ACK: control.parse_agent_job_ack,
    MessageType.AGENT_JOB_REPLY: control.parse_agent_job_reply,
    MessageType.AGENT_JOB_REPLY_ACK: control.parse_agent_job_reply_ack,
}


def parse_service_message(frame: Frame) -> ServiceMessage:
    """Parse a non-stream frame by its MessageType (stream data and acks are not handled here)."""
    parser = _PARSERS.get(frame.message_type)
    if parser is None:
        raise MessageError(f"no parser for message type {frame.message_type!r}")
    return parser(frame.payload)


HandshakeMessage: TypeAlias = (
    data_channel.HandshakeRequest
    | data_channel.HandshakeResponse
    | data_channel.HandshakeComplete
    | data_channel.EncryptionChallenge
)

_STREAM_PARSERS: Final[dict[int, Callable[[Payload], HandshakeMessage | data_channel.TerminalSize]]] = {
    PayloadType.HANDSHAKE_REQUEST: data_channel.parse_handshake_request,
    PayloadType.HANDSHAKE_RESPONSE: data_channel.parse_handshake_response,
    PayloadType.HANDSHAKE_COMPLETE: data_channel.parse_handshake_complete,
    PayloadType.ENC_CHALLENGE_REQUEST: data_channel.parse_encryption_challenge,
    PayloadType.ENC_CHALLENGE_RESPONSE: data_channel.parse_encryption_challenge,
    PayloadType.SIZE: data_channel.parse_size,
}


def parse_stream_json(frame: Frame) -> HandshakeMessage | data_channel.TerminalSize:
    """Parse a stream frame whose payload type carries JSON (handshake, challenge, Size)."""
    parser = _STREAM_PARSERS.get(frame.payload_type)
    if parser is None:
        raise MessageError(f"payload type {frame.payload_type} does not carry JSON")
    return parser(frame.payload)
