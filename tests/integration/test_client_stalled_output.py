"""OpenSSM's client through the real gateway while whatever reads its stdout stops reading.

ssh stops reading its ProxyCommand when its own output is stuck (Ctrl-S, ``| less``). The client
must keep its data channel alive meanwhile: the gateway drops a peer that answers no ping (30 s,
then 15 s; 0.4 s and 0.2 s here). Once reading resumes, every byte arrives in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import threading

import aiohttp
import pytest
from tests.integration.test_gateway_sessions import SID, open_agent_data, output, session_with_heartbeat
from tests.support.gateway import next_frame

from openssm.client.api import StartedSession
from openssm.client.output import Console
from openssm.client.session import ClientOptions, run_session, starting_message
from openssm.protocol.frames import MessageType
from openssm.transport import websocket_connection

CHUNK = 64 * 1024
TOTAL = 48 * 1024 * 1024  # far more than the client, the gateway and the kernel hold between them


async def keep_answering(agent: aiohttp.ClientWebSocketResponse) -> None:
    """The fake agent reads its socket (so aiohttp answers the gateway's pings); acks are ignored."""
    with contextlib.suppress(aiohttp.ClientError, ConnectionError):
        async for _ in agent:
            pass


async def test_a_client_whose_stdout_stops_being_read_keeps_its_session(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(websocket_connection, "PAUSED_PING_INTERVAL", 0.1)  # within the heartbeat
    payload = os.urandom(TOTAL)
    expected = starting_message(SID).encode() + payload
    stdout_read, stdout_write = os.pipe()
    stdin_read, stdin_write = os.pipe()
    received = bytearray()
    async with session_with_heartbeat(tmp_path, 0.4) as (gateway, control, token):
        stream_url = gateway.url(f"/v1/data-channel/{SID}?role=publish_subscribe")
        console = Console(open(stdout_write, "wb", closefd=False), high_water=1024 * 1024)
        options = ClientOptions(console=console, stdin_fd=stdin_read)
        client = asyncio.create_task(run_session(StartedSession(SID, token, stream_url), options))
        try:
            assert (await next_frame(control)).message_type == MessageType.INTERACTIVE_SHELL
            agent = await open_agent_data(gateway, SID)
            await gateway.wait_status(SID, "Connected")
            answering = asyncio.create_task(keep_answering(agent))

            async def send_output() -> None:
                for seq, start in enumerate(range(0, TOTAL, CHUNK)):
                    await agent.send_bytes(output(seq, payload[start : start + CHUNK]).encode())

            sending = asyncio.create_task(send_output())
            await asyncio.sleep(3.0)  # nobody reads stdout: over seven heartbeats
            assert not client.done()
            assert not sending.done()  # held back all the way to the agent
            assert (await gateway.session_row(SID)).status == "Connected"

            def read_stdout() -> None:
                while len(received) < len(expected) and (chunk := os.read(stdout_read, 1 << 20)):
                    received.extend(chunk)

            reader = threading.Thread(target=read_stdout, daemon=True)
            reader.start()
            await asyncio.wait_for(sending, 30)
            await asyncio.to_thread(reader.join, 30)
            assert bytes(received) == expected
            os.close(stdin_write)  # stdin EOF ends a shell session
            stdin_write = -1
            assert await asyncio.wait_for(client, 10) == 0
            answering.cancel()
        finally:
            client.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await client
            for fd in (stdout_read, stdout_write, stdin_read, stdin_write):
                if fd >= 0:
                    os.close(fd)
