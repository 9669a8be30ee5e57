"""Gateway relay cost, measured side by side in one run.

A fake agent pushes N output_stream_data frames (1 KiB payloads, the agent's chunk size) to a fake
client through the gateway; the client acks each and the agent keeps a window of W frames in
flight. Beside it, the same two programs talk through a bare aiohttp WebSocket forwarder (no
auth, no sessions, no taps): the cost of one WebSocket hop and nothing else.

Run: `.venv/bin/python bench/bench_gateway_relay.py [--frames N] [--window W]`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pathlib
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tests.support.gateway import running_gateway

from openssm.gateway.settings import GatewaySettings
from openssm.protocol.frames import FLAG_SYN, Frame, MessageType, PayloadType, ack_for, decode
from openssm.protocol.messages import AgentDataOpen, ClientOpen, ControlOpen

IID = "i-0123456789abcdef0"
SID = "bench-00000000000000001"
PAYLOAD = b"x" * 1024


async def pump(
    agent: aiohttp.ClientWebSocketResponse,
    client: aiohttp.ClientWebSocketResponse,
    frames: int,
    window: int,
    counts: Callable[[Frame], bool] = lambda frame: True,
) -> float:
    """Agent sends, client acks every output frame it gets and stops after ``frames`` of them that
    ``counts`` (bench_join_relay leaves out the gateway's own lines), agent waits for acks beyond
    the window. Returns seconds."""
    encoded = [
        Frame(
            MessageType.OUTPUT_STREAM_DATA, seq, FLAG_SYN if seq == 0 else 0, PayloadType.OUTPUT, PAYLOAD
        ).encode()
        for seq in range(frames)
    ]
    acked = 0

    async def client_side() -> None:
        seen = 0
        while seen < frames:
            frame = decode((await client.receive()).data)
            if frame.message_type == MessageType.OUTPUT_STREAM_DATA:
                seen += counts(frame)
                await client.send_bytes(ack_for(frame).encode())

    async def agent_side() -> None:
        nonlocal acked
        sent = 0
        while acked < frames:
            while sent < frames and sent - acked < window:
                await agent.send_bytes(encoded[sent])
                sent += 1
            msg = await agent.receive()
            if msg.type is aiohttp.WSMsgType.BINARY:
                acked += 1

    start = time.perf_counter()
    await asyncio.gather(client_side(), agent_side())
    return time.perf_counter() - start


@contextlib.asynccontextmanager
async def connected_session(
    settings: GatewaySettings,
) -> AsyncIterator[tuple[Any, aiohttp.ClientWebSocketResponse, aiohttp.ClientWebSocketResponse]]:
    """A gateway with one shell session, its fake agent and client connected: (gateway, agent, client)."""
    with tempfile.TemporaryDirectory() as directory:
        async with running_gateway(pathlib.Path(directory), settings=settings) as gw:
            await gw.add_instance(IID)
            await gw.add_agent_user()
            await gw.add_session(SID, IID)
            token = await gw.channel_token(f"/v1/control-channel/{IID}")
            control = await gw.agent_socket(f"/v1/control-channel/{IID}?role=subscribe&stream=input")
            await control.send_str(ControlOpen(token_value=token).to_text())
            while IID not in gw.node.controls:
                await asyncio.sleep(0.01)
            client = await gw.client_socket(SID)
            await client.send_str(ClientOpen(token_value=await gw.add_token("client", SID)).to_text())
            await control.receive()  # interactive_shell
            data_token = await gw.channel_token(f"/v1/data-channel/{SID}")
            agent = await gw.agent_socket(f"/v1/data-channel/{SID}?role=publish_subscribe")
            await agent.send_str(AgentDataOpen(token_value=data_token, client_instance_id=IID).to_text())
            await gw.wait_status(SID, "Connected")
            yield gw, agent, client


async def through_gateway(frames: int, window: int) -> float:
    async with connected_session(GatewaySettings(ws_heartbeat=300)) as (_gw, agent, client):
        return await pump(agent, client, frames, window)


async def through_bare_forwarder(frames: int, window: int) -> float:
    peers: dict[str, web.WebSocketResponse] = {}
    both = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        role = request.query["role"]
        peers[role] = ws
        if len(peers) == 2:
            both.set()
        await both.wait()
        other = peers["client" if role == "agent" else "agent"]
        async for msg in ws:
            await other.send_bytes(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            agent = await http.ws_connect(server.make_url("/?role=agent"))
            client = await http.ws_connect(server.make_url("/?role=client"))
            await both.wait()
            return await pump(agent, client, frames, window)
    finally:
        await server.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args()
    gateway = await through_gateway(args.frames, args.window)
    bare = await through_bare_forwarder(args.frames, args.window)
    print(f"Relay of {args.frames} x 1 KiB output frames, each acked, window {args.window}")
    print(
        f"  gateway          {args.frames / gateway:10.0f} frames/s  {args.frames * 1024 / gateway / 1e6:6.1f} MB/s"
    )
    print(
        f"  bare forwarder   {args.frames / bare:10.0f} frames/s  {args.frames * 1024 / bare / 1e6:6.1f} MB/s"
    )
    print(f"  ratio gateway/bare throughput  {bare / gateway:.2f} (1.00 = no cost beyond the hop)")


if __name__ == "__main__":
    asyncio.run(main())
