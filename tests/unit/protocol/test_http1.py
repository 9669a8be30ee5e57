"""The client's WebSocket opening handshake and CONNECT tunnel, without I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.errors import LocalProtocolError
from openssm.protocol import http1 as handshake

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example


def test_accept_value_is_rfc_6455s_example() -> None:
    assert handshake.accept_for(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_upgrade_and_connect_requests() -> None:
    request = handshake.upgrade_request(
        "example.com:8443", "/v1/data-channel/s?role=x", KEY, [("User-Agent", "t")]
    )
    assert request == (
        b"GET /v1/data-channel/s?role=x HTTP/1.1\r\nHost: example.com:8443\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"User-Agent: t\r\n\r\n"
    )
    assert handshake.connect_request("[::1]:443", [("Proxy-Authorization", "Basic eA==")]) == (
        b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\nProxy-Authorization: Basic eA==\r\n\r\n"
    )
    with pytest.raises(LocalProtocolError):
        handshake.upgrade_request("h", "/", KEY, [("X", "a\r\nInjected: yes")])


def test_authority() -> None:
    assert handshake.authority("h", 443, 443) == "h"
    assert handshake.authority("h", 8443, 443) == "h:8443"
    assert handshake.authority("::1", 80, 443) == "[::1]:80"


ACCEPTED = (
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"
    f"Sec-WebSocket-Accept: {handshake.accept_for(KEY)}\r\nServer: x\r\n\r\n"
).encode()


@given(st.data())
def test_a_head_split_anywhere_parses_once_complete(data: st.DataObject) -> None:
    frame_bytes = b"\x82\x03abc"
    stream = ACCEPTED + frame_bytes
    cut = data.draw(st.integers(0, len(stream)))
    partial = handshake.parse_response_head(stream[:cut])
    if cut < len(ACCEPTED):
        assert partial is None
    else:
        assert partial is not None
        head, size = partial
        assert size == len(ACCEPTED) and stream[size:cut] == frame_bytes[: cut - size]
        handshake.check_upgrade(head, KEY)


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
            "refused the WebSocket upgrade: 403 Forbidden",
        ),
        (ACCEPTED.replace(b"Upgrade: WebSocket", b"Upgrade: h2c"), "lacks Upgrade: websocket"),
        (ACCEPTED.replace(b"keep-alive, Upgrade", b"close"), "lacks Connection: Upgrade"),
        (ACCEPTED.replace(b"Server: x", b"Sec-WebSocket-Extensions: permessage-deflate"), "extension"),
        (
            ACCEPTED.replace(handshake.accept_for(KEY).encode(), handshake.accept_for("other").encode()),
            "does not match",
        ),
    ],
)
def test_a_101_that_does_not_prove_the_upgrade_is_refused(response: bytes, message: str) -> None:
    parsed = handshake.parse_response_head(response)
    assert parsed is not None
    with pytest.raises(handshake.HandshakeError, match=message):
        handshake.check_upgrade(parsed[0], KEY)


@pytest.mark.parametrize(
    "response",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 1x1 Nope\r\n\r\n",
        b"HTTP/1.1 101 OK\r\n no-name\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nbad\r\n\r\n",
    ],
)
def test_malformed_heads(response: bytes) -> None:
    with pytest.raises(handshake.HandshakeError):
        handshake.parse_response_head(response)


def test_heads_are_bounded() -> None:
    with pytest.raises(handshake.HandshakeError, match="longer than"):
        handshake.parse_response_head(b"HTTP/1.1 101 OK\r\n" + b"X: y\r\n" * 20000)
    with pytest.raises(handshake.HandshakeError, match="header lines"):
        handshake.parse_response_head(b"HTTP/1.1 101 OK\r\n" + b"X: y\r\n" * 200 + b"\r\n")


def test_connect_answers() -> None:
    ok = handshake.parse_response_head(b"HTTP/1.0 200 Connection established\r\n\r\n")
    assert ok is not None
    handshake.check_connect(ok[0])
    denied = handshake.parse_response_head(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
    assert denied is not None
    with pytest.raises(handshake.HandshakeError, match="407"):
        handshake.check_connect(denied[0])


def head_of(text: bytes) -> handshake.ResponseHead:
    parsed = handshake.parse_response_head(text)
    assert parsed is not None
    return parsed[0]


BODY = b'{"SessionId":"s","TokenValue":"t","StreamUrl":"wss://x/y"}'
FRAMINGS = {
    "content-length": (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY), BODY, False),
    "chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"10;ext=1\r\n"
        + BODY[:16]
        + b"\r\n"
        + b"%x\r\n" % (len(BODY) - 16)
        + BODY[16:]
        + b"\r\n0\r\nX-Trailer: y\r\n\r\n",
        False,
    ),
    "until-close": (b"HTTP/1.0 200 OK\r\n\r\n", BODY, True),
}


@pytest.mark.parametrize("framing", FRAMINGS)
@given(cuts=st.lists(st.integers(0, 200), max_size=6))
def test_a_body_fed_in_any_pieces_is_read_whole(framing: str, cuts: list[int]) -> None:
    head, wire, until_close = FRAMINGS[framing]
    reader = handshake.BodyReader(head_of(head), limit=1 << 20)
    start = 0
    for cut in sorted(min(cut, len(wire)) for cut in cuts):
        reader.feed(wire[start:cut])
        start = cut
    reader.feed(wire[start:] + b"trailing bytes are not read" * (not until_close))
    if until_close:
        assert not reader.done
        reader.eof()
    assert reader.done and reader.body == BODY


def test_bodies_are_bounded_and_must_be_whole() -> None:
    with pytest.raises(handshake.HandshakeError, match="longer than"):
        handshake.BodyReader(head_of(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n"), limit=1000)
    chunked = handshake.BodyReader(
        head_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), limit=1000
    )
    with pytest.raises(handshake.HandshakeError, match="longer than"):
        chunked.feed(b"fffff\r\n")
    short = handshake.BodyReader(head_of(b"HTTP/1.1 500 x\r\nContent-Length: 10\r\n\r\n"), limit=1000)
    short.feed(b"12345")
    with pytest.raises(handshake.HandshakeError, match="closed before"):
        short.eof()
    for bad in (b"Content-Length: -1", b"Content-Length: 1, 1", b"Content-Length: x"):
        with pytest.raises(handshake.HandshakeError, match="Content-Length"):
            handshake.BodyReader(head_of(b"HTTP/1.1 200 OK\r\n" + bad + b"\r\n\r\n"), limit=1000)
    assert handshake.BodyReader(head_of(b"HTTP/1.1 204 No Content\r\n\r\n"), limit=10).done


def test_a_post_request() -> None:
    assert handshake.request("POST", "/", [("Host", "h"), ("Content-Length", "2")], b"{}") == (
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}"
    )
