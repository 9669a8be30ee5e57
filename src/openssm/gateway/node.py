"""This node's gateway: its control channels, its sessions, its heartbeat and its bus listener.

Features beyond the relay (Run Command, recording) plug in as :class:`NodeExtension` objects given
to the constructor (``openssm.gateway.extension``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncEngine

from openssm.bus import node_channel
from openssm.errors import OpenSSMError
from openssm.gateway import messages
from openssm.gateway.control import ControlChannel
from openssm.gateway.extension import (
    NODE_BUS_MESSAGES,
    NODE_CHANNEL_KINDS,
    NODE_CONTROL_MESSAGES,
    ExtensionChannel,
    NodeExtension,
    routes,
)
from openssm.gateway.injection import Injector
from openssm.gateway.peer import Peer
from openssm.gateway.session import RESUME_EXPIRED_REASON, SessionRelay, limit_seconds
from openssm.gateway.settings import DEFAULT_IDLE_MINUTES, GatewaySettings
from openssm.gateway.tap import SessionTap, TapPump
from openssm.protocol.frames import Frame
from openssm.protocol.session_status import FINAL_STATUSES, SessionStatus
from openssm.services import Services
from openssm.store import channel_tokens, gateway_nodes, instances, session_joins, sessions
from openssm.store.db import patiently
from openssm.store.sessions import SessionRow

log = logging.getLogger(__name__)

RESTART_REASON: Final = "gateway restarted while the session was being terminated"
UNCLAIMED_REASON: Final = "No client connected to the session"
TERMINATED_REASON: Final = "Terminated"  # a terminate message that gave no reason
CONTROL_POLL: Final = 0.1
TOKEN_HISTORY: Final = dt.timedelta(hours=1)


class SessionRefused(OpenSSMError):
    """A client or agent may not join a session; the message is safe to show the client."""


class NodeStopping(SessionRefused):
    """The node is shutting down: the peer should re-dial (it is not told the session ended)."""


class NodeElsewhere(NodeStopping):
    """The session is another live node's: the peer should re-dial (it is not told the session ended)."""


class GatewayNode:
    def __init__(
        self,
        services: Services,
        settings: GatewaySettings | None = None,
        extensions: Sequence[NodeExtension] = (),
    ) -> None:
        self.services = services
        self.engine: AsyncEngine = services.engine
        self.node_id = services.config.node_id
        self.settings = settings or GatewaySettings()
        self.extensions = tuple(extensions)
        self._bus_routes = routes(self.extensions, lambda e: e.bus_messages, NODE_BUS_MESSAGES)
        self._control_routes = routes(self.extensions, lambda e: e.control_messages, NODE_CONTROL_MESSAGES)
        self._channel_routes = routes(self.extensions, lambda e: e.channel_kinds, NODE_CHANNEL_KINDS)
        self.controls: dict[str, ControlChannel] = {}
        self.relays: dict[str, SessionRelay] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._restore_deadlines: dict[str, float] = {}  # restored sessions: both ends back by then
        self.clock = services.clock
        self._started_at = self.clock.now()

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        # Whatever this node id held before a crash is gone: its sockets died with the process.
        await instances.clear_node_control_channels(self.engine, self.node_id)
        self._started_at = self.clock.now()
        await self._restore_sessions()
        await gateway_nodes.announce(
            self.engine, self.node_id, self.services.config.public_url, now=self._started_at
        )
        for extension in self.extensions:
            await extension.start(self)
        self.background(self._heartbeat(), "gateway-heartbeat")
        self.background(self._listen(), "gateway-bus")
        # Let the listener run up to its first wait, so an in-process subscription exists before
        # the first session can start here.
        for _ in range(3):
            await asyncio.sleep(0)

    async def _restore_sessions(self) -> None:
        """The sessions this node carried before it stopped (or died) go on: their ends re-dial
        and each is picked up by a new relay (``join_client``/``join_agent``). Those not back
        within the resume window end then; those that were being terminated end now."""
        now = self._started_at
        deadline = self.clock.monotonic() + self.settings.resume_window
        waiting: list[SessionRow] = []
        for session in await sessions.of_node(self.engine, self.node_id):
            if session.status == SessionStatus.TERMINATING:
                await sessions.finish(
                    self.engine,
                    session.session_id,
                    status=SessionStatus.TERMINATED,
                    reason=RESTART_REASON,
                    now=now,
                )
            elif session.status != SessionStatus.CONNECTING:  # Connecting: see _end_unclaimed_sessions
                await sessions.set_status(self.engine, session.session_id, SessionStatus.DISCONNECTED)
                self._restore_deadlines[session.session_id] = deadline
                waiting.append(session)
        if waiting:
            log.info("%d sessions wait for their ends to come back", len(waiting))
            self.background(self._expire_restored(waiting), "gateway-restored-sessions")

    async def _expire_restored(self, waiting: list[SessionRow]) -> None:
        """End the restored sessions that neither end came back for within the resume window."""
        await asyncio.sleep(self.settings.resume_window)
        for session in waiting:
            self._restore_deadlines.pop(session.session_id, None)
            if session.session_id in self.relays:
                continue  # picked up: its relay's own timer ends it if it is still missing an end
            ended = await sessions.finish(
                self.engine,
                session.session_id,
                status=SessionStatus.TERMINATED,
                reason=RESUME_EXPIRED_REASON,
                now=self.clock.now(),
            )
            if ended:
                await self.send_control(
                    session.target,
                    messages.channel_closed(session.session_id, session.target, RESUME_EXPIRED_REASON),
                )

    async def shutdown(self) -> None:
        """Let go of this node's sessions without ending them (their ends re-dial: here after a
        restart, or another node) and close its control channels (their agents go elsewhere)."""
        self._stopping = True
        await asyncio.gather(*(relay.suspend() for relay in list(self.relays.values())))
        for control in list(self.controls.values()):
            with contextlib.suppress(Exception):
                await control.peer.ws.close()
        with contextlib.suppress(Exception):
            await instances.clear_node_control_channels(self.engine, self.node_id)

    async def cleanup(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for extension in reversed(self.extensions):
            try:
                await extension.stop()
            except Exception:
                log.exception("gateway extension %s failed to stop", type(extension).__name__)

    def background(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    async def run_detached(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        """Run clean-up to its end even if the caller is cancelled: aiohttp cancels a WebSocket
        handler whose connection is lost, which would otherwise cut store updates in half."""
        await asyncio.shield(self.background(coroutine, name))

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("gateway task %s failed", task.get_name(), exc_info=task.exception())

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            try:
                now = self.clock.now()
                await patiently(
                    lambda: gateway_nodes.heartbeat(
                        self.engine,
                        self.node_id,
                        self.services.config.public_url,
                        self._started_at,
                        now=self.clock.now(),  # the time of the try that writes
                    ),
                    "the gateway heartbeat",
                )
                # Used and expired tokens are only history; keep an hour of it for inspection.
                await channel_tokens.purge_expired(self.engine, older_than=now - TOKEN_HISTORY)
                await self._end_unclaimed_sessions()
            except Exception:
                log.exception("gateway heartbeat failed")

    async def _end_unclaimed_sessions(self) -> None:
        """StartSession made a session here, but no client ever opened it (nor will: its tokens
        have expired and a resume would have found it by now)."""
        patience = dt.timedelta(seconds=self.services.config.token_ttl_seconds + self.settings.resume_window)
        now = self.clock.now()
        for session_id in await sessions.unclaimed(self.engine, self.node_id, started_before=now - patience):
            if session_id not in self.relays:
                await sessions.finish(
                    self.engine, session_id, status=SessionStatus.TERMINATED, reason=UNCLAIMED_REASON, now=now
                )

    async def _listen(self) -> None:
        channel = node_channel.node_channel(self.node_id)
        while True:
            try:
                async for message in self.services.bus.subscribe(channel):
                    await self._on_bus_message(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bus subscription %s failed; resubscribing", channel)
            await asyncio.sleep(1)

    async def _on_bus_message(self, message: Mapping[str, Any]) -> None:
        extension = self._bus_routes.get(str(message.get("type")))
        if extension is not None:
            try:
                await extension.on_bus_message(message)
            except Exception:  # one bad message must not cost the subscription
                log.exception("bus message %s failed", message.get("type"))
            return
        if message.get("type") != node_channel.TERMINATE:
            return
        session_id = message.get("session_id")
        reason = message.get("reason")
        if isinstance(session_id, str):
            await self.terminate(session_id, reason if isinstance(reason, str) else TERMINATED_REASON)

    # -- control channels -------------------------------------------------------------------------

    async def register_control(self, control: ControlChannel) -> None:
        """This node serves the instance's control channel now (its row says so already: written
        with the use of the channel's token, ``SocketHandlers._open_control``)."""
        old = self.controls.get(control.instance_id)
        self.controls[control.instance_id] = control
        if old is not None and old is not control:
            self.background(old.peer.close_after(0), f"close-old-control-{control.instance_id}")
        for extension in self.extensions:
            self.background(
                extension.on_control_opened(control.instance_id), f"control-opened-{control.instance_id}"
            )

    async def unregister_control(self, control: ControlChannel) -> None:
        if self.controls.get(control.instance_id) is control:
            del self.controls[control.instance_id]
            for extension in self.extensions:
                self.background(
                    extension.on_control_closed(control.instance_id), f"control-closed-{control.instance_id}"
                )
            await patiently(
                lambda: instances.clear_control_node(
                    self.engine, control.instance_id, self.node_id, connected_at=control.connected_at
                ),
                f"closing the control channel of {control.instance_id}",
            )

    async def send_control(self, instance_id: str, data: bytes) -> bool:
        control = self.controls.get(instance_id)
        return control is not None and await control.send(data)

    async def control_message(self, instance_id: str, frame: Frame) -> None:
        """A control-channel message the node does not handle itself: to the extension that takes it."""
        extension = self._control_routes.get(frame.message_type)
        if extension is None:
            log.debug("control %s: ignoring %s", instance_id, frame.message_type)
            return
        try:
            await extension.on_control_message(instance_id, frame)
        except Exception:
            log.exception(
                "control %s: %s failed in %s", instance_id, frame.message_type, type(extension).__name__
            )

    async def task_completed(self, instance_id: str, task: messages.TaskComplete) -> None:
        relay = self.relays.get(task.task_id)
        if relay is not None:
            if relay.target == instance_id:  # an instance can end only its own sessions
                await relay.agent_completed(task)
            return
        session = await sessions.get(self.engine, task.task_id)
        if session is not None and session.target == instance_id:
            status = SessionStatus.TERMINATED if task.succeeded else SessionStatus.FAILED
            reason = task.output or "Session ended by the agent"
            await sessions.finish(
                self.engine, task.task_id, status=status, reason=reason, now=self.clock.now()
            )

    # -- sessions ---------------------------------------------------------------------------------

    @property
    def channel_kinds(self) -> frozenset[str]:
        """Data-channel token kinds served here: the client's, and those extensions claim."""
        return NODE_CHANNEL_KINDS | frozenset(self._channel_routes)

    def live_session(self, session_id: str) -> SessionRelay | None:
        relay = self.relays.get(session_id)
        return None if relay is None or relay.ended else relay

    async def serve_channel(self, channel: ExtensionChannel) -> None:
        """A data channel opened with a token an extension claims: that extension serves it."""
        if self._stopping:
            raise SessionRefused("The gateway is shutting down")
        extension = self._channel_routes.get(channel.kind)
        if extension is None:
            raise SessionRefused(f"No data channel of kind {channel.kind} is served here")
        await extension.serve_channel(channel)

    def forget(self, relay: SessionRelay) -> None:
        if self.relays.get(relay.session_id) is relay:
            del self.relays[relay.session_id]
            self._session_event(relay, opened=False)

    def _session_event(self, relay: SessionRelay, *, opened: bool) -> None:
        for extension in self.extensions:
            try:
                if opened:
                    extension.on_session_opened(relay)
                else:
                    extension.on_session_closed(relay)
            except Exception:
                log.exception("%s failed on session %s", type(extension).__name__, relay.session_id)

    async def _active_session(self, session_id: str) -> SessionRow:
        session = await sessions.get(self.engine, session_id)
        if session is None:
            raise SessionRefused(f"Session {session_id} does not exist")
        if session.status in FINAL_STATUSES:
            raise SessionRefused(f"Session {session_id} is already terminated")
        if session.node_id != self.node_id:
            session = await self._take_over(session)
        return session

    async def _relay_for(self, session: SessionRow) -> SessionRelay:
        """This node's relay of ``session``: the one it has, or a new one (going on with a shell
        session's numbering as the store kept it, when the session was relayed before)."""
        relay = self.relays.get(session.session_id)
        if relay is not None:
            return relay
        injector = None
        if session.status != SessionStatus.CONNECTING:
            state = await session_joins.splice(self.engine, session.session_id)
            if state is not None:
                try:
                    injector = Injector.restored(state)
                except (KeyError, TypeError, ValueError) as exc:
                    raise SessionRefused(
                        f"Session {session.session_id}: its numbering is unreadable"
                    ) from exc
                if not injector.active:
                    # The ends' own numbers as a SIGTERM left them: true only until they send again,
                    # and nothing keeps them up to date until someone joins (which writes a new row).
                    await session_joins.forget_splice(self.engine, session.session_id)
        if session.session_id in self.relays:
            return self.relays[session.session_id]
        return self._new_relay(session, injector)

    async def _take_over(self, session: SessionRow) -> SessionRow:
        """A session of another node: carried on here if that node is dead (its ends re-dialled
        here: the client after ResumeSession, the agent after failing over), else refused."""
        alive = await gateway_nodes.alive(self.engine, now=self.clock.now(), own_node=self.node_id)
        if session.node_id in alive:
            # The agent may get here before its node is known to be dead: it tries again.
            raise NodeElsewhere(f"Session {session.session_id} is served by gateway node {session.node_id}")
        if not await sessions.move_to_node(
            self.engine, session.session_id, from_node=session.node_id, to_node=self.node_id
        ):
            moved = await sessions.get(self.engine, session.session_id)
            if moved is None or moved.node_id != self.node_id or moved.status in FINAL_STATUSES:
                raise SessionRefused(f"Session {session.session_id} is not served by this gateway node")
            return moved
        log.warning(
            "session %s: carried on here after gateway node %s stopped responding",
            session.session_id,
            session.node_id,
        )
        return dataclasses.replace(session, node_id=self.node_id)

    def _new_relay(self, session: SessionRow, injector: Injector | None = None) -> SessionRelay:
        """A relay for a session: a new one, or one this node (or a node that died) relayed before
        it restarted, which goes on where it was."""
        config = self.services.config
        row = session.as_mapping()  # what relays, taps and agent messages are built from
        taps = self._taps_for(row)
        restored = session.status != SessionStatus.CONNECTING
        age = max(0.0, (self.clock.now() - session.start_date).total_seconds())
        deadline = self._restore_deadlines.pop(session.session_id, None)
        if restored and deadline is None:
            deadline = self.clock.monotonic() + self.settings.resume_window
        relay = SessionRelay(
            self,
            row,
            self.settings,
            idle_limit=limit_seconds(
                config.idle_timeout_override, session.idle_session_timeout, DEFAULT_IDLE_MINUTES
            ),
            max_duration=limit_seconds(config.max_duration_override, session.max_session_duration, None),
            tap=TapPump(row, taps, self.clock.monotonic, resumed_after=age if restored else None)
            if taps
            else None,
            clock=self.clock.monotonic,
            restored_deadline=deadline if restored else None,
            age=age if restored else 0.0,
            injector=injector,
        )
        self.relays[relay.session_id] = relay
        self._session_event(relay, opened=True)
        if restored:
            log.info("session %s picked up again: its ends are re-dialling", relay.session_id)
        return relay

    def _taps_for(self, session: Mapping[str, Any]) -> list[SessionTap]:
        taps: list[SessionTap] = []
        for extension in self.extensions:
            try:
                tap = extension.session_tap(session)
            except Exception:
                log.exception(
                    "%s: no session tap for %s", type(extension).__name__, session.get("session_id")
                )
                continue
            if tap is not None:
                taps.append(tap)
        return taps

    async def join_client(self, session_id: str, peer: Peer) -> SessionRelay:
        """A client's token was accepted: pair it, starting the session on the agent if new."""
        if self._stopping:
            raise NodeStopping("The gateway is shutting down")
        session = await self._active_session(session_id)
        if session_id not in self.relays and session.status == SessionStatus.TERMINATING:
            raise SessionRefused(f"Session {session_id} can no longer be resumed")
        relay = await self._relay_for(session)
        await relay.attach_client(peer)
        if not relay.shell_dispatched and relay.agent is None:
            relay.shell_dispatched = True
            if not await self._start_on_agent(relay.target, messages.interactive_shell(session.as_mapping())):
                reason = f"Target {relay.target} is not connected to this gateway"
                await relay.end(SessionStatus.FAILED, reason, client_output=reason, notify_agent=False)
        return relay

    async def _start_on_agent(self, instance_id: str, shell: bytes) -> bool:
        """Send interactive_shell, giving an agent that is re-dialling its control channel a moment."""
        deadline = asyncio.get_running_loop().time() + self.settings.control_wait
        while not await self.send_control(instance_id, shell):
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(CONTROL_POLL)
        return True

    async def join_agent(self, session_id: str, instance_id: str, peer: Peer) -> SessionRelay:
        if self._stopping:
            raise NodeStopping("The gateway is shutting down")
        session = await self._active_session(session_id)
        if session.target != instance_id:
            raise SessionRefused(f"Session {session_id} does not target {instance_id}")
        relay = await self._relay_for(session)
        relay.shell_dispatched = True
        await relay.attach_agent(peer)
        return relay

    async def terminate(self, session_id: str, reason: str) -> None:
        """TerminateSession: end it here, or at least in the store and on the agent."""
        relay = self.relays.get(session_id)
        if relay is not None:
            await relay.end(SessionStatus.TERMINATED, reason, client_output=reason, notify_agent=True)
            return
        session = await sessions.get(self.engine, session_id)
        if session is None or session.node_id != self.node_id:
            return
        ended = await sessions.finish(
            self.engine, session_id, status=SessionStatus.TERMINATED, reason=reason, now=self.clock.now()
        )
        if ended:
            await self.send_control(
                session.target, messages.channel_closed(session_id, session.target, reason)
            )
