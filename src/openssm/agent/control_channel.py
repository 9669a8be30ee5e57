"""The agent's control channel to the message gateway (§4): one WebSocket, kept open forever."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Final

from openssm.agent.cancellation import reraise_if_cancelled
from openssm.agent.config import AGENT_VERSION, AgentSettings
from openssm.agent.mgs import MgsClient, MgsError
from openssm.protocol.frames import Frame, FrameError, decode
from openssm.protocol.messages import (
    AgentTaskComplete,
    ControlOpen,
    MessageError,
    parse_agent_task_acknowledge,
)
from openssm.transport.websocket_connection import ClientWebSocket, WsMessageType

log = logging.getLogger(__name__)

# A connection that stayed up this long was healthy: the next outage starts the backoff afresh.
STABLE_CONNECTION_SECONDS: Final = 30.0

MessageHandler = Callable[[Frame], Awaitable[None]]
UnreachableHandler = Callable[[str], None]


class ControlChannel:
    def __init__(
        self,
        mgs: MgsClient,
        *,
        instance_id: str,
        settings: AgentSettings,
        on_message: MessageHandler,
        on_unreachable: UnreachableHandler | None = None,
    ) -> None:
        self._mgs = mgs
        self.instance_id = instance_id
        self.settings = settings
        self._on_message = on_message
        self._on_unreachable = on_unreachable  # told the gateway URL a connection attempt failed on
        self._ws: ClientWebSocket | None = None
        self.connected = asyncio.Event()
        self.connections = 0  # how many times it (re)connected; for logs and tests

    async def run_forever(self) -> None:
        delays = self.settings.reconnect_backoff().delays()
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            endpoint, connections = self._mgs.endpoint, self.connections
            try:
                await self._connect_and_serve(endpoint)
            except (MgsError, OSError, TimeoutError) as exc:
                reraise_if_cancelled()
                log.warning("control channel: %s", exc)
                if self.connections == connections and self._on_unreachable is not None:
                    self._on_unreachable(endpoint)  # never opened: maybe another node will do
            finally:
                self.connected.clear()
                self._ws = None
            if loop.time() - started > STABLE_CONNECTION_SECONDS:
                delays = self.settings.reconnect_backoff().delays()
            delay = next(delays)
            log.info("control channel: reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _connect_and_serve(self, endpoint: str) -> None:
        token = await self._mgs.create_control_channel(self.instance_id, endpoint)
        ws = await self._mgs.connect_control(self.instance_id, endpoint)
        try:
            await ws.send_str(ControlOpen(token_value=token, agent_version=AGENT_VERSION).to_text())
            self._ws = ws
            self._mgs.control_endpoint = endpoint
            self.connections += 1
            self.connected.set()
            log.info("control channel open for %s", self.instance_id)
            async for message in ws:
                if message.type == WsMessageType.BINARY:
                    await self._dispatch(message.data)
                elif message.type == WsMessageType.ERROR:
                    break
            log.warning("control channel closed by the service")
        finally:
            if self._mgs.control_endpoint == endpoint:
                self._mgs.control_endpoint = None
            with contextlib.suppress(Exception):
                await ws.close()

    async def _dispatch(self, data: bytes) -> None:
        try:
            frame = decode(data)
        except FrameError as exc:
            log.warning("control channel: dropped undecodable frame: %s", exc)
            return
        try:
            await self._on_message(frame)
        except Exception:
            log.exception("control channel: handling %s failed", frame.message_type)

    async def send(self, frame: Frame, *, wait_connected: float) -> bool:
        """Send one frame, waiting up to ``wait_connected`` seconds for a connection."""
        try:
            async with asyncio.timeout(wait_connected):
                await self.connected.wait()
        except TimeoutError:
            return False
        ws = self._ws
        if ws is None or ws.closed:
            return False
        try:
            await ws.send_bytes(frame.encode())
        except (ConnectionError, RuntimeError) as exc:
            log.warning("control channel: send failed: %s", exc)
            return False
        return True

    async def close(self) -> None:
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()


class TaskCompletions:
    """``agent_task_complete`` with retries until ``agent_task_acknowledge`` names it."""

    def __init__(self, control: ControlChannel, *, instance_id: str, settings: AgentSettings) -> None:
        self._control = control
        self.instance_id = instance_id
        self.settings = settings
        self._waiting: dict[uuid.UUID, asyncio.Future[None]] = {}

    def build(self, task_id: str, status: str, output: str) -> Frame:
        complete = AgentTaskComplete(task_id, status, instance_id=self.instance_id, output=output)
        return complete.to_frame()

    async def send(self, task_id: str, status: str, output: str) -> bool:
        """True once acknowledged; gives up after the configured attempts."""
        frame = self.build(task_id, status, output)
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[frame.message_id] = acked
        try:
            for _attempt in range(self.settings.task_complete_attempts):
                if await self._control.send(frame, wait_connected=self.settings.reconnect_max_seconds):
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.settings.task_complete_retry_seconds):
                            await asyncio.shield(acked)
                if acked.done():
                    return True
            log.warning("agent_task_complete for %s was not acknowledged", task_id)
            return False
        finally:
            self._waiting.pop(frame.message_id, None)

    def on_acknowledge(self, frame: Frame) -> None:
        try:
            acknowledged = parse_agent_task_acknowledge(frame.payload)
            message_id: uuid.UUID | None = uuid.UUID(acknowledged.message_id)
        except (MessageError, ValueError):
            message_id = None
        waiter = self._waiting.get(message_id) if message_id else None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
