"""Gateway relay cost, measured side by side in one run.

A fake agent pushes N output_stream_data frames (1 KiB payloads, the agent's chunk size) to a fake
client through the gateway; the client acks each and the agent keeps a window of W frames in
flight. Beside it, the same two programs talk through a bare aiohttp WebSocket forwarder (no
auth, no sessions, no taps): the cost of one WebSocket hop and nothing else.

Then keystroke echo through the gateway alone (the issue's target: p50 <= 0.5 ms, p99 <= 2 ms): the
fake client sends one input_stream_data byte, the fake agent acks it and answers it as output, the
client acks that; the round trip, ``--keys`` times, for ``--rounds`` rounds, the gateway and the bare
forwarder taking turns.

Run: `.venv/bin/python bench/bench_gateway_relay.py [--frames N] [--window W] [--keys N] [--rounds N]`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pathlib
import statistics
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
from tests.support.stats import percentile

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


async def echo(
    agent: aiohttp.ClientWebSocketResponse, client: aiohttp.ClientWebSocketResponse, keys: int
) -> list[float]:
    """Round trips of one keystroke: client input → agent (ack, echo as output) → client (ack)."""

    async def agent_side() -> None:
        seq = 0
        while seq < keys:
            frame = decode((await agent.receive()).data)
            if frame.message_type != MessageType.INPUT_STREAM_DATA:
                continue  # the client's acks of our output
            await agent.send_bytes(ack_for(frame).encode())
            flags = FLAG_SYN if seq == 0 else 0
            out = Frame(MessageType.OUTPUT_STREAM_DATA, seq, flags, PayloadType.OUTPUT, frame.payload)
            await agent.send_bytes(out.encode())
            seq += 1

    answering = asyncio.create_task(agent_side())
    samples: list[float] = []
    for seq in range(keys):
        started = time.perf_counter()
        await client.send_bytes(
            Frame(MessageType.INPUT_STREAM_DATA, seq, 0, PayloadType.OUTPUT, b"k").encode()
        )
        while True:
            frame = decode((await client.receive()).data)
            if frame.message_type == MessageType.OUTPUT_STREAM_DATA:
                break
        samples.append(time.perf_counter() - started)
        await client.send_bytes(ack_for(frame).encode())
    await answering
    return samples


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


async def echo_through_gateway(keys: int) -> list[float]:
    async with connected_session(GatewaySettings(ws_heartbeat=300)) as (_gw, agent, client):
        return await echo(agent, client, keys)


async def echo_through_bare_forwarder(keys: int) -> list[float]:
    async with bare_forwarder() as (agent, client):
        return await echo(agent, client, keys)


async def through_bare_forwarder(frames: int, window: int) -> float:
    async with bare_forwarder() as (agent, client):
        return await pump(agent, client, frames, window)


@contextlib.asynccontextmanager
async def bare_forwarder() -> AsyncIterator[
    tuple[aiohttp.ClientWebSocketResponse, aiohttp.ClientWebSocketResponse]
]:
    """Two WebSockets (agent, client) joined by a plain aiohttp forwarder."""
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
            yield agent, client
    finally:
        await server.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--keys", type=int, default=500, help="keystrokes per echo round (default 500)")
    parser.add_argument("--rounds", type=int, default=3, help="echo rounds (default 3)")
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
    rounds: dict[str, list[list[float]]] = {"gateway": [], "bare forwarder": []}
    for _ in range(args.rounds):
        rounds["gateway"].append(await echo_through_gateway(args.keys))
        rounds["bare forwarder"].append(await echo_through_bare_forwarder(args.keys))
    print(f"Keystroke echo, {args.keys} keys x {args.rounds} rounds (ms): median of the rounds [range]")
    for name, runs in rounds.items():
        p50s = [percentile(run, 0.5) * 1000 for run in runs]
        p99s = [percentile(run, 0.99) * 1000 for run in runs]
        print(
            f"  {name:<16} p50 {statistics.median(p50s):6.3f} [{min(p50s):.3f}-{max(p50s):.3f}]"
            f"   p99 {statistics.median(p99s):6.3f} [{min(p99s):.3f}-{max(p99s):.3f}]"
        )


if __name__ == "__main__":
    asyncio.run(main())
