"""SigV4 on the server: parse and verify requests from the AWS CLI, SDKs and the SSM agent; sign ours.

Two signature forms are verified: the ``Authorization`` header and the presigned query
(``X-Amz-Algorithm`` … ``X-Amz-Signature``). Two signature algorithms share the canonical request
and string-to-sign: the HMAC chain of a secret key, and the RSA-PSS variant that managed instances
(``mi-…``) use for ``RequestManagedInstanceRoleToken``. Pure: no I/O, no clock unless not given one.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, TypedDict, Unpack
from urllib.parse import unquote, urlsplit

from openssm.auth import canonical
from openssm.auth.canonical import ALGORITHM, SCOPE_TERMINATOR, UNSIGNED_PAYLOAD
from openssm.auth.errors import (
    SigV4Error,
    expired_token,
    incomplete_signature,
    invalid_signature,
    missing_authentication,
    unrecognized_client,
)

__all__ = [
    "DEFAULT_MAX_SKEW",
    "HttpRequest",
    "ParsedSignature",
    "SigV4Error",
    "expired_token",
    "parse_request",
    "require_scope",
    "sign_hmac",
    "sign_rsa",
    "unrecognized_client",
    "verify_hmac",
    "verify_rsa",
]

DEFAULT_MAX_SKEW = dt.timedelta(minutes=5)
MAX_PRESIGNED_EXPIRES = 604800  # one week, as AWS
# Bounds on what we parse, so hostile input cannot make verification expensive.
MAX_AUTHORIZATION_LENGTH = 4096
MAX_SIGNATURE_LENGTH = 2048
MAX_SIGNED_HEADERS = 64
MAX_QUERY_LENGTH = 32768
MAX_SIGNED_HEADER_BYTES = 65536
MAX_SECURITY_TOKEN_LENGTH = 8192

_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_SCOPE_DATE = re.compile(r"\d{8}")
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_HEX_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_PRESIGN_REQUIRED = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)
# Headers that must be signed whenever they are present: they choose the operation, the body's
# meaning, the request time or the credentials, so an unsigned copy could be swapped in transit.
_MUST_SIGN_IF_PRESENT = ("content-type", "x-amz-target", "x-amz-date", "x-amz-security-token")
# Headers our signers leave out by default: hop-by-hop or rewritten by proxies and HTTP clients.
_NOT_SIGNED_BY_DEFAULT = frozenset(
    {
        "authorization",
        "baggage",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)
_DEFAULT_PORTS = {"http": "80", "ws": "80", "https": "443", "wss": "443"}


# Value types are NamedTuples, not frozen dataclasses: the client signs with this module on its way
# to StartSession, where the dataclasses module (with inspect, ast, dis…) was a sixth of the work.
class HttpRequest(NamedTuple):
    """A request as received: raw path and query (still percent-encoded), headers in any case."""

    method: str
    path: str
    query: str
    headers: Sequence[tuple[str, str]]
    body: bytes

    @classmethod
    def from_url(
        cls, method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes = b""
    ) -> HttpRequest:
        parts = urlsplit(url)
        return cls(method, parts.path or "/", parts.query, tuple(headers), body)

    def header_values(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]


class ParsedSignature(NamedTuple):
    algorithm: str
    access_key_id: str
    date: dt.datetime  # aware UTC, from X-Amz-Date (header, or query when presigned) or Date
    credential_date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    presigned: bool
    expires: int | None
    security_token: str | None

    @property
    def amz_date(self) -> str:
        return _format_amz_date(self.date)

    @property
    def scope(self) -> str:
        return canonical.credential_scope(self.credential_date, self.region, self.service)


# ---------------------------------------------------------------------------------------- parsing


def _format_amz_date(when: dt.datetime) -> str:
    utc = when.astimezone(dt.UTC)
    return f"{utc.year:04d}{utc.month:02d}{utc.day:02d}T{utc.hour:02d}{utc.minute:02d}{utc.second:02d}Z"


def _parse_amz_date(text: str) -> dt.datetime:
    if not _AMZ_DATE.fullmatch(text):
        raise incomplete_signature("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    try:
        return dt.datetime(
            int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[9:11]), int(text[11:13]), int(text[13:15]),
            tzinfo=dt.UTC,
        )  # fmt: skip
    except ValueError as exc:
        raise incomplete_signature(f"X-Amz-Date '{text}' is not a valid date and time") from exc


def _parse_http_date(text: str) -> dt.datetime:
    from email.utils import parsedate_to_datetime  # the email package: for verifying only, not signing

    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError) as exc:
        raise incomplete_signature(f"Date header '{text[:64]}' is not an HTTP date") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _single_header(req: HttpRequest, name: str, limit: int = MAX_AUTHORIZATION_LENGTH) -> str | None:
    values = req.header_values(name)
    if not values:
        return None
    if len(values) > 1:
        raise incomplete_signature(f"Only one '{name}' header is allowed.")
    if len(values[0]) > limit:
        raise incomplete_signature(f"The '{name}' header is too long.")
    return values[0].strip()


class _Credential(NamedTuple):
    """A signature's ``Credential`` (key id and scope) and the headers it says it signed."""

    key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]


def _parse_credential(value: str) -> tuple[str, str, str, str]:
    parts = value.split("/")
    if len(parts) != 5:
        raise incomplete_signature(
            "Credential must have exactly 5 slash-delimited elements, "
            f"e.g. keyid/date/region/service/term, got '{value[:200]}'"
        )
    key_id, date, region, service, terminator = parts
    if terminator != SCOPE_TERMINATOR:
        raise incomplete_signature(
            f"Credential should be scoped with a valid terminator: '{SCOPE_TERMINATOR}', not '{terminator[:64]}'."
        )
    if not key_id:
        raise incomplete_signature("Credential must name an access key id.")
    if not _SCOPE_DATE.fullmatch(date):
        raise incomplete_signature(f"Credential date '{date[:64]}' must be in the form yyyyMMdd.")
    if not region:
        raise incomplete_signature("Credential should be scoped to a valid region, not ''.")
    if not service:
        raise incomplete_signature("Credential should be scoped to a valid service, not ''.")
    return key_id, date, region, service


def _parse_signed_headers(value: str) -> tuple[str, ...]:
    names = tuple(value.split(";"))
    if len(names) > MAX_SIGNED_HEADERS:
        raise incomplete_signature(f"SignedHeaders lists more than {MAX_SIGNED_HEADERS} headers.")
    for name in names:
        if not _HEADER_NAME.fullmatch(name):
            raise incomplete_signature(
                f"SignedHeaders must be lowercase header names separated by ';', got '{value[:200]}'"
            )
    if len(set(names)) != len(names):
        raise incomplete_signature(f"SignedHeaders names a header twice: '{value[:200]}'")
    return names


def _credential(req: HttpRequest, credential: str, signed_headers: str) -> _Credential:
    key_id, date, region, service = _parse_credential(credential)
    names = _parse_signed_headers(signed_headers)
    _check_signed_headers(req, names)
    return _Credential(key_id, date, region, service, names)


def _signature(
    algorithm: str,
    credential: _Credential,
    date: dt.datetime,
    signature: str,
    *,
    expires: int | None,
    security_token: str | None,
) -> ParsedSignature:
    """The parsed signature, presigned (query string) when it ``expires``."""
    return ParsedSignature(
        algorithm=algorithm,
        access_key_id=credential.key_id,
        date=date,
        credential_date=credential.date,
        region=credential.region,
        service=credential.service,
        signed_headers=credential.signed_headers,
        signature=signature,
        presigned=expires is not None,
        expires=expires,
        security_token=security_token,
    )


def _check_signed_headers(req: HttpRequest, names: tuple[str, ...]) -> None:
    if "host" not in names:
        raise incomplete_signature(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )
    present = {key.lower() for key, _ in req.headers}
    unsigned = [name for name in _MUST_SIGN_IF_PRESENT if name in present and name not in names]
    if unsigned:
        raise incomplete_signature(
            f"There were headers present in the request which were not signed: {', '.join(unsigned)}"
        )


def _check_scope_date(credential_date: str, amz_date: str) -> None:
    if credential_date != amz_date[:8]:
        raise invalid_signature(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{credential_date}' != '{amz_date[:8]}', from '{amz_date}'."
        )


def _check_signature_text(signature: str) -> str:
    if not signature:
        raise incomplete_signature("Authorization header requires 'Signature' parameter.")
    if len(signature) > MAX_SIGNATURE_LENGTH:
        raise incomplete_signature("The signature is too long.")
    return signature


def _check_token(token: str | None) -> str | None:
    if token is not None and len(token) > MAX_SECURITY_TOKEN_LENGTH:
        raise incomplete_signature("The security token is too long.")
    return token


def _parse_header_form(req: HttpRequest, authorization: str) -> ParsedSignature:
    algorithm, _, rest = authorization.partition(" ")
    if algorithm != ALGORITHM:
        raise incomplete_signature(
            f"Unsupported AWS 'algorithm': '{algorithm[:64]}'; this service accepts only {ALGORITHM}."
        )
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if name in fields:
            raise incomplete_signature(f"Authorization header has the '{name}' parameter twice.")
        fields[name] = value.strip()
    problems = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not fields.get(name)
    ]
    amz_date = _single_header(req, "x-amz-date", 64)
    http_date = None if amz_date is not None else _single_header(req, "date", 128)
    if amz_date is None and http_date is None:
        problems.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if problems:
        raise incomplete_signature(" ".join(problems))
    credential = _credential(req, fields["Credential"], fields["SignedHeaders"])
    if amz_date is not None:
        date = _parse_amz_date(amz_date)
    else:
        assert http_date is not None
        if "date" not in credential.signed_headers:
            raise incomplete_signature(
                "There were headers present in the request which were not signed: date"
            )
        date = _parse_http_date(http_date)
    _check_scope_date(credential.date, _format_amz_date(date))
    return _signature(
        algorithm,
        credential,
        date,
        _check_signature_text(fields["Signature"]),
        expires=None,
        security_token=_check_token(_single_header(req, "x-amz-security-token", MAX_SECURITY_TOKEN_LENGTH)),
    )


def _decode_query_component(text: str) -> str:
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError as exc:
        raise incomplete_signature("Query-string authentication parameters must be UTF-8.") from exc


def _auth_query_params(raw_query: str) -> dict[str, str]:
    """Decoded ``X-Amz-*`` query parameters (each must appear at most once)."""
    if "amz" not in raw_query.lower():
        return {}
    params: dict[str, str] = {}
    for part in raw_query.split("&"):
        raw_key, _, raw_value = part.partition("=")
        key = unquote(raw_key)  # other parameters may be any bytes; only X-Amz-* must be UTF-8
        if not key.startswith("X-Amz-"):
            continue
        if key in params:
            raise incomplete_signature(f"The query-string parameter '{key}' appears more than once.")
        params[key] = _decode_query_component(raw_value)
    return params


def _parse_expires(text: str) -> int:
    if not text.isdigit() or len(text) > 12:
        raise incomplete_signature("X-Amz-Expires should be a number")
    expires = int(text)
    if expires < 1:
        raise incomplete_signature("X-Amz-Expires must be at least 1 second")
    if expires > MAX_PRESIGNED_EXPIRES:
        raise incomplete_signature(
            f"X-Amz-Expires must be less than a week (in seconds) that is {MAX_PRESIGNED_EXPIRES}"
        )
    return expires


def _parse_query_form(req: HttpRequest, params: Mapping[str, str]) -> ParsedSignature:
    if any(name not in params for name in _PRESIGN_REQUIRED):
        listed = ", ".join(f"'{name}'" for name in _PRESIGN_REQUIRED)
        raise incomplete_signature(
            f"AWS query-string parameters must include {listed}. Re-examine the query-string parameters."
        )
    algorithm = params["X-Amz-Algorithm"]
    if algorithm != ALGORITHM:
        raise incomplete_signature(
            f"Unsupported AWS 'algorithm': '{algorithm[:64]}'; this service accepts only {ALGORITHM}."
        )
    credential = _credential(req, params["X-Amz-Credential"], params["X-Amz-SignedHeaders"])
    amz_date = params["X-Amz-Date"]
    date = _parse_amz_date(amz_date)
    _check_scope_date(credential.date, amz_date)
    query_token = params.get("X-Amz-Security-Token")
    header_token = _single_header(req, "x-amz-security-token", MAX_SECURITY_TOKEN_LENGTH)
    if query_token is not None and header_token is not None and query_token != header_token:
        raise incomplete_signature("The request carries two different security tokens.")
    return _signature(
        algorithm,
        credential,
        date,
        _check_signature_text(params["X-Amz-Signature"]),
        expires=_parse_expires(params["X-Amz-Expires"]),
        security_token=_check_token(query_token if query_token is not None else header_token),
    )


def parse_request(req: HttpRequest) -> ParsedSignature:
    """Read the SigV4 signature of a request (header or presigned form) without verifying it.

    Raises SigV4Error: MissingAuthenticationToken when the request carries no signature at all,
    IncompleteSignature when it is malformed, InvalidSignature when its scope date is wrong.
    """
    if len(req.query) > MAX_QUERY_LENGTH:
        raise incomplete_signature(f"The query string is longer than {MAX_QUERY_LENGTH} characters.")
    authorization = _single_header(req, "authorization")
    params = _auth_query_params(req.query)
    if authorization is not None and "X-Amz-Algorithm" in params:
        raise incomplete_signature(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified"
        )
    if authorization is not None:
        return _parse_header_form(req, authorization)
    if params.keys() & {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"}:
        return _parse_query_form(req, params)
    raise missing_authentication()


def require_scope(parsed: ParsedSignature, *, services: Iterable[str], regions: Iterable[str]) -> None:
    """Refuse a credential scope for a service or region this endpoint does not serve (AWS wording)."""
    allowed_services = list(services)
    if parsed.service not in allowed_services:
        raise invalid_signature(f"Credential should be scoped to correct service: '{allowed_services[0]}'. ")
    if parsed.region not in set(regions):
        raise invalid_signature(f"Credential should be scoped to a valid region, not '{parsed.region}'. ")


# ------------------------------------------------------------------------------------ verification


def _format_skew(skew: dt.timedelta) -> str:
    seconds = int(skew.total_seconds())
    return f"{seconds // 60} min." if seconds % 60 == 0 else f"{seconds} sec."


def _check_time(parsed: ParsedSignature, now: dt.datetime | None, max_skew: dt.timedelta | None) -> None:
    current = dt.datetime.now(dt.UTC) if now is None else now.astimezone(dt.UTC)
    stamp = parsed.amz_date
    if max_skew is not None and parsed.date > current + max_skew:
        raise invalid_signature(
            f"Signature not yet current: {stamp} is still later than {_format_amz_date(current + max_skew)} "
            f"({_format_amz_date(current)} + {_format_skew(max_skew)})"
        )
    if parsed.presigned:
        assert parsed.expires is not None
        expiry = parsed.date + dt.timedelta(seconds=parsed.expires)
        if current > expiry:
            raise invalid_signature(
                f"Request has expired: signed at {stamp} for {parsed.expires} seconds, "
                f"so it ended at {_format_amz_date(expiry)}; it is now {_format_amz_date(current)}."
            )
    elif max_skew is not None and parsed.date < current - max_skew:
        raise invalid_signature(
            f"Signature expired: {stamp} is now earlier than {_format_amz_date(current - max_skew)} "
            f"({_format_amz_date(current)} - {_format_skew(max_skew)})"
        )


def _payload_hashes(req: HttpRequest, parsed: ParsedSignature, allow_unsigned_payload: bool) -> list[str]:
    """Payload hashes the signer may have used, most likely first."""
    declared = _single_header(req, "x-amz-content-sha256", 128)
    if declared is not None and "x-amz-content-sha256" in parsed.signed_headers:
        if declared == UNSIGNED_PAYLOAD:
            if not allow_unsigned_payload:
                raise incomplete_signature("This endpoint requires a signed payload, not UNSIGNED-PAYLOAD.")
            return [UNSIGNED_PAYLOAD]
        if declared.startswith("STREAMING-"):
            raise incomplete_signature(f"Payload signing mode '{declared[:64]}' is not supported.")
    body_hash = canonical.sha256_hex(req.body)
    # An unsigned UNSIGNED-PAYLOAD or STREAMING-* claim is ignored (the body hash is used instead);
    # any other declared hash, signed or not, must be the hash of the body we received.
    if (
        declared is not None
        and declared != UNSIGNED_PAYLOAD
        and not declared.startswith("STREAMING-")
        # As bytes: compare_digest refuses str with non-ASCII characters, which a header can hold.
        and not hmac.compare_digest(declared.lower().encode("utf-8", "surrogateescape"), body_hash.encode())
    ):
        raise invalid_signature(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    if parsed.presigned and not req.body and declared is None and allow_unsigned_payload:
        # Non-S3 presigners hash the (empty) body; S3-style ones sign UNSIGNED-PAYLOAD. With no
        # body there is nothing left unauthenticated either way, so accept both.
        return [body_hash, UNSIGNED_PAYLOAD]
    return [body_hash]


def _canonical_requests(req: HttpRequest, parsed: ParsedSignature, allow_unsigned_payload: bool) -> list[str]:
    names = parsed.signed_headers
    header_bytes = sum(len(value) for key, value in req.headers if key.lower() in names)
    if header_bytes > MAX_SIGNED_HEADER_BYTES:
        raise incomplete_signature(f"Signed headers exceed {MAX_SIGNED_HEADER_BYTES} bytes.")
    uri = canonical.canonical_uri(req.path)
    query = canonical.canonical_query(req.query, drop_key="X-Amz-Signature" if parsed.presigned else None)
    header_lines = canonical.canonical_headers(req.headers, names)
    signed = ";".join(names)
    return [
        canonical.canonical_request(req.method, uri, query, header_lines, signed, payload_hash)
        for payload_hash in _payload_hashes(req, parsed, allow_unsigned_payload)
    ]


def _diagnostics(parsed: ParsedSignature, canonical_text: str) -> str:
    redacted = canonical_text
    if parsed.security_token:
        for form in {parsed.security_token, canonical.canonical_query(f"t={parsed.security_token}")[2:]}:
            redacted = redacted.replace(form, "<redacted>")
    sts = canonical.string_to_sign(parsed.amz_date, parsed.scope, canonical_text)
    return f"canonical request:\n{redacted}\nstring to sign:\n{sts}"


class VerifyOptions(TypedDict, total=False):
    """How strictly a signature is verified. ``now``: the time to judge it at (default: the clock);
    ``max_skew``: how far its X-Amz-Date may be from ``now`` (None turns the check off, for replays;
    a presigned request's own expiry, ``X-Amz-Date + X-Amz-Expires``, is still checked);
    ``allow_unsigned_payload``: whether UNSIGNED-PAYLOAD may stand for the body's hash."""

    now: dt.datetime | None
    max_skew: dt.timedelta | None
    allow_unsigned_payload: bool


def verify_hmac(
    req: HttpRequest, parsed: ParsedSignature, secret_key: str, **options: Unpack[VerifyOptions]
) -> None:
    """Verify an HMAC SigV4 signature made with ``secret_key``; raise SigV4Error if it does not hold."""

    def check(presented: str) -> Callable[[str], bool] | None:
        presented = presented.lower()
        if not _HEX_SIGNATURE.fullmatch(presented):
            return None
        key = canonical.signing_key(secret_key, parsed.credential_date, parsed.region, parsed.service)
        return lambda sts: hmac.compare_digest(canonical.hmac_signature(key, sts), presented)

    _verify(req, parsed, check, **options)


def verify_rsa(
    req: HttpRequest, parsed: ParsedSignature, public_key_der: bytes, **options: Unpack[VerifyOptions]
) -> None:
    """Verify the managed-instance variant: base64 RSASSA-PSS (SHA-256, MGF1-SHA-256, salt 32)
    over the ordinary string-to-sign, checked with the instance's DER SubjectPublicKeyInfo."""
    from openssm.auth import rsa_identity  # cryptography: only for managed instances' signatures

    def check(presented: str) -> Callable[[str], bool] | None:
        try:
            public_key = rsa_identity.load_public_key(public_key_der)
        except rsa_identity.RsaKeyError as exc:
            raise invalid_signature(f"The registered public key cannot verify signatures: {exc}.") from exc
        try:
            signature = base64.b64decode(presented, validate=True)
        except (binascii.Error, ValueError):
            return None
        if not signature:
            return None
        return lambda sts: rsa_identity.pss_verify(
            public_key, signature, sts.encode("utf-8", "surrogateescape")
        )

    _verify(req, parsed, check, **options)


def _verify(
    req: HttpRequest,
    parsed: ParsedSignature,
    check: Callable[[str], Callable[[str], bool] | None],
    *,
    now: dt.datetime | None = None,
    max_skew: dt.timedelta | None = DEFAULT_MAX_SKEW,
    allow_unsigned_payload: bool = True,
) -> None:
    """The time, then whether the presented signature ``signs`` (what ``check`` makes of it; None:
    not a signature of that kind) the string to sign of one of the canonical requests it may have
    been made over (``_canonical_requests``)."""
    _check_time(parsed, now, max_skew)
    signs = check(parsed.signature)
    candidates = _canonical_requests(req, parsed, allow_unsigned_payload)
    if signs is not None and any(
        signs(canonical.string_to_sign(parsed.amz_date, parsed.scope, canonical_text))
        for canonical_text in candidates
    ):
        return
    raise invalid_signature(diagnostics=_diagnostics(parsed, candidates[0]))


# ----------------------------------------------------------------------------------------- signing


def _host_for(url_parts: tuple[str, str]) -> str:
    scheme, netloc = url_parts
    host = netloc.rpartition("@")[2].lower()
    default_port = _DEFAULT_PORTS.get(scheme.lower())
    if default_port and host.endswith(f":{default_port}"):
        host = host[: -len(default_port) - 1]
    return host


def _signing_time(now: dt.datetime | None) -> dt.datetime:
    when = dt.datetime.now(dt.UTC) if now is None else now.astimezone(dt.UTC)
    return when.replace(microsecond=0)


def _string_to_sign_for(
    method: str,
    url: str,
    headers: Mapping[str, str],
    added: Mapping[str, str],
    body: bytes,
    scope: str,
    amz_date: str,
    signed_header_names: Iterable[str] | None,
) -> tuple[str, str]:
    """The string-to-sign and SignedHeaders value for a request we are about to send."""
    parts = urlsplit(url)
    replaced = {name.lower() for name in added} | {"authorization"}
    all_headers = [(name, value) for name, value in headers.items() if name.lower() not in replaced]
    all_headers.extend(added.items())
    present = {name.lower() for name, _ in all_headers}
    if "host" not in present:
        all_headers.append(("host", _host_for((parts.scheme, parts.netloc))))
        present.add("host")
    if signed_header_names is None:
        chosen = {name for name in present if name not in _NOT_SIGNED_BY_DEFAULT}
    else:
        chosen = {name.lower() for name in signed_header_names}
    chosen |= {"host"} | {name.lower() for name in added}
    missing = chosen - present
    if missing:
        raise ValueError(f"cannot sign headers the request does not carry: {sorted(missing)}")
    names = sorted(chosen)
    canonical_text = canonical.canonical_request(
        method.upper(),
        canonical.canonical_uri(parts.path or "/"),
        canonical.canonical_query(parts.query),
        canonical.canonical_headers(all_headers, names),
        ";".join(names),
        canonical.sha256_hex(body),
    )
    return canonical.string_to_sign(amz_date, scope, canonical_text), ";".join(names)


def _authorization(credential: str, signed_headers: str, signature: str) -> str:
    return f"{ALGORITHM} Credential={credential}, SignedHeaders={signed_headers}, Signature={signature}"


def sign_hmac(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    access_key_id: str,
    secret_key: str,
    session_token: str | None,
    region: str,
    service: str,
    now: dt.datetime | None = None,
    signed_header_names: Iterable[str] | None = None,
) -> dict[str, str]:
    """Headers to add so the request is SigV4-signed: Authorization, X-Amz-Date (, X-Amz-Security-Token).

    The URL's path and query must go on the wire exactly as given (already percent-encoded). By
    default every given header is signed except hop-by-hop ones and User-Agent, as AWS SDKs do;
    ``host``, ``x-amz-date`` and the security token are always signed.
    """
    when = _signing_time(now)
    amz_date = _format_amz_date(when)
    scope = canonical.credential_scope(amz_date[:8], region, service)
    added = {"X-Amz-Date": amz_date}
    if session_token:
        added["X-Amz-Security-Token"] = session_token
    sts, signed = _string_to_sign_for(method, url, headers, added, body, scope, amz_date, signed_header_names)
    signature = canonical.hmac_signature(
        canonical.signing_key(secret_key, amz_date[:8], region, service), sts
    )
    return {"Authorization": _authorization(f"{access_key_id}/{scope}", signed, signature), **added}


def sign_rsa(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    instance_id: str,
    private_key_der: bytes,
    region: str,
    service: str = "ssm",
    now: dt.datetime | None = None,
    signed_header_names: Iterable[str] | None = None,
    pss_sign: Callable[[bytes], bytes] | None = None,
) -> dict[str, str]:
    """Sign as a managed instance does for RequestManagedInstanceRoleToken.

    Returns Authorization, X-Amz-Date and an unsigned X-Amz-Content-Sha256 (the real agent sends
    one too). ``private_key_der``: PKCS#1 or PKCS#8 DER. ``pss_sign``: the RSASSA-PSS signature of
    a message with that key by other means (the agent's: ``openssm.agent.openssl_pss``); without
    it, ``cryptography`` signs.
    """
    if pss_sign is None:
        from openssm.auth import rsa_identity  # cryptography: only for managed instances' signatures

        private_key = rsa_identity.load_private_key(private_key_der)

        def pss_sign(message: bytes) -> bytes:
            return rsa_identity.pss_sign(private_key, message)

    when = _signing_time(now)
    amz_date = _format_amz_date(when)
    scope = canonical.credential_scope(amz_date[:8], region, service)
    added = {"X-Amz-Date": amz_date}
    sts, signed = _string_to_sign_for(method, url, headers, added, body, scope, amz_date, signed_header_names)
    signature = base64.b64encode(pss_sign(sts.encode("utf-8"))).decode("ascii")
    return {
        "Authorization": _authorization(f"{instance_id}/{scope}", signed, signature),
        **added,
        "X-Amz-Content-Sha256": canonical.sha256_hex(body),
    }
