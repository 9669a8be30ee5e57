"""Gateway taps see each stream message once, in sequence order, whatever the relay saw."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from openssm.gateway.tap import TapPump, frame_sequence
from openssm.protocol.frames import Frame, MessageType, Payload


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


def test_frame_sequence_reads_the_header() -> None:
    assert frame_sequence(_frame(0)) == 0
    assert frame_sequence(_frame(123456789)) == 123456789


async def _deliver(order: list[int]) -> Collect:
    tap = Collect()
    pump = TapPump({"session_id": "s-1"}, [tap])
    for sequence in order:
        pump.output(b"p%d" % sequence, 1, frame_sequence(_frame(sequence)))
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
