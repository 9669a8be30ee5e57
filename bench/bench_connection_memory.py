"""What one idle WebSocket costs a server process, by how it is framed and carried (issue 16's memory
per idle agent, taken apart).

A server process (the event loop and allocator settings of ``openssm.transport.runtime`` unless a
variant says otherwise) accepts ``--connections`` WebSockets from a client process; each client sends
one small text frame and then idles. The server's RSS growth divided by the connections is printed
per variant, side by side, over ``--repeat`` rounds (median and range):

- ``aiohttp``: aiohttp's ``WebSocketResponse`` with the gateway's control-channel settings;
- ``own-4k`` / ``own-64k``: :mod:`openssm.transport.websocket_connection` after aiohttp's upgrade,
  with a 4 KiB or a 64 KiB read buffer (data channels use 64 KiB);
- ``tls``: ``aiohttp`` over TLS as ``openssm server`` runs it: uvloop, the tuned allocator, and
  :mod:`openssm.transport.tls_listener` (the standard library's TLS protocol, one shared read buffer);
- ``tls-uvloop``: the same with uvloop's own TLS (a 256 KiB read buffer per connection);
- ``tls-default-malloc``: ``tls-uvloop`` without ``tune_allocator`` (glibc's own mmap threshold);
- ``tls-asyncio``: ``tls`` on the standard asyncio loop.

Beside RSS, the C heap in use per connection (glibc's ``mallinfo2``, after ``malloc_trim``: what
OpenSSL, libuv and CPython's larger objects hold; tracemalloc sees none of OpenSSL's) and the Python
objects (``sys.getallocatedblocks``). ``--concurrency N`` opens the connections N at a time: the TLS
handshakes then overlap, and each one in progress holds about 46 KiB of OpenSSL's (a 21 KiB
handshake buffer, a 16.5 KiB record buffer, two 4 KiB buffering BIOs) that is freed when it ends,
between the connections' long-lived allocations (heap fragmentation RSS keeps).

Run: ``.venv/bin/python bench/bench_connection_memory.py`` (``--connections 2000 --repeat 3``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import pathlib
import resource
import ssl
import statistics
import subprocess
import sys
import tempfile
from typing import Final

ROOT: Final = pathlib.Path(__file__).resolve().parent.parent
VARIANTS: Final = (
    "aiohttp",
    "own-4k",
    "own-64k",
    "tls",
    "tls-uvloop",
    "tls-default-malloc",
    "tls-asyncio",
)

SERVER = """
import asyncio, os, sys
from aiohttp import web
from openssm.transport import runtime, tls_listener, websocket_connection

variant, certfile, keyfile = sys.argv[1], sys.argv[2], sys.argv[3]


import ctypes, gc


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    )]


libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2


def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def figures():
    gc.collect()
    runtime.release_free_memory()
    heap = libc.mallinfo2()
    return rss(), heap.uordblks + heap.hblkhd, sys.getallocatedblocks()


async def handler(request):
    if variant.startswith("own"):
        ws = await websocket_connection.accept(
            request, max_message=1 << 20, heartbeat=30.0, close_timeout=2.0,
            read_buffer=4096 if variant == "own-4k" else 65536,
        )
        async for _ in ws:
            pass
        await ws.close()
        return ws.response
    ws = web.WebSocketResponse(timeout=2.0, autoping=True, heartbeat=30.0, compress=False, max_msg_size=1 << 20)
    await ws.prepare(request)
    async for _ in ws:
        pass
    return ws


async def main():
    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    context = None
    if variant.startswith("tls"):
        import ssl
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certfile, keyfile)
    site = tls_listener.SharedBufferTLSSite if variant in ("tls", "tls-asyncio") else web.TCPSite
    await site(runner, "127.0.0.1", 0, ssl_context=context, backlog=4096).start()
    print(runner.addresses[0][1], flush=True)
    loop = asyncio.get_running_loop()
    base = None
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        await asyncio.sleep(1.0)
        if line.strip() == "base":
            base = figures()
            print("ok", flush=True)
        else:
            print(*(now - then for now, then in zip(figures(), base)), flush=True)


if variant == "tls-asyncio":
    asyncio.run(main())
elif variant == "tls-default-malloc":
    import uvloop
    uvloop.run(main())
else:
    runtime.run(main())
"""


def certificate(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    sys.path.insert(0, str(ROOT))
    from tests.support.tls import self_signed

    return self_signed(directory)


async def open_clients(port: int, count: int, tls: ssl.SSLContext | None, concurrency: int) -> list[object]:
    from openssm.transport import websocket_connection

    scheme = "wss" if tls else "ws"
    connections: list[object] = []
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            ws = await websocket_connection.dial(
                f"{scheme}://127.0.0.1:{port}/ws", max_message=1 << 20, tls=tls, read_buffer=4096
            )
            await ws.send_str('{"MessageSchemaVersion": "1.0"}')
            connections.append(ws)

    await asyncio.gather(*(one() for _ in range(count)))
    return connections


@dataclasses.dataclass
class Cost:
    """Per idle connection: server RSS and C heap in use (KiB), Python objects (blocks)."""

    rss: float
    heap: float
    blocks: float


def measure(variant: str, count: int, cert: pathlib.Path, key: pathlib.Path, concurrency: int) -> Cost:
    """What one idle connection costs the server, for one variant (one server process, fresh)."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
    )
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, variant, str(cert), str(key)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        port = int(server.stdout.readline())
        server.stdin.write("base\n")
        server.stdin.flush()
        server.stdout.readline()
        tls = None
        if variant.startswith("tls"):
            tls = ssl.create_default_context(cafile=str(cert))
            tls.check_hostname = False

        async def hold() -> list[int]:
            connections = await open_clients(port, count, tls, concurrency)
            server.stdin.write("measure\n")  # type: ignore[union-attr]
            server.stdin.flush()  # type: ignore[union-attr]
            grown = await asyncio.to_thread(server.stdout.readline)  # type: ignore[union-attr]
            for connection in connections:
                await connection.close()  # type: ignore[attr-defined]
            return [int(field) for field in grown.split()]

        rss, heap, blocks = asyncio.run(hold())
        return Cost(rss / count / 1024, heap / count / 1024, blocks / count)
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument(
        "--concurrency", type=int, default=1, help="connections opened at once (their handshakes overlap)"
    )
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.connections * 2 + 100)), hard))
    sys.path.insert(0, str(ROOT / "src"))
    figures: dict[str, list[Cost]] = {variant: [] for variant in args.variants}
    with tempfile.TemporaryDirectory(prefix="bench-connection-memory-") as tmp:
        cert, key = certificate(pathlib.Path(tmp))
        for _ in range(args.repeat):  # rounds alternate the variants
            for variant in args.variants:
                figures[variant].append(measure(variant, args.connections, cert, key, args.concurrency))
    base = statistics.median(cost.rss for cost in figures[args.variants[0]])
    print(
        f"\nServer per idle WebSocket, {args.connections} connections opened {args.concurrency} at a time,"
        f" {args.repeat} rounds (median, range): RSS; C heap in use; Python blocks"
    )
    for variant, costs in figures.items():
        rss = [cost.rss for cost in costs]
        median = statistics.median(rss)
        print(
            f"  {variant:<20} {median:6.1f} KiB ({min(rss):.1f} to {max(rss):.1f})"
            f"  {median / base:.2f}x {args.variants[0]}"
            f"; heap {statistics.median(cost.heap for cost in costs):5.1f} KiB"
            f"; {statistics.median(cost.blocks for cost in costs):4.0f} blocks"
        )


if __name__ == "__main__":
    main()
