"""Agent control channels: one per instance, held by the node the agent dialled.

Messages from the agent: ``agent_task_complete`` (acknowledged, then ends the session); every
other type goes to the node, which hands it to the extension that takes it (Run Command takes
``agent_job_*``) or ignores it (``agent_telemetry``).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Protocol

from aiohttp import WSMsgType

from openssm.gateway import messages
from openssm.gateway.peer import Peer
from openssm.protocol.frames import Frame, FrameError, MessageType, decode

log = logging.getLogger(__name__)


class ControlHost(Protocol):
    async def task_completed(self, instance_id: str, task: messages.TaskComplete) -> None: ...

    async def control_message(self, instance_id: str, frame: Frame) -> None: ...


class ControlChannel:
    def __init__(
        self,
        instance_id: str,
        peer: Peer,
        open_frame: messages.ControlOpen,
        connected_at: dt.datetime | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.peer = peer
        self.connected_at = connected_at  # as written in the instance's row when it opened
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
        else:
            await host.control_message(self.instance_id, frame)
