"""Opaque NextToken paging: over an ordered list (offset + the listing it belongs to), or over a
database listing by key (keyset: the last key, sealed with the server's key)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from typing import TypeVar

from openssm.api.errors import ApiError
from openssm.store.secrets import SecretCipher, SecretCipherError

T = TypeVar("T")


def page(
    items: Sequence[T], next_token: str | None, max_results: int, scope: str
) -> tuple[list[T], str | None]:
    """One page of ``items`` and the token for the next one (None at the end).

    ``scope`` names the listing; a token from another listing is refused as AWS does.
    """
    offset = 0
    if next_token is not None:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(next_token.encode("ascii")))
            if not isinstance(decoded, dict) or decoded.get("s") != scope:
                raise ValueError("wrong scope")
            offset = decoded["o"]
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise ValueError("bad offset")
        except (ValueError, KeyError, UnicodeEncodeError, binascii.Error, RecursionError) as exc:
            raise ApiError("InvalidNextToken", "The specified token is not valid.") from exc
    chunk = list(items[offset : offset + max_results])
    end = offset + len(chunk)
    if end >= len(items):
        return chunk, None
    token = base64.urlsafe_b64encode(json.dumps({"s": scope, "o": end}).encode()).decode("ascii")
    return chunk, token


def _invalid_token() -> ApiError:
    return ApiError("InvalidNextToken", "The specified token is not valid.")


def _query_digest(query: object) -> str:
    canonical = json.dumps(query, sort_keys=True, separators=(",", ":"), default=sorted)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def seal_keyset(cipher: SecretCipher, scope: str, last_key: str, query: object) -> str:
    """A NextToken resuming a keyset listing after ``last_key``: sealed with the server's key
    (AES-GCM), so it is opaque, any node of a cluster can read it, and a token that was altered,
    or belongs to another listing or other filters (``query``), is refused."""
    plain = json.dumps({"s": scope, "k": last_key, "q": _query_digest(query)}).encode()
    return base64.urlsafe_b64encode(cipher.encrypt(plain)).decode("ascii")


def open_keyset(cipher: SecretCipher, token: str | None, scope: str, query: object) -> str | None:
    """The key a sealed NextToken resumes after (None: the first page); InvalidNextToken otherwise."""
    if token is None:
        return None
    try:
        decoded = json.loads(cipher.decrypt(base64.urlsafe_b64decode(token.encode("ascii"))))
    except (ValueError, UnicodeEncodeError, binascii.Error, SecretCipherError) as exc:
        raise _invalid_token() from exc
    if not isinstance(decoded, dict) or decoded.get("s") != scope or decoded.get("q") != _query_digest(query):
        raise _invalid_token()
    last_key = decoded.get("k")
    if not isinstance(last_key, str):
        raise _invalid_token()
    return last_key
