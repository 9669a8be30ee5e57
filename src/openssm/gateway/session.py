"""One session on this node: pairs the client socket with the agent data socket and relays frames
verbatim between them, and decides when and how the session ends.

Acks stay end to end (we never ack for a peer). While one side is away, frames for it wait in a
bounded queue; when it is full the oldest are dropped, which is safe because both ends retransmit
every unacked stream message.

Because of that, a relay holds nothing a session needs beyond the pairing, which the store keeps:
when the node stops, :meth:`SessionRelay.suspend` lets go of both ends without ending the session,
and a relay made again after the restart (``restored``) picks it up when the ends re-dial. A joined
session's renumbering (``openssm.gateway.injection``) is the one exception, so the store keeps it
too: written before anything that depends on it goes out (the frames wait for it in ``_held``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Final, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from openssm.clock import Clock
from openssm.gateway import messages
from openssm.gateway.injection import Injector, SplicedStream
from openssm.gateway.peer import LINGER, Peer
from openssm.gateway.settings import GatewaySettings
from openssm.gateway.tap import TapPump
from openssm.protocol.frames import (
    Frame,
    FrameError,
    FrameHead,
    MessageType,
    PayloadType,
    acked_sequence,
    peek,
)
from openssm.protocol.joining import joinable
from openssm.protocol.session_status import SessionStatus
from openssm.protocol.splice import SpliceFull
from openssm.store import session_joins
from openssm.store import sessions as store

log = logging.getLogger(__name__)

IDLE_REASON = "Session idle timeout"
MAX_DURATION_REASON = "Session reached maximum duration"
RESUME_EXPIRED_REASON = "Session resume window expired"
AGENT_GONE_REASON = "Agent closed the data channel"
AGENT_ENDED_REASON = "Session ended by the agent"

INJECTION_RESEND: Final = 0.3  # seconds between resends of the gateway's own unacked messages
SPLICE_RETRY: Final = 1.0  # seconds before writing a joined session's numbering again after a failure

_CLIENT_TO_AGENT = frozenset({MessageType.INPUT_STREAM_DATA, MessageType.ACKNOWLEDGE})
# What the relay takes from the agent: what it passes on, and the agent's state for itself.
_FROM_AGENT = frozenset(
    {MessageType.OUTPUT_STREAM_DATA, MessageType.ACKNOWLEDGE, MessageType.AGENT_SESSION_STATE}
)


# TapPump.input or .output: one direction's stream messages, with their sequence numbers.
TapInput = Callable[[memoryview, int, int], None]


class NodeServices(Protocol):
    """What a session needs from its gateway node."""

    engine: AsyncEngine
    clock: Clock

    async def send_control(self, instance_id: str, data: bytes) -> bool: ...

    def forget(self, relay: SessionRelay) -> None: ...

    def background(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]: ...


def limit_seconds(override: float | None, minutes: int | None, default_minutes: int | None) -> float | None:
    """A time limit from the config override (seconds) or the session's preference (minutes)."""
    if override is not None:
        return override
    if minutes:
        return minutes * 60.0
    return default_minutes * 60.0 if default_minutes else None


def _payload(frame: bytes, head: FrameHead) -> memoryview:
    """The frame's payload for the taps, without copying it (the frame is immutable bytes)."""
    return memoryview(frame)[head.payload_offset :]


class Pending:
    """Frames waiting for one side, bounded in count and bytes; the oldest go first when full
    (safe: both ends resend whatever is unacknowledged)."""

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self._frames: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self._max_frames = max_frames
        self._max_bytes = max_bytes

    def __bool__(self) -> bool:
        return bool(self._frames)

    def append(self, data: bytes) -> None:
        self._frames.append(data)
        self._bytes += len(data)
        while self._frames and (len(self._frames) > self._max_frames or self._bytes > self._max_bytes):
            self._bytes -= len(self._frames.popleft())

    def popleft(self) -> bytes:
        data = self._frames.popleft()
        self._bytes -= len(data)
        return data

    def appendleft(self, data: bytes) -> None:
        self._frames.appendleft(data)
        self._bytes += len(data)


class SessionRelay:
    def __init__(
        self,
        node: NodeServices,
        session: Mapping[str, Any],
        settings: GatewaySettings,
        *,
        idle_limit: float | None,
        max_duration: float | None,
        tap: TapPump | None = None,
        clock: Callable[[], float] = time.monotonic,
        restored_deadline: float | None = None,
        age: float = 0.0,
        injector: Injector | None = None,
    ) -> None:
        """``restored_deadline``: the session was relayed before this node restarted; both ends
        must be back by then (``clock`` time). ``age``: seconds since the session started.
        ``injector``: a restored shell session's numbering, as the store kept it (None: not kept,
        as after a SIGKILL before anyone joined; the ends' numbers are not known here, so the
        session takes no joiners)."""
        self.node = node
        self.row = dict(session)
        self.session_id: str = self.row["session_id"]
        self.target: str = self.row["target"]
        self.settings = settings
        self.idle_limit = idle_limit
        self.max_duration = max_duration
        self.tap = tap
        self._clock = clock
        self.client: Peer | None = None
        self.agent: Peer | None = None
        self._to_client = Pending(settings.pending_frames, settings.pending_bytes)
        self._to_agent = Pending(settings.pending_frames, settings.pending_bytes)
        self.started = clock() - age
        self.last_activity = clock()
        self.bytes_in = int(self.row.get("bytes_in") or 0)  # client -> agent stream payload bytes
        self.bytes_out = int(self.row.get("bytes_out") or 0)  # agent -> client stream payload bytes
        self.restored = restored_deadline is not None
        self.shell_dispatched = self.restored  # the agent runs it already
        self.agent_terminating = False
        self.agent_paused = False
        self.ended = False
        self._timer: asyncio.Task[None] | None = None  # resume window or agent grace
        # A shell's recording holds its output: the client's acks for output wait until the
        # recording holds that output, so a crash of this process loses none of it (the agent
        # resends what is unacked, the recorder skips what it has). Port records hold no bytes.
        self._gate_acks = tap is not None and tap.resumable and self.row.get("session_type") != "Port"
        self._held_acks: list[tuple[int, bytes]] = []
        self._releasing: asyncio.Task[None] | None = None
        if self._gate_acks and tap is not None:
            tap.on_durable = self._on_durable
        # Shell sessions can take messages of the gateway's own (live-session join): see injection.
        if joinable(self.row) is not None:
            self.injector: Injector | None = None
        else:
            self.injector = injector if self.restored else Injector()
        self.output_started = self.restored  # the agent's first Output went by: the terminal is running
        self._resender: asyncio.Task[None] | None = None
        # The injector's state: versions made and kept in the store; frames waiting for theirs.
        self._splice_made = self._splice_kept = 0
        self._splice_saver: asyncio.Task[None] | None = None
        self._held: collections.deque[tuple[int, bool, bytes]] = collections.deque()
        if injector is not None:
            self._resend_soon()  # the gateway's own messages the receivers may not have
        self._status_write: asyncio.Task[None] | None = None  # the last status write (see _record_status)
        self._watchdog = node.background(self._watch(), f"watchdog-{self.session_id}")
        if restored_deadline is not None:
            self._start_timer(
                max(0.0, restored_deadline - clock()),
                RESUME_EXPIRED_REASON,
                client_output=RESUME_EXPIRED_REASON,
            )

    # -- pairing ----------------------------------------------------------------------------------

    async def attach_client(self, peer: Peer) -> None:
        log.debug("session %s: client attached (agent %s)", self.session_id, "here" if self.agent else "away")
        old, self.client = self.client, peer
        if old is not None and old is not peer:
            self.node.background(old.close_after(0), f"close-old-client-{self.session_id}")
        if self.agent is not None:
            self._cancel_timer()  # both ends are here (an agent's own grace runs on without it)
        await self._flush(self._to_client, peer)
        if self.agent is not None and self.agent_paused:
            await self.agent.send(messages.start_publication(self.session_id))
            self.agent_paused = False
        if self.agent is not None:
            self._record_status(SessionStatus.CONNECTED)

    async def attach_agent(self, peer: Peer) -> None:
        log.debug(
            "session %s: agent attached (client %s)", self.session_id, "here" if self.client else "away"
        )
        old, self.agent = self.agent, peer
        if old is not None and old is not peer:
            self.node.background(old.close_after(0), f"close-old-agent-{self.session_id}")
        self.agent_terminating = False
        if self.client is None:
            # The client is away (resume pending): keep the agent quiet until it is back.
            self.agent_paused = await peer.send(messages.pause_publication(self.session_id))
        else:
            self._cancel_timer()
        await self._flush(self._to_agent, peer)
        if self.client is not None:
            self._record_status(SessionStatus.CONNECTED)

    def _record_status(self, status: SessionStatus) -> None:
        """Write ``status`` without holding up the frames that made it true: the agent's first
        output (the prompt) is read only once its join returns, and a commit under load takes
        tens of milliseconds. Writes stay in order: each waits for the one before, and whatever
        writes the session's status later waits for them (:meth:`_status_recorded`)."""
        before = self._status_write

        async def write() -> None:
            if before is not None:
                await asyncio.wait({before})  # its failure is logged by the node, not ours
            await store.set_status(self.node.engine, self.session_id, status)

        self._status_write = self.node.background(write(), f"status-{self.session_id}")

    async def _status_recorded(self) -> None:
        """The status writes started so far are done (or failed, and logged)."""
        if self._status_write is not None:
            await asyncio.wait({self._status_write})

    async def _flush(self, queue: Pending, peer: Peer) -> None:
        while queue and peer.open:
            data = queue.popleft()
            if not await peer.send(data):
                queue.appendleft(data)  # kept for the next socket of that side
                return

    # -- relay ------------------------------------------------------------------------------------

    def _head(self, data: bytes, side: str, takes: frozenset[str]) -> FrameHead | None:
        """The header of a frame from ``side`` if its type is one the relay ``takes``; None (and
        the frame dropped, logged with the side and the reason) otherwise."""
        if self.ended:
            return None
        try:
            head = peek(data)
        except FrameError as exc:
            log.info("session %s: dropping malformed %s frame: %s", self.session_id, side, exc)
            return None
        if head.message_type not in takes:
            log.debug("session %s: ignoring %s from %s", self.session_id, head.message_type, side)
            return None
        return head

    def _stream_message(self, data: bytes, head: FrameHead, tap: TapInput | None) -> int:
        """A stream message goes by: the session is active, the taps get it (by its sequence
        number: they see each once, in order). Its payload's size."""
        self.last_activity = self._clock()
        if tap is not None:
            tap(_payload(data, head), head.payload_type, head.sequence_number)
        return len(data) - head.payload_offset

    async def from_client(self, data: bytes) -> None:
        head = self._head(data, "client", _CLIENT_TO_AGENT)
        if head is None:
            return
        if head.message_type == MessageType.INPUT_STREAM_DATA:
            self.bytes_in += self._stream_message(data, head, None if self.tap is None else self.tap.input)
        if self.injector is not None:
            spliced = await self._splice(
                data, head.message_type, self.injector.to_agent, self.injector.to_client, self.client
            )
            if self._held_for_store(spliced, to_agent=True) or spliced is None:
                return
            if spliced is not data:
                data, head = spliced, peek(spliced)
        await self._client_frame_to_agent(data, head)

    async def _client_frame_to_agent(self, data: bytes, head: FrameHead) -> None:
        # After the splice, an ack counts in the agent's numbering, as the recording does.
        if head.message_type == MessageType.ACKNOWLEDGE and self._gate_acks and self._hold_ack(data, head):
            return
        await self._to_agent_side(data)

    async def _to_agent_side(self, data: bytes) -> None:
        if self.agent is None or not await self.agent.send(data):
            self._to_agent.append(data)

    async def _to_client_side(self, data: bytes) -> None:
        if self.client is None or not await self.client.send(data):
            self._to_client.append(data)

    @staticmethod
    async def _splice(
        data: bytes, message_type: str, outgoing: SplicedStream, incoming: SplicedStream, sender: Peer | None
    ) -> bytes | None:
        """A frame from ``sender``: its stream frame renumbered (``outgoing``), or its ack of the
        other direction (``incoming``) mapped back to the other side's numbers. None when nothing
        goes on (an ack of the gateway's own message, or a resend answered here)."""
        if message_type != outgoing.message_type:
            return incoming.from_receiver(data)
        forward, answer = outgoing.from_sender(data)
        if answer is not None and sender is not None:
            await sender.send(answer)
        return forward

    async def from_agent(self, data: bytes) -> None:
        head = self._head(data, "agent", _FROM_AGENT)
        if head is None:
            return
        if head.message_type == MessageType.AGENT_SESSION_STATE:
            state = messages.session_state(data[head.payload_offset :])
            log.debug("session %s: agent state %s", self.session_id, state)
            if state == "Terminating":
                self.agent_terminating = True
            return
        if head.message_type == MessageType.OUTPUT_STREAM_DATA:
            self.bytes_out += self._stream_message(data, head, None if self.tap is None else self.tap.output)
            if head.payload_type == PayloadType.OUTPUT:
                self.output_started = True
        if self.injector is not None:
            spliced = await self._splice(
                data, head.message_type, self.injector.to_client, self.injector.to_agent, self.agent
            )
            if self._held_for_store(spliced, to_agent=False) or spliced is None:
                return
            data = spliced
        await self._to_client_side(data)

    # -- the gateway's own messages (live-session join) ------------------------------------------

    @property
    def takes_joins(self) -> bool:
        return self.injector is not None

    def can_inject(self) -> bool:
        return self.injector is not None and self.output_started and not self.ended

    def _held_for_store(self, data: bytes | None, *, to_agent: bool) -> bool:
        """Note a change of the numbering; True if ``data`` (a frame the splice let through, if any)
        must wait until the store holds the numbering as it is now: it is kept, and sent then."""
        if self.injector is None:
            return False
        if self.injector.take_changed():
            self._splice_made += 1
            if self._splice_saver is None or self._splice_saver.done():
                self._splice_saver = self.node.background(self._keep_splice(), f"splice-{self.session_id}")
        if data is None or self._splice_kept >= self._splice_made:
            return False
        self._held.append((self._splice_made, to_agent, data))  # (in order behind what waits already)
        return True

    async def _keep_splice(self) -> None:
        """Write the numbering to the store until it holds the latest, sending what waited for it."""
        while self.injector is not None and self._splice_kept < self._splice_made and not self.ended:
            made, state = self._splice_made, self.injector.state()
            try:
                await session_joins.save_splice(
                    self.node.engine, self.session_id, state, now=self.node.clock.now()
                )
            except Exception:
                log.exception("session %s: cannot keep its numbering; holding its frames", self.session_id)
                await asyncio.sleep(SPLICE_RETRY)
                continue
            self._splice_kept = made
            while self._held and self._held[0][0] <= made and not self.ended:
                _, to_agent, data = self._held.popleft()
                if to_agent:
                    await self._client_frame_to_agent(data, peek(data))
                else:
                    await self._to_client_side(data)

    async def inject_output(self, payload: bytes) -> bool:
        """Show ``payload`` on the owner's terminal (and to the taps, so the recording and the
        watchers have it too); False when this session cannot take it (yet)."""
        return await self._inject(payload, to_agent=False)

    async def inject_input(self, payload: bytes) -> bool:
        """Type ``payload`` into the session's terminal, after whatever the owner typed before."""
        return await self._inject(payload, to_agent=True)

    async def _inject(self, payload: bytes, *, to_agent: bool) -> bool:
        """An Output message of the gateway's own, into one direction of the stream: the taps get
        it as they get the ends' messages, and typed input keeps the session active as theirs does."""
        if not self.can_inject() or self.injector is None:
            return False
        stream = self.injector.to_agent if to_agent else self.injector.to_client
        try:
            data = stream.inject(PayloadType.OUTPUT, payload)
        except SpliceFull:
            return False
        if to_agent:
            self.bytes_in += len(payload)
            self.last_activity = self._clock()
        if self.tap is not None:
            (self.tap.input if to_agent else self.tap.output)(payload, PayloadType.OUTPUT)
        if not self._held_for_store(data, to_agent=to_agent):
            await (self._to_agent_side if to_agent else self._to_client_side)(data)
        self._resend_soon()
        return True

    def _resend_soon(self) -> None:
        if self._resender is None or self._resender.done():
            self._resender = self.node.background(self._resend(), f"inject-resend-{self.session_id}")

    async def _resend(self) -> None:
        """Every sender resends what is unacknowledged (§2.3); the gateway too, for its own."""
        injector = self.injector
        while injector is not None and not self.ended:
            await asyncio.sleep(INJECTION_RESEND)
            for_client, for_agent = injector.to_client.unacknowledged, injector.to_agent.unacknowledged
            if not for_client and not for_agent:
                return
            if self._splice_kept < self._splice_made:
                continue  # (what the store does not hold yet must not go out)
            for data in for_client:
                if self.client is not None:
                    await self.client.send(data)
            for data in for_agent:
                if self.agent is not None:
                    await self.agent.send(data)

    def _hold_ack(self, data: bytes, head: FrameHead) -> bool:
        """Keep the client's ack for output the recording does not hold yet (True: kept)."""
        durable = self.tap.durable_until("output") if self.tap is not None else None
        if durable is None:
            return False
        try:
            sequence = acked_sequence(Frame(MessageType.ACKNOWLEDGE, 0, 0, 0, data[head.payload_offset :]))
        except FrameError:
            return False
        if sequence < durable:
            return False
        self._held_acks.append((sequence, data))
        return True

    def _on_durable(self) -> None:
        if self._held_acks and (self._releasing is None or self._releasing.done()):
            self._releasing = self.node.background(self._release_acks(), f"acks-{self.session_id}")

    async def _release_acks(self) -> None:
        while self._held_acks and not self.ended:
            durable = self.tap.durable_until("output") if self.tap is not None else None
            ready = [data for sequence, data in self._held_acks if durable is None or sequence < durable]
            if not ready:
                return
            self._held_acks = [
                (sequence, data)
                for sequence, data in self._held_acks
                if durable is not None and sequence >= durable
            ]
            for data in ready:
                await self._to_agent_side(data)

    # -- one side goes away -----------------------------------------------------------------------

    async def client_gone(self, peer: Peer) -> None:
        if self.ended or peer is not self.client:
            return
        self.client = None
        if self.agent is not None:
            self.agent_paused = await self.agent.send(messages.pause_publication(self.session_id))
        await self._status_recorded()
        await store.set_status(self.node.engine, self.session_id, SessionStatus.DISCONNECTED)
        self._start_timer(self.settings.resume_window, RESUME_EXPIRED_REASON, client_output="")

    async def agent_gone(self, peer: Peer) -> None:
        if self.ended or peer is not self.agent:
            return
        self.agent = None
        # After Terminating, agent_task_complete follows at once; otherwise the agent may be
        # reconnecting its data channel, or it died.
        if self.agent_terminating:
            self._start_timer(
                self.settings.agent_end_grace, AGENT_ENDED_REASON, client_output="", notify_agent=False
            )
        else:
            self._start_timer(
                self.settings.agent_reconnect_grace, AGENT_GONE_REASON, client_output=AGENT_GONE_REASON
            )

    def _start_timer(
        self, delay: float, reason: str, *, client_output: str, notify_agent: bool = True
    ) -> None:
        self._cancel_timer()

        async def expire() -> None:
            await asyncio.sleep(delay)
            self._timer = None  # ending must not cancel the task that is ending it
            await self.end(
                SessionStatus.TERMINATED, reason, client_output=client_output, notify_agent=notify_agent
            )

        self._timer = self.node.background(expire(), f"timer-{self.session_id}")

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _watch(self) -> None:
        while not self.ended:
            await asyncio.sleep(self.settings.watchdog_interval)
            now = self._clock()
            if self.max_duration is not None and now - self.started >= self.max_duration:
                reason = MAX_DURATION_REASON
            elif self.idle_limit is not None and now - self.last_activity >= self.idle_limit:
                reason = IDLE_REASON
            else:
                continue
            await self.end(SessionStatus.TERMINATED, reason, client_output=reason, notify_agent=True)
            return

    # -- the node stops, the session does not -------------------------------------------------------

    def _finishing(self) -> bool:
        """True the first time only: the relay is done from now on, its timer and watchdog stop."""
        if self.ended:
            return False
        self.ended = True
        self._cancel_timer()
        if not self._watchdog.done() and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        return True

    async def suspend(self) -> None:
        """Let go of both ends without a word (no channel_closed: they re-dial, to this node once it
        is back or to another), keep the session in the store as Disconnected with its byte counts,
        and make the recording durable. The relay is done; a new one picks the session up."""
        if not self._finishing():
            return
        peers = [peer for peer in (self.client, self.agent) if peer is not None]
        await asyncio.gather(*(peer.close_after(0) for peer in peers), return_exceptions=True)
        for task in (self._splice_saver, self._resender):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if self.injector is not None:
            try:  # the latest numbering (the ends' own, if nobody joined): the next relay goes on from it
                await session_joins.save_splice(
                    self.node.engine, self.session_id, self.injector.state(), now=self.node.clock.now()
                )
            except Exception:
                log.exception("session %s: could not keep its numbering", self.session_id)
        try:
            await self._status_recorded()
            await store.suspend(
                self.node.engine, self.session_id, bytes_in=self.bytes_in, bytes_out=self.bytes_out
            )
        except Exception:
            log.exception("session %s: could not record it as suspended", self.session_id)
        self.node.forget(self)
        if self.tap is not None:
            with contextlib.suppress(Exception):
                await self.tap.suspend()
        log.info("session %s suspended: the node is stopping", self.session_id)

    # -- the end ----------------------------------------------------------------------------------

    async def agent_completed(self, task: messages.TaskComplete) -> None:
        """agent_task_complete arrived (before or after the data socket closed)."""
        if task.succeeded:
            await self.end(SessionStatus.TERMINATED, AGENT_ENDED_REASON, client_output="", notify_agent=False)
        else:
            output = task.output or f"Session failed on the instance ({task.final_status or 'unknown'})"
            await self.end(SessionStatus.FAILED, output, client_output=output, notify_agent=False)

    async def end(
        self, status: SessionStatus, reason: str, *, client_output: str, notify_agent: bool
    ) -> None:
        """End the session once: tell whoever is still there, record it, forget it."""
        if not self._finishing():
            return
        for task in (self._resender, self._splice_saver):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        closed = messages.channel_closed(self.session_id, self.target, client_output)
        if self.client is not None and await self.client.send(closed):
            self.node.background(self.client.close_after(LINGER), f"close-client-{self.session_id}")
        if notify_agent:
            agent_closed = messages.channel_closed(self.session_id, self.target, reason)
            if self.agent is not None:
                await self.agent.send(agent_closed)
            await self.node.send_control(self.target, agent_closed)
        if self.agent is not None:
            self.node.background(self.agent.close_after(LINGER), f"close-agent-{self.session_id}")
        try:
            await self._status_recorded()
            await store.finish(
                self.node.engine,
                self.session_id,
                status=status,
                reason=reason,
                now=self.node.clock.now(),
                bytes_in=self.bytes_in,
                bytes_out=self.bytes_out,
            )
        except Exception:
            log.exception("session %s: could not record its end", self.session_id)
        if self.injector is not None and (self.injector.active or self.restored):
            with contextlib.suppress(Exception):
                await session_joins.forget_splice(self.node.engine, self.session_id)
        # Only now: until the end is recorded, the agent's task completion (its answer to our
        # channel_closed) must reach this ended relay, not record its own status first.
        self.node.forget(self)
        if self.tap is not None:
            with contextlib.suppress(Exception):
                await self.tap.close(status, reason)
        log.info("session %s ended: %s (%s)", self.session_id, status, reason)
