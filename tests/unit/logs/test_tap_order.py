"""Gateway taps see each stream message once, in sequence order, whatever the relay saw."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from openssm.gateway.tap import TapPump
from openssm.protocol.frames import Frame, MessageType, Payload, peek


class Collect:
    def __init__(self) -> None:
        self.output: list[bytes] = []
        self.input: list[bytes] = []
        self.ended: tuple[str, str] | None = None

    async def on_start(self, session: Mapping[str, Any]) -> None:
        pass

    async def on_output(self, payload: Payload, payload_type: int, t: float) -> None:
        self.output.append(bytes(payload))

    async def on_input(self, payload: Payload, payload_type: int, t: float) -> None:
        self.input.append(bytes(payload))

    async def on_end(self, status: str, reason: str, t: float) -> None:
        self.ended = (status, reason)


def _frame(sequence: int) -> bytes:
    return Frame(
        message_type=MessageType.OUTPUT_STREAM_DATA,
        sequence_number=sequence,
        payload_type=1,
        payload=b"p%d" % sequence,
    ).encode()


def test_the_relay_reads_the_sequence_from_the_header() -> None:
    assert peek(_frame(0)).sequence_number == 0
    assert peek(_frame(123456789)).sequence_number == 123456789


async def _deliver(order: list[int]) -> Collect:
    tap = Collect()
    pump = TapPump({"session_id": "s-1"}, [tap])
    for sequence in order:
        pump.output(b"p%d" % sequence, 1, peek(_frame(sequence)).sequence_number)
        pump.input(b"i%d" % sequence, 1, sequence)
    await pump.close("Terminated", "done")
    return tap


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=30), max_size=80))
def test_retransmissions_and_reordering_are_hidden(sent: list[int]) -> None:
    tap = asyncio.run(_deliver(sent))
    # What a receiver delivers: the longest run 0..k-1 that was seen at all, each once.
    expected = 0
    while expected in set(sent):
        expected += 1
    assert tap.output == [b"p%d" % n for n in range(expected)]
    assert tap.input == [b"i%d" % n for n in range(expected)]
    assert tap.ended == ("Terminated", "done")


async def test_unsequenced_events_pass_through() -> None:
    tap = Collect()
    pump = TapPump({"session_id": "s-2"}, [tap])
    pump.output(b"a", 1)
    pump.output(b"a", 1)
    await pump.close("Terminated", "done")
    assert tap.output == [b"a", b"a"]


class Resumable(Collect):
    """A tap whose record already held output 0..floor-1 before the node restarted."""

    def __init__(self, floor: int) -> None:
        super().__init__()
        self.floor = floor
        self.noted: list[int] = []
        self.flushes = 0
        self.suspended = False

    def recorded_until(self) -> Mapping[str, int]:
        return {"output": self.floor}

    def note_sequence(self, kind: str, sequence: int) -> None:
        if kind == "output":
            self.noted.append(sequence)

    async def on_suspend(self, t: float) -> None:
        self.suspended = True

    def flush(self) -> None:
        self.flushes += 1


async def _resume(
    floor: int, resent_from: int, count: int, suspend: bool
) -> tuple[Resumable, Collect, int | None]:
    resumable, plain = Resumable(floor), Collect()
    pump = TapPump({"session_id": "s-1"}, [resumable, plain], resumed_after=5.0)
    for sequence in range(resent_from, resent_from + count):  # what the agent resends, oldest first
        pump.output(b"p%d" % sequence, 1, sequence)
    if suspend:
        await pump.suspend()
    else:
        await pump.close("Terminated", "done")
    return resumable, plain, pump.durable_until("output")


@settings(max_examples=50, deadline=None)
@given(
    st.integers(min_value=0, max_value=20),
    st.integers(min_value=0, max_value=20),
    st.integers(min_value=0, max_value=20),
    st.booleans(),
)
def test_a_session_picked_up_after_a_restart_is_not_recorded_twice(
    floor: int, resent_from: int, count: int, suspend: bool
) -> None:
    """The peers resend from their oldest unacknowledged message, which the record may hold
    already: a resumable tap gets only what it lacks, other taps everything from there on."""
    resumable, plain, durable = asyncio.run(_resume(floor, resent_from, count, suspend))
    sent = range(resent_from, resent_from + count)
    assert plain.output == [b"p%d" % n for n in sent]
    assert resumable.output == [b"p%d" % n for n in sent if n >= floor]
    assert resumable.noted == [n for n in sent if n >= floor]
    assert resumable.suspended == suspend and (resumable.ended is None) == suspend
    assert durable == max(floor, resent_from + count if count else floor)
    if resumable.noted:
        assert resumable.flushes >= 1
