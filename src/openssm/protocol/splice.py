"""Splicing a third party's stream messages into one direction of a relayed data channel (sans-I/O).

A data channel's stream messages are numbered per direction and acknowledged end to end (§2.3 of
``session-manager-protocol.md``): the gateway relays them verbatim and never acks for a peer. A
live-session joiner's keystrokes (toward the agent) and the ``[openssm] … joined`` lines (toward the
owner's client) are messages neither end sent, so they cannot simply be added to the stream: the
receiver would take them for the sender's next numbers and drop the sender's real ones as
duplicates. A :class:`Splice` renumbers one direction instead:

* the sender's ("upstream") numbers ``u`` and the receiver's ("downstream") numbers ``d`` differ by
  the number of messages the gateway put in before ``u``: ``d(u) = u + #{injections at or below u}``;
* an injection goes in at the frontier (after every upstream message seen so far) and takes the
  next downstream number there;
* the receiver's acks are mapped back: an ack of an injected message is the gateway's own (it keeps
  and resends that message until then), any other ack goes to the sender with its upstream number.

Until the first injection the mapping is the identity, so a session nobody joins is relayed as
before. State is bounded: injection points are forgotten once the receiver has acknowledged
everything below them, and a sender's resend of a message the receiver acknowledged long ago is
answered by the gateway (:attr:`Forward.acked`) rather than renumbered.

A splice's state (:class:`SpliceState`) is what a gateway keeps in its store so that a session goes
on with the same numbering after the gateway restarts. A state is a valid one to go on from if it
holds every injection, a ``frontier`` at least the sender's highest number passed on (the receiver
has nothing numbered beyond it), and every ack passed back to the sender: then an older state only
knows injection points the receiver has acknowledged since, and the acks it lacks come again, for
the sender's resends of what it was never told is acknowledged. :meth:`Splice.forward` and
:meth:`Splice.acknowledged` say when the state moved on in a way the next one must hold
(:attr:`Forward.moved`, :attr:`Ack.moved`).
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Final

from openssm.errors import LocalProtocolError

MAX_POINTS: Final = 100_000  # injections not yet acknowledged below; more are refused
MAX_ACKED_AHEAD: Final = 200_000  # acks above the receiver's contiguous prefix we remember


class SpliceFull(LocalProtocolError):
    """Too many injections outstanding: the receiver is not acknowledging (the caller drops it)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Forward:
    """Where an upstream message goes: ``sequence`` downstream, or (``acked``) nowhere: the receiver
    acknowledged it long ago, so the gateway answers the sender itself."""

    sequence: int
    acked: bool = False
    moved: bool = False  # the frontier moved: a kept state must hold it before this goes on


@dataclasses.dataclass(frozen=True, slots=True)
class Ack:
    """A receiver's ack mapped back: to the sender as ``upstream``, or (``upstream`` None) an ack
    of the gateway's own injected message ``downstream``."""

    downstream: int
    upstream: int | None
    moved: bool = False  # what is known acknowledged moved: a kept state must hold it first


@dataclasses.dataclass(frozen=True, slots=True)
class SpliceState:
    """What :meth:`Splice.state` keeps and :meth:`Splice.restored` goes on from (see the module
    docstring); ``acked_floor``: every downstream number below it is acknowledged."""

    frontier: int
    base: int
    injected: tuple[int, ...]
    forgotten_upstream: int
    forgotten_downstream: int
    acked_floor: int
    acked_ahead: tuple[int, ...] = ()


class Splice:
    """One direction's renumbering (see the module docstring)."""

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        self._max_points = max_points
        self.frontier = 0  # the next upstream number not yet seen
        # Injection points still needed, as downstream numbers, ascending. Their upstream points
        # are ``injected[i] - (base + i)``.
        self.injected: list[int] = []
        self.base = 0  # injections forgotten (all acknowledged, with everything below them)
        self._acked_floor = 0  # every downstream number below this is acknowledged
        self._acked_ahead: set[int] = set()
        # The last forgotten injection, as an upstream and a downstream number: messages below
        # it were all acknowledged, and the mapping no longer knows them.
        self._forgotten_upstream = 0
        self._forgotten_downstream = -1

    def state(self) -> SpliceState:
        return SpliceState(
            self.frontier,
            self.base,
            tuple(self.injected),
            self._forgotten_upstream,
            self._forgotten_downstream,
            self._acked_floor,
            tuple(sorted(self._acked_ahead)),
        )

    @classmethod
    def restored(cls, state: SpliceState, max_points: int = MAX_POINTS) -> Splice:
        """A splice going on from ``state`` (acks above its floor are not known: they come again
        for the sender's resends, or the points they would free are kept a while longer)."""
        numbers = (state.frontier, state.base, state.forgotten_upstream, state.acked_floor)
        if min(numbers) < 0 or list(state.injected) != sorted(set(state.injected)):
            raise ValueError(f"not a splice state: {state}")
        splice = cls(max_points)
        splice.frontier = state.frontier
        splice.base = state.base
        splice.injected = list(state.injected)
        splice._forgotten_upstream = state.forgotten_upstream
        splice._forgotten_downstream = state.forgotten_downstream
        splice._acked_floor = state.acked_floor
        splice._acked_ahead = {number for number in state.acked_ahead if number > state.acked_floor}
        return splice

    @property
    def active(self) -> bool:
        """True once anything was injected (until then numbers pass through unchanged)."""
        return bool(self.injected) or self.base > 0

    def _before(self, upstream: int) -> int:
        """Injections placed at or below upstream number ``upstream``."""
        # Point i sits at upstream number injected[i] - (base + i); these are non-decreasing.
        low, high = 0, len(self.injected)
        while low < high:
            middle = (low + high) // 2
            if self.injected[middle] - (self.base + middle) <= upstream:
                low = middle + 1
            else:
                high = middle
        return self.base + low

    def forward(self, upstream: int) -> Forward:
        """The downstream number for the sender's message ``upstream`` (a first send or a resend)."""
        if upstream < 0:
            raise ValueError(f"negative sequence number {upstream}")
        moved = upstream >= self.frontier
        self.frontier = max(self.frontier, upstream + 1)
        if not self.active:
            return Forward(upstream, moved=moved)
        if upstream < self._forgotten_upstream:
            return Forward(-1, acked=True)
        return Forward(upstream + self._before(upstream), moved=moved)

    def inject(self) -> int:
        """A downstream number for a new message of the gateway's, after everything seen so far."""
        if len(self.injected) >= self._max_points:
            raise SpliceFull(f"{len(self.injected)} injected messages unacknowledged")
        downstream = self.frontier + self.base + len(self.injected)
        self.injected.append(downstream)
        return downstream

    def acknowledged(self, downstream: int) -> Ack:
        """Map the receiver's ack of ``downstream`` back."""
        if downstream < 0:
            raise ValueError(f"negative sequence number {downstream}")
        moved = self._note_acked(downstream)
        if not self.active:
            return Ack(downstream, downstream, moved)
        if downstream <= self._forgotten_downstream:
            return Ack(downstream, None)  # a repeated ack of something acknowledged long ago
        index = bisect.bisect_left(self.injected, downstream)
        injected = index < len(self.injected) and self.injected[index] == downstream
        upstream = None if injected else downstream - self.base - index
        self._forget()
        return Ack(downstream, upstream, moved)

    def _note_acked(self, downstream: int) -> bool:
        """Note an ack; True if it was news."""
        if downstream < self._acked_floor or downstream in self._acked_ahead:
            return False
        if downstream == self._acked_floor:
            self._acked_floor += 1
            while self._acked_floor in self._acked_ahead:
                self._acked_ahead.discard(self._acked_floor)
                self._acked_floor += 1
            return True
        if len(self._acked_ahead) < MAX_ACKED_AHEAD:
            self._acked_ahead.add(downstream)
            return True
        return False

    def _forget(self) -> None:
        """Drop injection points the receiver has acknowledged, along with everything below them."""
        drop = bisect.bisect_left(self.injected, self._acked_floor)
        if drop:
            last = self.injected[drop - 1]
            self._forgotten_downstream = last
            self._forgotten_upstream = last - (self.base + drop - 1)
            del self.injected[:drop]
            self.base += drop
