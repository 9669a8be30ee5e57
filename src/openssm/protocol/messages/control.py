"""The control channel's JSON (``session-manager-protocol.md`` §4.3): the gateway's
``interactive_shell`` that starts a session, the agent's ``agent_task_complete`` when it ends and
the gateway's ``agent_task_acknowledge``; Run Command's ``agent_job``, ``agent_job_ack``,
``agent_job_reply`` and ``agent_job_reply_ack`` (whose JSON tags are lower camel case, except
``agent_job``'s)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar, Final

from openssm.protocol.frames import Frame, MessageType, Payload, go_json
from openssm.protocol.messages.codec import (
    REQUIRED,
    UINT32_MAX,
    JsonValue,
    MessageError,
    WireMessage,
    camel_case,
    iso_millis,
    load_object,
    message_frame,
)
from openssm.protocol.messages.parameters import scalar_parameters

START_SESSION_TOPIC: Final = "aws.ssm.startSession"
TASK_COMPLETE_TOPIC: Final = "agent_task_complete"
MAX_JOB_REPLY_CONTENT: Final = 120_000


# -- sessions: interactive_shell, agent_task_complete ------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class StartSessionContent:
    """The inner ``Content`` of ``interactive_shell``: which session to start and how."""

    session_id: str
    document_name: str
    document_content: dict[str, JsonValue]
    parameters: dict[str, str]
    run_as_user: str = ""
    session_owner: str = ""

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "SessionId": self.session_id,
            "DocumentName": self.document_name,
            "DocumentContent": self.document_content,
            "Parameters": self.parameters,
            "RunAsUser": self.run_as_user,
            "SessionOwner": self.session_owner,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class InteractiveShell:
    """``interactive_shell`` (gateway → agent): outer envelope carrying the inner JSON as a string."""

    content: StartSessionContent
    task_id: str = ""
    topic: str = START_SESSION_TOPIC
    schema_version: int = 1

    def encode(self) -> bytes:
        inner = go_json(self.content.to_json()).decode("utf-8")
        return go_json(
            {
                "Content": inner,
                "TaskId": self.task_id or self.content.session_id,
                "Topic": self.topic,
                "SchemaVersion": self.schema_version,
            }
        )

    def to_frame(self) -> Frame:
        return message_frame(MessageType.INTERACTIVE_SHELL, self.encode())


def parse_start_session_content(data: str | bytes) -> StartSessionContent:
    fields = load_object(data, "interactive_shell Content")
    document = fields.object("DocumentContent", required=True) or {}
    if not isinstance(document.get("sessionType") or "", str):  # null is Go's zero value
        raise MessageError("interactive_shell Content: DocumentContent.sessionType must be a string")
    return StartSessionContent(
        session_id=fields.string("SessionId", required=True),
        document_name=fields.string("DocumentName"),
        document_content=document,
        parameters=scalar_parameters(fields.raw("Parameters"), fields.what),
        run_as_user=fields.string("RunAsUser"),
        session_owner=fields.string("SessionOwner"),
    )


def parse_interactive_shell(payload: Payload) -> InteractiveShell:
    fields = load_object(payload, "interactive_shell")
    content = fields.string("Content", required=True)
    return InteractiveShell(
        content=parse_start_session_content(content),
        task_id=fields.string("TaskId"),
        topic=fields.string("Topic"),
        schema_version=fields.integer("SchemaVersion", maximum=UINT32_MAX),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class AgentTaskComplete(WireMessage):
    """``agent_task_complete`` (agent → gateway): a session ended; ``output`` holds error text."""

    MESSAGE_TYPE: ClassVar[str] = MessageType.AGENT_TASK_COMPLETE
    ORDER: ClassVar[str] = (
        "schema_version task_id topic final_task_status is_routing_failure aws_account_id instance_id"
        " output s3_bucket s3_url_suffix cwl_group cwl_stream retry_number"
    )

    task_id: str = dataclasses.field(metadata=REQUIRED)
    final_task_status: str = "Success"
    instance_id: str = ""
    output: str = ""
    is_routing_failure: bool = False
    aws_account_id: str = ""
    s3_bucket: str = ""
    s3_url_suffix: str = ""
    cwl_group: str = ""
    cwl_stream: str = ""
    retry_number: int = 1
    topic: str = TASK_COMPLETE_TOPIC
    schema_version: int = 1


parse_agent_task_complete: Final = AgentTaskComplete.parse


@dataclasses.dataclass(frozen=True, slots=True)
class AgentTaskAcknowledge(WireMessage):
    """``agent_task_acknowledge`` (gateway → agent); ``message_id`` is the acked frame's MessageId."""

    MESSAGE_TYPE: ClassVar[str] = MessageType.AGENT_TASK_ACKNOWLEDGE
    ORDER: ClassVar[str] = "schema_version message_id task_id topic"

    message_id: str = dataclasses.field(metadata=REQUIRED)
    task_id: str
    topic: str = TASK_COMPLETE_TOPIC
    schema_version: int = 1


def task_acknowledge_for(frame: Frame) -> AgentTaskAcknowledge:
    """The acknowledgement of a received ``agent_task_complete`` frame."""
    complete = parse_agent_task_complete(frame.payload)
    return AgentTaskAcknowledge(
        str(frame.message_id), complete.task_id, complete.topic or TASK_COMPLETE_TOPIC
    )


parse_agent_task_acknowledge: Final = AgentTaskAcknowledge.parse


# -- Run Command jobs --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _JobEnvelope(WireMessage):
    """A Run Command payload (``content``, a JSON string) and the job it belongs to: ``agent_job``
    and ``agent_job_reply`` carry the same four fields."""

    job_id: str = dataclasses.field(metadata=REQUIRED)
    content: str
    topic: str
    schema_version: int = 1


@dataclasses.dataclass(frozen=True, slots=True)
class AgentJob(_JobEnvelope):
    """``agent_job`` (gateway → agent): ``content`` is the SendCommand payload."""

    MESSAGE_TYPE: ClassVar[str] = MessageType.AGENT_JOB
    ORDER: ClassVar[str] = "content job_id topic schema_version"


parse_agent_job: Final = AgentJob.parse


class _JobMessage(WireMessage):
    __slots__ = ()
    KEY_CASE: ClassVar[Callable[[str], str]] = staticmethod(camel_case)


@dataclasses.dataclass(frozen=True, slots=True)
class _JobAcknowledgement(_JobMessage):
    """Which job's message (``acknowledged_message_id``) the sender took: ``agent_job_ack`` and
    ``agent_job_reply_ack`` begin alike."""

    job_id: str = dataclasses.field(metadata=REQUIRED)
    acknowledged_message_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class AgentJobAck(_JobAcknowledgement):
    """``agent_job_ack`` (agent → gateway). ``status_code`` "200" is success, "514xx" errors."""

    MESSAGE_TYPE: ClassVar[str] = MessageType.AGENT_JOB_ACK
    ORDER: ClassVar[str] = "job_id acknowledged_message_id created_date status_code error_message"

    status_code: str = "200"
    error_message: str = ""
    created_date: str = dataclasses.field(default_factory=iso_millis)


parse_agent_job_ack: Final = AgentJobAck.parse


@dataclasses.dataclass(frozen=True, slots=True)
class AgentJobReply(_JobEnvelope):
    """``agent_job_reply`` (agent → gateway): ``content`` is the SendReply payload; its JSON keys
    are lower camel case."""

    MESSAGE_TYPE: ClassVar[str] = MessageType.AGENT_JOB_REPLY
    KEY_CASE: ClassVar[Callable[[str], str]] = staticmethod(camel_case)
    ORDER: ClassVar[str] = "schema_version job_id content topic"

    topic: str = "aws.ssm.sendCommand"


def parse_agent_job_reply(payload: Payload) -> AgentJobReply:
    reply = AgentJobReply.parse(payload)
    if len(reply.content) > MAX_JOB_REPLY_CONTENT:
        raise MessageError(f"agent_job_reply: content exceeds {MAX_JOB_REPLY_CONTENT} characters")
    return reply


@dataclasses.dataclass(frozen=True, slots=True)
class AgentJobReplyAck(_JobAcknowledgement):
    """``agent_job_reply_ack`` (gateway → agent)."""

    MESSAGE_TYPE: ClassVar[str] = MessageType.AGENT_JOB_REPLY_ACK


parse_agent_job_reply_ack: Final = AgentJobReplyAck.parse
