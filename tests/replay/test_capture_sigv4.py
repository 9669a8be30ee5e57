"""Every SigV4-signed request the real AWS CLI and amazon-ssm-agent sent verifies, byte for byte.

Secrets: the AWS documentation dummy for ``AKIDEXAMPLE``; the temporary keys the fake returned in
``RequestManagedInstanceRoleToken`` for later agent calls; the registration key
(``agent-register-public-key.pem``) for the RSA-signed token request. Clock-skew checks are off:
captured X-Amz-Date values are from the capture day.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openssm.auth.sigv4 import (
    HttpRequest,
    ParsedSignature,
    SigV4Error,
    parse_request,
    verify_hmac,
    verify_rsa,
)

Event = dict[str, Any]
DUMMY_SECRETS = {"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}


def _request(event: Event) -> HttpRequest:
    path, _, query = event["path"].partition("?")
    body = bytes.fromhex(event["hex"]) if "hex" in event else event.get("text", "").encode("utf-8")
    return HttpRequest(event["method"], path, query, tuple(event["headers"].items()), body)


def _secrets(events: list[Event]) -> dict[str, str]:
    secrets = dict(DUMMY_SECRETS)
    for event in events:
        if event["kind"] == "http-response" and "SecretAccessKey" in event.get("text", ""):
            issued = json.loads(event["text"])
            secrets[issued["AccessKeyId"]] = issued["SecretAccessKey"]
    return secrets


def _signed(events: list[Event]) -> list[Event]:
    return [
        event
        for event in events
        if event["kind"] == "http-request"
        and any(name.lower() == "authorization" for name in event["headers"])
    ]


def _public_key_der(captures: pathlib.Path) -> bytes:
    key = serialization.load_pem_public_key((captures / "agent-register-public-key.pem").read_bytes())
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _verify(req: HttpRequest, parsed: ParsedSignature, secrets: dict[str, str], public_key: bytes) -> None:
    if parsed.access_key_id.startswith("mi-"):
        verify_rsa(req, parsed, public_key, max_skew=None)
    else:
        verify_hmac(req, parsed, secrets[parsed.access_key_id], max_skew=None)


def test_signed_requests_verify(
    capture_name: str, load_capture: Callable[[str], list[Event]], captures: pathlib.Path
) -> None:
    events = load_capture(capture_name)
    secrets, public_key = _secrets(events), _public_key_der(captures)
    for event in _signed(events):
        req = _request(event)
        parsed = parse_request(req)
        assert parsed.amz_date == event["headers"]["X-Amz-Date"]
        _verify(req, parsed, secrets, public_key)
        # inside the default 5-minute window the clock check passes too
        if not parsed.access_key_id.startswith("mi-"):
            secret = secrets[parsed.access_key_id]
            verify_hmac(req, parsed, secret, now=parsed.date + dt.timedelta(minutes=4))
            with pytest.raises(SigV4Error, match="Signature expired"):
                verify_hmac(req, parsed, secret, now=parsed.date + dt.timedelta(minutes=6))


def test_unsigned_requests_are_missing_authentication(
    capture_name: str, load_capture: Callable[[str], list[Event]]
) -> None:
    for event in load_capture(capture_name):
        if event["kind"] == "http-request" and not _signed([event]):
            with pytest.raises(SigV4Error) as info:
                parse_request(_request(event))
            assert info.value.code == "MissingAuthenticationTokenException"


def test_rsa_token_request_verifies_only_with_the_registration_key(
    load_capture: Callable[[str], list[Event]], captures: pathlib.Path
) -> None:
    events = load_capture("agent-register")
    target = "AmazonSSM.RequestManagedInstanceRoleToken"
    (token_request,) = [event for event in _signed(events) if event["headers"].get("X-Amz-Target") == target]
    req = _request(token_request)
    parsed = parse_request(req)
    assert parsed.access_key_id == "mi-0123456789abcdef0"
    assert "x-amz-content-sha256" not in parsed.signed_headers
    verify_rsa(req, parsed, _public_key_der(captures), max_skew=None)
    with pytest.raises(SigV4Error):
        verify_hmac(req, parsed, DUMMY_SECRETS["AKIDEXAMPLE"], max_skew=None)


def _mutate(text: str, index: int, replacement: str) -> str:
    index %= len(text)
    if text[index] == replacement:
        replacement = "Z" if replacement != "Z" else "Y"
    return text[:index] + replacement + text[index + 1 :]


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(data=st.data())
def test_one_byte_tamper_fails(
    capture_name: str, load_capture: Callable[[str], list[Event]], captures: pathlib.Path, data: st.DataObject
) -> None:
    events = load_capture(capture_name)
    signed = _signed(events)
    if not signed:
        return  # plugin captures carry no SigV4 (the data channel is authorised by TokenValue)
    secrets, public_key = _secrets(events), _public_key_der(captures)
    req = _request(data.draw(st.sampled_from(signed)))
    parsed = parse_request(req)
    part = data.draw(st.sampled_from(["body", "header", "path", "query"]))
    index = data.draw(st.integers(0, 10_000))
    char = data.draw(st.sampled_from("aZ0-_/%"))
    if part == "body" or (part == "query" and not req.query):
        body = bytearray(req.body or b"\0")
        body[index % len(body)] ^= 0x01
        tampered = HttpRequest(
            req.method, req.path, req.query, req.headers, bytes(body) if req.body else b" "
        )
    elif part == "header":
        signed_names = set(parsed.signed_headers)
        candidates = [i for i, (name, _) in enumerate(req.headers) if name.lower() in signed_names]
        position = data.draw(st.sampled_from(candidates))
        name, value = req.headers[position]
        headers = list(req.headers)
        headers[position] = (name, _mutate(value, index, char.replace("/", "x")))
        tampered = HttpRequest(req.method, req.path, req.query, tuple(headers), req.body)
    elif part == "path":
        tampered = HttpRequest(req.method, _mutate(req.path, 1 + index % len(req.path), "q"), req.query, req.headers, req.body)  # fmt: skip
    else:
        tampered = HttpRequest(req.method, req.path, _mutate(req.query, index, char), req.headers, req.body)
    with pytest.raises(SigV4Error):
        _verify(tampered, parse_request(tampered), secrets, public_key)
