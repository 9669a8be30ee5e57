"""Malformed, incomplete and out-of-time requests fail with the codes and words AWS uses."""

from __future__ import annotations

import datetime as dt

import pytest

from openssm.auth.errors import SIGNATURE_MISMATCH_MESSAGE
from openssm.auth.sigv4 import (
    HttpRequest,
    ParsedSignature,
    SigV4Error,
    parse_request,
    require_scope,
    sign_hmac,
    verify_hmac,
)

from .helpers import ACCESS_KEY_ID, REGION, SECRET_KEY, botocore_signed, received

WHEN = dt.datetime(2026, 11, 28, 16, 32, 13, tzinfo=dt.UTC)
HOST = "127.0.0.1:19431"
BODY = b'{"Target": "i-0123456789abcdef0"}'
JSON_HEADERS = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AmazonSSM.StartSession"}


def _signed(**overrides: object) -> list[tuple[str, str]]:
    added = sign_hmac(
        "POST", f"http://{HOST}/", JSON_HEADERS, BODY, access_key_id=ACCESS_KEY_ID, secret_key=SECRET_KEY,
        session_token=None, region=REGION, service="ssm", now=WHEN,
    )  # fmt: skip
    headers = {"Host": HOST, **JSON_HEADERS, **added}
    for name, value in overrides.items():
        headers.pop(name.replace("_", "-"), None)
        if value is not None:
            headers[name.replace("_", "-")] = str(value)
    return list(headers.items())


def _request(headers: list[tuple[str, str]], query: str = "", body: bytes = BODY) -> HttpRequest:
    return HttpRequest("POST", "/", query, headers, body)


def _parse_error(req: HttpRequest) -> SigV4Error:
    with pytest.raises(SigV4Error) as info:
        parse_request(req)
    return info.value


def _authorization(credential: str, signed_headers: str = "content-type;host;x-amz-date;x-amz-target") -> str:
    return f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed_headers}, Signature={'0' * 64}"


def test_unsigned_request_is_missing_authentication_token() -> None:
    error = _parse_error(_request([("Host", HOST), *JSON_HEADERS.items()]))
    assert (error.code, error.status, error.message) == (
        "MissingAuthenticationTokenException",
        403,
        "Missing Authentication Token",
    )
    assert (error.query_code, error.query_status, error.query_message) == (
        "MissingAuthenticationToken",
        403,
        "Request is missing Authentication Token",
    )


@pytest.mark.parametrize(
    ("authorization", "fragment"),
    [
        ("AWS4-ECDSA-P256-SHA256 Credential=x", "Unsupported AWS 'algorithm': 'AWS4-ECDSA-P256-SHA256'"),
        ("AWS AKIDEXAMPLE:c2lnbmF0dXJl", "Unsupported AWS 'algorithm': 'AWS'"),
        ("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00", "requires 'Credential' parameter"),
        ("AWS4-HMAC-SHA256 Credential=A/20261128/us-east-1/ssm/aws4_request", "requires 'Signature' parameter"),
        (_authorization("AKIDEXAMPLE/20261128/us-east-1/ssm"), "exactly 5 slash-delimited elements"),
        (_authorization("AKIDEXAMPLE/20261128/us-east-1/ssm/aws5_request"), "valid terminator: 'aws4_request'"),
        (_authorization("AKIDEXAMPLE/2026-11-28/us-east-1/ssm/aws4_request"), "yyyyMMdd"),
        (_authorization("AKIDEXAMPLE/20261128//ssm/aws4_request"), "valid region"),
        (_authorization(f"{ACCESS_KEY_ID}/20261128/us-east-1/ssm/aws4_request", "content-type;x-amz-date;x-amz-target"),
         "'Host' or ':authority' must be a 'SignedHeader'"),
        (_authorization(f"{ACCESS_KEY_ID}/20261128/us-east-1/ssm/aws4_request", "content-type;host;x-amz-date"),
         "not signed: x-amz-target"),
        (_authorization(f"{ACCESS_KEY_ID}/20261128/us-east-1/ssm/aws4_request", "host;x-amz-date;x-amz-target"),
         "not signed: content-type"),
        (_authorization(f"{ACCESS_KEY_ID}/20261128/us-east-1/ssm/aws4_request", "Host;x-amz-date"), "lowercase"),
        (_authorization(f"{ACCESS_KEY_ID}/20261128/us-east-1/ssm/aws4_request", "host;host"), "twice"),
    ],
)  # fmt: skip
def test_incomplete_authorization_header(authorization: str, fragment: str) -> None:
    error = _parse_error(_request(_signed(Authorization=authorization)))
    assert error.code == "IncompleteSignatureException"
    assert error.query_code == "IncompleteSignature"
    assert fragment in error.message


def test_date_header_is_required() -> None:
    error = _parse_error(_request(_signed(X_Amz_Date=None)))
    assert "either a 'X-Amz-Date' or a 'Date' header" in error.message


@pytest.mark.parametrize("value", ["2026-11-28T16:32:13Z", "20261128T163213", "20261332T163213Z"])
def test_malformed_amz_date(value: str) -> None:
    assert error_code(_request(_signed(X_Amz_Date=value))) == "IncompleteSignatureException"


def error_code(req: HttpRequest) -> str:
    return _parse_error(req).code


def test_scope_date_must_match_request_date() -> None:
    auth = dict(_signed())["Authorization"].replace("/20261128/", "/20261127/")
    error = _parse_error(_request(_signed(Authorization=auth)))
    assert error.code == "InvalidSignatureException" and error.query_code == "SignatureDoesNotMatch"
    assert "'20261127' != '20261128', from '20261128T163213Z'" in error.message


def test_unsigned_security_token_header_is_refused() -> None:
    # A token added after signing (the "post-sts-header-after" variant) is not accepted.
    error = _parse_error(_request([*_signed(), ("X-Amz-Security-Token", "token")]))
    assert "not signed: x-amz-security-token" in error.message


def test_two_auth_mechanisms_and_repeated_parameters() -> None:
    error = _parse_error(_request(_signed(), query="X-Amz-Algorithm=AWS4-HMAC-SHA256"))
    assert "Only one auth mechanism allowed" in error.message
    assert (
        "Only one 'authorization' header"
        in _parse_error(_request([*_signed(), ("authorization", "x")])).message
    )
    query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Algorithm=AWS4-HMAC-SHA256"
    assert "more than once" in _parse_error(_request([("Host", HOST)], query=query)).message


def _presigned_query(**changes: str | None) -> str:
    params = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{ACCESS_KEY_ID}%2F20261128%2Fus-east-1%2Fssmmessages%2Faws4_request",
        "X-Amz-Date": "20261128T163213Z",
        "X-Amz-Expires": "60",
        "X-Amz-SignedHeaders": "host",
        "X-Amz-Signature": "0" * 64,
    }
    for name, value in changes.items():
        key = name.replace("_", "-")
        if value is None:
            del params[key]
        else:
            params[key] = value
    return "role=publish_subscribe&" + "&".join(f"{k}={v}" for k, v in params.items())


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"X_Amz_Expires": None}, "must include 'X-Amz-Algorithm', 'X-Amz-Credential'"),
        ({"X_Amz_Algorithm": None}, "Re-examine the query-string parameters"),
        ({"X_Amz_Expires": "0"}, "at least 1 second"),
        ({"X_Amz_Expires": "604801"}, "less than a week (in seconds) that is 604800"),
        ({"X_Amz_Expires": "-5"}, "should be a number"),
        ({"X_Amz_Algorithm": "AWS4-HMAC-SHA1"}, "Unsupported AWS 'algorithm'"),
        ({"X_Amz_SignedHeaders": "x-amz-date"}, "'Host' or ':authority'"),
        ({"X_Amz_Credential": "%FF%FE"}, "must be UTF-8"),
    ],
)
def test_incomplete_presigned_query(changes: dict[str, str | None], fragment: str) -> None:
    error = _parse_error(
        HttpRequest("GET", "/v1/data-channel/s", _presigned_query(**changes), [("Host", HOST)], b"")
    )
    assert error.code == "IncompleteSignatureException"
    assert fragment in error.message


def test_presigned_expiry_bounds_accepted() -> None:
    for expires in ("1", "604800"):
        parsed = parse_request(
            HttpRequest("GET", "/", _presigned_query(X_Amz_Expires=expires), [("Host", HOST)], b"")
        )
        assert parsed.expires == int(expires)


def test_sizes_are_bounded() -> None:
    assert (
        "too long" in _parse_error(_request(_signed(Authorization="AWS4-HMAC-SHA256 " + "x" * 5000))).message
    )
    assert "longer than" in _parse_error(_request(_signed(), query="a=" + "b" * 40000)).message
    many = ";".join(f"h{i}" for i in range(100))
    auth = _authorization(f"{ACCESS_KEY_ID}/20261128/us-east-1/ssm/aws4_request", many)
    assert "more than 64" in _parse_error(_request(_signed(Authorization=auth))).message


# --------------------------------------------------------------------------------------- time


def _parsed() -> tuple[HttpRequest, ParsedSignature]:
    req = _request(_signed())
    return req, parse_request(req)


@pytest.mark.parametrize("offset", [dt.timedelta(0), dt.timedelta(minutes=5), dt.timedelta(minutes=-5)])
def test_within_skew_verifies(offset: dt.timedelta) -> None:
    req, parsed = _parsed()
    verify_hmac(req, parsed, SECRET_KEY, now=WHEN + offset)


def test_signature_expired_message() -> None:
    req, parsed = _parsed()
    with pytest.raises(SigV4Error) as info:
        verify_hmac(req, parsed, SECRET_KEY, now=WHEN + dt.timedelta(minutes=5, seconds=1))
    assert info.value.code == "InvalidSignatureException" and info.value.query_code == "SignatureDoesNotMatch"
    assert info.value.message == (
        "Signature expired: 20261128T163213Z is now earlier than 20261128T163214Z (20261128T163714Z - 5 min.)"
    )


def test_signature_not_yet_current_message() -> None:
    req, parsed = _parsed()
    with pytest.raises(SigV4Error) as info:
        verify_hmac(
            req, parsed, SECRET_KEY, now=WHEN - dt.timedelta(minutes=6), max_skew=dt.timedelta(seconds=90)
        )
    assert info.value.message == (
        "Signature not yet current: 20261128T163213Z is still later than 20261128T162743Z (20261128T162613Z + 90 sec.)"
    )


def test_skew_check_can_be_turned_off_for_replays() -> None:
    req, parsed = _parsed()
    verify_hmac(req, parsed, SECRET_KEY, now=WHEN + dt.timedelta(days=400), max_skew=None)


def test_mismatch_message_and_redacted_diagnostics() -> None:
    added = sign_hmac(
        "POST", f"http://{HOST}/", JSON_HEADERS, BODY, access_key_id=ACCESS_KEY_ID, secret_key=SECRET_KEY,
        session_token="secret-session-token", region=REGION, service="ssm", now=WHEN,
    )  # fmt: skip
    req = _request([("Host", HOST), *JSON_HEADERS.items(), *added.items()], body=b"{}")
    with pytest.raises(SigV4Error) as info:
        verify_hmac(req, parse_request(req), SECRET_KEY, now=WHEN)
    error = info.value
    assert (error.code, error.status, error.query_code, error.query_status) == (
        "InvalidSignatureException", 400, "SignatureDoesNotMatch", 403,
    )  # fmt: skip
    assert error.message == SIGNATURE_MISMATCH_MESSAGE
    assert error.diagnostics is not None
    assert (
        "secret-session-token" not in error.diagnostics
        and "x-amz-security-token:<redacted>" in error.diagnostics
    )
    assert "AWS4-HMAC-SHA256\n20261128T163213Z\n20261128/us-east-1/ssm/aws4_request\n" in error.diagnostics


def test_non_hex_signature_is_a_mismatch_not_a_crash() -> None:
    auth = dict(_signed())["Authorization"].rpartition("Signature=")[0] + "Signature=not-hex"
    req = _request(_signed(Authorization=auth))
    with pytest.raises(SigV4Error) as info:
        verify_hmac(req, parse_request(req), SECRET_KEY, now=WHEN)
    assert info.value.message == SIGNATURE_MISMATCH_MESSAGE


def test_declared_payload_hash_must_match_body() -> None:
    req = _request([*_signed(), ("X-Amz-Content-Sha256", "0" * 64)])
    with pytest.raises(SigV4Error) as info:
        verify_hmac(req, parse_request(req), SECRET_KEY, now=WHEN)
    assert "x-amz-content-sha256" in info.value.message


def test_require_scope() -> None:
    _, parsed = _parsed()
    require_scope(parsed, services=["ssm"], regions=[REGION])
    with pytest.raises(SigV4Error, match="correct service: 'ssmmessages'"):
        require_scope(parsed, services=["ssmmessages"], regions=[REGION])
    with pytest.raises(SigV4Error, match="valid region, not 'us-east-1'"):
        require_scope(parsed, services=["ssm"], regions=["eu-west-1"])


def test_http_date_header_may_date_the_request() -> None:
    # botocore signs with the Date header (and no X-Amz-Date) when the request carries one.
    request = botocore_signed("POST", f"http://{HOST}/", {"Date": "x", **JSON_HEADERS}, BODY)
    assert "X-Amz-Date" not in request.headers and "date;" in request.headers["Authorization"]
    req = received(request, HOST)
    parsed = parse_request(req)
    verify_hmac(req, parsed, SECRET_KEY, max_skew=dt.timedelta(minutes=1))
    assert parsed.amz_date[:8] == parsed.credential_date
    with pytest.raises(SigV4Error):
        verify_hmac(
            req,
            parsed,
            SECRET_KEY,
            now=parsed.date + dt.timedelta(minutes=2),
            max_skew=dt.timedelta(minutes=1),
        )


@pytest.mark.parametrize("declared", ["é" * 64, "\udc80", "ü"])
def test_declared_payload_hash_with_non_ascii_characters_is_a_mismatch(declared: str) -> None:
    """Found by fuzzing (tests/fuzz, target sigv4): a non-ASCII X-Amz-Content-Sha256 (headers arrive
    decoded as latin-1) made hmac.compare_digest raise TypeError, an HTTP 500 on the API."""
    headers = [*_signed(), ("X-Amz-Content-Sha256", declared)]
    req = _request(headers)
    with pytest.raises(SigV4Error) as info:
        verify_hmac(req, parse_request(req), SECRET_KEY, now=WHEN)
    assert (
        info.value.message == "The provided 'x-amz-content-sha256' header does not match what was computed."
    )
