"""Session taps: how recorders and loggers see a session's stream data without slowing the relay.

For each session the gateway asks every node extension for a tap
(``NodeExtension.session_tap(session)``, ``openssm.gateway.extension``) with the ``sessions`` row;
each returns a per-session :class:`SessionTap` or None (not interested). The gateway puts events on
a bounded queue that one task drains into the taps, so a slow tap loses events (counted, logged
once) instead of stalling the session.

Payloads reach the taps as read-only :data:`Payload` views into the relayed frames (no copy per
relayed byte); a tap that needs ``bytes`` (to decode text, say) converts what it uses.

A session outlives a restart of its node (the peers re-dial; ``gateway/node.py``), and a tap whose
record outlives the process says so by being a :class:`ResumableTap`: it tells where its record
stands in each direction (the next sequence number not yet recorded, read back from its own
files), hears the sequence number of each message it records, and is told when the node stops
while the session goes on. After a restart the peers resend whatever the other end had not
acknowledged, which the record may already hold: those messages are not given to it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol, runtime_checkable

log = logging.getLogger(__name__)

QUEUE_LIMIT: Final = 10_000
DRAIN_TIMEOUT: Final = 5.0
REORDER_LIMIT: Final = 10_000  # out-of-order messages held per direction before skipping a gap
REORDER_BYTES: Final = 8 * 1024 * 1024  # and their payload bytes: a peer chooses both

# A stream message's payload: a memoryview into the relayed (immutable) frame, or bytes.
Payload = bytes | memoryview


# (sequence, payload, payload_type, t): one stream message in the order taps see them.
_Item = tuple[int, Payload, int, float]


class _InOrder:
    """Each sequence number once, in order: the relay sees retransmissions and reordering, taps
    must not. Same rule as a stream receiver: deliver ``expected``, hold later ones, drop older."""

    def __init__(self, expected: int | None = 0) -> None:
        # None: a session picked up after a restart, which starts wherever the peers resend from
        # (each resends its unacknowledged messages oldest first).
        self.expected = expected
        self._held: dict[int, _Item] = {}
        self._held_bytes = 0

    def accept(self, sequence: int, payload: Payload, payload_type: int, t: float) -> list[_Item]:
        if self.expected is None:
            self.expected = sequence
        if sequence < self.expected or sequence in self._held:
            return []
        if sequence > self.expected:
            self._held[sequence] = (sequence, payload, payload_type, t)
            self._held_bytes += len(payload)
            if len(self._held) <= REORDER_LIMIT and self._held_bytes <= REORDER_BYTES:
                return []
            # The gap will never fill (a side dropped its buffer): move on rather than hold forever.
            self.expected = min(self._held)
            return self._drain()
        self.expected += 1
        return [(sequence, payload, payload_type, t), *self._drain()]

    def _drain(self) -> list[_Item]:
        ready: list[_Item] = []
        while self.expected is not None and self.expected in self._held:
            item = self._held.pop(self.expected)
            self._held_bytes -= len(item[1])
            ready.append(item)
            self.expected += 1
        return ready


class SessionTap(Protocol):
    """One session's observer. ``t`` is seconds since the session started (monotonic)."""

    async def on_start(self, session: Mapping[str, Any]) -> None: ...

    async def on_output(self, payload: Payload, payload_type: int, t: float) -> None: ...

    async def on_input(self, payload: Payload, payload_type: int, t: float) -> None: ...

    async def on_end(self, status: str, reason: str, t: float) -> None: ...


@runtime_checkable
class ResumableTap(Protocol):
    """A tap whose record outlives the node process (see the module's notes)."""

    def recorded_until(self) -> Mapping[str, int]:
        """``output``/``input`` → the first sequence number not yet in the record (empty: new)."""

    def note_sequence(self, kind: str, sequence: int) -> None:
        """The message just given to on_output/on_input (``kind``) had this sequence number."""

    async def on_suspend(self, t: float) -> None:
        """The node stops and the session goes on: make what is recorded durable."""

    def flush(self) -> None:
        """Hand what was recorded so far to the OS (a crash of the process then loses none of it)."""


# (kind, payload, payload_type, t, sequence or -1) with kind "output" | "input"; None ends the pump.
_Event = tuple[str, Payload, int, float, int]


class TapPump:
    """Feeds one session's events to its taps from a bounded queue, in order."""

    def __init__(
        self,
        session: Mapping[str, Any],
        taps: list[SessionTap],
        clock: Callable[[], float] = time.monotonic,
        *,
        resumed_after: float | None = None,
    ) -> None:
        """``resumed_after``: the session is picked up after a restart of the node, this many
        seconds after it started (its taps' times go on from there)."""
        self._session = dict(session)
        self._taps = taps
        self._queue: asyncio.Queue[_Event | None] = asyncio.Queue(QUEUE_LIMIT)
        self._clock = clock  # monotonic seconds (the node's Services.clock)
        self._started = clock() - (resumed_after or 0.0)
        first = None if resumed_after is not None else 0
        self._in_order = {"output": _InOrder(first), "input": _InOrder(first)}
        # Each resumable tap with what its record already holds: those messages are not repeated.
        self._resumable: list[tuple[ResumableTap, dict[str, int]] | None] = [
            (tap, dict(tap.recorded_until())) if isinstance(tap, ResumableTap) else None for tap in taps
        ]
        # Per direction, the first sequence number not yet flushed to every resumable tap: what a
        # crash of this process would lose from their records (``durable_until``).
        floors = [entry[1] for entry in self._resumable if entry is not None]
        self._delivered = {
            kind: min((f.get(kind, 0) for f in floors), default=0) for kind in ("output", "input")
        }
        self._durable = dict(self._delivered)
        self.on_durable: Callable[[], None] | None = None  # called when durable_until moves on
        self.dropped = 0
        self._task = asyncio.create_task(self._run(), name=f"tap-{self._session.get('session_id')}")

    @property
    def resumable(self) -> bool:
        """Some tap keeps a record that outlives the process (see the module's notes)."""
        return any(entry is not None for entry in self._resumable)

    def durable_until(self, kind: str) -> int | None:
        """The first ``kind`` sequence number the resumable taps do not hold yet, or None when that
        cannot be told (no resumable tap, or events were dropped for a slow tap)."""
        if self.dropped or not self.resumable:
            return None
        return self._durable[kind]

    def elapsed(self) -> float:
        return self._clock() - self._started

    def output(self, payload: Payload, payload_type: int, sequence: int | None = None) -> None:
        self._sequenced("output", payload, payload_type, sequence)

    def input(self, payload: Payload, payload_type: int, sequence: int | None = None) -> None:
        self._sequenced("input", payload, payload_type, sequence)

    def _sequenced(self, kind: str, payload: Payload, payload_type: int, sequence: int | None) -> None:
        if sequence is None:
            self._offer((kind, payload, payload_type, self.elapsed(), -1))
            return
        for item in self._in_order[kind].accept(sequence, payload, payload_type, self.elapsed()):
            self._offer((kind, item[1], item[2], item[3], item[0]))

    def _offer(self, event: _Event) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            if self.dropped == 0:
                log.warning("session tap too slow for %s: dropping events", self._session.get("session_id"))
            self.dropped += 1

    async def _drain(self) -> float:
        """Deliver what is queued and stop the pump; gives up on the queue after DRAIN_TIMEOUT."""
        t = self.elapsed()
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT):
                await self._queue.put(None)
                await self._task
        except TimeoutError:
            log.warning("session tap for %s did not drain in time", self._session.get("session_id"))
            self._task.cancel()
        return t

    async def close(self, status: str, reason: str) -> None:
        """Deliver what is queued, then on_end."""
        t = await self._drain()
        for tap in self._taps:
            await self._call(tap.on_end(status, reason, t))

    async def suspend(self) -> None:
        """The node stops but the session does not end: deliver what is queued, then on_suspend
        to the taps that can pick the session up again."""
        t = await self._drain()
        for tap in self._taps:
            if isinstance(tap, ResumableTap):
                await self._call(tap.on_suspend(t))

    async def _run(self) -> None:
        for tap in self._taps:
            await self._call(tap.on_start(self._session))
        taps = list(zip(self._taps, self._resumable, strict=True))
        while True:
            event = await self._queue.get()
            if event is None:
                self._made_durable(taps)
                return
            kind, payload, payload_type, t, sequence = event
            for tap, resumable in taps:
                if resumable is not None and sequence >= 0:
                    if sequence < resumable[1].get(kind, 0):
                        continue  # recorded before the node restarted
                if kind == "output":
                    await self._call(tap.on_output(payload, payload_type, t))
                else:
                    await self._call(tap.on_input(payload, payload_type, t))
                if resumable is not None and sequence >= 0:
                    resumable[0].note_sequence(kind, sequence)
            if sequence >= 0:
                self._delivered[kind] = max(self._delivered[kind], sequence + 1)
            if self._queue.empty():
                self._made_durable(taps)

    def _made_durable(
        self, taps: list[tuple[SessionTap, tuple[ResumableTap, dict[str, int]] | None]]
    ) -> None:
        """At the end of a burst: flush the resumable taps, and say how far they now hold."""
        if self._delivered == self._durable:
            return
        for _tap, resumable in taps:
            if resumable is not None:
                try:
                    resumable[0].flush()
                except Exception:
                    log.exception("session tap failed to flush for %s", self._session.get("session_id"))
        self._durable = dict(self._delivered)
        if self.on_durable is not None:
            self.on_durable()

    async def _call(self, awaitable: Any) -> None:
        try:
            await awaitable
        except Exception:
            log.exception("session tap failed for %s", self._session.get("session_id"))
