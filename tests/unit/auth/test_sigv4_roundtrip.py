"""sign_hmac -> verify_hmac round trips, and single-byte tampering of every signed part."""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote, unquote_to_bytes

import pytest
from botocore.utils import normalize_url_path
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from openssm.auth.sigv4 import HttpRequest, SigV4Error, parse_request, sign_hmac, verify_hmac

from .helpers import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_KEY,
    SESSION_TOKEN,
    extra_headers,
    methods,
    raw_queries,
    wire_paths,
)

WHEN = dt.datetime(2026, 11, 28, 16, 32, 13, tzinfo=dt.UTC)
HOST = "gateway.example.test:8443"


def _signed(
    method: str, path: str, query: str, headers: dict[str, str], body: bytes, token: str | None = None
) -> HttpRequest:
    url = f"https://{HOST}{path}" + (f"?{query}" if query else "")
    added = sign_hmac(
        method, url, headers, body, access_key_id=ACCESS_KEY_ID, secret_key=SECRET_KEY,
        session_token=token, region=REGION, service="ssmmessages", now=WHEN,
    )  # fmt: skip
    sent = [("Host", HOST), *headers.items(), *added.items(), ("User-Agent", "Go-http-client/1.1")]
    return HttpRequest(method, path, query, sent, body)


def _verify(req: HttpRequest) -> None:
    verify_hmac(req, parse_request(req), SECRET_KEY, now=WHEN)


requests = st.builds(
    _signed,
    method=methods,
    path=wire_paths(),
    query=raw_queries,
    headers=extra_headers(),
    body=st.binary(max_size=40),
    token=st.one_of(st.none(), st.just(SESSION_TOKEN)),
)


@settings(max_examples=300)
@given(requests)
def test_round_trip(req: HttpRequest) -> None:
    _verify(req)


def _replace_char(text: str, data: st.DataObject, alphabet: str, start: int = 0) -> str:
    assume(len(text) > start)
    index = data.draw(st.integers(start, len(text) - 1))
    replacement = data.draw(st.sampled_from(alphabet).filter(lambda char: char != text[index]))
    return text[:index] + replacement + text[index + 1 :]


def _same_query(a: str, b: str) -> bool:
    def meaning(query: str) -> list[tuple[bytes, bytes]]:
        pairs = []
        for part in query.split("&"):
            if part:
                key, _, value = part.partition("=")
                pairs.append((unquote_to_bytes(key), unquote_to_bytes(value)))
        return sorted(pairs)

    return meaning(a) == meaning(b)


def _fails(req: HttpRequest) -> None:
    with pytest.raises(SigV4Error):
        _verify(req)


@settings(max_examples=300)
@given(requests, st.data())
def test_tampering_a_signed_part_fails(req: HttpRequest, data: st.DataObject) -> None:
    part = data.draw(st.sampled_from(["method", "path", "query", "header", "body", "signature"]))
    if part == "method":
        other = data.draw(methods.filter(lambda method: method != req.method))
        _fails(HttpRequest(other, req.path, req.query, req.headers, req.body))
    elif part == "path":
        path = _replace_char(req.path, data, "aZ0/.%-~!é", start=1)  # origin-form paths start with '/'
        # the same path after normalisation is the same resource: not a tamper (botocore decides)
        assume(quote(normalize_url_path(path), safe="/~") != quote(normalize_url_path(req.path), safe="/~"))
        _fails(HttpRequest(req.method, path, req.query, req.headers, req.body))
    elif part == "query":
        query = _replace_char(req.query, data, "aZ0=&+%~ é") if req.query else "extra=1"
        assume(not _same_query(query, req.query))
        _fails(HttpRequest(req.method, req.path, query, req.headers, req.body))
    elif part == "header":
        signed = [
            i
            for i, (name, _) in enumerate(req.headers)
            if name.lower() not in {"authorization", "user-agent"}
        ]
        index = data.draw(st.sampled_from(signed))
        name, value = req.headers[index]
        new_value = _replace_char(value, data, "aZ0 ,;") if value else "x"
        assume(" ".join(new_value.split()) != " ".join(value.split()))
        headers = list(req.headers)
        headers[index] = (name, new_value)
        _fails(HttpRequest(req.method, req.path, req.query, headers, req.body))
    elif part == "body":
        body = bytearray(req.body or b"\0")
        index = data.draw(st.integers(0, len(body) - 1))
        body[index] ^= data.draw(st.integers(1, 255))
        _fails(HttpRequest(req.method, req.path, req.query, req.headers, bytes(body) if req.body else b"\0"))
    else:
        headers = [
            (name, value[:-1] + ("0" if value[-1] != "0" else "1"))
            if name == "Authorization"
            else (name, value)
            for name, value in req.headers
        ]
        _fails(HttpRequest(req.method, req.path, req.query, headers, req.body))


@given(requests, st.text(max_size=20))
def test_unsigned_headers_may_change(req: HttpRequest, user_agent: str) -> None:
    headers = [(name, user_agent if name == "User-Agent" else value) for name, value in req.headers]
    _verify(HttpRequest(req.method, req.path, req.query, [*headers, ("Accept-Encoding", "gzip")], req.body))


def test_repeated_and_folded_headers_round_trip() -> None:
    url = f"https://{HOST}/"
    added = sign_hmac(
        "POST", url, {"X-Multi": "a,b", "Content-Type": "text/plain"}, b"x", access_key_id=ACCESS_KEY_ID,
        secret_key=SECRET_KEY, session_token=None, region=REGION, service="ssm", now=WHEN,
    )  # fmt: skip
    # The same value arriving as two header lines with extra whitespace canonicalises identically.
    sent = [
        ("Host", HOST),
        ("x-multi", " a"),
        ("X-MULTI", "b  "),
        ("Content-Type", "text/plain"),
        *added.items(),
    ]
    _verify(HttpRequest("POST", "/", "", sent, b"x"))
    swapped = [
        ("Host", HOST),
        ("x-multi", "b"),
        ("X-MULTI", "a"),
        ("Content-Type", "text/plain"),
        *added.items(),
    ]
    _fails(HttpRequest("POST", "/", "", swapped, b"x"))


def test_explicit_signed_header_names() -> None:
    url = f"https://{HOST}/v1/control-channel/mi-0123456789abcdef0?role=subscribe&stream=input"
    added = sign_hmac(
        "GET", url, {"User-Agent": "Go-http-client/1.1", "Sec-WebSocket-Key": "k"}, b"",
        access_key_id=ACCESS_KEY_ID, secret_key=SECRET_KEY, session_token=SESSION_TOKEN, region=REGION,
        service="ssmmessages", now=WHEN, signed_header_names=[],
    )  # fmt: skip
    assert "SignedHeaders=host;x-amz-date;x-amz-security-token," in added["Authorization"]
    with pytest.raises(ValueError, match="x-missing"):
        sign_hmac(
            "GET", url, {}, b"", access_key_id=ACCESS_KEY_ID, secret_key=SECRET_KEY, session_token=None,
            region=REGION, service="ssmmessages", now=WHEN, signed_header_names=["x-missing"],
        )  # fmt: skip
