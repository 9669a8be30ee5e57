"""Fuzz target ``sigv4``: SigV4 verification of raw requests, as the API and gateway receive them.

Input: an HTTP/1.1 request as text (request line, headers, empty line, body; see
``captures.http_request_text``). Seeds are the captured requests of the real AWS CLI, plugin and
agent, whose signatures verify with the documentation's dummy secret, the secrets the captured
gateway issued and the captured agent key.

Checks: ``parse_request`` and ``verify_hmac``/``verify_rsa`` raise only SigV4Error; a request whose
signature verifies has a scope and signed headers that parse_request accepted; the canonical URI
and query are computed for any path and query without error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

from cryptography.hazmat.primitives import serialization

from openssm.auth import canonical, sigv4
from openssm.auth.errors import SigV4Error
from tests.conftest import captures_dir
from tests.fuzz import captures

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"  # the AWS documentation's dummy, as captured


def parse_http(data: bytes) -> sigv4.HttpRequest | None:
    """The request in ``data``, or None if it has no request line (headers as aiohttp passes them)."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 2 or not parts[0]:
        return None
    path, _, query = parts[1].partition("?")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers.append((name, value.strip()))
    return sigv4.HttpRequest(parts[0], path, query, tuple(headers), body)


def _public_key_der() -> bytes:
    pem = (captures_dir() / "agent-register-public-key.pem").read_bytes()
    key = serialization.load_pem_public_key(pem)
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def setup() -> Callable[[bytes], None]:
    public_key = _public_key_der()
    secrets = {"AKIDEXAMPLE": SECRET, **captures.issued_secrets()}

    def one_input(data: bytes) -> None:
        request = parse_http(data)
        if request is None:
            return
        canonical.canonical_uri(request.path)
        canonical.canonical_query(request.query)
        try:
            parsed = sigv4.parse_request(request)
        except SigV4Error:
            return
        assert parsed.date.tzinfo is not None
        try:
            sigv4.require_scope(parsed, services=["ssm", "ssmmessages"], regions=["us-east-1"])
        except SigV4Error:
            pass
        now = parsed.date + dt.timedelta(seconds=1)
        try:
            if parsed.access_key_id.startswith("mi-"):
                sigv4.verify_rsa(request, parsed, public_key, now=now, max_skew=None)
            else:
                sigv4.verify_hmac(
                    request, parsed, secrets.get(parsed.access_key_id, SECRET), now=now, max_skew=None
                )
        except SigV4Error:
            return
        assert "host" in parsed.signed_headers

    return one_input


def seeds() -> Iterator[bytes]:
    for event in captures.events("http-request"):
        if "Authorization" in event["headers"] or "X-Amz-Algorithm" in event["path"]:
            yield captures.http_request_text(event)
