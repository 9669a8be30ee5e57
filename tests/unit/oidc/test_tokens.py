"""ID token verification (``openssm.oidc.tokens``): signatures with PyJWT against a key set, claims
against a given time with a minute of skew, and each refusal's kind."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from openssm.oidc.tokens import TokenError, unverified_claims, verify

ISSUER = "https://idp.example.internal:8443/realms/ops"
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(key: Any, kid: str, algorithm: str) -> dict[str, Any]:
    public = key.public_key()
    text = RSAAlgorithm.to_jwk(public) if algorithm.startswith("RS") else ECAlgorithm.to_jwk(public)
    return {**json.loads(text), "kid": kid, "alg": algorithm, "use": "sig"}


JWKS = {"keys": [jwk(RSA_KEY, "rsa-1", "RS256"), jwk(EC_KEY, "ec-1", "ES256")]}


def token(key: Any = RSA_KEY, kid: str | None = "rsa-1", algorithm: str = "RS256", **claims: Any) -> str:
    stamp = int(NOW.timestamp())
    body = {"iss": ISSUER, "aud": "openssm", "sub": "alice", "iat": stamp, "exp": stamp + 300, **claims}
    body = {name: value for name, value in body.items() if value is not None}
    headers = {"kid": kid} if kid else {}
    return jwt.encode(body, key, algorithm=algorithm, headers=headers)


def check(
    text: str, *, now: dt.datetime = NOW, audiences: tuple[str, ...] = ("openssm",), nonce: str | None = None
) -> Any:
    return verify(text, JWKS, issuer=ISSUER, audiences=audiences, now=now, nonce=nonce)


def refused(text: str, **options: Any) -> str:
    with pytest.raises(TokenError) as caught:
        check(text, **options)
    return caught.value.kind


def test_rs256_and_es256_tokens_verify() -> None:
    assert check(token()).subject == "alice"
    assert check(token(EC_KEY, "ec-1", "ES256")).audience == "openssm"


def test_signature_key_and_algorithm_refusals() -> None:
    head, payload, signature = token().split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert refused(f"{head}.{payload}.{flipped}") == "bad_signature"
    assert refused(token(OTHER_KEY)) == "bad_signature"  # signed by someone else under our kid
    assert refused(token(kid="rsa-9")) == "unknown_key"  # the caller refreshes the key set once
    assert refused(token(kid=None)) == "unknown_key"  # no kid and two keys: which?
    assert (
        refused(jwt.encode({"iss": ISSUER}, "an HMAC secret of at least 32 bytes!", algorithm="HS256"))
        == "bad_signature"
    )
    unsigned = jwt.encode({"iss": ISSUER, "sub": "x"}, "", algorithm="none")
    assert refused(unsigned) == "bad_signature"
    assert refused("not.a.jwt") == "malformed"
    assert refused("x" * 30_000) == "malformed"


def test_issuer_audience_and_nonce() -> None:
    assert refused(token(iss="https://idp.example.internal:8443/realms/other")) == "wrong_issuer"
    assert refused(token(aud="another-app")) == "wrong_audience"
    # Several audiences: one of ours will do; azp names the party it was issued to.
    assert check(token(aud=["another-app", "openssm"])).audience == "openssm"
    assert check(token(aud=["openssm", "cli"], azp="cli"), audiences=("openssm", "cli")).audience == "cli"
    assert refused(token(aud=None)) == "missing_claim"
    assert check(token(nonce="n-1"), nonce="n-1").subject == "alice"
    assert refused(token(nonce="n-1"), nonce="n-2") == "wrong_nonce"


def test_times_with_a_minute_of_skew() -> None:
    text = token()
    assert check(text, now=NOW + dt.timedelta(seconds=300 + 60)).subject == "alice"
    with pytest.raises(TokenError) as caught:
        check(text, now=NOW + dt.timedelta(seconds=300 + 61))
    assert (
        caught.value.kind == "expired" and "must be before the expiration date/time" in caught.value.message
    )
    assert check(text, now=NOW - dt.timedelta(seconds=60)).subject == "alice"
    assert refused(text, now=NOW - dt.timedelta(seconds=61)) == "not_yet_valid"  # iat ahead
    later = int(NOW.timestamp()) + 600
    assert refused(token(nbf=later, exp=later + 300)) == "not_yet_valid"
    assert refused(token(exp=None)) == "missing_claim"
    assert refused(token(iat=None)) == "missing_claim"
    assert refused(token(exp="soon")) == "malformed"
    assert refused(token(sub=None)) == "missing_claim"


def test_unverified_claims_name_the_issuer_only() -> None:
    assert unverified_claims(token())["iss"] == ISSUER
