"""HTTP/1.1 as OpenSSM's client speaks it, without I/O: requests as bytes, answers parsed and checked.

Three exchanges: the WebSocket opening handshake of a data channel (RFC 6455 §4.1: ``GET`` with
``Upgrade: websocket``, no extensions, no subprotocols), a ``CONNECT host:port`` tunnel through a
proxy (RFC 9110 §9.3.6), and the ``POST`` of an API call with its answer's body (Content-Length,
chunked, or until the connection closes). A response head is bounded (64 KiB, 100 header lines), a
body by the caller; anything else, or a ``101`` that does not prove the server read our key, is a
:class:`HandshakeError`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable
from typing import Final, NamedTuple

from openssm.errors import LocalProtocolError, RemoteProtocolError

WEBSOCKET_GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD_BYTES: Final = 64 * 1024
MAX_HEADER_LINES: Final = 100
_HEAD_END: Final = b"\r\n\r\n"


class HandshakeError(RemoteProtocolError):
    """The server (or proxy) did not answer as the handshake requires."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ResponseHead(NamedTuple):
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]  # names lower-cased, in order

    def get(self, name: str) -> str | None:
        """The values of header ``name`` joined with commas (RFC 9110 §5.3), None if absent."""
        values = [value for key, value in self.headers if key == name]
        return ", ".join(values) if values else None


def new_key() -> str:
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_for(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer ``key`` with."""
    return base64.b64encode(
        hashlib.sha1((key + WEBSOCKET_GUID).encode("ascii"), usedforsecurity=False).digest()
    ).decode("ascii")


def authority(host: str, port: int, default_port: int | None = None) -> str:
    """``host[:port]`` for a Host header or a CONNECT target (IPv6 literals in brackets)."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return shown if port == default_port else f"{shown}:{port}"


def _request(lines: Iterable[str]) -> bytes:
    checked = list(lines)
    if any(char in line for line in checked for char in "\r\n\0"):
        raise LocalProtocolError("request lines must not contain CR, LF or NUL")
    return "".join(f"{line}\r\n" for line in checked).encode("latin-1") + b"\r\n"


def upgrade_request(host: str, target: str, key: str, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """The ``GET`` that asks for the upgrade; ``host`` is the Host header's value."""
    return _request(
        [
            f"GET {target or '/'} HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers),
        ]
    )


def connect_request(target: str, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """``CONNECT host:port`` to a proxy (``Proxy-Authorization`` among ``headers`` if needed)."""
    return _request([f"CONNECT {target} HTTP/1.1", f"Host: {target}", *(f"{n}: {v}" for n, v in headers)])


def parse_response_head(data: bytes | bytearray) -> tuple[ResponseHead, int] | None:
    """The response head at the start of ``data`` and its length; None while it is incomplete."""
    end = data.find(_HEAD_END)
    if end < 0:
        if len(data) > MAX_HEAD_BYTES:
            raise HandshakeError(f"response head longer than {MAX_HEAD_BYTES} bytes")
        return None
    if end + len(_HEAD_END) > MAX_HEAD_BYTES:
        raise HandshakeError(f"response head longer than {MAX_HEAD_BYTES} bytes")
    lines = bytes(data[:end]).decode("latin-1").split("\r\n")
    if len(lines) > MAX_HEADER_LINES + 1:
        raise HandshakeError(f"more than {MAX_HEADER_LINES} header lines")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise HandshakeError(f"not an HTTP/1.x status line: {lines[0][:100]!r}")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or line[:1] in (" ", "\t"):
            raise HandshakeError(f"malformed header line: {line[:100]!r}")
        headers.append((name.lower(), value.strip(" \t")))
    return ResponseHead(int(code), reason, tuple(headers)), end + len(_HEAD_END)


def _tokens(value: str | None) -> set[str]:
    return {token.strip().lower() for token in (value or "").split(",")}


def check_upgrade(head: ResponseHead, key: str) -> None:
    """Raise unless ``head`` accepts the upgrade we asked for with ``key`` (RFC 6455 §4.1)."""
    if head.status != 101:
        raise HandshakeError(
            f"the server refused the WebSocket upgrade: {head.status} {head.reason}", head.status
        )
    if "websocket" not in _tokens(head.get("upgrade")):
        raise HandshakeError("the 101 response lacks Upgrade: websocket", head.status)
    if "upgrade" not in _tokens(head.get("connection")):
        raise HandshakeError("the 101 response lacks Connection: Upgrade", head.status)
    if head.get("sec-websocket-accept") != accept_for(key):
        raise HandshakeError("the 101 response's Sec-WebSocket-Accept does not match our key", head.status)
    if head.get("sec-websocket-extensions") or head.get("sec-websocket-protocol"):
        raise HandshakeError("the server chose an extension or subprotocol we did not offer", head.status)


def check_connect(head: ResponseHead) -> None:
    """Raise unless the proxy opened the tunnel (any 2xx)."""
    if not 200 <= head.status < 300:
        raise HandshakeError(f"the proxy refused to connect: {head.status} {head.reason}", head.status)


def request(method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes = b"") -> bytes:
    """A whole request: request line, headers as given (Content-Length among them), body."""
    return _request([f"{method} {target} HTTP/1.1", *(f"{name}: {value}" for name, value in headers)]) + body


class BodyReader:
    """A response body from the bytes that follow its head, fed as they arrive.

    Framed as RFC 9112 §6.3 says for a response to a request that is not HEAD: chunked transfer
    coding, else Content-Length, else until the connection closes (:meth:`eof`). At most ``limit``
    bytes of body; chunk extensions and trailers are read and ignored.
    """

    def __init__(self, head: ResponseHead, limit: int) -> None:
        self._limit = limit
        self._pending = bytearray()
        self._body = bytearray()
        self.done = head.status in (204, 304) or 100 <= head.status < 200
        encoding = head.get("transfer-encoding")
        length = head.get("content-length")
        self._chunked = encoding is not None and encoding.lower().rsplit(",", 1)[-1].strip() == "chunked"
        self._length: int | None = None
        self._chunk_left: int | None = None  # chunked: bytes of the current chunk still to come
        self._trailers = False
        if not self._chunked and length is not None:
            if not length.isdigit() or "," in length:
                raise HandshakeError(f"invalid Content-Length {length[:40]!r}")
            self._length = int(length)
            if self._length > limit:
                raise HandshakeError(f"the response body is longer than {limit} bytes")
            self.done = self.done or self._length == 0

    @property
    def body(self) -> bytes:
        return bytes(self._body)

    def feed(self, data: bytes) -> None:
        if self.done:
            return
        self._pending += data
        if self._chunked:
            self._read_chunks()
        else:
            self._body += self._pending
            self._pending.clear()
            if self._length is not None and len(self._body) >= self._length:
                del self._body[self._length :]
                self.done = True
        if len(self._body) > self._limit:
            raise HandshakeError(f"the response body is longer than {self._limit} bytes")

    def eof(self) -> None:
        """The connection closed: that ends a body without framing; any other is cut short."""
        if not self.done and (self._chunked or self._length is not None):
            raise HandshakeError("the connection closed before the whole response body arrived")
        self.done = True

    def _read_chunks(self) -> None:
        while not self.done:
            if self._chunk_left is None:
                line_end = self._pending.find(b"\r\n")
                if line_end < 0:
                    if len(self._pending) > MAX_HEAD_BYTES:
                        raise HandshakeError("a chunk size line is too long")
                    return
                line = bytes(self._pending[:line_end]).decode("latin-1")
                del self._pending[: line_end + 2]
                if self._trailers:
                    self.done = not line  # trailer fields end with an empty line
                    continue
                size_text = line.split(";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise HandshakeError(f"invalid chunk size {size_text[:40]!r}") from None
                if size < 0 or len(self._body) + size > self._limit:
                    raise HandshakeError(f"the response body is longer than {self._limit} bytes")
                if size == 0:
                    self._trailers = True
                    continue
                self._chunk_left = size
            if len(self._pending) < self._chunk_left + 2:
                return
            self._body += self._pending[: self._chunk_left]
            if self._pending[self._chunk_left : self._chunk_left + 2] != b"\r\n":
                raise HandshakeError("a chunk does not end with CRLF")
            del self._pending[: self._chunk_left + 2]
            self._chunk_left = None
