"""Run Command on this gateway node: the rollout of commands (rate controls), ``agent_job`` to the
agents whose control channels it holds, their ``agent_job_ack`` / ``agent_job_reply`` recorded in
the store (each reply acknowledged), and the output of finished invocations queued for S3 /
CloudWatch Logs.

A node extension (``openssm.gateway.extension``). Bus messages on ``node.<node_id>``
(``openssm.bus.node_channel``):
- ``run_command``: take the next step of a command's rollout (any node may: the API sends it to
  its own node after SendCommand and CancelCommand; a node sends it to itself whenever one of the
  command's invocations ends on it). The step is one transaction (``store.commands.advance``) and
  says which invocations to send now; each goes to the node holding its agent's control channel.
- ``agent_job`` / ``cancel_command``: send one invocation's job, or its cancel, to the agent.
Dispatched jobs still undelivered for an instance are sent when its control channel opens, so a
command sent while the agent was away runs when it comes back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import pathlib
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from openssm.bus import node_channel
from openssm.bus.node_channel import AGENT_JOB, CANCEL_COMMAND, RUN_COMMAND
from openssm.errors import OpenSSMError
from openssm.gateway.extension import ExtensionHost, NodeExtension
from openssm.protocol import messages as proto
from openssm.protocol import run_command as rc
from openssm.protocol.frames import Frame, MessageType
from openssm.services import Services
from openssm.store import commands as store
from openssm.store import gateway_nodes, instances, log_uploads
from openssm.store.commands import CommandRow
from openssm.store.db import patiently

log = logging.getLogger(__name__)

OUTPUT_DIR = "commands"  # under the data directory: <CommandId>/<InstanceId>/<step>/stdout|stderr


def agent_job_frame(command: CommandRow, instance_id: str) -> bytes:
    """``agent_job`` for one invocation, built from its ``commands`` row. The output location is
    not passed on: the server ships what the agent reports (an agent told of a bucket would upload
    it itself, with its own credentials)."""
    document = command.document_content
    content = rc.send_command_payload(
        command_id=command.command_id,
        document_name=command.document_name,
        document_content=document,
        parameters=rc.agent_parameter_values(document, command.parameters),
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

    bus_messages = frozenset({AGENT_JOB, CANCEL_COMMAND, RUN_COMMAND})
    control_messages: frozenset[str] = frozenset({MessageType.AGENT_JOB_ACK, MessageType.AGENT_JOB_REPLY})

    def __init__(self, services: Services) -> None:
        self.services = services
        self.engine = services.engine
        self.clock = services.clock
        self._node: ExtensionHost | None = None
        # One rollout step at a time on this node (PostgreSQL's row lock orders the nodes).
        self._advancing = asyncio.Lock()

    async def start(self, node: ExtensionHost) -> None:
        self._node = node

    @property
    def node(self) -> ExtensionHost:
        if self._node is None:
            raise NotStarted("Run Command's gateway extension has not been started by its node")
        return self._node

    # -- the rollout ---------------------------------------------------------------------------

    async def advance(self, command_id: str, *, send_cancels: bool = False) -> None:
        """Send whatever the command's rate controls allow now (and, after a cancel, the cancels)."""
        async with self._advancing:
            step = await store.advance(self.engine, command_id, now=self.clock.now())
        if step is None:
            return
        if step.terminated:
            log.info(
                "command %s went over MaxErrors %s: %d invocations will not run",
                command_id,
                step.command.max_errors,
                len(step.terminated),
            )
        for instance_id in step.dispatch:
            await self._route(
                AGENT_JOB,
                command_id,
                instance_id,
                functools.partial(agent_job_frame, step.command, instance_id),
            )
        if send_cancels:
            for instance_id in await store.cancelling(self.engine, command_id):
                await self._route(
                    CANCEL_COMMAND,
                    command_id,
                    instance_id,
                    functools.partial(cancel_job_frame, command_id, instance_id),
                )

    async def _route(self, kind: str, command_id: str, instance_id: str, frame: Callable[[], bytes]) -> None:
        """To the agent if this node holds its control channel, else to the live node that does; an
        agent connected nowhere gets it when its control channel opens."""
        instance = await instances.get(self.engine, instance_id)
        holder = instance.control_node_id if instance is not None else None
        if holder is None:
            return
        if holder == self.node.node_id:
            await self.node.send_control(instance_id, frame())
        elif holder in await gateway_nodes.alive(
            self.engine, now=self.clock.now(), own_node=self.node.node_id
        ):
            message = node_channel.command(kind, command_id, instance_id)
            await self.services.bus.publish(node_channel.node_channel(holder), message)

    # -- API → agent ---------------------------------------------------------------------------

    async def on_bus_message(self, message: Mapping[str, Any]) -> None:
        command_id, kind = message.get("command_id"), message.get("type")
        if not isinstance(command_id, str):
            return
        if kind == RUN_COMMAND:
            await self.advance(command_id, send_cancels=message.get("cancel") is True)
            return
        instance_id = message.get("instance_id")
        if not isinstance(instance_id, str):
            return
        if kind == AGENT_JOB:
            command = await store.get_command(self.engine, command_id)
            invocation = await store.get_invocation(self.engine, command_id, instance_id)
            if (
                command is not None
                and invocation is not None
                and invocation.status == rc.PENDING
                and invocation.dispatched_at is not None
            ):
                await self.node.send_control(instance_id, agent_job_frame(command, instance_id))
        elif kind == CANCEL_COMMAND:
            await self.node.send_control(instance_id, cancel_job_frame(command_id, instance_id))

    async def on_control_opened(self, instance_id: str) -> None:
        """A control channel opened: send it every job dispatched to it and not delivered, the
        cancels it missed while away, and start the commands that were waiting for it. Nobody
        retries this (the agent just connected), so its reads wait out a busy database: a wave of
        agents reconnecting at once must not make one miss a command it is owed."""

        async def owed() -> list[bytes]:
            if not await store.owes_instance(self.engine, instance_id):
                return []
            frames = [
                agent_job_frame(row, instance_id)
                for row in await store.pending_for_instance(self.engine, instance_id, now=self.clock.now())
            ]
            return frames + [
                cancel_job_frame(command_id, instance_id)
                for command_id in await store.cancelling_for_instance(self.engine, instance_id)
            ]

        for frame in await patiently(owed, f"the jobs owed to {instance_id}"):
            if not await self.node.send_control(instance_id, frame):
                return  # gone again; the next connection retries
        waiting = await patiently(
            lambda: store.waiting_for_instance(self.engine, instance_id),
            f"the commands waiting for {instance_id}",
        )
        for command_id in waiting:
            await self.advance(command_id)

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
            return
        log.info(
            "agent %s refused job %s: %s %s", instance_id, ack.job_id, ack.status_code, ack.error_message
        )
        refused = {
            "status": rc.FAILED,
            "status_details": rc.UNDELIVERABLE,
            "ended_at": now,
            "standard_error": ack.error_message[: rc.MAX_STDERR_CHARS],
        }
        if await store.update_active(self.engine, command_id, instance_id, refused):
            await self.advance(command_id)

    async def _replied(self, instance_id: str, reply: proto.AgentJobReply) -> None:
        command_id = self._own_job(instance_id, reply.job_id)
        now = self.clock.now()
        result = rc.parse_send_reply(reply.content)
        values = reply_values(result, now)
        current = await store.get_invocation(self.engine, command_id, instance_id)
        if (
            current is not None
            and current.status == rc.CANCELLING
            and values["status"] not in rc.FINAL_STATUSES
        ):
            del values["status"], values["status_details"]  # still running, but a cancel is on its way
        await store.mark_delivered(self.engine, command_id, instance_id, now=now)
        ended = await store.update_active(self.engine, command_id, instance_id, values)
        if ended and values.get("status") in rc.FINAL_STATUSES:
            command = await store.get_command(self.engine, command_id)
            if command is not None:
                await self._queue_output(command, instance_id, result)
            await self.advance(command_id)

    # -- output to S3 / CloudWatch Logs ------------------------------------------------------------

    async def _queue_output(self, command: CommandRow, instance_id: str, result: rc.SendReply) -> None:
        """Write each step's stdout and stderr under the data directory and queue them for the
        command's bucket and log group, in AWS's layout; the session-log shipper (``openssm.logs``)
        delivers them, retrying until they land. Empty streams are not shipped (AWS creates no
        stream and no object for them)."""
        bucket, group = command.output_s3_bucket_name, command.log_group
        if not bucket and not group:
            return
        config = self.services.config
        base = config.data_dir / OUTPUT_DIR / command.command_id / instance_id
        owner = f"{command.command_id}/{instance_id}"
        now = self.clock.now()
        for index, step in enumerate(result.steps):
            names = rc.output_names(command.document_name, index, step.step_name, step.action)
            for stream, text in zip(
                rc.OUTPUT_STREAMS, (step.standard_output, step.standard_error), strict=True
            ):
                if not text:
                    continue
                path = await asyncio.to_thread(_write_output, base / names.s3_directory / stream, text)
                if bucket:
                    key = rc.s3_output_key(
                        command.output_s3_key_prefix or "", command.command_id, instance_id, names, stream
                    )
                    await log_uploads.add(
                        self.engine,
                        session_id=owner,
                        node_id=config.node_id,
                        sink="s3",
                        destination=f"s3://{bucket}/{key}",
                        local_path=str(path),
                        now=now,
                    )
                if group:
                    await log_uploads.add(
                        self.engine,
                        session_id=owner,
                        node_id=config.node_id,
                        sink="cloudwatch",
                        destination=group,
                        local_path=str(path),
                        log_stream=rc.cloudwatch_stream(command.command_id, instance_id, names, stream),
                        now=now,
                    )


def _write_output(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(text, encoding="utf-8")
    return path
