"""SigV4 canonical request and string-to-sign, computed from a request exactly as it was received.

Rules (non-S3 services, as AWS and its SDKs apply them):
- URI: the raw (already percent-encoded) path with dot-segments and empty segments removed, then
  URI-encoded once more (``%`` becomes ``%25``): "encode twice" counting the wire encoding.
  Encoding the raw text rather than decoding it first is what botocore and aws-sdk-go both do, so a
  sub-delimiter such as ``!`` or ``:`` sent unencoded still verifies.
- Query: each key and value percent-decoded to bytes and re-encoded with the RFC 3986 unreserved
  set (space as ``%20``, ``+`` is a literal plus), pairs sorted by encoded key then encoded value.
- Headers: the signed names in the order given, values trimmed with inner whitespace runs collapsed,
  repeated headers joined with ``,``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from urllib.parse import quote, unquote_to_bytes

from openssm.auth.errors import SIGNATURE_MISMATCH_MESSAGE, invalid_signature

ALGORITHM = "AWS4-HMAC-SHA256"
SCOPE_TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
# Raw bytes that were not valid UTF-8 on the wire survive as surrogates; encode them back unchanged.
_TEXT_ERRORS = "surrogateescape"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8", _TEXT_ERRORS)
    except UnicodeEncodeError as exc:
        raise invalid_signature(
            f"{SIGNATURE_MISMATCH_MESSAGE} The request contains text that is not UTF-8."
        ) from exc


def normalize_path(raw_path: str) -> str:
    """Remove ``.``/``..`` and empty segments; keep a trailing slash (as AWS SDK signers do)."""
    if raw_path == "/" or not raw_path:
        return "/"
    kept: list[str] = []
    for segment in raw_path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if kept:
                kept.pop()
            continue
        kept.append(segment)
    normalized = "/" + "/".join(kept)
    if raw_path.endswith("/") and kept:
        normalized += "/"
    return normalized


def canonical_uri(raw_path: str) -> str:
    return quote(_utf8(normalize_path(raw_path)), safe="/~")


def _requote(component: str) -> str:
    if all(char in _UNRESERVED for char in component):
        return component
    return quote(unquote_to_bytes(_utf8(component)), safe="-_.~")


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """Canonically encoded ``(key, value)`` pairs of a raw query string, in wire order."""
    pairs: list[tuple[str, str]] = []
    for part in raw_query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((_requote(key), _requote(value)))
    return pairs


def canonical_query(raw_query: str, *, drop_key: str | None = None) -> str:
    """The canonical query string; ``drop_key`` (``X-Amz-Signature`` when presigned) is left out."""
    if not raw_query:
        return ""
    pairs = sorted(pair for pair in query_pairs(raw_query) if pair[0] != drop_key)
    return "&".join(f"{key}={value}" for key, value in pairs)


def trim_header_value(value: str) -> str:
    return " ".join(value.split())


def canonical_headers(headers: Iterable[tuple[str, str]], signed_names: Sequence[str]) -> str:
    """``name:value\\n`` lines for the signed names (lowercase), in the order given."""
    wanted = set(signed_names)
    values: dict[str, list[str]] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in wanted:
            values.setdefault(lowered, []).append(trim_header_value(value))
    lines: list[str] = []
    for name in signed_names:
        found = values.get(name)
        if found is None:
            raise invalid_signature(
                f"{SIGNATURE_MISMATCH_MESSAGE} The signed header '{name}' is not in the request."
            )
        lines.append(f"{name}:{','.join(found)}\n")
    return "".join(lines)


def canonical_request(
    method: str, uri: str, query: str, header_lines: str, signed_headers: str, payload_hash: str
) -> str:
    return f"{method}\n{uri}\n{query}\n{header_lines}\n{signed_headers}\n{payload_hash}"


def credential_scope(date: str, region: str, service: str) -> str:
    return f"{date}/{region}/{service}/{SCOPE_TERMINATOR}"


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{sha256_hex(_utf8(canonical))}"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.digest(key, _utf8(message), "sha256")


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(_utf8("AWS4" + secret_key), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, SCOPE_TERMINATOR)


def hmac_signature(key: bytes, string_to_sign_text: str) -> str:
    return _hmac(key, string_to_sign_text).hex()
