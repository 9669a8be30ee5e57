"""DataChannel receiver rules against a loopback gateway: not ready, order, limits, ending."""

from __future__ import annotations

import asyncio
import logging

import pytest
from tests.support.wait import wait_for
from tests.unit.agent.fake_mgs import CREDENTIALS, FakeClient, FakeMgs

from openssm.agent.data_channel import MAX_INPUT_PAYLOAD, DataChannel, EndReason
from openssm.agent.mgs import MgsClient
from openssm.agent.signing import StaticCredentials
from openssm.protocol.datachannel import NOT_READY, StreamData
from openssm.protocol.frames import Frame, MessageType, PayloadFlag, PayloadType, acked_sequence, flag_payload
from openssm.transport.datachannel import Delivered
from openssm.transport.datachannel import log as driver_log
from openssm.transport.http_exchange import HttpClient

SID = "tester-00000000000000001"


async def open_channel(fake: FakeMgs, http: HttpClient) -> DataChannel:
    mgs = MgsClient(http, fake.endpoint, "us-east-1", StaticCredentials(CREDENTIALS))
    channel = DataChannel(mgs, session_id=SID, instance_id="i-0123456789abcdef0")
    await channel.open()
    return channel


def acks(client: FakeClient) -> list[int]:
    """The sequence numbers the agent acked, in order (repeats included)."""
    return [acked_sequence(f) for f in client.frames if f.message_type == MessageType.ACKNOWLEDGE]


def input_frame(seq: int, payload: bytes = b"x", payload_type: int = PayloadType.OUTPUT) -> Frame:
    return Frame(MessageType.INPUT_STREAM_DATA, seq, 0, payload_type, payload)


async def test_input_is_dropped_unacked_until_ready_then_delivered_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=driver_log.name)
    fake = FakeMgs()
    await fake.start()
    delivered: list[bytes] = []

    class Handler:
        def ready(self, frame: Frame) -> bool:
            return True

        async def on_event(self, event: StreamData | Delivered) -> None:
            if isinstance(event, StreamData):
                delivered.append(bytes(event.frame.payload))

    try:
        http = HttpClient(timeout=15.0)
        channel = await open_channel(fake, http)
        client = await fake.next_client()
        early = input_frame(0, b"early")
        await client.send_raw(early.encode())
        # A channel that is not ready answers nothing; the driver logs the drop.
        await wait_for(lambda: NOT_READY in caplog.text, 10, "the early frame dropped")
        assert client.acked_inputs == set() and delivered == []  # not ready: no ack

        channel.accept_input(Handler())
        await client.send_raw(input_frame(2, b"c").encode())  # ahead: buffered and acked
        await client.wait_for(lambda: 2 in client.acked_inputs, "ack of the early seq 2")
        assert delivered == []
        await client.send_raw(early.encode())  # the client's retransmission
        await client.send_raw(input_frame(1, b"b").encode())
        await client.wait_for(lambda: client.acked_inputs == {0, 1, 2}, "acks")
        await client.send_raw(input_frame(1, b"b").encode())  # duplicate: re-acked, not delivered
        await client.wait_for(lambda: acks(client).count(1) == 2, "the duplicate re-acked")
        assert delivered == [b"early", b"b", b"c"]

        big = input_frame(3, b"z" * (MAX_INPUT_PAYLOAD + 1))
        await client.send_raw(big.encode())  # refused unacked: only the flag below acks seq 3

        await client.send_raw(
            input_frame(3, flag_payload(PayloadFlag.TERMINATE_SESSION), PayloadType.FLAG).encode()
        )
        await asyncio.wait_for(channel.ended.wait(), 5)
        assert channel.end_reason is EndReason.CLIENT_TERMINATED
        await client.wait_for(lambda: 3 in client.acked_inputs, "the flag acked before the end")
        assert acks(client).count(3) == 1  # the flag's ack; the oversized frame had none
        await channel.close(send_terminating=False)
        await asyncio.wait_for(client.closed.wait(), 5)
    finally:
        await fake.close()
    assert delivered == [b"early", b"b", b"c"]  # the flag is not handed to the session


async def test_unacked_output_is_resent_and_drain_waits_for_acks() -> None:
    fake = FakeMgs()
    await fake.start()
    try:
        http = HttpClient(timeout=15.0)
        channel = await open_channel(fake, http)
        client = await fake.next_client()
        client.ack_outputs = False
        await channel.send_output(b"a" * 2500)  # three chunks: 1024 + 1024 + 452
        await client.wait_for(lambda: client.times_received.get(0, 0) >= 3, "seq 0 resent")
        assert not await channel.drain(0.3)
        client.ack_outputs = True  # the next resend is acked, and so on down the queue
        assert await channel.drain(2.0)
        assert [len(f.payload) for f in client.outputs_of(PayloadType.OUTPUT)] == [1024, 1024, 452]
        assert [f.flags for f in client.outputs_of(PayloadType.OUTPUT)] == [1, 0, 0]
        await channel.close(send_terminating=True)
        await asyncio.wait_for(client.closed.wait(), 5)
    finally:
        await fake.close()
    assert b'"Terminating"' in client.frames[-1].payload
