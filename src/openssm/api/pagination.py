"""Opaque NextToken paging over an ordered list (offset + a fingerprint of the query it belongs to)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import TypeVar

from openssm.api.errors import ApiError

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


def key_token(scope: str, key: str) -> str:
    """A NextToken that resumes a keyset listing after ``key``."""
    return base64.urlsafe_b64encode(json.dumps({"s": scope, "k": key}).encode()).decode("ascii")


def key_from_token(next_token: str | None, scope: str) -> str | None:
    """The key a keyset listing resumes after (None: from the start); refuses foreign tokens."""
    if next_token is None:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(next_token.encode("ascii")))
        if (
            not isinstance(decoded, dict)
            or decoded.get("s") != scope
            or not isinstance(decoded.get("k"), str)
        ):
            raise ValueError("not a token of this listing")
        return str(decoded["k"])
    except (ValueError, UnicodeEncodeError, binascii.Error, RecursionError) as exc:
        raise ApiError("InvalidNextToken", "The specified token is not valid.") from exc
