"""The running agent: credentials, health pings, the control channel and its sessions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from openssm.agent.cancellation import reraise_if_cancelled
from openssm.agent.config import AgentSettings
from openssm.agent.control_channel import ControlChannel, TaskCompletions
from openssm.agent.credentials import RoleCredentials
from openssm.agent.data_channel import EndReason
from openssm.agent.encryption import KmsApi
from openssm.agent.endpoints import Endpoints
from openssm.agent.jobs import JobRunner
from openssm.agent.mgs import MgsClient
from openssm.agent.platform_info import full_instance_information, short_instance_information
from openssm.agent.session_request import BadSessionRequest, SessionRequest, parse_session_request
from openssm.agent.sessions.base import Outcome, error_output
from openssm.agent.signing import CredentialSource
from openssm.agent.ssm_api import SsmApi, SsmApiError, api_url
from openssm.protocol.frames import Frame, MessageType
from openssm.protocol.messages import MessageError, parse_channel_closed
from openssm.protocol.messages.codec import load_object
from openssm.transport.http_exchange import HttpClient

if TYPE_CHECKING:  # the session handlers (shell, port, smux…) load with the first session
    from openssm.agent.session import Session

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS: Final = 5.0


class Agent:
    def __init__(
        self,
        *,
        http: HttpClient,
        instance_id: str,
        region: str,
        endpoint: str,
        gateway_endpoint: str,
        credentials: CredentialSource,
        settings: AgentSettings,
        failover_endpoints: Sequence[str] = (),
    ) -> None:
        self.instance_id = instance_id
        self.endpoint = endpoint
        self.endpoints = Endpoints((endpoint, *failover_endpoints))
        # A gateway named apart from the API stays put; otherwise it moves with the API endpoint.
        self._gateway_follows_endpoint = gateway_endpoint == endpoint
        self.settings = settings
        self.credentials = credentials
        self.ssm = SsmApi(http, endpoint, region, credentials)
        self.mgs = MgsClient(http, gateway_endpoint, region, credentials, ping_seconds=settings.ping_seconds)
        self.control = ControlChannel(
            self.mgs,
            instance_id=instance_id,
            settings=settings,
            on_message=self._on_control_message,
            on_unreachable=self._unreachable,
        )
        self.completions = TaskCompletions(self.control, instance_id=instance_id, settings=settings)
        self.jobs = JobRunner(self.control, instance_id=instance_id, settings=settings)
        self.sessions: dict[str, Session] = {}
        self._session_tasks: set[asyncio.Task[Any]] = set()
        self.healthy = asyncio.Event()  # set after the first successful health ping

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then end sessions and disconnect."""
        background = [
            asyncio.create_task(self._health_loop(), name="health"),
            asyncio.create_task(self._control_loop(), name="control-channel"),
        ]
        refresh = getattr(self.credentials, "run_refresh_loop", None)
        if refresh is not None:
            background.append(asyncio.create_task(refresh(), name="credentials"))
        try:
            await stop.wait()
        finally:
            log.info("agent stopping")
            await self._stop_sessions()
            await self.jobs.stop()
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.control.close()

    def _unreachable(self, failed: str) -> None:
        """A server node did not answer: move every call to the next configured node."""
        endpoint = self.endpoints.fail_over(failed)
        if endpoint == self.endpoint:
            return
        self.endpoint = endpoint
        self.ssm.url = api_url(endpoint)
        if self._gateway_follows_endpoint:
            self.mgs.endpoint = endpoint
        if isinstance(self.credentials, RoleCredentials):
            self.credentials.endpoint = endpoint

    async def _stop_sessions(self) -> None:
        for session in list(self.sessions.values()):
            session.cancel(EndReason.AGENT_STOPPING, "The agent on the managed node is stopping.")
        if self._session_tasks:
            _done, pending = await asyncio.wait(set(self._session_tasks), timeout=SHUTDOWN_GRACE_SECONDS)
            for task in pending:
                task.cancel()

    async def _control_loop(self) -> None:
        # As the real agent: report the node (UpdateInstanceInformation) before going online.
        await self.healthy.wait()
        await self.control.run_forever()

    # -- health --------------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        """Short then full UpdateInstanceInformation at start, then the full one every heartbeat."""
        retry = self.settings.reconnect_backoff().delays()
        while not self.healthy.is_set():
            endpoint = self.endpoint
            try:
                await self.ssm.call("UpdateInstanceInformation", short_instance_information(self.instance_id))
                await self._ping()
                self.healthy.set()
            except (SsmApiError, OSError, TimeoutError) as exc:
                reraise_if_cancelled()
                if not isinstance(exc, SsmApiError):  # no answer at all (an error answer is one)
                    self._unreachable(endpoint)
                delay = next(retry)
                log.warning("UpdateInstanceInformation failed: %s (retry in %.1f s)", exc, delay)
                await asyncio.sleep(delay)
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            try:
                await self._ping()
            except (SsmApiError, OSError, TimeoutError) as exc:
                reraise_if_cancelled()
                log.warning("UpdateInstanceInformation failed: %s", exc)

    async def _ping(self) -> None:
        info = await asyncio.to_thread(full_instance_information, self.instance_id, self.endpoint)
        await self.ssm.call("UpdateInstanceInformation", info)

    # -- control messages ----------------------------------------------------------------------

    async def _on_control_message(self, frame: Frame) -> None:
        kind = frame.message_type
        if kind == MessageType.INTERACTIVE_SHELL:
            await self._start_session(frame)
        elif kind == MessageType.CHANNEL_CLOSED:
            self._close_session(frame)
        elif kind == MessageType.AGENT_TASK_ACKNOWLEDGE:
            self.completions.on_acknowledge(frame)
        elif kind == MessageType.AGENT_JOB:
            await self.jobs.on_job(frame)
        elif kind == MessageType.AGENT_JOB_REPLY_ACK:
            self.jobs.on_reply_ack(frame)
        else:
            log.info("control channel: ignoring %s", kind)

    async def _start_session(self, frame: Frame) -> None:
        try:
            request = parse_session_request(frame)
        except BadSessionRequest as exc:
            task_id = _task_id(frame)
            log.warning("refusing session %s: %s", task_id or "?", exc)
            if task_id:
                self._spawn_report(task_id, Outcome("Failed", error_output(str(exc))))
            return
        if request.session_id in self.sessions:
            log.info("session %s is already running; ignoring the repeat", request.session_id)
            return
        if len(self.sessions) >= self.settings.max_sessions:
            message = (
                f"The node already runs {len(self.sessions)} sessions (limit {self.settings.max_sessions})."
            )
            self._spawn_report(request.task_id, Outcome("Failed", error_output(message)))
            return
        log.info(
            "session %s: %s (%s) for %s",
            request.session_id,
            request.document_name,
            request.session_type,
            request.session_owner or "?",
        )
        from openssm.agent.session import Session

        session = Session(
            request,
            mgs=self.mgs,
            instance_id=self.instance_id,
            settings=self.settings,
            report=self._report,
            kms=KmsApi(self.ssm, self.settings.kms_endpoint),
        )
        self.sessions[request.session_id] = session
        task = asyncio.create_task(session.run(), name=f"session-{request.session_id}")
        self._session_tasks.add(task)

        def forget(done: asyncio.Task[Outcome]) -> None:
            self._session_tasks.discard(done)
            if self.sessions.get(request.session_id) is session:
                del self.sessions[request.session_id]
            error = None if done.cancelled() else done.exception()
            if error is not None:
                # The type and message only: an exception's repr can carry request headers (signatures).
                log.error("session %s crashed: %s: %s", request.session_id, type(error).__name__, error)

        task.add_done_callback(forget)

    def _close_session(self, frame: Frame) -> None:
        try:
            closed = parse_channel_closed(frame.payload)
            session_id, output = closed.session_id, closed.output
        except MessageError:
            session_id, output = "", ""
        session = self.sessions.get(session_id)
        if session is None:
            log.info("channel_closed for unknown session %r", session_id)
            return
        session.cancel(EndReason.CHANNEL_CLOSED, output)

    async def _report(self, request: SessionRequest, outcome: Outcome) -> None:
        await self.completions.send(request.task_id, outcome.status, outcome.output)

    def _spawn_report(self, task_id: str, outcome: Outcome) -> None:
        task = asyncio.create_task(self.completions.send(task_id, outcome.status, outcome.output))
        self._session_tasks.add(task)
        task.add_done_callback(self._session_tasks.discard)


def _task_id(frame: Frame) -> str:
    """The TaskId of an interactive_shell whose content could not be used (to report the failure)."""
    try:
        return load_object(frame.payload, "interactive_shell").string("TaskId")
    except MessageError:
        return ""
