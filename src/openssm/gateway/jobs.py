"""Run Command on this gateway node: ``agent_job`` to the agents whose control channels it holds, and
their ``agent_job_ack`` / ``agent_job_reply`` recorded in the store (each reply acknowledged).

A node extension (``openssm.gateway.extension``): the API publishes ``agent_job`` and
``cancel_command`` for an invocation on ``node.<node_id>`` (``openssm.bus.node_channel``); jobs
still pending for an instance are also sent when its control channel opens, so a command sent while
the agent was away runs when it comes back.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from openssm.bus.node_channel import AGENT_JOB, CANCEL_COMMAND
from openssm.errors import OpenSSMError
from openssm.gateway.extension import ExtensionHost, NodeExtension
from openssm.protocol import messages as proto
from openssm.protocol import run_command as rc
from openssm.protocol.frames import Frame, MessageType
from openssm.services import Services
from openssm.store import commands as store
from openssm.store.commands import CommandRow

log = logging.getLogger(__name__)


def agent_job_frame(command: CommandRow, instance_id: str) -> bytes:
    """``agent_job`` for one invocation, built from its ``commands`` row."""
    document = command.document_content
    content = rc.send_command_payload(
        command_id=command.command_id,
        document_name=command.document_name,
        document_content=document,
        parameters=rc.agent_parameter_values(document, command.parameters),
        output_s3_bucket_name=command.output_s3_bucket_name or "",
        output_s3_key_prefix=command.output_s3_key_prefix or "",
    )
    job = proto.AgentJob(rc.job_id(command.command_id, instance_id), content, rc.SEND_COMMAND_TOPIC)
    return job.to_frame().encode()


def cancel_job_frame(command_id: str, instance_id: str) -> bytes:
    """A cancel is a message of its own, with its own id in the same ``aws.ssm.<id>.<instance>`` form
    (the agent reads a command id from every job id)."""
    target = rc.job_id(command_id, instance_id)
    own_id = rc.job_id(str(uuid.uuid4()), instance_id)
    job = proto.AgentJob(own_id, rc.cancel_command_payload(target), rc.CANCEL_COMMAND_TOPIC)
    return job.to_frame().encode()


def _iso_to_datetime(value: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def reply_values(reply: rc.SendReply, now: dt.datetime) -> dict[str, Any]:
    """Columns of ``command_invocations`` for one SendReply."""
    status = rc.invocation_status(reply.document_status)
    values: dict[str, Any] = {"status": status, "status_details": rc.DETAILS[status]}
    steps = reply.steps
    if steps:
        values["plugins"] = [
            {
                "name": step.action,
                "step_name": step.step_name,
                "status": rc.invocation_status(step.status) if step.status else status,
                "code": step.code,
                "output": rc.combined_output(step.standard_output, step.standard_error),
                "start": step.start,
                "end": step.end,
            }
            for step in steps
        ]
        values["standard_output"] = "".join(step.standard_output for step in steps)[: rc.MAX_STDOUT_CHARS]
        values["standard_error"] = "".join(step.standard_error for step in steps)[: rc.MAX_STDERR_CHARS]
        starts = [moment for moment in (_iso_to_datetime(step.start) for step in steps) if moment]
        if starts:
            values["started_at"] = min(starts)
    if status in rc.FINAL_STATUSES:
        values["ended_at"] = now
        values["response_code"] = next(
            (step.code for step in steps if step.status not in ("Success", "Skipped")),
            steps[-1].code if steps else -1,
        )
    elif "started_at" not in values:
        values["started_at"] = now
    return values


class NotStarted(OpenSSMError):
    """Run Command was used before its node started it."""


class RunCommandJobs(NodeExtension):
    """Run Command's part of a gateway node."""

    bus_messages = frozenset({AGENT_JOB, CANCEL_COMMAND})
    control_messages: frozenset[str] = frozenset({MessageType.AGENT_JOB_ACK, MessageType.AGENT_JOB_REPLY})

    def __init__(self, services: Services) -> None:
        self.engine = services.engine
        self.clock = services.clock
        self._node: ExtensionHost | None = None

    async def start(self, node: ExtensionHost) -> None:
        self._node = node

    @property
    def node(self) -> ExtensionHost:
        if self._node is None:
            raise NotStarted("Run Command's gateway extension has not been started by its node")
        return self._node

    # -- API → agent ---------------------------------------------------------------------------

    async def on_bus_message(self, message: Mapping[str, Any]) -> None:
        command_id, instance_id = message.get("command_id"), message.get("instance_id")
        if not isinstance(command_id, str) or not isinstance(instance_id, str):
            return
        if message.get("type") == AGENT_JOB:
            command = await store.get_command(self.engine, command_id)
            invocation = await store.get_invocation(self.engine, command_id, instance_id)
            if command is not None and invocation is not None and invocation.status == rc.PENDING:
                await self.node.send_control(instance_id, agent_job_frame(command, instance_id))
        elif message.get("type") == CANCEL_COMMAND:
            await self.node.send_control(instance_id, cancel_job_frame(command_id, instance_id))

    async def on_control_opened(self, instance_id: str) -> None:
        """A control channel opened: send it every job still waiting for that instance, and the
        cancels it missed while away."""
        frames = [
            agent_job_frame(row, instance_id)
            for row in await store.pending_for_instance(self.engine, instance_id, now=self.clock.now())
        ]
        frames += [
            cancel_job_frame(command_id, instance_id)
            for command_id in await store.cancelling_for_instance(self.engine, instance_id)
        ]
        for frame in frames:
            if not await self.node.send_control(instance_id, frame):
                return  # gone again; the next connection retries

    # -- agent → store ---------------------------------------------------------------------------

    async def on_control_message(self, instance_id: str, frame: Frame) -> None:
        """agent_job_ack / agent_job_reply from ``instance_id``'s control channel."""
        try:
            if frame.message_type == MessageType.AGENT_JOB_ACK:
                await self._acked(instance_id, proto.parse_agent_job_ack(frame.payload))
            elif frame.message_type == MessageType.AGENT_JOB_REPLY:
                reply = proto.parse_agent_job_reply(frame.payload)
                # Acknowledge first: without it the agent resends; recording is idempotent.
                ack = proto.AgentJobReplyAck(reply.job_id, str(frame.message_id))
                await self.node.send_control(instance_id, ack.to_frame().encode())
                await self._replied(instance_id, reply)
        except (proto.MessageError, rc.RunCommandError) as exc:
            log.info("control %s: unusable %s: %s", instance_id, frame.message_type, exc)

    def _own_job(self, instance_id: str, job_id: str) -> str:
        command_id, job_instance = rc.parse_job_id(job_id)
        if job_instance != instance_id:  # an agent reports only on its own invocations
            raise rc.RunCommandError(f"job {job_id} is not for {instance_id}")
        return command_id

    async def _acked(self, instance_id: str, ack: proto.AgentJobAck) -> None:
        command_id = self._own_job(instance_id, ack.job_id)
        now = self.clock.now()
        if ack.status_code == "200":
            await store.mark_delivered(self.engine, command_id, instance_id, now=now)
        else:
            log.info(
                "agent %s refused job %s: %s %s", instance_id, ack.job_id, ack.status_code, ack.error_message
            )
            refused = {
                "status": rc.FAILED,
                "status_details": rc.UNDELIVERABLE,
                "ended_at": now,
                "standard_error": ack.error_message[: rc.MAX_STDERR_CHARS],
            }
            await store.update_active(self.engine, command_id, instance_id, refused)

    async def _replied(self, instance_id: str, reply: proto.AgentJobReply) -> None:
        command_id = self._own_job(instance_id, reply.job_id)
        now = self.clock.now()
        values = reply_values(rc.parse_send_reply(reply.content), now)
        current = await store.get_invocation(self.engine, command_id, instance_id)
        if (
            current is not None
            and current.status == rc.CANCELLING
            and values["status"] not in rc.FINAL_STATUSES
        ):
            del values["status"], values["status_details"]  # still running, but a cancel is on its way
        await store.mark_delivered(self.engine, command_id, instance_id, now=now)
        await store.update_active(self.engine, command_id, instance_id, values)
