"""What every session handler shares: outcome, failure, handshake (§2.4)."""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any, Final

from openssm.agent.config import AgentSettings
from openssm.agent.data_channel import DataChannel
from openssm.agent.session_request import SessionRequest
from openssm.errors import OpenSSMError
from openssm.protocol import messages
from openssm.protocol.datachannel import StreamData
from openssm.protocol.frames import Frame, PayloadType
from openssm.transport.datachannel import Delivered

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_MESSAGE: Final = (
    "Handshake timed out. Please ensure that you have the latest version of the session manager plugin."
)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What ``agent_task_complete`` reports."""

    status: str = "Success"  # FinalTaskStatus: Success | Failed | Cancelled
    output: str = ""


class SessionFailure(OpenSSMError):
    """The session cannot start or continue; the text goes to the client via the service."""


def error_output(message: str) -> str:
    """The real agent's layout of a failure in ``agent_task_complete.Output``."""
    return f"\n----------ERROR-------\n{message}\n"


def linux_properties(request: SessionRequest) -> dict[str, Any]:
    """``properties.linux`` of a command document (InteractiveCommands, NonInteractiveCommands)."""
    properties = request.properties
    linux = properties.get("linux") if isinstance(properties, dict) else None
    if not isinstance(linux, dict):
        raise SessionFailure("document has no properties.linux for this platform")
    return linux


@dataclasses.dataclass(frozen=True)
class HandshakeResult:
    client_version: str
    # Top-level keys of the response beyond AWS's three (OpenSSM clients' extension answers).
    extensions: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class SessionHandler(abc.ABC):
    """One running session. ``run`` returns when the session's work is done."""

    def __init__(self, request: SessionRequest, channel: DataChannel, settings: AgentSettings) -> None:
        self.request = request
        self.channel = channel
        self.settings = settings
        self._handshake_response: asyncio.Future[Frame] | None = None

    @abc.abstractmethod
    async def run(self) -> Outcome: ...

    async def handle_input(self, frame: Frame) -> None:  # noqa: B027 (optional hook)
        """A client stream message in sequence (handshake responses excluded)."""

    async def _on_input(self, frame: Frame) -> None:
        if frame.payload_type == PayloadType.HANDSHAKE_RESPONSE:
            waiter = self._handshake_response
            if waiter is not None and not waiter.done():
                waiter.set_result(frame)
            return
        await self.handle_input(frame)

    # The data channel's handler contract (transport.datachannel.ChannelHandler).
    def ready(self, frame: Frame) -> bool:
        return True

    async def on_event(self, event: StreamData | Delivered) -> None:
        if isinstance(event, StreamData):
            await self._on_input(event.frame)

    def accept_input(self) -> None:
        self.channel.accept_input(self)

    async def handshake(self, session_type: str, properties: Any) -> HandshakeResult:
        """HandshakeRequest → HandshakeResponse (15 s) → HandshakeComplete."""
        started = time.monotonic_ns()
        self._handshake_response = asyncio.get_running_loop().create_future()
        self.accept_input()
        request = messages.handshake_request(session_type, properties)
        await self.channel.send(PayloadType.HANDSHAKE_REQUEST, request.encode())
        try:
            async with asyncio.timeout(self.settings.handshake_timeout_seconds):
                response = await self._handshake_response
        except TimeoutError:
            raise SessionFailure(HANDSHAKE_TIMEOUT_MESSAGE) from None
        result = _check_handshake_response(response)
        complete = messages.HandshakeComplete(time.monotonic_ns() - started)
        await self.channel.send(PayloadType.HANDSHAKE_COMPLETE, complete.encode())
        return result


def _check_handshake_response(frame: Frame) -> HandshakeResult:
    try:
        response = messages.parse_handshake_response(frame.payload)
    except messages.MessageError as exc:
        raise SessionFailure(f"Handshake failed: {exc}") from exc
    if response.errors:
        raise SessionFailure("Handshake failed: " + "; ".join(response.errors))
    if not response.actions:
        raise SessionFailure("Handshake failed: no ProcessedClientActions")
    for action in response.actions:
        if action.action_status != messages.ActionStatus.SUCCESS:
            detail = action.error or "failed"
            raise SessionFailure(f"Handshake failed: client could not process {action.action_type}: {detail}")
    return HandshakeResult(response.client_version, dict(response.extensions))
