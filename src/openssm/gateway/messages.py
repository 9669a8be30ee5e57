"""The frames the gateway writes itself (it relays everything else verbatim), built with the
protocol core's typed messages, and the cheap header peek used on the relay path. No I/O here."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Mapping
from typing import Any, Final

from openssm.protocol import messages as proto
from openssm.protocol.frames import FRAME_OVERHEAD, Frame, FrameError

_UINT32 = struct.Struct(">I")
_PAYLOAD_TYPE_AT: Final = 112

OpenFrame = proto.OpenFrame
ClientOpen = proto.ClientOpen
AgentDataOpen = proto.AgentDataOpen
ControlOpen = proto.ControlOpen
MessageError = proto.MessageError
parse_open_frame = proto.parse_open_frame


def channel_closed(session_id: str, destination_id: str, output: str) -> bytes:
    """``channel_closed`` for a client (the plugin prints Output and exits) or an agent (cancels)."""
    return proto.ChannelClosed(session_id, destination_id, output).to_frame().encode()


def pause_publication(session_id: str) -> bytes:
    return proto.pause_publication(session_id).to_frame().encode()


def start_publication(session_id: str) -> bytes:
    return proto.start_publication(session_id).to_frame().encode()


# Session logging preferences: OpenSSM records on the server (openssm.logs). Sent to the agent, they
# would make amazon-ssm-agent log on the node itself (to AWS), and with the *EncryptionEnabled flags
# refuse to start sessions when it cannot check that encryption.
SERVER_SIDE_INPUTS: Final = frozenset(
    {
        "s3BucketName",
        "s3KeyPrefix",
        "s3EncryptionEnabled",
        "cloudWatchLogGroupName",
        "cloudWatchEncryptionEnabled",
        "cloudWatchStreamingEnabled",
    }
)


def agent_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """The session document as the agent gets it: without the server-side logging inputs."""
    result = dict(document)
    inputs = result.get("inputs")
    if isinstance(inputs, dict):
        result["inputs"] = {key: value for key, value in inputs.items() if key not in SERVER_SIDE_INPUTS}
    return result


def interactive_shell(session: Mapping[str, Any]) -> bytes:
    """The control-channel message that starts a session, built from its ``sessions`` row."""
    content = proto.StartSessionContent(
        session_id=session["session_id"],
        document_name=session["document_name"],
        document_content=agent_document(session["document_content"]),
        parameters=proto.scalar_parameters(session.get("parameters")),
        run_as_user=session.get("run_as_user") or "",
        session_owner=session["owner_arn"],
    )
    return proto.InteractiveShell(content).to_frame().encode()


@dataclasses.dataclass(frozen=True, slots=True)
class TaskComplete:
    """What the gateway needs from agent_task_complete, plus the acknowledgement to send back."""

    task_id: str
    final_status: str
    output: str
    acknowledgement: bytes

    @property
    def succeeded(self) -> bool:
        return self.final_status == "Success"


def task_complete(frame: Frame) -> TaskComplete:
    """Raises MessageError when the payload is not an agent_task_complete."""
    complete = proto.parse_agent_task_complete(frame.payload)
    ack = proto.task_acknowledge_for(frame).to_frame().encode()
    return TaskComplete(complete.task_id, complete.final_task_status, complete.output, ack)


def session_state(payload: bytes) -> str | None:
    """``Connected`` / ``Terminating`` from an agent_session_state payload (None if unreadable)."""
    try:
        return proto.parse_agent_session_state(payload).state
    except proto.MessageError:
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class Peek:
    """What the relay needs from a frame, read without decoding (or copying) the payload."""

    message_type: str
    payload_type: int
    payload_offset: int


def peek(data: bytes) -> Peek:
    """Header facts of one binary frame; raises FrameError on anything that is not a frame."""
    if len(data) < FRAME_OVERHEAD:
        raise FrameError(f"frame of {len(data)} bytes is shorter than the 120-byte header")
    (header_length,) = _UINT32.unpack_from(data, 0)
    if header_length == 0 or header_length + 4 > len(data):
        raise FrameError(f"bad HeaderLength {header_length}")
    message_type = data[4:36].replace(b"\x00", b"").strip().decode("ascii", "replace")
    if not message_type:
        raise FrameError("MessageType is empty")
    (payload_type,) = _UINT32.unpack_from(data, _PAYLOAD_TYPE_AT)
    return Peek(message_type, payload_type, header_length + 4)
