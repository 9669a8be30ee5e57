"""A fault-injecting TCP proxy for tests and benches: real faults between two real processes.

Put it where one process dials another (a server's ``--public-url``, an agent's endpoint) and,
on command, it:

* **resets** connections (RST to both ends: ``SO_LINGER`` 0, then close);
* **black-holes** them: forwards nothing either way and closes nothing, for N seconds or until
  told; bytes already sent wait in the kernel's buffers (TCP back-pressure), as they would behind
  a dead link that comes back;
* **half-closes** one direction (a FIN towards one end, the other direction still flows);
* **throttles** each direction to a byte rate, writes **one byte at a time** (one segment each:
  ``TCP_NODELAY``), or **delays** every chunk by ``delay ± jitter`` seconds, keeping the order;
* **refuses** new connections (the listening socket is closed: dials get ECONNREFUSED, as from a
  server that is down) and accepts again on the same port;
* counts the bytes forwarded each way, per connection and in all, and when the last byte went.

Each accepted connection is a :class:`Link` named by the path of the latest HTTP request line the
dialling end sent before the connection was upgraded (``/v1/data-channel/…``,
``/v1/control-channel/…``; a kept-alive connection may carry a REST call first), so a fault can
hit only a data channel while the control channel on the same proxy lives on (``match``: a
substring of the path; ``None`` is every link).

:class:`FaultProxy` is the asyncio core; :class:`ProxyThread` runs one on an event loop thread of
its own with a blocking API, for tests and benches that drive real processes synchronously.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import itertools
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, Literal, TypeVar

T = TypeVar("T")

READ_SIZE: Final = 256 * 1024
QUEUE_LIMIT: Final = 8 * 1024 * 1024  # bytes read but not yet written, per direction of a link
RATE_SLICE: Final = 0.02  # a throttled direction writes at most this many seconds' worth at once
REQUEST_LINE: Final = re.compile(rb"^[A-Z]+ (\S+) HTTP/1\.[01]\r\n")

Direction = Literal["up", "down"]  # up: dialling end → target; down: target → dialling end
Side = Literal["client", "server"]  # the dialling end of a link, or the target it reaches


@dataclasses.dataclass
class Shaping:
    """What every link does to the bytes it forwards, read again for every chunk (so a change
    applies to connections already open)."""

    rate: float | None = None  # bytes per second, per direction of a link
    one_byte: bool = False  # one write (one TCP segment) per byte
    delay: float = 0.0  # seconds added to every chunk ...
    jitter: float = 0.0  # ... ± up to this, uniformly, never reordering


@dataclasses.dataclass
class Counts:
    up: int = 0
    down: int = 0
    last_up: float = 0.0  # time.monotonic() of the last byte forwarded that way (0: none yet)
    last_down: float = 0.0
    writes_up: int = 0  # writes to the sockets (one-byte mode: one per byte)
    writes_down: int = 0

    def add(self, direction: Direction, count: int, now: float) -> None:
        if direction == "up":
            self.up += count
            self.last_up = now
            self.writes_up += 1
        else:
            self.down += count
            self.last_down = now
            self.writes_down += 1


@dataclasses.dataclass(frozen=True)
class LinkInfo:
    """A snapshot of one link for callers on other threads."""

    id: int
    path: str
    up: int
    down: int
    open: bool
    blackholed: bool


_EOF: Final = b""


class _Pipe:
    """One direction of a link: a reader task fills a byte-bounded queue of (due time, chunk), a
    writer task empties it, honouring the black-hole gate and the shaping."""

    def __init__(
        self,
        link: Link,
        direction: Direction,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.link = link
        self.direction = direction
        self.reader = reader
        self.writer = writer
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.queued = 0
        self.changed = asyncio.Event()
        self.last_due = 0.0
        self.stopped = False  # half-closed: nothing more is read or written this way

    def wake(self) -> None:
        self.changed.set()

    async def _wait_change(self) -> None:
        self.changed.clear()
        await self.changed.wait()

    async def read_loop(self) -> None:
        proxy = self.link.proxy
        loop = asyncio.get_running_loop()
        while not self.stopped:
            while self.link.blackholed or self.queued >= QUEUE_LIMIT:
                await self._wait_change()
                if self.stopped:
                    return
            data = await self.reader.read(READ_SIZE)
            if self.link.http:
                self.link.saw(self.direction, data)
            shaping = proxy.shaping
            now = loop.time()
            due = now
            if shaping.delay or shaping.jitter:
                due = now + max(0.0, shaping.delay + random.uniform(-shaping.jitter, shaping.jitter))
            self.last_due = due = max(due, self.last_due)  # delay never reorders
            self.queue.append((due, data))
            self.queued += len(data)
            self.wake()
            if not data:
                return

    async def write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while (not self.queue or self.link.blackholed) and not self.stopped:
                await self._wait_change()
            if self.stopped:
                return
            due, data = self.queue[0]
            if due > loop.time():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(due - loop.time()):
                        await self._wait_change()  # woken early by a black-hole or reset
                continue
            if data is _EOF or not data:
                self.queue.popleft()
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                return
            sent = await self._write_shaped(data)
            if sent == len(data):
                self.queue.popleft()
            else:
                self.queue[0] = (due, data[sent:])
            self.queued -= sent
            self.wake()

    async def _write_shaped(self, data: bytes) -> int:
        """Write some of ``data`` as the shaping allows; returns how much went (stops early for a
        black-hole or a change of shaping)."""
        proxy = self.link.proxy
        shaping = proxy.shaping
        if shaping.one_byte:
            sent = 0
            while sent < len(data) and proxy.shaping.one_byte and not self.link.blackholed:
                self.writer.write(data[sent : sent + 1])
                await self.writer.drain()
                self._count(1)
                sent += 1
                await asyncio.sleep(0)  # one segment per byte, and let the other direction run
            return sent
        if shaping.rate:
            piece = data[: max(1, int(shaping.rate * RATE_SLICE))]
            self.writer.write(piece)
            await self.writer.drain()
            self._count(len(piece))
            await asyncio.sleep(len(piece) / shaping.rate)
            return len(piece)
        self.writer.write(data)
        await self.writer.drain()
        self._count(len(data))
        return len(data)

    def _count(self, count: int) -> None:
        now = time.monotonic()
        self.link.counts.add(self.direction, count, now)
        self.link.proxy.counts.add(self.direction, count, now)


class Link:
    """One proxied connection: the dialling end (``client``) and our connection to the target."""

    def __init__(self, proxy: FaultProxy, link_id: int) -> None:
        self.proxy = proxy
        self.id = link_id
        self.path: str | None = None  # None until the dialling end's first bytes are seen
        self.http = True  # until a 101 answer: HTTP/1.1 requests, which may follow one another
        self.counts = Counts()
        self.blackholed = False
        self.closed = asyncio.Event()
        self.pipes: list[_Pipe] = []
        self.writers: dict[Side, asyncio.StreamWriter] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def saw(self, direction: Direction, chunk: bytes) -> None:
        """Name the link by its latest request line (a kept-alive connection can carry several
        requests, the last of them an upgrade), until the target answers 101."""
        if direction == "down":
            self.http = not chunk.startswith(b"HTTP/1.1 101")
            return
        match = REQUEST_LINE.match(chunk)
        if match or self.path is None:
            self.path = match.group(1).decode("latin-1") if match else ""
            self.proxy.link_named()

    def matches(self, pattern: str | None) -> bool:
        return pattern is None or (self.path is not None and pattern in self.path)

    def set_blackholed(self, value: bool) -> None:
        self.blackholed = value
        for pipe in self.pipes:
            pipe.wake()

    def reset(self) -> None:
        """RST to both ends: a zero linger turns close() into an abortive close."""
        for writer in self.writers.values():
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self._stop()

    def half_close(self, towards: Side) -> None:
        """A FIN towards one end; what that end sends still flows the other way."""
        pipe = self.pipes[0 if towards == "server" else 1]
        pipe.stopped = True
        pipe.wake()
        writer = self.writers[towards]
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()

    def _stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.closed.set()

    def info(self) -> LinkInfo:
        return LinkInfo(
            self.id,
            self.path or "",
            self.counts.up,
            self.counts.down,
            not self.closed.is_set(),
            self.blackholed,
        )

    async def run(self) -> None:
        up, down = self.pipes
        self.tasks = [
            asyncio.create_task(self._guard(up.read_loop())),
            asyncio.create_task(self._guard(up.write_loop())),
            asyncio.create_task(self._guard(down.read_loop())),
            asyncio.create_task(self._guard(down.write_loop())),
        ]
        # The link ends when both directions have carried their EOF, or when it was reset (by a
        # command, or because either end reset or broke its connection).
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(self.tasks[1], self.tasks[3])
        aborted = self.closed.is_set()
        for task in self.tasks:
            task.cancel()
        for writer in self.writers.values():
            if aborted:
                writer.transport.abort()
            else:
                writer.close()
        self.closed.set()

    async def _guard(self, loop: Awaitable[None]) -> None:
        """A socket error on either end resets the whole link, as a reset passes through a path."""
        try:
            await loop
        except (OSError, asyncio.IncompleteReadError, RuntimeError):
            self.reset()


class FaultProxy:
    """The asyncio core. ``await start()``, then command it from the same loop."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = listen_port
        self.shaping = Shaping()
        self.counts = Counts()  # every link, closed ones included
        self.links: list[Link] = []
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._ids = itertools.count(1)
        self._global_blackhole = False
        self._unblock = asyncio.Event()
        self.restored = asyncio.Event()  # clear while any black-hole lasts
        self.restored.set()
        self._timers: list[asyncio.TimerHandle] = []
        self._link_tasks: set[asyncio.Task[None]] = set()
        self._new_link = asyncio.Event()

    @property
    def address(self) -> tuple[str, int]:
        return self.listen_host, self.port

    @property
    def url(self) -> str:
        return f"http://{self.listen_host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accepted, self.listen_host, self.port, reuse_address=True, backlog=512
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        await self.refuse()
        for link in self.links:
            link.reset()
        for task in list(self._link_tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- faults ----------------------------------------------------------------------------------

    def reset(self, match: str | None = None) -> int:
        """RST every open link whose path contains ``match``; returns how many."""
        hit = [link for link in self.open_links(match)]
        for link in hit:
            link.reset()
        return len(hit)

    def blackhole(self, seconds: float | None = None, match: str | None = None) -> int:
        """Stop forwarding on the matching links (and, with no ``match``, on links accepted from now
        on too) until :meth:`restore`, or for ``seconds``. Returns how many open links it hit."""
        hit = self.open_links(match)
        for link in hit:
            link.set_blackholed(True)
        self.restored.clear()
        if match is None:
            self._global_blackhole = True
            self._unblock.clear()
        if seconds is not None:
            self._timers.append(asyncio.get_running_loop().call_later(seconds, self.restore))
        return len(hit)

    def restore(self) -> None:
        """End every black-hole: bytes flow again on every link."""
        self._global_blackhole = False
        self._unblock.set()
        for link in self.links:
            link.set_blackholed(False)
        self.restored.set()

    def half_close(self, towards: Side, match: str | None = None) -> int:
        hit = self.open_links(match)
        for link in hit:
            link.half_close(towards)
        return len(hit)

    def shape(
        self, *, rate: float | None = None, one_byte: bool = False, delay: float = 0.0, jitter: float = 0.0
    ) -> None:
        """Set the shaping of every link (open ones included); ``shape()`` turns it all off."""
        if jitter > delay:
            raise ValueError("jitter larger than the delay would need negative delays")
        self.shaping = Shaping(rate=rate, one_byte=one_byte, delay=delay, jitter=jitter)
        for link in self.links:
            for pipe in link.pipes:
                pipe.wake()

    async def refuse(self) -> None:
        """Stop listening: new dials are refused (ECONNREFUSED); open links live on."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def accept(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            await self.start()

    # -- state -----------------------------------------------------------------------------------

    def link_named(self) -> None:
        self._new_link.set()

    def open_links(self, match: str | None = None) -> list[Link]:
        return [link for link in self.links if not link.closed.is_set() and link.matches(match)]

    async def wait_link(self, match: str | None = None, *, after: int = 0) -> Link:
        """The first open link with an id above ``after`` whose path contains ``match``."""
        while True:
            for link in self.open_links(match):
                if link.id > after:
                    return link
            self._new_link.clear()
            await self._new_link.wait()

    # -- connections -----------------------------------------------------------------------------

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._link_tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._link_tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        _nodelay(writer)
        if self._global_blackhole:
            await self._unblock.wait()  # a dial into a black-hole gets no answer until it ends
        try:
            target_reader, target_writer = await asyncio.open_connection(*self.target)
        except OSError:
            # The target is down: the dialling end sees its connection reset.
            link = Link(self, next(self._ids))
            link.writers = {"client": writer}
            link.reset()
            return
        _nodelay(target_writer)
        link = Link(self, next(self._ids))
        link.writers = {"client": writer, "server": target_writer}
        link.pipes = [
            _Pipe(link, "up", reader, target_writer),
            _Pipe(link, "down", target_reader, writer),
        ]
        self.links.append(link)
        self._new_link.set()
        await link.run()
        # Keep only a bounded history of closed links (counts stay in self.counts).
        if len(self.links) > 1000:
            self.links = [item for item in self.links if not item.closed.is_set()]


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class ProxyThread:
    """A :class:`FaultProxy` on an event loop thread of its own, with a blocking API.

    Use as a context manager: ``with ProxyThread("127.0.0.1", server_port) as proxy: …``.
    """

    def __init__(
        self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1", listen_port: int = 0
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy", daemon=True)
        self._thread.start()
        self.proxy = FaultProxy(target_host, target_port, listen_host=listen_host, listen_port=listen_port)
        self._call(self.proxy.start())

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError("fault proxy did not answer in time") from None

    def _run(self, function: Callable[[], T]) -> T:
        async def call() -> T:
            return function()

        return self._call(call())

    # -- the blocking API (see FaultProxy for what each does) ------------------------------------

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def url(self) -> str:
        return self.proxy.url

    def reset(self, match: str | None = None) -> int:
        return self._run(lambda: self.proxy.reset(match))

    def blackhole(self, seconds: float | None = None, match: str | None = None) -> int:
        return self._run(lambda: self.proxy.blackhole(seconds, match))

    def restore(self) -> None:
        self._run(self.proxy.restore)

    def wait_restored(self, timeout: float = 60.0) -> float:
        """Wait for the black-hole to end; returns the time.monotonic() it ended at."""

        async def wait() -> float:
            async with asyncio.timeout(timeout):
                await self.proxy.restored.wait()
            return time.monotonic()

        return self._call(wait(), timeout + 5)

    def half_close(self, towards: Side, match: str | None = None) -> int:
        return self._run(lambda: self.proxy.half_close(towards, match))

    def shape(
        self, *, rate: float | None = None, one_byte: bool = False, delay: float = 0.0, jitter: float = 0.0
    ) -> None:
        self._run(lambda: self.proxy.shape(rate=rate, one_byte=one_byte, delay=delay, jitter=jitter))

    def refuse(self) -> None:
        self._call(self.proxy.refuse())

    def accept(self) -> None:
        self._call(self.proxy.accept())

    def links(self, match: str | None = None, *, open_only: bool = True) -> list[LinkInfo]:
        def snapshot() -> list[LinkInfo]:
            links = self.proxy.open_links(match) if open_only else self.proxy.links
            return [link.info() for link in links if link.matches(match)]

        return self._run(snapshot)

    def last_link_id(self) -> int:
        """The id of the newest link so far (0: none): links opened later have larger ids."""
        return self._run(lambda: max((link.id for link in self.proxy.links), default=0))

    def totals(self) -> Counts:
        return self._run(lambda: dataclasses.replace(self.proxy.counts))

    def wait_link(self, match: str | None = None, *, after: int = 0, timeout: float = 30.0) -> LinkInfo:
        async def wait() -> LinkInfo:
            async with asyncio.timeout(timeout):
                return (await self.proxy.wait_link(match, after=after)).info()

        return self._call(wait(), timeout + 5)

    def wait_moved(
        self, count: int, timeout: float = 60.0, match: str | None = None, *, after: int = 0
    ) -> float:
        """Wait until links whose path contains ``match`` (any link: None), and whose id is above
        ``after`` (links opened later), have forwarded ``count`` more bytes, both directions
        together; returns the seconds it took."""

        def moved() -> int:
            if match is None and not after:
                return self.proxy.counts.up + self.proxy.counts.down
            return sum(
                link.counts.up + link.counts.down
                for link in self.proxy.links
                if link.id > after and link.matches(match)
            )

        async def wait() -> float:
            loop = asyncio.get_running_loop()
            started, goal = loop.time(), moved() + count
            async with asyncio.timeout(timeout):
                while moved() < goal:
                    await asyncio.sleep(0.005)
            return loop.time() - started

        try:
            return self._call(wait(), timeout + 5)
        except TimeoutError:
            raise TimeoutError(f"the proxy did not forward {count} more bytes in {timeout} s") from None

    def call(self, function: Callable[[FaultProxy], Awaitable[T]]) -> T:
        """Run ``function(proxy)`` on the proxy's loop (for anything the API above lacks)."""

        async def run() -> T:
            return await function(self.proxy)

        return self._call(run())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self._call(self.proxy.close(), timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> ProxyThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
