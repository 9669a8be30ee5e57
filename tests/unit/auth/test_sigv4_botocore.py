"""Our signer and verifier against botocore, the signer the AWS CLI and boto3 use.

botocore is the oracle: a request it signs must verify, and our signature of the same request
must be byte-identical to its Authorization header.
"""

from __future__ import annotations

import datetime as dt

import pytest
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from openssm.auth.sigv4 import HttpRequest, SigV4Error, parse_request, sign_hmac, verify_hmac

from .helpers import (
    ACCESS_KEY_ID,
    ENDPOINT,
    REGION,
    SECRET_KEY,
    SESSION_TOKEN,
    botocore_presigned,
    botocore_signed,
    extra_headers,
    methods,
    normalized_queries,
    parse_amz_date,
    received,
    wire_paths,
)

HOST = "ssm.example.test:8443"
JSON_HEADERS = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AmazonSSM.StartSession"}


def _url(path: str, query: str) -> str:
    return f"{ENDPOINT}{path}" + (f"?{query}" if query else "")


@settings(max_examples=300)
@given(
    method=methods,
    path=wire_paths(),
    query=normalized_queries(),
    headers=extra_headers(),
    body=st.binary(max_size=64),
    token=st.one_of(st.none(), st.just(SESSION_TOKEN)),
)
def test_sign_hmac_equals_botocore_and_verifies(
    method: str, path: str, query: str, headers: dict[str, str], body: bytes, token: str | None
) -> None:
    url = _url(path, query)
    all_headers = {**JSON_HEADERS, **headers}
    oracle = botocore_signed(method, url, all_headers, body, token=token)
    when = parse_amz_date(oracle.headers["X-Amz-Date"])

    ours = sign_hmac(
        method, url, all_headers, body, access_key_id=ACCESS_KEY_ID, secret_key=SECRET_KEY,
        session_token=token, region=REGION, service="ssm", now=when,
    )  # fmt: skip
    assert ours["Authorization"] == oracle.headers["Authorization"]
    assert ours["X-Amz-Date"] == oracle.headers["X-Amz-Date"]
    assert ours.get("X-Amz-Security-Token") == oracle.headers.get("X-Amz-Security-Token")

    req = received(oracle, HOST)
    parsed = parse_request(req)
    assert (parsed.access_key_id, parsed.region, parsed.service, parsed.date) == (
        ACCESS_KEY_ID,
        REGION,
        "ssm",
        when,
    )
    assert parsed.security_token == token
    verify_hmac(req, parsed, SECRET_KEY, now=when)
    with pytest.raises(SigV4Error):
        verify_hmac(req, parsed, SECRET_KEY[:-1] + "Z", now=when)


def test_plain_http_endpoint_and_default_port_host() -> None:
    url = "http://127.0.0.1/"
    oracle = botocore_signed("POST", url, JSON_HEADERS, b'{"Target": "i-0123456789abcdef0"}')
    when = parse_amz_date(oracle.headers["X-Amz-Date"])
    ours = sign_hmac(
        "POST", url, JSON_HEADERS, b'{"Target": "i-0123456789abcdef0"}', access_key_id=ACCESS_KEY_ID,
        secret_key=SECRET_KEY, session_token=None, region=REGION, service="ssm", now=when,
    )  # fmt: skip
    assert ours["Authorization"] == oracle.headers["Authorization"]
    verify_hmac(
        received(oracle, "127.0.0.1"), parse_request(received(oracle, "127.0.0.1")), SECRET_KEY, now=when
    )


def test_unsigned_payload_is_honoured_only_when_signed_and_allowed() -> None:
    body = b'{"Target": "i-0123456789abcdef0"}'
    oracle = botocore_signed("POST", f"{ENDPOINT}/", JSON_HEADERS, body, payload_signing=False)
    assert oracle.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    when = parse_amz_date(oracle.headers["X-Amz-Date"])
    req = received(oracle, HOST)
    parsed = parse_request(req)
    assert "x-amz-content-sha256" in parsed.signed_headers
    verify_hmac(req, parsed, SECRET_KEY, now=when)
    # the signer chose not to protect the body, so a different body still verifies …
    other = HttpRequest(req.method, req.path, req.query, req.headers, b"{}")
    verify_hmac(other, parsed, SECRET_KEY, now=when)
    # … unless the endpoint insists on signed payloads
    with pytest.raises(SigV4Error) as info:
        verify_hmac(req, parsed, SECRET_KEY, now=when, allow_unsigned_payload=False)
    assert info.value.code == "IncompleteSignatureException"


@settings(max_examples=100)
@given(
    path=wire_paths(),
    query=normalized_queries(),
    expires=st.integers(min_value=1, max_value=604800),
    token=st.one_of(st.none(), st.just(SESSION_TOKEN)),
)
def test_botocore_presigned_url_verifies_until_it_expires(
    path: str, query: str, expires: int, token: str | None
) -> None:
    url = botocore_presigned("GET", _url(path, query), expires=expires, token=token)
    req = HttpRequest.from_url("GET", url, [("Host", HOST), ("User-Agent", "Mozilla/5.0")])
    parsed = parse_request(req)
    assert parsed.presigned and parsed.expires == expires and parsed.security_token == token
    assert parsed.service == "ssmmessages" and parsed.signed_headers == ("host",)
    verify_hmac(req, parsed, SECRET_KEY, now=parsed.date)
    verify_hmac(req, parsed, SECRET_KEY, now=parsed.date + dt.timedelta(seconds=expires))
    with pytest.raises(SigV4Error) as info:
        verify_hmac(req, parsed, SECRET_KEY, now=parsed.date + dt.timedelta(seconds=expires + 1))
    assert info.value.message.startswith("Request has expired")
    # the presigned expiry holds even with the clock-skew check turned off
    with pytest.raises(SigV4Error):
        verify_hmac(
            req, parsed, SECRET_KEY, now=parsed.date + dt.timedelta(seconds=expires + 1), max_skew=None
        )


def test_presigned_data_channel_url_tampered_fails() -> None:
    url = botocore_presigned(
        "GET", f"{ENDPOINT}/v1/data-channel/tester-0a1b2c3d4e5f60718?role=publish_subscribe", expires=60
    )
    req = HttpRequest.from_url("GET", url, [("Host", HOST)])
    parsed = parse_request(req)
    verify_hmac(req, parsed, SECRET_KEY, now=parsed.date)
    for path, query in [
        ("/v1/data-channel/tester-0a1b2c3d4e5f60719", req.query),
        (req.path, req.query.replace("publish_subscribe", "subscribe")),
    ]:
        tampered = HttpRequest("GET", path, query, req.headers, b"")
        with pytest.raises(SigV4Error):
            verify_hmac(tampered, parse_request(tampered), SECRET_KEY, now=parsed.date)


def test_s3_style_presigned_unsigned_payload_accepted_for_empty_body_only() -> None:
    request = AWSRequest(method="GET", url=f"{ENDPOINT}/v1/data-channel/s-1?role=publish_subscribe")
    S3SigV4QueryAuth(Credentials(ACCESS_KEY_ID, SECRET_KEY), "ssmmessages", REGION, expires=60).add_auth(
        request
    )
    req = HttpRequest.from_url("GET", request.url, [("Host", HOST)])
    parsed = parse_request(req)
    verify_hmac(req, parsed, SECRET_KEY, now=parsed.date)
    with_body = HttpRequest("GET", req.path, req.query, req.headers, b"x")
    with pytest.raises(SigV4Error):
        verify_hmac(with_body, parsed, SECRET_KEY, now=parsed.date)
