"""Sequencing, acknowledgement and retransmission of stream messages (sans-I/O).

Both ends of a data channel (client and agent) run one :class:`StreamEndpoint`. The gateway
never does: it relays frames verbatim and acks are end to end. Rules from
``session-manager-protocol.md`` §2.3:

* each direction numbers its stream messages from 0;
* a receiver processes ``seq == expected`` (then drains buffered successors), acks and buffers
  ``seq > expected``, and re-acks ``seq < expected`` (a duplicate whose ack was lost);
* a sender keeps every unacked message and resends the oldest when it is older than the RTO,
  which follows the TCP-style SRTT/RTTVAR estimate capped at one second.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Final

from openssm.errors import LocalProtocolError
from openssm.protocol.frames import (
    FLAG_DATA,
    FLAG_SYN,
    Frame,
    MessageType,
    PayloadParts,
    PayloadType,
    ack_for,
    acked_sequence,
    encode_pieces,
)
from openssm.protocol.values import Value

INITIAL_RTO: Final = 0.2
INITIAL_SRTT: Final = 0.1
MAX_RTO: Final = 1.0
MIN_RTO_MARGIN: Final = 0.01
RESEND_INTERVAL: Final = 0.1  # how often callers should call ``due_resends``
DEFAULT_SEND_WINDOW: Final = 10_000  # the plugin's outgoing buffer size
DEFAULT_REORDER_LIMIT: Final = 10_000


class WindowFull(LocalProtocolError, RuntimeError):
    """Too many unacked messages; the caller must wait for acks before sending more."""


class _Pending:
    __slots__ = ("encoded", "last_sent", "resent")

    def __init__(self, encoded: PayloadParts, last_sent: float) -> None:
        self.encoded = encoded  # the frame's pieces: header, then the payload as it was given
        self.last_sent = last_sent
        self.resent = False  # sent more than once: its ack is no RTT sample (Karn's rule)


class Received(Value):
    """What to do with one incoming stream frame."""

    __slots__ = ("ack", "deliver")
    deliver: list[Frame]  # frames now in order, to hand to the application
    ack: Frame | None  # the ack to send back (None when nothing should be acked)

    def __init__(self, deliver: list[Frame], ack: Frame | None) -> None:
        object.__setattr__(self, "deliver", deliver)
        object.__setattr__(self, "ack", ack)


class StreamEndpoint:
    """One side's sequence state for a data channel."""

    def __init__(
        self,
        outgoing: MessageType,
        *,
        syn_on_first: bool,
        send_window: int = DEFAULT_SEND_WINDOW,
        reorder_limit: int = DEFAULT_REORDER_LIMIT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if outgoing not in (MessageType.INPUT_STREAM_DATA, MessageType.OUTPUT_STREAM_DATA):
            raise ValueError(f"not a stream message type: {outgoing}")
        self.outgoing = outgoing
        self.syn_on_first = syn_on_first
        self.send_window = send_window
        self.reorder_limit = reorder_limit
        # Bytes of payload held out of order (None: only the count bounds them).
        self.reorder_bytes_limit: int | None = None
        self._reorder_bytes = 0
        self._monotonic = monotonic
        self.next_send_seq = 0
        self.expected_seq = 0
        self._unacked: collections.OrderedDict[int, _Pending] = collections.OrderedDict()
        self._reorder: dict[int, Frame] = {}
        # False once both ends agreed to the fast path: Output payloads then go without a digest.
        self.digest_output = True
        self.srtt = INITIAL_SRTT
        self.rttvar = 0.0
        self.rto = INITIAL_RTO
        self.acked_sent_at = 0.0  # when the message the last effective ack named was last sent

    # -- sending -----------------------------------------------------------------------------

    @property
    def unacked_count(self) -> int:
        return len(self._unacked)

    @property
    def can_send(self) -> bool:
        return len(self._unacked) < self.send_window

    def send(self, payload_type: int, payload: bytes | PayloadParts) -> bytes:
        """Number a new stream message, remember it until acked, and return its wire bytes.
        ``payload`` may come in parts (joined once, into the wire bytes)."""
        return b"".join(self.send_pieces(payload_type, payload))

    def send_pieces(self, payload_type: int, payload: bytes | PayloadParts) -> PayloadParts:
        """:meth:`send`, returning the message as pieces (header, then ``payload``'s parts),
        uncopied. The parts are kept for resending, so they must not change until acked."""
        if not self.can_send:
            raise WindowFull(f"{len(self._unacked)} messages unacked")
        seq = self.next_send_seq
        flags = FLAG_SYN if (seq == 0 and self.syn_on_first) else FLAG_DATA
        encoded = encode_pieces(
            self.outgoing,
            seq,
            flags,
            payload_type,
            (payload,) if isinstance(payload, bytes) else payload,
            digest=self.digest_output or payload_type != PayloadType.OUTPUT,
        )
        self.next_send_seq += 1
        self._unacked[seq] = _Pending(encoded, self._monotonic())
        return encoded

    def on_ack(self, ack: Frame) -> bool:
        """Apply an ``acknowledge`` frame. Returns True if it acked a pending message."""
        return self.ack(ack) is not None

    def ack(self, ack: Frame) -> int | None:
        """Apply an ``acknowledge`` frame: the sequence number it acked, or None if nothing was
        pending under it (a duplicate ack)."""
        seq = acked_sequence(ack)
        pending = self._unacked.pop(seq, None)
        if pending is None:
            return None
        self.acked_sent_at = pending.last_sent
        if pending.resent:
            # Which copy is acked is unknown: a resend's ack would shrink the RTO exactly when the
            # path is slow, and the next burst would come sooner (Karn's rule; AWS samples it).
            return seq
        sample = max(0.0, self._monotonic() - pending.last_sent)
        self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - sample)
        self.srtt = 0.875 * self.srtt + 0.125 * sample
        self.rto = min(MAX_RTO, self.srtt + max(MIN_RTO_MARGIN, 4 * self.rttvar))
        return seq

    def head_sequence(self) -> int | None:
        """The oldest unacked message's number (None when all are acked)."""
        return next(iter(self._unacked), None)

    def head_sent_at(self) -> float | None:
        """When the oldest unacked message last went out (None when all are acked)."""
        if not self._unacked:
            return None
        return next(iter(self._unacked.values())).last_sent

    def due_resends(self) -> list[bytes]:
        """Messages to send again now: the oldest unacked one, if it is overdue."""
        if not self._unacked:
            return []
        now = self._monotonic()
        _seq, pending = next(iter(self._unacked.items()))
        if now - pending.last_sent < self.rto:
            return []
        pending.last_sent = now
        pending.resent = True
        return [b"".join(pending.encoded)]

    def all_unacked(self) -> list[bytes]:
        """Every unacked message, oldest first (to replay after a reconnect)."""
        now = self._monotonic()
        out = []
        for pending in self._unacked.values():
            pending.last_sent = now
            pending.resent = True
            out.append(b"".join(pending.encoded))
        return out

    def overdue(self, *, rto: float | None = None, gap: tuple[int, float] | None = None) -> list[bytes]:
        """Every unacked message sent longer than ``rto`` (default: the RTO; ``math.inf``: none) ago,
        or, with ``gap = (seq, sent_at)``, numbered below ``seq`` and sent no later than ``sent_at``
        (the peer acked ``seq`` past them), oldest first, marked as sent now (what went missing in an
        outage). A message resent less than MAX_RTO ago is left out: under load, acks lag behind
        bursts, and sending each copy again at every ack would only add to the queue."""
        now = self._monotonic()
        limit = self.rto if rto is None else rto
        out = []
        for seq, pending in self._unacked.items():
            if pending.resent and now - pending.last_sent < MAX_RTO:
                continue  # resent within the longest RTO: another copy now would only add load
            lost = gap is not None and seq < gap[0] and pending.last_sent <= gap[1]
            if lost or now - pending.last_sent >= limit:
                pending.last_sent = now
                pending.resent = True
                out.append(b"".join(pending.encoded))
        return out

    # -- receiving ---------------------------------------------------------------------------

    def receive(self, frame: Frame) -> Received:
        """Sequence one incoming stream frame."""
        seq = frame.sequence_number
        if seq == self.expected_seq:
            deliver = [frame]
            self.expected_seq += 1
            while self.expected_seq in self._reorder:
                held = self._reorder.pop(self.expected_seq)
                self._reorder_bytes -= len(held.payload)
                deliver.append(held)
                self.expected_seq += 1
            return Received(deliver, ack_for(frame))
        if seq > self.expected_seq:
            if seq in self._reorder:
                return Received([], ack_for(frame))  # a copy of one held: ack it again
            size = len(frame.payload)
            bytes_limit = self.reorder_bytes_limit
            if len(self._reorder) < self.reorder_limit and (
                bytes_limit is None or self._reorder_bytes + size <= bytes_limit
            ):
                self._reorder[seq] = frame
                self._reorder_bytes += size
                return Received([], ack_for(frame))
            return Received([], None)  # no room: let the sender retransmit
        return Received([], ack_for(frame))  # duplicate of something already processed


def is_payload(frame: Frame, payload_type: PayloadType) -> bool:
    return frame.payload_type == payload_type
