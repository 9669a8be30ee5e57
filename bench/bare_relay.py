"""The cheapest relay Python can be: a yardstick for `bench_port_throughput.py`, not part of OpenSSM.

It accepts TCP connections and copies bytes both ways to a target: it reads straight into a
buffer (BufferedProtocol: no copy in user space) and hands that buffer to the other socket, with
back-pressure, and no framing, no parsing, no recording. It runs on the same event loop and
allocator settings as OpenSSM's processes (`openssm.transport.runtime.run`). Chaining three of these between the
checksum ends shows what any three-process Python design (client → gateway → agent) could reach on
this machine at best, so the gap between it and OpenSSM is what OpenSSM's own work costs.

Run: `python bench/bare_relay.py LISTEN_PORT TARGET_PORT` (prints "ready" once listening).

Known: on uvloop 0.23.0 this relay now and then aborts under the bench's 20 parallel streams (glibc:
"double free or corruption"), which the bench reports as a "3 bare relays, 20 streams" transfer
closed early. The standard loop (`OPENSSM_EVENT_LOOP=asyncio`) does not; see DESIGN.md.
"""

from __future__ import annotations

import asyncio
import pathlib
import sys
from collections.abc import Callable
from typing import TypeVar, cast

# The yardstick is the same code on both sides of compare_port_throughput.py: the working tree's
# runtime, even when PYTHONPATH puts another revision's package first for the processes under test.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "src"))

from openssm.transport.runtime import run

READ_SIZE = 256 * 1024
P = TypeVar("P", bound=asyncio.BaseProtocol)
Q = TypeVar("Q", bound=asyncio.BaseProtocol)


class Passing(asyncio.BufferedProtocol):
    """A socket whose reads go to a peer's: while the peer's writes are held up, it reads nothing."""

    def peer_transport(self) -> asyncio.Transport | None:
        raise NotImplementedError

    def pause_writing(self) -> None:
        if (transport := self.peer_transport()) is not None:
            transport.pause_reading()

    def resume_writing(self) -> None:
        if (transport := self.peer_transport()) is not None:
            transport.resume_reading()


class Half(Passing):
    """One socket of a relayed pair; what it reads goes to ``peer``'s transport."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Half | None = None
        self.buffer = bytearray(READ_SIZE)
        self.pending: list[bytes] = []  # read before the other side was connected
        self.eof_pending = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buffer)

    def buffer_updated(self, nbytes: int) -> None:
        data = memoryview(self.buffer)[:nbytes]
        if self.peer is None or self.peer.transport is None:
            self.pending.append(bytes(data))
            return
        self.peer.transport.write(data)
        if self.peer.transport.get_write_buffer_size():
            # Queued, and the loop may hold on to our buffer (uvloop does): read into a new one.
            self.buffer = bytearray(READ_SIZE)

    def peer_transport(self) -> asyncio.Transport | None:
        return None if self.peer is None else self.peer.transport

    def eof_received(self) -> bool:
        if self.peer is None or self.peer.transport is None:
            self.eof_pending = True
        elif self.peer.transport.can_write_eof():
            self.peer.transport.write_eof()
        return True  # keep our own writing side open: the other direction may still be flowing

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


def pair(inbound: Half, outbound: Half) -> None:
    """The relay's two sockets are both connected: from now on each writes to the other."""
    assert outbound.transport is not None and inbound.transport is not None
    if inbound.transport.is_closing():
        outbound.transport.close()
        return
    outbound.peer, inbound.peer = inbound, outbound
    outbound.transport.writelines(inbound.pending)
    inbound.pending.clear()
    if inbound.eof_pending:
        outbound.transport.write_eof()


async def serve(
    listen_port: int,
    target_port: int,
    inbound: Callable[[], P],
    outbound: Callable[[], Q],
    paired: Callable[[P, Q], None],
) -> None:
    """Accept on ``listen_port`` (sockets made by ``inbound``), dial ``target_port`` for each
    (``outbound``), then ``paired`` joins the two; prints "ready" once listening."""
    loop = asyncio.get_running_loop()
    connecting: set[asyncio.Task[None]] = set()

    def accepted() -> P:
        near = inbound()

        async def connect() -> None:
            _, far = await loop.create_connection(outbound, "127.0.0.1", target_port)
            paired(near, far)

        task = loop.create_task(connect())
        connecting.add(task)
        task.add_done_callback(connecting.discard)
        return near

    server = await loop.create_server(accepted, "127.0.0.1", listen_port)
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    run(serve(int(sys.argv[1]), int(sys.argv[2]), Half, Half, pair))
