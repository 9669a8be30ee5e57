"""The agent's data channel while the destination of an SSH session stops reading.

The agent then stops reading its data channel (TCP back-pressure reaches the client), so its own
heartbeat hears nothing from the gateway, pongs included. It must neither take the gateway for
dead nor look dead to it; once the destination reads again, every byte arrives in order.
"""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from tests.unit.agent.fake_mgs import agent_session, client_handshake, session_content, task_result

from openssm.protocol.frames import PayloadFlag, PayloadType, flag_payload
from openssm.transport import websocket_connection
from openssm.transport.mux import FAST_PATH_ACCEPTED, FAST_PATH_PAYLOAD, FAST_PATH_VERSION

SID = "tester-0123456789abcdef3"
TOTAL = 64 * 1024 * 1024  # far more than the sockets and the agent's queue hold between them


class StalledSink:
    """Accepts one connection, reads nothing until released, then digests everything to EOF."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.received: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.release.wait()
        digest, size = hashlib.sha256(), 0
        while data := await reader.read(1 << 20):
            digest.update(data)
            size += len(data)
        self.received.set_result((size, digest.digest()))
        writer.close()

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def test_an_agent_whose_destination_stops_reading_keeps_its_data_channel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(websocket_connection, "PAUSED_PING_INTERVAL", 0.1)
    sink = StalledSink()
    port = await sink.start()
    payload = os.urandom(TOTAL)
    content = session_content(SID, "Port", {"portNumber": str(port)})  # AWS-StartSSHSession: stdio
    try:
        # The agent pings after 0.3 s without a byte and gives up 0.15 s after that.
        async with agent_session(content, ping_seconds=0.3) as (fake, client):
            await client_handshake(client, extensions={FAST_PATH_ACCEPTED: FAST_PATH_VERSION})

            async def send() -> None:
                for start in range(0, TOTAL, FAST_PATH_PAYLOAD):
                    await client.send_input(PayloadType.OUTPUT, payload[start : start + FAST_PATH_PAYLOAD])

            sending = asyncio.create_task(send())
            await asyncio.sleep(2.0)  # over four of the agent's heartbeats, each with its grace
            assert not sending.done()  # held back: the agent stopped reading its data channel
            assert not client.closed.is_set()
            assert fake.clients.empty()  # and never dialled a new one

            sink.release.set()
            await asyncio.wait_for(sending, 30)
            await client.send_input(PayloadType.FLAG, flag_payload(PayloadFlag.TERMINATE_SESSION))
            await task_result(fake)
            assert await asyncio.wait_for(sink.received, 30) == (TOTAL, hashlib.sha256(payload).digest())
            assert fake.clients.empty()
    finally:
        await sink.close()
