"""Session taps: ordered delivery from a bounded queue, isolation from failing or slow taps."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from openssm.gateway import tap as tap_module
from openssm.gateway.tap import TapPump
from openssm.protocol.frames import Payload

SESSION = {"session_id": "s-1"}


class Recorder:
    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.events: list[tuple[str, Any]] = []
        self.delay = delay
        self.fail = fail

    async def on_start(self, session: Mapping[str, Any]) -> None:
        self.events.append(("start", session["session_id"]))

    async def on_output(self, payload: Payload, payload_type: int, t: float) -> None:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("tap broke")
        self.events.append(("output", bytes(payload)))

    async def on_input(self, payload: Payload, payload_type: int, t: float) -> None:
        self.events.append(("input", bytes(payload)))

    async def on_end(self, status: str, reason: str, t: float) -> None:
        self.events.append(("end", status))


async def test_events_arrive_in_order_and_end_last() -> None:
    recorder = Recorder()
    pump = TapPump(SESSION, [recorder])
    pump.output(b"a", 1)
    pump.input(b"b", 1)
    pump.output(b"c", 1)
    await pump.close("Terminated", "done")
    assert recorder.events == [
        ("start", "s-1"),
        ("output", b"a"),
        ("input", b"b"),
        ("output", b"c"),
        ("end", "Terminated"),
    ]


async def test_a_failing_tap_does_not_stop_the_others() -> None:
    broken, good = Recorder(fail=True), Recorder()
    pump = TapPump(SESSION, [broken, good])
    pump.output(b"x", 1)
    await pump.close("Terminated", "done")
    assert good.events == [("start", "s-1"), ("output", b"x"), ("end", "Terminated")]
    assert broken.events[-1] == ("end", "Terminated")


async def test_a_slow_tap_loses_events_instead_of_blocking(monkeypatch: Any) -> None:
    monkeypatch.setattr(tap_module, "QUEUE_LIMIT", 3)
    slow = Recorder(delay=0.01)
    pump = TapPump(SESSION, [slow])
    for i in range(10):
        pump.output(bytes([i]), 1)  # never awaits: the relay is not held up
    assert pump.dropped == 7
    await pump.close("Terminated", "done")
    assert [e for e in slow.events if e[0] == "output"] == [
        ("output", b"\x00"),
        ("output", b"\x01"),
        ("output", b"\x02"),
    ]


async def test_retransmissions_reach_taps_once_and_in_order() -> None:
    recorder = Recorder()
    pump = TapPump(SESSION, [recorder])
    for sequence, data in ((0, b"a"), (2, b"c"), (0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")):
        pump.output(data, 1, sequence)
    await pump.close("Terminated", "done")
    assert [e[1] for e in recorder.events if e[0] == "output"] == [b"a", b"b", b"c", b"d"]


async def test_a_gap_that_never_fills_is_skipped_within_the_byte_bound(monkeypatch: Any) -> None:
    monkeypatch.setattr(tap_module, "REORDER_BYTES", 10)
    recorder = Recorder()
    pump = TapPump(SESSION, [recorder])
    pump.output(b"12345", 1, 1)
    pump.output(b"67890", 1, 2)  # seq 0 never comes; 10 bytes held is the limit
    pump.output(b"!", 1, 3)  # over the limit: give up on the gap
    await pump.close("Terminated", "done")
    assert [e[1] for e in recorder.events if e[0] == "output"] == [b"12345", b"67890", b"!"]
