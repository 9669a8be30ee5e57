"""Live-session join at the gateway, frame by frame: a real gateway node with the join extension,
the agent, the owner's client and joiners as WebSockets of the test.

What the agent sees is exact: the owner's input and a read-write joiner's, renumbered into one
sequence; acks go back to whoever sent the message; a read-only joiner's keys never arrive; a
joiner that stops reading is dropped while the owner's output keeps flowing."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from tests.integration.test_gateway_sessions import IID, SID, Session, keystroke, output, start
from tests.support.gateway import Gateway, next_frame, running_gateway

from openssm.gateway.join import TOO_SLOW, SessionJoins
from openssm.gateway.settings import GatewaySettings
from openssm.protocol.frames import Frame, MessageType, ack_for, acked_sequence
from openssm.protocol.messages import ClientOpen
from openssm.services import Services


def _joins(services: Services) -> tuple[SessionJoins]:
    return (SessionJoins(services.engine),)


@pytest.fixture
async def gw(tmp_path: pathlib.Path) -> AsyncIterator[Gateway]:
    settings = GatewaySettings(watchdog_interval=0.05, ws_heartbeat=300)
    async with running_gateway(tmp_path, settings=settings, extensions=_joins) as gateway:
        await gateway.add_instance(IID)
        await gateway.add_agent_user()
        yield gateway


async def _joiner(gw: Gateway, kind: str, name: str) -> aiohttp.ClientWebSocketResponse:
    principal = f"arn:aws:iam::123456789012:user/{name}"
    token = await gw.add_token(kind, SID, principal_arn=principal)
    ws = await gw.client_socket(SID)
    await ws.send_str(ClientOpen(token_value=token).to_text())
    return ws


async def _stream(ws: aiohttp.ClientWebSocketResponse, text: str) -> list[Frame]:
    """Frames until an Output containing ``text``; every Output is acked, as a client does."""
    seen = []
    while True:
        frame = await next_frame(ws)
        seen.append(frame)
        if frame.message_type == MessageType.OUTPUT_STREAM_DATA:
            await ws.send_bytes(ack_for(frame).encode())
            if text.encode() in bytes(frame.payload):
                return seen


async def _agent_input(s: Session) -> Frame:
    """The next input_stream_data the agent gets (acks the agent gets are skipped)."""
    while True:
        frame = await next_frame(s.agent)
        if frame.message_type == MessageType.INPUT_STREAM_DATA:
            return frame


async def _opened(gw: Gateway) -> Session:
    s = await start(gw)
    await s.agent.send_bytes(output(0, b"$ ").encode())
    await _stream(s.client, "$ ")
    return s


async def test_owner_and_joiner_input_is_one_sequence_and_acks_find_their_senders(gw: Gateway) -> None:
    s = await _opened(gw)
    typist = await _joiner(gw, "join-write", "typist")
    watcher = await _joiner(gw, "join-read", "watcher")
    for ws in (s.client, typist, watcher):
        await _stream(ws, "[openssm] watcher joined (read-only)")

    await s.client.send_bytes(keystroke(0, b"a").encode())
    first = await _agent_input(s)
    assert (first.sequence_number, bytes(first.payload)) == (0, b"a")
    await typist.send_bytes(keystroke(0, b"b").encode())
    await watcher.send_bytes(keystroke(0, b"never").encode())  # acked to the watcher, dropped
    joined = await _agent_input(s)
    assert (joined.sequence_number, bytes(joined.payload)) == (1, b"b")
    await s.client.send_bytes(keystroke(1, b"c").encode())
    third = await _agent_input(s)
    assert (third.sequence_number, bytes(third.payload)) == (2, b"c")

    # The agent acks the owner's "c" as 2: the owner hears 1. Its ack of "b" (1) is the gateway's.
    await s.agent.send_bytes(ack_for(joined).encode())
    await s.agent.send_bytes(ack_for(third).encode())
    while True:
        frame = await next_frame(s.client)
        if frame.message_type == MessageType.ACKNOWLEDGE:
            assert acked_sequence(frame) == 1
            break
    # Output after the joined lines goes on, renumbered, and every joiner gets it.
    await s.agent.send_bytes(output(1, b"abc-done").encode())
    for ws in (s.client, typist, watcher):
        await _stream(ws, "abc-done")


async def test_a_joiner_that_stops_reading_is_dropped_and_the_owner_goes_on(gw: Gateway) -> None:
    s = await _opened(gw)
    slow = await _joiner(gw, "join-read", "slow")
    await _stream(s.client, "[openssm] slow joined (read-only)")
    chunk = b"x" * 16 * 1024
    received, left = 0, False
    for seq in range(1, 700):  # about 11 MiB: more than the joiner's queue and its socket hold
        await s.agent.send_bytes(output(seq, chunk).encode())
        while received < seq:  # the owner gets every chunk (and, somewhere, the joiner's leaving)
            frame = await next_frame(s.client)
            assert frame.message_type == MessageType.OUTPUT_STREAM_DATA
            await s.client.send_bytes(ack_for(frame).encode())
            received += bytes(frame.payload) == chunk
            left = left or b"[openssm] slow left" in bytes(frame.payload)
    if not left:
        await _stream(s.client, "[openssm] slow left")
    while True:  # now the joiner reads: what was sent, then why it was dropped
        frame = await next_frame(slow)
        if frame.message_type == MessageType.CHANNEL_CLOSED:
            assert frame.json()["Output"] == TOO_SLOW
            break
