"""Session taps: how recorders and loggers see a session's stream data without slowing the relay.

For each session the gateway asks every node extension for a tap
(``NodeExtension.session_tap(session)``, ``openssm.gateway.extension``) with the ``sessions`` row;
each returns a per-session :class:`SessionTap` or None (not interested). The gateway puts events on
a bounded queue that one task drains into the taps, so a slow tap loses events (counted, logged
once) instead of stalling the session.

Payloads reach the taps as read-only :data:`Payload` views into the relayed frames (no copy per
relayed byte); a tap that needs ``bytes`` (to decode text, say) converts what it uses.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

log = logging.getLogger(__name__)

QUEUE_LIMIT: Final = 10_000
DRAIN_TIMEOUT: Final = 5.0
REORDER_LIMIT: Final = 10_000  # out-of-order messages held per direction before skipping a gap
REORDER_BYTES: Final = 8 * 1024 * 1024  # and their payload bytes: a peer chooses both
_SEQUENCE = struct.Struct(">q")
_SEQUENCE_AT: Final = 48

# A stream message's payload: a memoryview into the relayed (immutable) frame, or bytes.
Payload = bytes | memoryview


def frame_sequence(frame: bytes) -> int:
    """SequenceNumber of a binary frame (the caller has checked it holds a whole header)."""
    return int(_SEQUENCE.unpack_from(frame, _SEQUENCE_AT)[0])


class _InOrder:
    """Each sequence number once, in order: the relay sees retransmissions and reordering, taps
    must not. Same rule as a stream receiver: deliver ``expected``, hold later ones, drop older."""

    def __init__(self) -> None:
        self.expected = 0
        self._held: dict[int, tuple[Payload, int, float]] = {}
        self._held_bytes = 0

    def accept(
        self, sequence: int, payload: Payload, payload_type: int, t: float
    ) -> list[tuple[Payload, int, float]]:
        if sequence < self.expected or sequence in self._held:
            return []
        if sequence > self.expected:
            self._held[sequence] = (payload, payload_type, t)
            self._held_bytes += len(payload)
            if len(self._held) <= REORDER_LIMIT and self._held_bytes <= REORDER_BYTES:
                return []
            # The gap will never fill (a side dropped its buffer): move on rather than hold forever.
            self.expected = min(self._held)
            return self._drain()
        self.expected += 1
        return [(payload, payload_type, t), *self._drain()]

    def _drain(self) -> list[tuple[Payload, int, float]]:
        ready = []
        while self.expected in self._held:
            item = self._held.pop(self.expected)
            self._held_bytes -= len(item[0])
            ready.append(item)
            self.expected += 1
        return ready


class SessionTap(Protocol):
    """One session's observer. ``t`` is seconds since the session started (monotonic)."""

    async def on_start(self, session: Mapping[str, Any]) -> None: ...

    async def on_output(self, payload: Payload, payload_type: int, t: float) -> None: ...

    async def on_input(self, payload: Payload, payload_type: int, t: float) -> None: ...

    async def on_end(self, status: str, reason: str, t: float) -> None: ...


# (kind, payload, payload_type, t) with kind "output" | "input"; None ends the pump.
_Event = tuple[str, Payload, int, float]


class TapPump:
    """Feeds one session's events to its taps from a bounded queue, in order."""

    def __init__(
        self, session: Mapping[str, Any], taps: list[SessionTap], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._session = dict(session)
        self._taps = taps
        self._queue: asyncio.Queue[_Event | None] = asyncio.Queue(QUEUE_LIMIT)
        self._clock = clock  # monotonic seconds (the node's Services.clock)
        self._started = clock()
        self._in_order = {"output": _InOrder(), "input": _InOrder()}
        self.dropped = 0
        self._task = asyncio.create_task(self._run(), name=f"tap-{self._session.get('session_id')}")

    def elapsed(self) -> float:
        return self._clock() - self._started

    def output(self, payload: Payload, payload_type: int, sequence: int | None = None) -> None:
        self._sequenced("output", payload, payload_type, sequence)

    def input(self, payload: Payload, payload_type: int, sequence: int | None = None) -> None:
        self._sequenced("input", payload, payload_type, sequence)

    def _sequenced(self, kind: str, payload: Payload, payload_type: int, sequence: int | None) -> None:
        if sequence is None:
            self._offer((kind, payload, payload_type, self.elapsed()))
            return
        for item in self._in_order[kind].accept(sequence, payload, payload_type, self.elapsed()):
            self._offer((kind, *item))

    def _offer(self, event: _Event) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            if self.dropped == 0:
                log.warning("session tap too slow for %s: dropping events", self._session.get("session_id"))
            self.dropped += 1

    async def close(self, status: str, reason: str) -> None:
        """Deliver what is queued, then on_end; gives up on the queue after DRAIN_TIMEOUT."""
        t = self.elapsed()
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT):
                await self._queue.put(None)
                await self._task
        except TimeoutError:
            log.warning("session tap for %s did not drain in time", self._session.get("session_id"))
            self._task.cancel()
        for tap in self._taps:
            await self._call(tap.on_end(status, reason, t))

    async def _run(self) -> None:
        for tap in self._taps:
            await self._call(tap.on_start(self._session))
        while True:
            event = await self._queue.get()
            if event is None:
                return
            kind, payload, payload_type, t = event
            for tap in self._taps:
                if kind == "output":
                    await self._call(tap.on_output(payload, payload_type, t))
                else:
                    await self._call(tap.on_input(payload, payload_type, t))

    async def _call(self, awaitable: Any) -> None:
        try:
            await awaitable
        except Exception:
            log.exception("session tap failed for %s", self._session.get("session_id"))
