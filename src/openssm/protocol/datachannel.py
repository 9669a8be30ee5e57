"""One end of a Session Manager data channel, without I/O (``session-manager-protocol.md`` §2).

The agent and the client run the same :class:`DataChannelCore`; only their :class:`Role` differs
(which stream message type they number, which they receive). Their drivers do the I/O: dial,
resume, write what :meth:`DataChannelCore.data_to_send` returns, feed what they read to
:meth:`DataChannelCore.receive_data`, and call :meth:`DataChannelCore.tick` by
:meth:`DataChannelCore.next_deadline`. Time is always an argument (``now``, monotonic seconds), so
tests drive it with :class:`openssm.clock.ManualClock` and nothing sleeps.

States (``State``; the table in DESIGN.md "Data channel"):

* ``CONNECTING`` — no transport (before the first dial, or lost and being resumed). New messages are
  numbered and kept, nothing goes out; :meth:`connected` replays everything unacked.
* ``OPEN`` — messages go out; the oldest unacked one is resent when older than the RTO. An ack that
  ends a silence of two such resends, or acks past a gap, sends every overdue message at once.
* ``PAUSED`` — the gateway sent ``pause_publication`` (the peer is away): no new message, no resend.
  ``start_publication``, an ack or stream data from the peer reopens it, and then everything unacked
  goes again at once, paced by the window (issue 15: not one per RTO).
* ``CLOSED`` — ended (``channel_closed``, the peer's TerminateSession flag, a stall, or :meth:`close`).

The handshake (``Handshake``) runs on top of ``OPEN``: the agent's HandshakeRequest, the client's
HandshakeResponse, the agent's HandshakeComplete. The fast path (large Output payloads without
digests; OpenSSM's extension, see ``openssm.transport.mux``) is negotiated in it, here: the agent
offers it with :meth:`DataChannelCore.offer_fast_path`, the client takes an offer with
:meth:`DataChannelCore.accept_fast_path`, and each end switches when the protocol says so.

Errors: :class:`openssm.errors.LocalProtocolError` when the caller asks what the state forbids;
a malformed or out-of-rule frame from the peer is never raised but reported as a :class:`Dropped`
event (the driver logs it with the peer's name through :func:`log_dropped`), and the frame is
dropped unacked, so a well-behaved peer resends it.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable
from typing import Final

from openssm.errors import LocalProtocolError
from openssm.protocol.channel import (
    DEFAULT_REORDER_LIMIT,
    DEFAULT_SEND_WINDOW,
    StreamEndpoint,
)
from openssm.protocol.frames import (
    Frame,
    FrameError,
    MessageType,
    PayloadFlag,
    PayloadParts,
    PayloadType,
    decode,
    parse_flag,
)
from openssm.protocol.messages import MessageError, parse_channel_closed, parse_handshake_request
from openssm.protocol.values import Value

# -- the fast path (an OpenSSM extension of the handshake; AWS's programs ignore its keys) ---------
# The agent offers it in the HandshakeRequest's Properties; an OpenSSM client that takes it answers
# FAST_PATH_ACCEPTED in its HandshakeResponse; only then does either side send Output without digests.
FAST_PATH_PROPERTY: Final = "openssmFastPath"
FAST_PATH_VERSION: Final = "1"
FAST_PATH_ACCEPTED: Final = "OpenSSMFastPath"
FAST_PATH_PAYLOAD: Final = 15 * 65536  # largest Output payload on the fast path
# A fast-path receiver holds this many full messages' worth of bytes out of order (they only occur
# around a reconnect).
FAST_PATH_REORDER_LIMIT: Final = 16

# The plugin gives up after ~3000 resends of one message (about 5 minutes).
STALL_LIMIT_SECONDS: Final = 300.0
# How often a driver calls tick (AWS's programs poll every 100 ms; next_deadline says when the
# next thing is due, for drivers and tests that wait exactly).
IDLE_POLL: Final = 0.1
# Timeout resends of the oldest message with no ack in between that mean "the peer was away" (one
# alone may be a slow ack behind a queue of large messages: no reason to send the whole window).
OUTAGE_RESENDS: Final = 2
# The reason of a Dropped event for a message the application was not ready for (flow control).
NOT_READY: Final = "not ready for it yet"

# Messages the plugin accepts without a creation date.
_DATELESS_OK: Final = frozenset({MessageType.START_PUBLICATION, MessageType.PAUSE_PUBLICATION})
_HANDSHAKE_TYPES: Final = frozenset(
    {
        PayloadType.HANDSHAKE_REQUEST,
        PayloadType.HANDSHAKE_RESPONSE,
        PayloadType.HANDSHAKE_COMPLETE,
        PayloadType.ENC_CHALLENGE_REQUEST,
        PayloadType.ENC_CHALLENGE_RESPONSE,
    }
)


class Role(enum.Enum):
    """Which end: the agent numbers ``output_stream_data`` (SYN on the first), the client
    ``input_stream_data``."""

    AGENT = "agent"
    CLIENT = "client"

    @property
    def outgoing(self) -> MessageType:
        return MessageType.OUTPUT_STREAM_DATA if self is Role.AGENT else MessageType.INPUT_STREAM_DATA

    @property
    def incoming(self) -> MessageType:
        return MessageType.INPUT_STREAM_DATA if self is Role.AGENT else MessageType.OUTPUT_STREAM_DATA


class State(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    PAUSED = "paused"
    CLOSED = "closed"


class Handshake(enum.Enum):
    NONE = "none"  # not started (shell sessions without KMS skip it)
    REQUESTED = "requested"  # HandshakeRequest sent (agent) or received (client)
    RESPONDED = "responded"  # HandshakeResponse sent (client) or received (agent)
    COMPLETE = "complete"  # HandshakeComplete sent (agent) or received (client)


class CloseReason(enum.Enum):
    CHANNEL_CLOSED = "channel closed by the service"
    TERMINATED = "the client sent TerminateSession"
    STALLED = "the peer acknowledged nothing for too long"
    LOCAL = "closed by this end"


# -- events ------------------------------------------------------------------------------------------


class StreamData(Value):
    """An in-order stream message from the peer, for the application."""

    __slots__ = ("frame",)
    frame: Frame

    def __init__(self, frame: Frame) -> None:
        object.__setattr__(self, "frame", frame)


class HandshakeStep(StreamData):
    """A handshake (or KMS challenge) message, in order; ``handshake`` is the state it led to."""

    __slots__ = ("handshake",)
    handshake: Handshake

    def __init__(self, frame: Frame, handshake: Handshake) -> None:
        super().__init__(frame)
        object.__setattr__(self, "handshake", handshake)


class Acked(Value):
    """The peer acknowledged our message ``sequence``: the window has room again."""

    __slots__ = ("sequence",)
    sequence: int

    def __init__(self, sequence: int) -> None:
        object.__setattr__(self, "sequence", sequence)


class PublicationPaused(Value):
    __slots__ = ()


class PublicationStarted(Value):
    __slots__ = ()


class ChannelClosed(Value):
    """The channel ended (``reason``); ``output`` is the service's text (``channel_closed`` Output)."""

    __slots__ = ("output", "reason")
    reason: CloseReason
    output: str

    def __init__(self, reason: CloseReason, output: str = "") -> None:
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "output", output)


class KeepaliveDue(Value):
    """Time for the driver to ping its transport."""

    __slots__ = ()


class Dropped(Value):
    """A frame from the peer was dropped (malformed, too large, or not ready): ``reason`` says why.
    ``malformed`` ones break the protocol and are worth a warning; the others are flow control."""

    __slots__ = ("malformed", "reason")
    reason: str
    malformed: bool

    def __init__(self, reason: str, malformed: bool = True) -> None:
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "malformed", malformed)


Event = (
    StreamData
    | HandshakeStep
    | Acked
    | PublicationPaused
    | PublicationStarted
    | ChannelClosed
    | KeepaliveDue
    | Dropped
)


def log_dropped(logger: logging.Logger, peer: str, event: Dropped) -> None:
    """The one way every process reports a frame it dropped: the peer, then the reason."""
    if event.malformed:
        logger.warning("dropped a frame from %s: %s", peer, event.reason)
    else:
        logger.debug("dropped a frame from %s: %s", peer, event.reason)


# -- the core ----------------------------------------------------------------------------------------


class DataChannelCore:
    """Sequencing, acks, retransmission, pause/start, handshake and fast path of one data-channel
    end. No I/O and no clock of its own: every call that depends on time takes ``now``."""

    def __init__(
        self,
        role: Role,
        *,
        now: float,
        send_window: int = DEFAULT_SEND_WINDOW,
        reorder_limit: int = DEFAULT_REORDER_LIMIT,
        max_payload: int | None = None,
        verify_digest: bool = False,
        require_dates: bool = False,
        stall_limit: float | None = None,
        keepalive_interval: float | None = None,
    ) -> None:
        self.role = role
        self._now = now
        self.stream = StreamEndpoint(
            role.outgoing,
            syn_on_first=role is Role.AGENT,
            send_window=send_window,
            reorder_limit=reorder_limit,
            monotonic=self._clock,
        )
        self.state = State.CONNECTING
        self.handshake = Handshake.NONE
        self.fast_path_offered = False
        self.fast_path = False
        self.max_payload = max_payload  # larger incoming stream payloads are dropped unacked
        self.verify_digest = verify_digest  # check PayloadDigest as AWS's plugin does
        self.require_dates = require_dates  # drop messages without CreatedDate, as the plugin does
        self.stall_limit = stall_limit
        self.keepalive_interval = keepalive_interval
        self.close_reason: CloseReason | None = None
        self.close_output = ""
        # Decides, per incoming in-order-or-later message, whether the application can take it now;
        # None: nothing is taken (agent, before its handler is ready). Refused messages go unacked.
        self.ready: Callable[[Frame], bool] | None = None
        self.acks_received = 0
        self._outgoing: list[PayloadParts] = []
        # Timeout resends since the last ack: the ack that ends such a silence (or one past a gap)
        # sends every overdue message at once.
        self._silent_resends = 0
        self._progress_at = now  # last ack, or when waiting for one began
        self._keepalive_at = now

    def _clock(self) -> float:
        return self._now

    def _advance(self, now: float) -> None:
        if now > self._now:
            self._now = now

    # -- transport life cycle ------------------------------------------------------------------------

    def connected(self, now: float) -> None:
        """The transport is up (first dial or after a resume): everything unacked goes again."""
        self._advance(now)
        if self.state is State.CLOSED:
            raise LocalProtocolError("the channel is closed")
        if self.state in (State.CONNECTING, State.PAUSED):
            self.state = State.OPEN
        self._resend_all()
        self._progress_at = self._now

    def connection_lost(self) -> None:
        """The transport dropped: keep numbering and holding messages until :meth:`connected`."""
        if self.state in (State.OPEN, State.PAUSED):
            self.state = State.CONNECTING
        self._outgoing.clear()  # whatever was not written is unacked, and replayed on connect

    def close(self) -> None:
        """This end is done: nothing more is sent (a driver may still flush what is queued)."""
        self._end(CloseReason.LOCAL, "")

    def _end(self, reason: CloseReason, output: str) -> ChannelClosed | None:
        if self.state is State.CLOSED:
            return None
        self.state = State.CLOSED
        self.close_reason = reason
        self.close_output = output
        return ChannelClosed(reason, output)

    # -- sending -------------------------------------------------------------------------------------

    @property
    def can_send(self) -> bool:
        """True when :meth:`send` would take a message now (open or connecting, window not full)."""
        return self.state in (State.OPEN, State.CONNECTING) and self.stream.can_send

    @property
    def unacked_count(self) -> int:
        return self.stream.unacked_count

    def send(self, payload_type: int, payload: bytes | PayloadParts, now: float) -> None:
        """Number one stream message and queue it (it is kept, and resent, until acked)."""
        self._advance(now)
        if self.state is State.CLOSED:
            raise LocalProtocolError(f"cannot send on a {self.state.value} channel")
        if self.state is State.PAUSED:
            raise LocalProtocolError("publication is paused")
        if self.stream.unacked_count == 0:
            self._progress_at = self._now  # the stall clock runs only while waiting for acks
        pieces = self.stream.send_pieces(payload_type, payload)  # WindowFull is a LocalProtocolError
        self._track_own_handshake(payload_type)
        if self.state is State.OPEN:
            self._outgoing.append(pieces)

    def send_unsequenced(self, frame: Frame) -> None:
        """A message outside the stream (``agent_session_state``): sent once, never resent."""
        if self.state is State.OPEN:
            self._outgoing.append((frame.encode(),))

    @property
    def has_data_to_send(self) -> bool:
        return bool(self._outgoing)

    def data_to_send(self) -> list[PayloadParts]:
        """Messages to write now, in order; each is one WebSocket binary message, given in pieces."""
        out, self._outgoing = self._outgoing, []
        return out

    def _resend_all(self) -> None:
        """Queue every unacked message, oldest first (within the window: they all are)."""
        if self.state is State.OPEN:
            self._outgoing.extend((data,) for data in self.stream.all_unacked())

    # -- the handshake and the fast path -------------------------------------------------------------

    def offer_fast_path(self) -> None:
        """Agent: the HandshakeRequest about to go out offers the fast path (with
        FAST_PATH_PROPERTY), so large client messages may follow the response at once."""
        if self.role is not Role.AGENT or self.handshake is not Handshake.NONE:
            raise LocalProtocolError("only the agent offers the fast path, before its HandshakeRequest")
        self.fast_path_offered = True
        self.max_payload = max(self.max_payload or 0, FAST_PATH_PAYLOAD)
        # Hold as many bytes out of order as FAST_PATH_REORDER_LIMIT full messages: small ones (an
        # interactive stream over the fast path) are not refused after a reconnect for their count.
        self.stream.reorder_bytes_limit = FAST_PATH_REORDER_LIMIT * FAST_PATH_PAYLOAD

    def accept_fast_path(self) -> tuple[tuple[str, str], ...]:
        """Client: take the agent's offer; returns the HandshakeResponse extensions that say so.
        From now on Output goes, and may come, without digests."""
        if self.role is not Role.CLIENT or self.handshake is not Handshake.REQUESTED:
            raise LocalProtocolError("the client accepts the fast path while answering a HandshakeRequest")
        if not self.fast_path_offered:
            raise LocalProtocolError("the agent did not offer the fast path")
        self._use_fast_path()
        return ((FAST_PATH_ACCEPTED, FAST_PATH_VERSION),)

    def _use_fast_path(self) -> None:
        self.fast_path = True
        self.stream.digest_output = False

    def _track_own_handshake(self, payload_type: int) -> None:
        if payload_type == PayloadType.HANDSHAKE_REQUEST and self.role is Role.AGENT:
            self.handshake = Handshake.REQUESTED
        elif payload_type == PayloadType.HANDSHAKE_RESPONSE and self.role is Role.CLIENT:
            self.handshake = Handshake.RESPONDED
        elif payload_type == PayloadType.HANDSHAKE_COMPLETE and self.role is Role.AGENT:
            self.handshake = Handshake.COMPLETE

    def _track_peer_handshake(self, frame: Frame) -> Handshake:
        kind = frame.payload_type
        if kind == PayloadType.HANDSHAKE_REQUEST and self.role is Role.CLIENT:
            self.handshake = Handshake.REQUESTED
            try:
                properties = parse_handshake_request(frame.payload).properties or {}
            except MessageError:
                properties = {}  # the application reports the bad request
            self.fast_path_offered = str(properties.get(FAST_PATH_PROPERTY, "")) == FAST_PATH_VERSION
        elif kind == PayloadType.HANDSHAKE_RESPONSE and self.role is Role.AGENT:
            self.handshake = Handshake.RESPONDED
            if self.fast_path_offered and _accepts_fast_path(frame):
                self._use_fast_path()
        elif kind == PayloadType.HANDSHAKE_COMPLETE and self.role is Role.CLIENT:
            self.handshake = Handshake.COMPLETE
        return self.handshake

    # -- receiving -----------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray, now: float) -> list[Event]:
        """One WebSocket binary message from the peer (the buffer is handed over: not reused)."""
        try:
            frame = decode(
                data,
                verify_digest=self.verify_digest,
                allow_no_digest=self.fast_path,
                owned=True,
            )
        except FrameError as exc:
            return [Dropped(f"undecodable frame: {exc}")]
        return self.receive_frame(frame, now)

    def receive_frame(self, frame: Frame, now: float) -> list[Event]:
        self._advance(now)
        if self.state is State.CLOSED:
            return []
        kind = frame.message_type
        if self.require_dates and frame.created_date == 0 and kind not in _DATELESS_OK:
            return [Dropped(f"{kind} without CreatedDate")]
        if kind == self.role.incoming:
            return self._on_stream(frame)
        if kind == MessageType.ACKNOWLEDGE:
            return self._on_ack(frame)
        if kind == MessageType.CHANNEL_CLOSED:
            closed = self._end(CloseReason.CHANNEL_CLOSED, _closed_output(frame))
            return [closed] if closed else []
        if kind == MessageType.PAUSE_PUBLICATION:
            if self.state is State.OPEN:
                self.state = State.PAUSED
            return [PublicationPaused()]
        if kind == MessageType.START_PUBLICATION:
            self._unpause()
            self._resend_all()  # the peer is back: everything unacked, at once
            return [PublicationStarted()]
        return []  # agent_session_state and the like carry nothing for a data-channel end

    def _unpause(self) -> None:
        if self.state is State.PAUSED:
            self.state = State.OPEN

    def _on_ack(self, frame: Frame) -> list[Event]:
        head = self.stream.head_sequence()
        rto = self.stream.rto  # before this ack's sample (which the outage may have stretched)
        try:
            sequence = self.stream.ack(frame)
        except FrameError as exc:
            return [Dropped(f"bad acknowledge: {exc}")]
        events: list[Event] = []
        if self.state is State.PAUSED:  # any ack means the peer is there (as AWS's agent does)
            self._unpause()
            self._resend_all()
            events.append(PublicationStarted())
        if sequence is None:
            return events
        self.acks_received += 1
        self._progress_at = self._now
        silence = self._silent_resends >= OUTAGE_RESENDS
        if (silence or sequence != head) and self.state is State.OPEN:
            # The peer needed a resend, or acked past a gap: what else went unacked longer than the
            # RTO went missing too (the peer was away: a reconnect, a restart). Send it all now
            # (within the window, as all unacked messages are), not one per RTO (issue 15).
            # Sent before the acked one and still unacked: lost (the peer took them in order).
            gap = (sequence, self.stream.acked_sent_at) if sequence != head else None
            limit = rto if silence else math.inf
            self._outgoing.extend((data,) for data in self.stream.overdue(rto=limit, gap=gap))
        self._silent_resends = 0
        events.append(Acked(sequence))
        return events

    def _on_stream(self, frame: Frame) -> list[Event]:
        events: list[Event] = []
        if self.state is State.PAUSED:
            self._unpause()
            self._resend_all()
            events.append(PublicationStarted())
        if self.max_payload is not None and len(frame.payload) > self.max_payload:
            events.append(Dropped(f"a {len(frame.payload)}-byte stream message (limit {self.max_payload})"))
            return events
        ready = self.ready
        if frame.sequence_number >= self.stream.expected_seq and (ready is None or not ready(frame)):
            # Not ready: no ack, the peer resends it. Later messages are refused too, or they would
            # pile up out of order and arrive all at once when the application is ready again.
            events.append(Dropped(NOT_READY, malformed=False))
            return events
        received = self.stream.receive(frame)
        if received.ack is not None:
            self._outgoing.append((received.ack.encode(),))
        for delivered in received.deliver:
            if (
                delivered.payload_type == PayloadType.FLAG
                and self.role is Role.AGENT
                and _is_terminate(delivered)
            ):
                closed = self._end(CloseReason.TERMINATED, "")
                if closed is not None:
                    events.append(closed)
                break
            if delivered.payload_type in _HANDSHAKE_TYPES:
                events.append(HandshakeStep(delivered, self._track_peer_handshake(delivered)))
            else:
                events.append(StreamData(delivered))
        return events

    # -- time ----------------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (monotonic seconds), or None."""
        deadlines = []
        if self.state is State.OPEN:
            head = self.stream.head_sent_at()
            if head is not None:
                deadlines.append(head + self.stream.rto)
        if self.stall_limit is not None and self.stream.unacked_count and self.state is not State.CLOSED:
            deadlines.append(self._progress_at + self.stall_limit)
        if self.keepalive_interval is not None and self.state is not State.CLOSED:
            deadlines.append(self._keepalive_at + self.keepalive_interval)
        return min(deadlines) if deadlines else None

    def tick(self, now: float) -> list[Event]:
        """Do what is due at ``now``: resend the oldest unacked message when older than the RTO,
        give up on a stalled channel, ask for a keepalive."""
        self._advance(now)
        events: list[Event] = []
        if self.state is State.OPEN:
            resent = self.stream.due_resends()
            if resent:
                self._silent_resends += 1
                self._outgoing.extend((data,) for data in resent)
        if (
            self.stall_limit is not None
            and self.stream.unacked_count
            and self.state is not State.CLOSED
            and self._now - self._progress_at >= self.stall_limit
        ):
            closed = self._end(CloseReason.STALLED, "")
            if closed is not None:
                events.append(closed)
        if (
            self.keepalive_interval is not None
            and self.state is not State.CLOSED
            and self._now - self._keepalive_at >= self.keepalive_interval
        ):
            self._keepalive_at = self._now
            events.append(KeepaliveDue())
        return events


def _accepts_fast_path(frame: Frame) -> bool:
    try:
        body = frame.json()
    except FrameError:
        return False
    return isinstance(body, dict) and body.get(FAST_PATH_ACCEPTED) == FAST_PATH_VERSION


def _is_terminate(frame: Frame) -> bool:
    try:
        return parse_flag(frame.payload) == PayloadFlag.TERMINATE_SESSION
    except FrameError:
        return False


def _closed_output(frame: Frame) -> str:
    try:
        return parse_channel_closed(frame.payload).output
    except MessageError:
        return ""
