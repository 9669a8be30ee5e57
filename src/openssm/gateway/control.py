"""Agent control channels: one per instance, held by the node the agent dialled.

Messages from the agent: ``agent_task_complete`` (acknowledged, then ends the session),
``agent_telemetry`` (ignored), ``agent_job_*`` (handed to the Run Command hook).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

from aiohttp import WSMsgType

from openssm.gateway import messages
from openssm.gateway.peer import Peer
from openssm.protocol.frames import Frame, FrameError, MessageType, decode

log = logging.getLogger(__name__)

JOB_HANDLER_KEY: Final = "agent_job_handler"
JOB_MESSAGE_TYPES: Final = frozenset({MessageType.AGENT_JOB_ACK, MessageType.AGENT_JOB_REPLY})

# (instance id, frame) for agent_job_ack / agent_job_reply; registered by Run Command.
AgentJobHandler = Callable[[str, Frame], Awaitable[None]]


class ControlHost(Protocol):
    async def task_completed(self, instance_id: str, task: messages.TaskComplete) -> None: ...

    def job_handler(self) -> AgentJobHandler | None: ...


class ControlChannel:
    def __init__(self, instance_id: str, peer: Peer, open_frame: messages.ControlOpen) -> None:
        self.instance_id = instance_id
        self.peer = peer
        self.agent_version = open_frame.agent_version
        self.platform_type = open_frame.platform_type

    async def send(self, data: bytes) -> bool:
        return await self.peer.send(data)

    async def serve(self, host: ControlHost) -> None:
        """Read the agent's control messages until the socket ends (EOF is a normal end)."""
        async for msg in self.peer.ws:
            if msg.type is not WSMsgType.BINARY:
                continue  # text after the open frame carries nothing we use
            try:
                frame = decode(msg.data)
            except FrameError as exc:
                log.info("control %s: dropping malformed frame: %s", self.instance_id, exc)
                continue
            await self._dispatch(host, frame)

    async def _dispatch(self, host: ControlHost, frame: Frame) -> None:
        kind = frame.message_type
        if kind == MessageType.AGENT_TASK_COMPLETE:
            try:
                task = messages.task_complete(frame)
            except messages.MessageError as exc:
                log.info("control %s: unreadable agent_task_complete: %s", self.instance_id, exc)
                return
            # Without the acknowledgement the agent resends three times, one second apart.
            await self.send(task.acknowledgement)
            await host.task_completed(self.instance_id, task)
        elif kind in JOB_MESSAGE_TYPES:
            handler = host.job_handler()
            if handler is None:
                log.info("control %s: %s with no Run Command handler", self.instance_id, kind)
                return
            try:
                await handler(self.instance_id, frame)
            except Exception:
                log.exception("control %s: agent job handler failed", self.instance_id)
        elif kind != MessageType.AGENT_TELEMETRY:
            log.debug("control %s: ignoring %s", self.instance_id, kind)
