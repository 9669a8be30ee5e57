"""One session from ``interactive_shell`` to ``agent_task_complete`` (§2.7, §4.4)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from openssm.agent.config import AgentSettings
from openssm.agent.data_channel import ChannelEnded, DataChannel, EndReason
from openssm.agent.encryption import KmsApi
from openssm.agent.mgs import MgsClient, MgsError
from openssm.agent.session_request import SessionRequest
from openssm.agent.sessions.base import Outcome, SessionFailure, SessionHandler, error_output
from openssm.agent.sessions.commands import InteractiveCommandsHandler, NonInteractiveCommandsHandler
from openssm.agent.sessions.port import PortHandler
from openssm.agent.sessions.shell import StandardStreamHandler

log = logging.getLogger(__name__)

HANDLERS: Final[dict[str, type[SessionHandler]]] = {
    "Standard_Stream": StandardStreamHandler,
    "InteractiveCommands": InteractiveCommandsHandler,
    "NonInteractiveCommands": NonInteractiveCommandsHandler,
    "Port": PortHandler,
}

ReportCompletion = Callable[[SessionRequest, Outcome], Awaitable[None]]


class Session:
    def __init__(
        self,
        request: SessionRequest,
        *,
        mgs: MgsClient,
        instance_id: str,
        settings: AgentSettings,
        report: ReportCompletion,
        kms: KmsApi | None = None,
    ) -> None:
        self.request = request
        self.settings = settings
        self._report = report
        self._kms = kms
        self.channel = DataChannel(mgs, session_id=request.session_id, instance_id=instance_id)

    def cancel(self, reason: EndReason, output: str = "") -> None:
        """End from outside (control-channel ``channel_closed``, agent shutdown)."""
        self.channel.end(reason, output)

    async def run(self) -> Outcome:
        outcome = await self._run()
        log.info("session %s ended: %s %s", self.request.session_id, outcome.status, outcome.output.strip())
        await self._report(self.request, outcome)
        return outcome

    async def _run(self) -> Outcome:
        handler_class = HANDLERS.get(self.request.session_type)
        try:
            await self.channel.open()
        except (MgsError, OSError, TimeoutError) as exc:
            return Outcome("Failed", error_output(f"Unable to open the data channel: {exc}"))
        if handler_class is None:
            outcome = Outcome(
                "Failed", error_output(f"Unsupported session type {self.request.session_type!r}")
            )
            await self.channel.close(send_terminating=True)
            return outcome
        handler = handler_class(self.request, self.channel, self.settings)
        handler.kms = self._kms
        work = asyncio.create_task(handler.run(), name=f"session-{self.request.session_id}")
        ended = asyncio.create_task(self.channel.ended.wait())
        try:
            await asyncio.wait({work, ended}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
            await self.channel.close(send_terminating=False)
            raise
        finally:
            ended.cancel()
        if work.done() and not self.channel.ended.is_set():
            outcome = _outcome_of(work)
            await self.channel.drain(self.settings.drain_seconds)
            await self.channel.close(send_terminating=True)
            return outcome
        # Ended from outside: stop the work, drop the socket without ``Terminating``.
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        await self.channel.close(send_terminating=False)
        reason = self.channel.end_reason
        if reason is EndReason.CLIENT_TERMINATED:
            return Outcome("Success")
        if reason is EndReason.CONNECTION_LOST:
            return Outcome("Failed", error_output("The data channel to the service was lost."))
        return Outcome("Cancelled", self.channel.close_output)


def _outcome_of(work: asyncio.Task[Outcome]) -> Outcome:
    try:
        return work.result()
    except SessionFailure as exc:
        return Outcome("Failed", error_output(str(exc)))
    except ChannelEnded as exc:
        return Outcome("Cancelled", str(exc))
    except Exception as exc:
        log.exception("session worker failed")
        return Outcome("Failed", error_output(f"Session failed: {exc}"))
