"""Frames the gateway itself writes (everything else it relays verbatim), and the cheap header
peeks it uses on the relay path. No I/O here.

Shapes follow session-manager-protocol.md §2.7 and §4.3 and the captures.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import struct
import uuid
from collections.abc import Mapping
from typing import Any, Final

from openssm.protocol.frames import (
    FLAG_DATA,
    FRAME_OVERHEAD,
    Frame,
    FrameError,
    MessageType,
    PayloadType,
    go_json,
)

START_SESSION_TOPIC: Final = "aws.ssm.startSession"
# Open frames are small JSON objects (~250 bytes); anything much larger is not one.
MAX_OPEN_FRAME_BYTES: Final = 16 * 1024

_PAYLOAD_TYPE_AT: Final = 112
_HEADER_LENGTH = struct.Struct(">I")
_UINT32 = struct.Struct(">I")


def iso_millis(moment: dt.datetime) -> str:
    """``2026-11-28T16:31:18.000Z``: the date form of channel_closed payloads."""
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _control_frame(message_type: MessageType, body: Mapping[str, Any]) -> bytes:
    return Frame(message_type, 0, FLAG_DATA, PayloadType.NONE, go_json(body)).encode()


def channel_closed(
    session_id: str, destination_id: str, output: str, *, now: dt.datetime | None = None
) -> bytes:
    """``channel_closed`` for a client (plugin prints Output) or an agent (cancels the session)."""
    body = {
        "MessageId": str(uuid.uuid4()),
        "CreatedDate": iso_millis(now or dt.datetime.now(dt.UTC)),
        "DestinationId": destination_id,
        "SessionId": session_id,
        "MessageType": str(MessageType.CHANNEL_CLOSED),
        "SchemaVersion": 1,
        "Output": output,
    }
    return _control_frame(MessageType.CHANNEL_CLOSED, body)


def publication(message_type: MessageType, session_id: str) -> bytes:
    """``pause_publication`` / ``start_publication``. The agent ignores the payload but cannot read
    an empty one, so it carries a small JSON object."""
    if message_type not in (MessageType.PAUSE_PUBLICATION, MessageType.START_PUBLICATION):
        raise ValueError(f"not a publication message: {message_type}")
    body = {"MessageType": str(message_type), "SchemaVersion": 1, "SessionId": session_id}
    return _control_frame(message_type, body)


def agent_task_acknowledge(task_complete: Frame, task_id: str) -> bytes:
    body = {
        "SchemaVersion": 1,
        "MessageId": str(task_complete.message_id),
        "TaskId": task_id,
        "Topic": str(MessageType.AGENT_TASK_COMPLETE),
    }
    return _control_frame(MessageType.AGENT_TASK_ACKNOWLEDGE, body)


def scalar_parameters(parameters: Mapping[str, Any]) -> dict[str, str]:
    """The API keeps parameters as name -> [str]; the agent substitutes scalars (§8 item 9)."""
    result: dict[str, str] = {}
    for name, value in parameters.items():
        if isinstance(value, list):
            result[name] = ",".join(str(item) for item in value)
        elif value is None:
            result[name] = ""
        else:
            result[name] = str(value)
    return result


def interactive_shell(session: Mapping[str, Any]) -> bytes:
    """The control-channel message that starts a session, built from its ``sessions`` row."""
    content = {
        "SessionId": session["session_id"],
        "DocumentName": session["document_name"],
        "DocumentContent": session["document_content"],
        "Parameters": scalar_parameters(session.get("parameters") or {}),
        "RunAsUser": session.get("run_as_user") or "",
        "SessionOwner": session["owner_arn"],
    }
    body = {
        "Content": go_json(content).decode("utf-8"),
        "TaskId": session["session_id"],
        "Topic": START_SESSION_TOPIC,
        "SchemaVersion": 1,
    }
    return _control_frame(MessageType.INTERACTIVE_SHELL, body)


# -- reading -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Peek:
    """What the relay needs from a frame without decoding (or copying) the payload."""

    message_type: str
    payload_type: int
    payload_offset: int


def peek(data: bytes) -> Peek:
    """Header facts of one binary frame; raises FrameError on anything that is not a frame."""
    if len(data) < FRAME_OVERHEAD:
        raise FrameError(f"frame of {len(data)} bytes is shorter than the 120-byte header")
    (header_length,) = _HEADER_LENGTH.unpack_from(data, 0)
    if header_length == 0 or header_length + 4 > len(data):
        raise FrameError(f"bad HeaderLength {header_length}")
    message_type = data[4:36].replace(b"\x00", b"").strip().decode("ascii", "replace")
    if not message_type:
        raise FrameError("MessageType is empty")
    (payload_type,) = _UINT32.unpack_from(data, _PAYLOAD_TYPE_AT)
    return Peek(message_type, payload_type, header_length + 4)


@dataclasses.dataclass(frozen=True, slots=True)
class OpenFrame:
    """The first (text) frame on a channel WebSocket."""

    token: str
    client_instance_id: str | None  # present only on an agent's data channel
    client_id: str | None
    client_version: str | None
    agent_version: str | None
    platform_type: str | None


class OpenFrameError(ValueError):
    pass


def _optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) else None


def parse_open_frame(text: str) -> OpenFrame:
    if len(text) > MAX_OPEN_FRAME_BYTES:
        raise OpenFrameError(f"open frame of {len(text)} characters is too large")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OpenFrameError(f"open frame is not JSON: {exc.msg}") from exc
    if not isinstance(body, dict):
        raise OpenFrameError("open frame is not a JSON object")
    token = body.get("TokenValue")
    if not isinstance(token, str) or not token:
        raise OpenFrameError("open frame has no TokenValue")
    return OpenFrame(
        token=token,
        client_instance_id=_optional_str(body, "ClientInstanceId"),
        client_id=_optional_str(body, "ClientId"),
        client_version=_optional_str(body, "ClientVersion"),
        agent_version=_optional_str(body, "AgentVersion"),
        platform_type=_optional_str(body, "PlatformType"),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class TaskComplete:
    task_id: str
    final_status: str
    output: str

    @property
    def succeeded(self) -> bool:
        return self.final_status == "Success"


def parse_task_complete(frame: Frame) -> TaskComplete:
    body = frame.json()
    if not isinstance(body, dict):
        raise FrameError("agent_task_complete payload is not an object")
    task_id = body.get("TaskId")
    if not isinstance(task_id, str) or not task_id:
        raise FrameError("agent_task_complete has no TaskId")
    status = body.get("FinalTaskStatus")
    output = body.get("Output")
    return TaskComplete(
        task_id=task_id,
        final_status=status if isinstance(status, str) else "",
        output=output if isinstance(output, str) else "",
    )


def parse_session_state(payload: bytes) -> str | None:
    """``Connected`` / ``Terminating`` from an agent_session_state payload (None if unreadable)."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    state = body.get("SessionState") if isinstance(body, dict) else None
    return state if isinstance(state, str) else None
