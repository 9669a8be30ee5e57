"""Typed builders and parsers for the JSON messages of the Session Manager protocol (sans-I/O).

Covers ``session-manager-protocol.md`` §2 (data channel: open frames, handshake, Size,
channel_closed, agent_session_state) and §4 (control channel: interactive_shell, task and job
messages, publication control). Every message is immutable (a ``protocol.values.Value``, or a
frozen dataclass for the control channel's, which no client loads) with ``encode()`` producing
the payload bytes as the real Go programs write them (compact JSON, struct field order), and a
``parse_*`` function that validates types and raises :class:`MessageError`.

The package is split by concern; everything is re-exported here, so callers import from
``openssm.protocol.messages``:

- ``codec``: Go's encoding/json reading rules, limits, ``MessageError``, ``WireMessage`` (the base
  that derives a flat message's encoder, parser and frame from its fields);
- ``data_channel``: open frames, the handshake and KMS challenge, Size, channel_closed,
  agent_session_state, start/pause_publication;
- ``control``: interactive_shell, agent_task_complete/acknowledge, Run Command's job messages;
- ``parameters``: the one rule for a session's scalar ``Parameters``;
- ``dispatch``: parsing a whole frame by its MessageType or PayloadType.

The submodules load on first use of one of their names (PEP 562), so a process pays only for the
part it uses: the client's start-up path needs ``codec`` and ``data_channel`` alone.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openssm.protocol.messages.codec import (
        INT64_MAX,
        MAX_OPEN_FRAME_BYTES,
        MAX_PAYLOAD_BYTES,
        MESSAGE_SCHEMA_VERSION,
        UINT32_MAX,
        JsonValue,
        MessageError,
        WireMessage,
        go_sorted,
        iso_millis,
        message_frame,
    )
    from openssm.protocol.messages.control import (
        MAX_JOB_REPLY_CONTENT,
        START_SESSION_TOPIC,
        TASK_COMPLETE_TOPIC,
        AgentJob,
        AgentJobAck,
        AgentJobReply,
        AgentJobReplyAck,
        AgentTaskAcknowledge,
        AgentTaskComplete,
        InteractiveShell,
        StartSessionContent,
        parse_agent_job,
        parse_agent_job_ack,
        parse_agent_job_reply,
        parse_agent_job_reply_ack,
        parse_agent_task_acknowledge,
        parse_agent_task_complete,
        parse_interactive_shell,
        parse_start_session_content,
        task_acknowledge_for,
    )
    from openssm.protocol.messages.data_channel import (
        MAX_TERMINAL_DIMENSION,
        ActionStatus,
        ActionType,
        AgentDataOpen,
        AgentSessionState,
        ChannelClosed,
        ClientOpen,
        ControlOpen,
        EncryptionChallenge,
        HandshakeComplete,
        HandshakeRequest,
        HandshakeResponse,
        OpenFrame,
        ProcessedAction,
        Publication,
        RequestedAction,
        SessionState,
        SessionType,
        TerminalSize,
        handshake_request,
        handshake_response,
        parse_agent_session_state,
        parse_channel_closed,
        parse_encryption_challenge,
        parse_handshake_complete,
        parse_handshake_request,
        parse_handshake_response,
        parse_open_frame,
        parse_size,
        pause_publication,
        start_publication,
        usable_size,
    )
    from openssm.protocol.messages.dispatch import (
        HandshakeMessage,
        ServiceMessage,
        parse_service_message,
        parse_stream_json,
    )
    from openssm.protocol.messages.parameters import scalar_parameters, scalar_text

# Searched in this order for a name on first use: cheapest first, each importing only the ones before.
_SUBMODULES = ("codec", "data_channel", "parameters", "control", "dispatch")

__all__ = [
    "INT64_MAX",
    "MAX_JOB_REPLY_CONTENT",
    "MAX_OPEN_FRAME_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_TERMINAL_DIMENSION",
    "MESSAGE_SCHEMA_VERSION",
    "START_SESSION_TOPIC",
    "TASK_COMPLETE_TOPIC",
    "UINT32_MAX",
    "ActionStatus",
    "ActionType",
    "AgentDataOpen",
    "AgentJob",
    "AgentJobAck",
    "AgentJobReply",
    "AgentJobReplyAck",
    "AgentSessionState",
    "AgentTaskAcknowledge",
    "AgentTaskComplete",
    "ChannelClosed",
    "ClientOpen",
    "ControlOpen",
    "EncryptionChallenge",
    "HandshakeComplete",
    "HandshakeMessage",
    "HandshakeRequest",
    "HandshakeResponse",
    "InteractiveShell",
    "JsonValue",
    "MessageError",
    "OpenFrame",
    "ProcessedAction",
    "Publication",
    "RequestedAction",
    "ServiceMessage",
    "SessionState",
    "SessionType",
    "StartSessionContent",
    "TerminalSize",
    "WireMessage",
    "go_sorted",
    "handshake_request",
    "handshake_response",
    "iso_millis",
    "message_frame",
    "parse_agent_job",
    "parse_agent_job_ack",
    "parse_agent_job_reply",
    "parse_agent_job_reply_ack",
    "parse_agent_session_state",
    "parse_agent_task_acknowledge",
    "parse_agent_task_complete",
    "parse_channel_closed",
    "parse_encryption_challenge",
    "parse_handshake_complete",
    "parse_handshake_request",
    "parse_handshake_response",
    "parse_interactive_shell",
    "parse_open_frame",
    "parse_service_message",
    "parse_size",
    "parse_start_session_content",
    "parse_stream_json",
    "pause_publication",
    "scalar_parameters",
    "scalar_text",
    "start_publication",
    "task_acknowledge_for",
    "usable_size",
]


def _submodule(name: str) -> ModuleType:
    # The import statement itself (not importlib): the edges are the static ones above, which mypy
    # and import-linter see; this only defers running them to the first use.
    module: ModuleType = __import__(f"{__name__}.{name}", fromlist=[name])
    return module


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        return _submodule(name)
    if name in __all__:
        for submodule in _SUBMODULES:
            module = _submodule(submodule)
            if name in vars(module):
                value = vars(module)[name]
                globals()[name] = value
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
