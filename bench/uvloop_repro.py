"""Smallest known reproducer of uvloop aborting a relay ("double free or corruption").

`bench/bare_relay.py` aborted now and then under uvloop 0.23.0 with 20 parallel streams (issue
15, "The event loop"). Cut down step by step, the abort needs only this: a plain `asyncio.Protocol`
relay that writes what it reads to the other socket and, on EOF, **half-closes** the other socket
(`transport.write_eof()`) while writes to it may still be queued, with about 20 connections at
once. Everything else in the bare relay turned out not to matter: `BufferedProtocol` and views of
its buffer (copies crash too, only later), reusing buffers, flow control (`pause_reading` from
`pause_writing`), closing the peer in `connection_lost`, glibc's allocator thresholds. Closing
instead of half-closing (`--no-write-eof`) did not abort in 3 x 60 rounds, nor did the standard
loop, nor 5 streams at once. Measured on the shared 2-core VM with uvloop 0.23.0 and CPython 3.11.7:
in most runs the abort came within 60 rounds (in round 1 to 50); not in every run.

The driver runs the relay as a child process and pushes rounds of parallel two-way transfers
through it (threads on plain sockets; each side sends, half-closes, and reads to EOF), checking
after every round that the child is alive; it stops at the first crash and prints the signal and
the child's last words, or says that it did not crash. OpenSSM's own processes half-close local
sockets the same way (`transport.mux`, `TcpConnection.write_eof`), so `bench/soak_relay.py` soaks
them with the same load.

Run: `.venv/bin/python bench/uvloop_repro.py [--loop uvloop|asyncio] [--streams 20] [--mib 8]
[--rounds 100] [--no-write-eof]`. Prints one line: `CRASHED …` (exit status 1) or `no crash …`.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import cast

# -- the relay (child process) ----------------------------------------------------------------------


class Half(asyncio.Protocol):
    """One socket of a relayed pair."""

    def __init__(self, write_eof: bool) -> None:
        self.write_eof = write_eof
        self.transport: asyncio.Transport | None = None
        self.peer: Half | None = None
        self.pending: list[bytes] = []  # read before the other side was connected
        self.eof_pending = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.peer is None or self.peer.transport is None:
            self.pending.append(data)
        else:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        if self.peer is None or self.peer.transport is None:
            self.eof_pending = True
        else:
            self.forward_eof()
        return self.write_eof  # half-closing: keep our own writing side open

    def forward_eof(self) -> None:
        assert self.peer is not None and self.peer.transport is not None
        if self.write_eof:
            self.peer.transport.write_eof()  # the call the abort needs
        else:
            self.peer.transport.close()


async def link(inbound: Half, target_port: int, write_eof: bool) -> None:
    """Dial the target for an accepted connection and join the two."""
    loop = asyncio.get_running_loop()
    _, outbound = await loop.create_connection(lambda: Half(write_eof), "127.0.0.1", target_port)
    outbound.peer, inbound.peer = inbound, outbound
    # Either side may have read before the pair was linked (uvloop reads a new outbound
    # connection before create_connection returns).
    for side in (inbound, outbound):
        assert side.peer is not None and side.peer.transport is not None
        side.peer.transport.writelines(side.pending)
        side.pending.clear()
        if side.eof_pending:
            side.forward_eof()


async def relay(listen_port: int, target_port: int, write_eof: bool) -> None:
    async with asyncio.TaskGroup() as links:

        def accepted() -> Half:
            inbound = Half(write_eof)
            links.create_task(link(inbound, target_port, write_eof))
            return inbound

        async with await asyncio.get_running_loop().create_server(
            accepted, "127.0.0.1", listen_port
        ) as server:
            print("ready", flush=True)
            await server.serve_forever()


def run_relay(args: argparse.Namespace) -> None:
    # The driver holds our stdin open: when it goes (even killed), we go too.
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(relay(args.listen, args.target, not args.no_write_eof))
    else:
        asyncio.run(relay(args.listen, args.target, not args.no_write_eof))


# -- the driver -------------------------------------------------------------------------------------


class Source:
    """The far end: for each connection, sends SIZE bytes and reads until EOF."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = self.listener.getsockname()[1]
        self.block = os.urandom(1 << 20)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            drain = threading.Thread(target=_drain, args=(conn,), daemon=True)
            drain.start()
            _send_then_eof(conn, self.size, self.block)
            drain.join()


def _send(sock: socket.socket, size: int, block: bytes) -> None:
    sent = 0
    while sent < size:
        sock.sendall(block[: min(len(block), size - sent)])
        sent += min(len(block), size - sent)


def _send_then_eof(sock: socket.socket, size: int, block: bytes) -> None:
    with contextlib.suppress(OSError):
        _send(sock, size, block)
        sock.shutdown(socket.SHUT_WR)


def _drain(sock: socket.socket) -> int:
    total = 0
    with contextlib.suppress(OSError):
        while data := sock.recv(1 << 18):
            total += len(data)
    return total


def one_stream(port: int, size: int, block: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sender = threading.Thread(target=_send_then_eof, args=(sock, size, block))
        sender.start()
        received = _drain(sock)
        sender.join()
        return received


def start_relay(args: argparse.Namespace, listen: int, target: int) -> subprocess.Popen[str]:
    argv = [
        sys.executable,
        __file__,
        "--relay",
        "--loop",
        args.loop,
        "--listen",
        str(listen),
        "--target",
        str(target),
    ]
    argv += ["--no-write-eof"] if args.no_write_eof else []
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"relay did not start: {proc.stderr.read() if proc.stderr else ''}")
    return proc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def describe(proc: subprocess.Popen[str]) -> str:
    code = proc.wait(5)
    what = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
    stderr = proc.stderr.read() if proc.stderr else ""
    return f"{what}; stderr: {stderr.strip()[-300:]!r}"


def drive(args: argparse.Namespace) -> int:
    size = args.mib << 20
    source = Source(size)
    relays: list[subprocess.Popen[str]] = []
    target = source.port
    for _ in range(args.relays):
        listen = free_port()
        relays.append(start_relay(args, listen, target))
        target = listen
    block = os.urandom(1 << 20)
    started = time.monotonic()
    try:
        for round_number in range(1, args.rounds + 1):
            with concurrent.futures.ThreadPoolExecutor(args.streams) as pool:
                jobs = [pool.submit(one_stream, target, size, block) for _ in range(args.streams)]
                results = []
                for job in jobs:
                    with contextlib.suppress(OSError):
                        results.append(job.result(120))
            dead = [(index, proc) for index, proc in enumerate(relays) if proc.poll() is not None]
            if dead:
                index, proc = dead[0]
                print(
                    f"CRASHED: relay {index + 1} of {args.relays} ({args.loop}) in round {round_number}"
                    f" after {time.monotonic() - started:.0f} s: {describe(proc)}"
                )
                return 1
            short = sum(1 for received in results if received != size)
            if short:
                print(f"round {round_number}: {short} streams short (relay alive)", flush=True)
        print(
            f"no crash: {args.rounds} rounds of {args.streams} streams x {args.mib} MiB each way through"
            f" {args.relays} relay(s) on {args.loop} in {time.monotonic() - started:.0f} s"
        )
        return 0
    finally:
        for proc in relays:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--relays", type=int, default=1)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--mib", type=int, default=8, help="each way, per stream")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--no-write-eof", action="store_true", help="close the other socket on EOF instead")
    parser.add_argument("--relay", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--listen", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--target", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.relay:
        run_relay(args)
    else:
        sys.exit(drive(args))


if __name__ == "__main__":
    main()
