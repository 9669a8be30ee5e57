"""smux throughput, measured side by side in one run and printed as ratios.

* codec: encoding and incremental decoding of 32 KiB PSH frames (pure, no I/O);
* sessions: two sans-I/O SmuxSessions moving data with no transport at all;
* mux: two asyncio MuxSessions over a local socket pair, 1 and 8 streams, v1 and v2,
  against the same socket pair carrying the same bytes raw (the ceiling).

Usage: .venv/bin/python bench/bench_smux.py [--megabytes 64]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from collections.abc import Awaitable, Callable

from openssm.protocol.smux import Command, FrameParser, SmuxConfig, SmuxSession, encode_frame
from openssm.transport.mux import MuxSession, joined

CHUNK = 65536


def rate(total: int, seconds: float) -> float:
    return total / seconds / 1e6


def bench_codec(total: int) -> tuple[float, float]:
    payload = bytes(32768)
    count = total // len(payload)
    start = time.perf_counter()
    wire = b"".join(encode_frame(1, Command.PSH, 3, payload) for _ in range(count))
    encode_rate = rate(count * len(payload), time.perf_counter() - start)
    parser = FrameParser(1)
    start = time.perf_counter()
    decoded = 0
    for offset in range(0, len(wire), CHUNK):
        decoded += sum(len(frame.data) for frame in parser.feed(wire[offset : offset + CHUNK]))
    decode_rate = rate(decoded, time.perf_counter() - start)
    assert decoded == count * len(payload)
    return encode_rate, decode_rate


def bench_sessions(total: int, version: int) -> float:
    config = SmuxConfig(version=version)
    client, server = SmuxSession(is_client=True, config=config), SmuxSession(is_client=False, config=config)
    sid = client.open_stream()
    data = bytes(CHUNK)
    moved = 0
    start = time.perf_counter()
    while moved < total:
        client.write(sid, data)
        server.receive(client.data_to_send())
        while chunk := server.read(sid, CHUNK):
            moved += len(chunk)
        client.receive(server.data_to_send())
    return rate(moved, time.perf_counter() - start)


async def socket_pair() -> tuple[
    asyncio.StreamReader, asyncio.StreamWriter, asyncio.StreamReader, asyncio.StreamWriter
]:
    left, right = socket.socketpair()
    left_reader, left_writer = await asyncio.open_connection(sock=left)
    right_reader, right_writer = await asyncio.open_connection(sock=right)
    return left_reader, left_writer, right_reader, right_writer


async def bench_raw(total: int) -> float:
    _, writer, reader, other_writer = await socket_pair()
    data = bytes(CHUNK)

    async def send() -> None:
        for _ in range(total // CHUNK):
            writer.write(data)
            await writer.drain()

    start = time.perf_counter()
    sending = asyncio.create_task(send())
    received = 0
    while received < total:
        received += len(await reader.read(CHUNK))
    await sending
    seconds = time.perf_counter() - start
    writer.close()
    other_writer.close()
    return rate(received, seconds)


def sender(writer: asyncio.StreamWriter) -> Callable[[bytes], Awaitable[None]]:
    async def send(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    return send


async def pump(reader: asyncio.StreamReader, session: MuxSession) -> None:
    while data := await reader.read(CHUNK):
        await session.wait_receive_capacity()
        session.feed(data)


async def bench_mux(total: int, version: int, streams: int) -> float:
    client_reader, client_writer, server_reader, server_writer = await socket_pair()
    client = MuxSession(joined(sender(client_writer)), is_client=True, version=version, max_send_size=CHUNK)
    server = MuxSession(joined(sender(server_writer)), is_client=False, version=version, max_send_size=CHUNK)
    pumps = [
        asyncio.create_task(pump(client_reader, client)),
        asyncio.create_task(pump(server_reader, server)),
    ]
    per_stream = total // streams // CHUNK * CHUNK
    data = bytes(CHUNK)

    async def send() -> None:
        stream = await client.open_stream()
        for _ in range(per_stream // CHUNK):
            await stream.write(data)
        await stream.close()

    async def receive() -> int:
        stream = await server.accept_stream()
        received = 0
        while chunk := await stream.read(CHUNK):
            received += len(chunk)
        return received

    start = time.perf_counter()
    senders = [asyncio.create_task(send()) for _ in range(streams)]
    received = sum(await asyncio.gather(*(receive() for _ in range(streams))))
    await asyncio.gather(*senders)
    seconds = time.perf_counter() - start
    assert received == per_stream * streams
    client.close()
    server.close()
    client_writer.close()
    server_writer.close()
    for task in pumps:
        task.cancel()
    return rate(received, seconds)


async def main(megabytes: int, rounds: int) -> None:
    total = megabytes * 1024 * 1024
    # Rounds interleave the measurements so load from other processes hits all alike; best of each.
    best: dict[str, float] = {}

    def keep(label: str, value: float) -> None:
        best[label] = max(best.get(label, 0.0), value)

    for _ in range(rounds):
        encode_rate, decode_rate = bench_codec(total)
        keep("codec encode", encode_rate)
        keep("codec decode", decode_rate)
        for version in (1, 2):
            keep(f"sessions v{version} (no I/O)", bench_sessions(total, version))
        keep("raw socket pair", await bench_raw(total))
        for version in (1, 2):
            for streams in (1, 8):
                label = f"mux v{version}, {streams} stream{'s' if streams > 1 else ''}"
                keep(label, await bench_mux(total, version, streams))
    raw = best["raw socket pair"]
    print(f"{megabytes} MiB per measurement, best of {rounds} rounds")
    for label, value in best.items():
        print(f"{label:<22} {value:9.1f} MB/s   {value / raw:6.2f} x raw socket pair")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megabytes", type=int, default=64, help="data moved per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions (the best is kept)")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.megabytes, arguments.rounds))
