"""Issuer URLs and discovery documents (``openssm.oidc.issuer``), and the code flow's values
(``openssm.oidc.authorize``)."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest

from openssm.oidc.authorize import FlowError, PendingSignIn, code_challenge, id_token_of
from openssm.oidc.issuer import IssuerError, parse_discovery, parse_issuer


@pytest.mark.parametrize(
    ("url", "iam_url"),
    [
        ("https://idp.example.internal:8443/realms/ops", "idp.example.internal:8443/realms/ops"),
        ("https://idp.example.internal", "idp.example.internal"),
        ("http://127.0.0.1:5556/dex", "127.0.0.1:5556/dex"),
        ("http://localhost:8080", "localhost:8080"),
        ("http://[::1]:9000", "[::1]:9000"),
    ],
)
def test_issuers_with_ports_and_paths(url: str, iam_url: str) -> None:
    assert parse_issuer(url).iam_url == iam_url


@pytest.mark.parametrize(
    "url",
    [
        "http://idp.example.internal",  # plain http only on loopback
        "http://10.0.0.5:8080",
        "ftp://idp.example.internal",
        "https://user:pw@idp.example.internal",
        "https://idp.example.internal/?x=1",
        "https://idp.example.internal/#f",
        "https://idp.example.internal:99999",
        "idp.example.internal",
        "https://" + "a" * 300,
    ],
)
def test_issuers_refused(url: str) -> None:
    with pytest.raises(IssuerError):
        parse_issuer(url)


def test_discovery_must_name_the_issuer_and_stay_on_its_host() -> None:
    issuer = parse_issuer("https://idp.example.internal:8443/realms/ops")
    base = "https://idp.example.internal:8443/realms/ops/protocol/openid-connect"
    document = {
        "issuer": issuer.url,
        "jwks_uri": f"{base}/certs",
        "authorization_endpoint": f"{base}/auth",
        "token_endpoint": f"{base}/token",
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }
    found = parse_discovery(issuer, document)
    assert found.jwks_uri.endswith("/certs") and found.signing_algorithms == ("RS256", "ES256")
    assert (
        issuer.discovery_url
        == "https://idp.example.internal:8443/realms/ops/.well-known/openid-configuration"
    )
    for change in (
        {"issuer": "https://idp.example.internal:8443/realms/other"},
        {"jwks_uri": "https://keys.elsewhere.example/certs"},  # nowhere but the issuer's host
        {"token_endpoint": "http://idp.example.internal/token"},  # and never plain http off loopback
        {"jwks_uri": None},
    ):
        with pytest.raises(IssuerError):
            parse_discovery(issuer, {**document, **change})


def test_pkce_s256_is_unpadded_base64url_of_sha256() -> None:
    import base64

    from cryptography.hazmat.primitives import hashes

    verifier = PendingSignIn.new("http://127.0.0.1/callback").code_verifier
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert 43 <= len(verifier) <= 128 and set(verifier) <= alphabet
    digest = hashes.Hash(hashes.SHA256())  # an independent SHA-256
    digest.update(verifier.encode())
    expected = base64.urlsafe_b64encode(digest.finalize()).decode().rstrip("=")
    assert code_challenge(verifier) == expected and len(expected) == 43


def test_authorization_request_and_the_redirect_back() -> None:
    flow = PendingSignIn.new("http://127.0.0.1:5000/callback")
    other = PendingSignIn.new("http://127.0.0.1:5000/callback")
    assert len({flow.state, flow.nonce, flow.code_verifier, other.state}) == 4
    url = flow.authorization_url("https://idp.example.internal/auth?kc_idp_hint=x", "cli")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert query["kc_idp_hint"] == "x" and query["response_type"] == "code" and query["client_id"] == "cli"
    assert (
        query["code_challenge"] == code_challenge(flow.code_verifier)
        and query["code_challenge_method"] == "S256"
    )
    assert query["state"] == flow.state and query["nonce"] == flow.nonce and "openid" in query["scope"]
    assert flow.code_from({"state": flow.state, "code": "abc"}) == "abc"
    for query_back in ({"state": other.state, "code": "abc"}, {"code": "abc"}, {"state": flow.state}):
        with pytest.raises(FlowError):
            flow.code_from(query_back)
    with pytest.raises(FlowError, match="access_denied"):
        flow.code_from({"state": flow.state, "error": "access_denied"})
    assert flow.token_form("abc", "cli")["code_verifier"] == flow.code_verifier
    assert id_token_of({"id_token": "t", "access_token": "a"}) == "t"
    answers: list[Any] = [{"error": "invalid_grant"}, {"access_token": "a"}, []]
    for answer in answers:
        with pytest.raises(FlowError):
            id_token_of(answer)
