"""The frames the gateway writes itself (it relays everything else verbatim), built with the
protocol core's typed messages. No I/O here. (The relay reads the frames it passes on with the
protocol core's ``frames.peek``.)"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

from openssm.protocol import messages as proto
from openssm.protocol.frames import Frame

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
