"""ID token verification: the signature with PyJWT against the issuer's published keys, the claims
here, against a time the caller passes (the one clock), with a small allowance for clock skew.

Refusals carry a ``kind`` the callers map to their own words (AssumeRoleWithWebIdentity: AWS's
error codes; the console and ``openssm login``: a message). Only asymmetric algorithms are accepted
(RS256 and ES256, and their larger siblings): never ``none``, never HMAC with a public key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Collection, Mapping
from typing import Any, Final, Literal

import jwt
from jwt.exceptions import InvalidTokenError, PyJWKError, PyJWKSetError

from openssm.errors import OpenSSMError

ALGORITHMS: Final = ("RS256", "ES256", "RS384", "RS512", "ES384", "ES512", "PS256")
MAX_TOKEN_CHARS: Final = 20_000  # AWS's limit on WebIdentityToken
DEFAULT_SKEW: Final = dt.timedelta(seconds=60)

Kind = Literal[
    "malformed",  # not a JWT, or claims of the wrong type
    "unknown_key",  # no key with its kid (the caller may refresh the key set once and retry)
    "bad_signature",
    "wrong_issuer",
    "wrong_audience",
    "expired",
    "not_yet_valid",  # nbf or iat later than now (beyond the skew)
    "missing_claim",
    "wrong_nonce",
]


class TokenError(OpenSSMError):
    def __init__(self, kind: Kind, message: str, *, expires_at: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.expires_at = expires_at


@dataclasses.dataclass(frozen=True, slots=True)
class VerifiedToken:
    claims: Mapping[str, Any]
    audience: str  # the one of ours the token is for (its azp when that is one of ours)
    subject: str

    @property
    def audiences(self) -> tuple[str, ...]:
        return _audiences(self.claims.get("aud"))


def _audiences(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return ()


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload without checking anything (to find the issuer whose keys to check it with)."""
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenError("malformed", f"The token is longer than {MAX_TOKEN_CHARS} characters")
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except InvalidTokenError as exc:
        raise TokenError("malformed", f"The token is not a JWT: {exc}") from None
    if not isinstance(claims, dict):
        raise TokenError("malformed", "The token's payload is not a JSON object")
    return claims


def _signing_key(token: str, jwks: Mapping[str, Any]) -> tuple[jwt.PyJWK, str]:
    try:
        header = jwt.get_unverified_header(token)
    except InvalidTokenError as exc:
        raise TokenError("malformed", f"The token is not a JWT: {exc}") from None
    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise TokenError("bad_signature", f"Tokens signed with {str(algorithm)[:20]!r} are not accepted")
    try:
        key_set = jwt.PyJWKSet.from_dict(dict(jwks))
    except (PyJWKSetError, PyJWKError, ValueError, TypeError) as exc:
        raise TokenError("unknown_key", f"The issuer's key set has no usable key: {exc}") from None
    kid = header.get("kid")
    candidates = [
        key
        for key in key_set.keys
        if (kid is None or key.key_id == kid) and key.public_key_use in (None, "sig")
    ]
    if kid is None and len(candidates) != 1:
        raise TokenError("unknown_key", "The token names no key (kid) and the issuer has more than one")
    if not candidates:
        raise TokenError("unknown_key", f"The issuer publishes no key with kid {str(kid)[:64]!r}")
    return candidates[0], algorithm


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError("malformed", f"The token's {name} claim is not a number")
    return float(value)


def verify(
    token: str,
    jwks: Mapping[str, Any],
    *,
    issuer: str,
    audiences: Collection[str],
    now: dt.datetime,
    skew: dt.timedelta = DEFAULT_SKEW,
    nonce: str | None = None,
) -> VerifiedToken:
    """Check ``token``'s signature with the issuer's keys, then its claims: ``iss`` exactly
    ``issuer``; ``aud`` (or ``azp``) one of ``audiences``; ``exp`` (required) not past, ``nbf`` and
    ``iat`` (required) not ahead, each give or take ``skew``; ``sub`` present; ``nonce`` if given."""
    claims = unverified_claims(token)
    key, algorithm = _signing_key(token, jwks)
    try:
        jwt.decode(
            token,
            key.key,
            algorithms=[algorithm],
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
                "verify_sub": False,
                "verify_jti": False,
            },
        )
    except InvalidTokenError as exc:
        raise TokenError("bad_signature", f"The token's signature does not verify: {exc}") from None
    if claims.get("iss") != issuer:
        raise TokenError(
            "wrong_issuer", f"The token was issued by {str(claims.get('iss'))[:100]!r}, not {issuer!r}"
        )
    audience = _audience(claims, audiences)
    moment = now.timestamp()
    allowance = skew.total_seconds()
    expires = _number(claims, "exp")
    if expires is None:
        raise TokenError("missing_claim", "The token has no exp claim")
    if moment > expires + allowance:
        raise TokenError(
            "expired",
            f"Token expired: current date/time {int(moment)} must be before the expiration date/time {int(expires)}",
            expires_at=int(expires),
        )
    not_before = _number(claims, "nbf")
    if not_before is not None and moment + allowance < not_before:
        raise TokenError(
            "not_yet_valid", f"The token is not valid before {int(not_before)} (now {int(moment)})"
        )
    issued = _number(claims, "iat")
    if issued is None:
        raise TokenError("missing_claim", "The token has no iat claim")
    if moment + allowance < issued:
        raise TokenError(
            "not_yet_valid", f"The token was issued in the future ({int(issued)}, now {int(moment)})"
        )
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise TokenError("missing_claim", "The token has no sub claim")
    if nonce is not None and claims.get("nonce") != nonce:
        raise TokenError("wrong_nonce", "The token's nonce is not the one this sign-in sent")
    return VerifiedToken(claims, audience, subject)


def _audience(claims: Mapping[str, Any], accepted: Collection[str]) -> str:
    audiences = _audiences(claims.get("aud"))
    if not audiences:
        raise TokenError(
            "malformed" if "aud" in claims else "missing_claim", "The token has no valid aud claim"
        )
    azp = claims.get("azp")
    if isinstance(azp, str) and azp in accepted and azp in audiences:
        return azp
    for audience in audiences:
        if audience in accepted:
            return audience
    raise TokenError("wrong_audience", "Incorrect token audience")


def describe(claims: Mapping[str, Any]) -> str:
    """A short, log-safe summary of whom a token names (never the token itself)."""
    return json.dumps({key: claims.get(key) for key in ("iss", "sub", "aud", "azp") if key in claims})[:300]
