"""Session latency, measured side by side in one run.

1. StartSession → first prompt byte through OpenSSM (API + gateway + agent PTY), beside the time
   `ssh` takes to log in to a local sshd and run `true` (when OpenSSH is installed).
2. Keystroke echo round trip (p50/p99) through client → gateway → agent PTY, beside the same
   keystrokes echoed by a direct local PTY.

Run: `.venv/bin/python bench/bench_session_latency.py [--sessions N] [--keys N]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import pty
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import aiohttp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tests.e2e.harness import Agent, Server
from tests.support.sshd import run_sshd, sshd_available

from openssm.protocol.channel import StreamEndpoint
from openssm.protocol.frames import MessageType, PayloadType, decode


class BenchClient:
    """The smallest correct data-channel client: open frame, acks, in-order delivery."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.endpoint = StreamEndpoint(MessageType.INPUT_STREAM_DATA, syn_on_first=False)
        self.output: asyncio.Queue[bytes] = asyncio.Queue()

    async def pump(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.BINARY:
                continue
            frame = decode(message.data)
            if frame.message_type == MessageType.ACKNOWLEDGE:
                self.endpoint.on_ack(frame)
            elif frame.message_type == MessageType.OUTPUT_STREAM_DATA:
                received = self.endpoint.receive(frame)
                if received.ack is not None:
                    await self.ws.send_bytes(received.ack.encode())
                for item in received.deliver:
                    if item.payload_type == PayloadType.OUTPUT:
                        self.output.put_nowait(item.payload)
            elif frame.message_type == MessageType.CHANNEL_CLOSED:
                break

    async def send(self, payload_type: int, payload: bytes) -> None:
        await self.ws.send_bytes(self.endpoint.send(payload_type, payload))

    async def wait_for(self, needle: bytes, timeout: float = 10.0) -> None:
        seen = b""
        async with asyncio.timeout(timeout):
            while needle not in seen:
                seen = (seen + await self.output.get())[-4096:]


async def openssm_session(
    server: Server, instance_id: str
) -> tuple[float, BenchClient, asyncio.Task[None], aiohttp.ClientSession]:
    ssm = server.client("ssm")
    started = time.perf_counter()
    response = await asyncio.to_thread(ssm.start_session, Target=instance_id)
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(response["StreamUrl"])
    await ws.send_str(
        json.dumps(
            {
                "MessageSchemaVersion": "1.0",
                "RequestId": str(uuid.uuid4()),
                "TokenValue": response["TokenValue"],
                "ClientId": str(uuid.uuid4()),
                "ClientVersion": "1.2.677.0",
            }
        )
    )
    client = BenchClient(ws)
    pump = asyncio.create_task(client.pump())
    await client.output.get()  # first prompt byte(s)
    first_byte = time.perf_counter() - started
    await client.send(PayloadType.SIZE, b'{"cols":80,"rows":24}')
    return first_byte, client, pump, http


async def echo_rtts_openssm(client: BenchClient, keys: int) -> list[float]:
    await client.send(PayloadType.OUTPUT, b"stty -icanon; cat\r")
    await asyncio.sleep(0.5)
    while not client.output.empty():
        client.output.get_nowait()
    samples = []
    for i in range(keys):
        key = bytes([ord("a") + i % 26])
        start = time.perf_counter()
        await client.send(PayloadType.OUTPUT, key)
        await client.wait_for(key)
        samples.append(time.perf_counter() - start)
    await client.send(PayloadType.OUTPUT, b"\x03")
    return samples


def echo_rtts_local_pty(keys: int) -> list[float]:
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("sh", ["sh", "-c", "stty -icanon; exec cat"])
    time.sleep(0.3)
    samples = []
    try:
        for i in range(keys):
            key = bytes([ord("a") + i % 26])
            start = time.perf_counter()
            os.write(fd, key)
            seen = b""
            while key not in seen:
                seen += os.read(fd, 1024)
            samples.append(time.perf_counter() - start)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)
    return samples


def ssh_login_times(workdir: pathlib.Path, count: int) -> list[float] | None:
    if not sshd_available():
        return None
    times = []
    with run_sshd(workdir) as sshd:
        for _ in range(count):
            start = time.perf_counter()
            subprocess.run([*sshd.ssh_argv(f"{sshd.user}@127.0.0.1", "true")], check=True)
            times.append(time.perf_counter() - start)
    return times


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        server = Server(root / "server").start()
        agent = Agent(server, root / "agent")
        try:
            instance_id = agent.register()
            agent.start()
            first_bytes = []
            rtts: list[float] = []
            for i in range(args.sessions):
                first_byte, client, pump, http = await openssm_session(server, instance_id)
                first_bytes.append(first_byte)
                if i == 0:
                    rtts = await echo_rtts_openssm(client, args.keys)
                await client.send(PayloadType.OUTPUT, b"exit\r")
                await asyncio.wait_for(pump, 10)
                await http.close()
            local = echo_rtts_local_pty(args.keys)
            ssh = ssh_login_times(root / "sshd", args.sessions)
        finally:
            agent.stop()
            server.stop()

    print(f"StartSession → first prompt byte (median of {len(first_bytes)})")
    openssm_first = statistics.median(first_bytes)
    print(f"  openssm            {openssm_first * 1000:8.1f} ms")
    if ssh:
        ssh_median = statistics.median(ssh)
        print(f"  ssh localhost true {ssh_median * 1000:8.1f} ms")
        print(f"  ratio openssm/ssh  {openssm_first / ssh_median:8.2f}x")
    else:
        print("  ssh: OpenSSH not installed; no comparison")
    print(f"Keystroke echo round trip ({args.keys} keys)")
    print(f"  openssm   p50 {pct(rtts, 0.5) * 1000:7.2f} ms   p99 {pct(rtts, 0.99) * 1000:7.2f} ms")
    print(f"  local pty p50 {pct(local, 0.5) * 1000:7.2f} ms   p99 {pct(local, 0.99) * 1000:7.2f} ms")
    print(
        f"  ratio p50 {pct(rtts, 0.5) / pct(local, 0.5):7.1f}x   p99 {pct(rtts, 0.99) / pct(local, 0.99):7.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--keys", type=int, default=200)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
