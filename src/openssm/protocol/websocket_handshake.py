"""The client's side of the WebSocket opening handshake (RFC 6455 §4.1) and of an HTTP CONNECT
tunnel (RFC 9110 §9.3.6), without I/O: requests as bytes, answers parsed and checked.

Only what a data-channel client needs: ``GET`` with ``Upgrade: websocket``, no extensions, no
subprotocols, and ``CONNECT host:port`` through a proxy. A response head is bounded (64 KiB, 100
header lines); anything else, or a ``101`` that does not prove the server read our key, is a
:class:`HandshakeError`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
from collections.abc import Iterable
from typing import Final

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


@dataclasses.dataclass(frozen=True)
class ResponseHead:
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
