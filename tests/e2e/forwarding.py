"""Helpers for port-forwarding end-to-end tests and the throughput bench.

* :class:`ChecksumServer` — a threaded TCP destination speaking a tiny checked-transfer protocol:
  the client sends ``upload`` bytes and the server sends ``download`` bytes at the same time; at
  the end the server reports the SHA-256 of what it received and of what it sent, so both
  directions are verified end to end without relying on TCP half-close.
* :func:`checked_transfer` — the client side of that protocol.
* :class:`PacedEnd` / :class:`PacedDestination` — a 16-byte record each way every millisecond,
  stamped with its send time: when the first byte gets through after a fault.
* :class:`SessionProcess` — a running ``openssm start-session`` / ``aws ssm start-session`` whose
  output is read in the background (``wait_for`` a line, ``local_ports``).
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypedDict, Unpack

from tests.support.net import free_port as free_port

# upload bytes, download bytes, seconds the server waits before reading, seconds the client
# waits before reading (a "slow reader" on either end).
HEADER = struct.Struct("!QQdd")
DIGESTS = 64
CHUNK = 256 * 1024
PORT_OPENED = re.compile(r"Port (\d+) opened for sessionId (\S+)\.")


class TransferError(AssertionError):
    pass


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    parts = bytearray()
    while len(parts) < count:
        data = sock.recv(min(CHUNK, count - len(parts)))
        if not data:
            raise TransferError(f"connection closed after {len(parts)} of {count} bytes")
        parts += data
    return bytes(parts)


def _random_block(size: int = 1 << 20) -> bytes:
    return os.urandom(size)


def _send_pattern(sock: socket.socket, total: int, block: bytes, digest: hashlib._Hash) -> None:
    """Send ``total`` bytes cut from a random block at a moving offset (cheap, not repetitive)."""
    sent = 0
    offset = 0
    view = memoryview(block)
    while sent < total:
        size = min(CHUNK, total - sent, len(block) - offset)
        piece = view[offset : offset + size]
        digest.update(piece)
        sock.sendall(piece)
        sent += size
        offset = (offset + size + 7919) % (len(block) - 1)


class ChecksumServer:
    """Threaded destination server; ``connections`` counts accepted connections."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._listener = socket.create_server((host, 0), backlog=256)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self.received = 0  # upload bytes received so far, over every connection
        self._block = _random_block()
        self._stopped = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError, TransferError):
            upload, download, server_delay, _ = HEADER.unpack(_recv_exactly(conn, HEADER.size))
            received = hashlib.sha256()

            def read_upload() -> None:
                time.sleep(server_delay)
                remaining = upload
                with contextlib.suppress(OSError):  # a reset connection: the sender's side reports it
                    while remaining:
                        data = conn.recv(min(CHUNK, remaining))
                        if not data:
                            return
                        received.update(data)
                        remaining -= len(data)
                        self.received += len(data)

            reader = threading.Thread(target=read_upload, daemon=True)
            reader.start()
            sent = hashlib.sha256()
            _send_pattern(conn, download, self._block, sent)
            reader.join()
            conn.sendall(received.digest() + sent.digest())
            # Wait for the client to close first, so no reset can eat the digests.
            conn.settimeout(60)
            while conn.recv(CHUNK):
                pass

    def close(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def __enter__(self) -> ChecksumServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DigestOnEofServer:
    """Reads until the client half-closes, then answers with the SHA-256 of what it read and closes."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            digest = hashlib.sha256()
            while data := conn.recv(CHUNK):
                digest.update(data)
            conn.sendall(digest.digest())

    def close(self) -> None:
        self._listener.close()

    def __enter__(self) -> DigestOnEofServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def half_close_exchange(port: int, size: int, timeout: float = 60.0) -> None:
    """Send ``size`` bytes, shut down writing, and expect their digest back before EOF."""
    payload = os.urandom(size)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        answer = bytearray()
        while data := sock.recv(CHUNK):
            answer += data
    if bytes(answer) != hashlib.sha256(payload).digest():
        raise TransferError(f"after half-close got {len(answer)} bytes instead of the 32-byte digest")


_client_block = _random_block()


@dataclass(frozen=True)
class TransferReport:
    """One checked transfer as both ends saw it: byte counts and SHA-256 digests."""

    seconds: float
    uploaded: int  # bytes the client sent (and the destination received)
    downloaded: int  # bytes the destination sent (and the client received)
    client_sent: str  # hex SHA-256 of the upload, as the client sent it ...
    server_received: str  # ... and as the destination received it
    server_sent: str  # the download as the destination sent it ...
    client_received: str  # ... and as the client received it

    def describe(self, label: str = "transfer") -> str:
        return (
            f"{label}: upload {self.uploaded} bytes sha256 client-sent {self.client_sent[:16]}… "
            f"server-received {self.server_received[:16]}…; download {self.downloaded} bytes sha256 "
            f"server-sent {self.server_sent[:16]}… client-received {self.client_received[:16]}…; "
            f"{self.seconds:.1f} s"
        )


class TransferOptions(TypedDict, total=False):
    host: str
    server_delay: float  # seconds the destination waits before reading
    client_delay: float  # seconds the client waits before reading
    timeout: float


def checked_transfer(port: int, *, upload: int, download: int, **options: Unpack[TransferOptions]) -> float:
    """One connection through ``host:port`` moving ``upload``/``download`` bytes; returns seconds.

    Raises :class:`TransferError` if either direction's checksum differs.
    """
    return reported_transfer(port, upload=upload, download=download, **options).seconds


def reported_transfer(
    port: int, *, upload: int, download: int, **options: Unpack[TransferOptions]
) -> TransferReport:
    """:func:`checked_transfer`, returning what both ends counted and hashed."""
    host = options.get("host", "127.0.0.1")
    server_delay = options.get("server_delay", 0.0)
    client_delay = options.get("client_delay", 0.0)
    timeout = options.get("timeout", 60.0)
    started = time.perf_counter()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(HEADER.pack(upload, download, server_delay, client_delay))
        sent = hashlib.sha256()
        send_error: list[BaseException] = []

        def send_upload() -> None:
            try:
                _send_pattern(sock, upload, _client_block, sent)
            except OSError as exc:
                send_error.append(exc)

        sender = threading.Thread(target=send_upload, daemon=True)
        sender.start()
        time.sleep(client_delay)
        received = hashlib.sha256()
        remaining = download
        while remaining:
            data = sock.recv(min(CHUNK, remaining))
            if not data:
                raise TransferError(f"connection closed with {remaining} of {download} bytes unread")
            received.update(data)
            remaining -= len(data)
        digests = _recv_exactly(sock, DIGESTS)
        sender.join(timeout)
        if send_error:
            raise TransferError(f"upload failed: {send_error[0]!r}")
    if digests[:32] != sent.digest():
        raise TransferError(f"upload of {upload} bytes arrived corrupted")
    if digests[32:] != received.digest():
        raise TransferError(f"download of {download} bytes arrived corrupted")
    return TransferReport(
        seconds=time.perf_counter() - started,
        uploaded=upload,
        downloaded=download,
        client_sent=sent.hexdigest(),
        server_received=digests[:32].hex(),
        server_sent=digests[32:].hex(),
        client_received=received.hexdigest(),
    )


# -- paced streams: when does a byte get through? ---------------------------------------------------

RECORD = struct.Struct("!Qd")  # sequence number, send time (time.monotonic: one clock, one machine)
PACE = 0.001  # seconds between records, each way
HEALTHY_WITHIN = 0.05  # a path is healthy when records arrive this fresh


class PacedEnd:
    """One end of a paced stream on a socket: a thread sends a record every PACE seconds, another
    notes when each record from the other end arrives."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.arrivals: list[float] = []  # when each record from the other end arrived
        self.sent: list[float] = []  # and when that end sent it (one clock: same machine)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._send, daemon=True),
            threading.Thread(target=self._receive, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _send(self) -> None:
        sequence = 0
        with contextlib.suppress(OSError):
            while not self._stop.is_set():
                self.sock.sendall(RECORD.pack(sequence, time.monotonic()))
                sequence += 1
                time.sleep(PACE)

    def _receive(self) -> None:
        pending = b""
        with contextlib.suppress(OSError):
            while data := self.sock.recv(65536):
                now = time.monotonic()
                pending += data
                whole = len(pending) // RECORD.size
                for index in range(whole):
                    self.sent.append(RECORD.unpack_from(pending, index * RECORD.size)[1])
                    self.arrivals.append(now)
                pending = pending[whole * RECORD.size :]

    def first_after(self, back: float, fault: float, timeout: float = 60.0) -> float:
        """Seconds from ``back`` (the network is back) to the arrival of the first record sent
        after ``fault`` began: one that had to cross the path after the fault (waits for one)."""
        deadline = time.monotonic() + timeout
        index = bisect.bisect_right(self.arrivals, fault)
        while time.monotonic() < deadline:
            while index < len(self.arrivals):
                if self.sent[index] >= fault:
                    return max(0.0, self.arrivals[index] - back)
                index += 1
            time.sleep(0.001)
        raise TimeoutError(f"no byte arrived within {timeout} s of the network coming back")

    def fresh(self) -> bool:
        return bool(self.arrivals) and time.monotonic() - self.arrivals[-1] < HEALTHY_WITHIN

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class PacedDestination:
    """The port session's destination: each accepted connection becomes a PacedEnd."""

    def __init__(self, host: str) -> None:
        self._listener = socket.create_server((host, 0))
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self.ends: list[PacedEnd] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self._listener.accept()
                self.ends.append(PacedEnd(conn))

    def close(self) -> None:
        for end in self.ends:
            end.close()
        self._listener.close()


@dataclass
class OutputLine:
    at: float
    text: str


class SessionProcess:
    """A start-session command (own process group) whose combined output is collected."""

    def __init__(self, argv: list[str], env: dict[str, str], stdin: int = subprocess.DEVNULL) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdin=stdin,  # PIPE for stdio sessions (AWS-StartSSHSession): EOF on stdin ends them
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._lines: list[OutputLine] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            with self._changed:
                self._lines.append(OutputLine(time.monotonic(), raw.decode(errors="replace")))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(line.text for line in self._lines)

    def wait_for(self, pattern: str, timeout: float = 60.0, *, count: int = 1) -> list[re.Match[str]]:
        """The first ``count`` matches of ``pattern`` in the output, waiting for them."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matches = list(regex.finditer("".join(line.text for line in self._lines)))
                if len(matches) >= count:
                    return matches[:count]
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(
                        f"{self.argv[:4]} exited ({self.proc.returncode}) before {pattern!r}:\n{self.output_unlocked()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {pattern!r} after {timeout}s:\n{self.output_unlocked()}")
                self._changed.wait(min(left, 0.5))

    def output_unlocked(self) -> str:
        return "".join(line.text for line in self._lines)

    def local_ports(self, count: int = 1, timeout: float = 60.0) -> list[int]:
        return [int(match.group(1)) for match in self.wait_for(PORT_OPENED.pattern, timeout, count=count)]

    def session_ids(self, count: int = 1, timeout: float = 60.0) -> list[str]:
        return [match.group(2) for match in self.wait_for(PORT_OPENED.pattern, timeout, count=count)]

    def wait_exit(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self, timeout: float = 15.0) -> int:
        """Ctrl-C to the whole group (as a terminal would), then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode


@contextlib.contextmanager
def session_process(
    argv: list[str], env: dict[str, str], stdin: int = subprocess.DEVNULL
) -> Iterator[SessionProcess]:
    process = SessionProcess(argv, env, stdin)
    try:
        yield process
    finally:
        process.stop()
