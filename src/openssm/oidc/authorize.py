"""The authorization code flow with PKCE (RFC 7636) as a relying party runs it: the values of the
authorization request, and the form of the token request. Random values come from ``secrets``."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import secrets
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

from openssm.errors import OpenSSMError

DEFAULT_SCOPE: Final = "openid email profile"


class FlowError(OpenSSMError):
    """The provider's answer is not a usable one; the message says what came back."""


def _random() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def code_challenge(verifier: str) -> str:
    """S256: base64url(SHA-256(verifier)) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


@dataclasses.dataclass(frozen=True, slots=True)
class PendingSignIn:
    """What a relying party keeps between sending the user to the provider and the redirect back."""

    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str

    @classmethod
    def new(cls, redirect_uri: str) -> PendingSignIn:
        return cls(_random(), _random(), _random(), redirect_uri)

    def authorization_url(self, endpoint: str, client_id: str, scope: str = DEFAULT_SCOPE) -> str:
        query = urllib.parse.urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": self.redirect_uri,
                "scope": scope,
                "state": self.state,
                "nonce": self.nonce,
                "code_challenge": code_challenge(self.code_verifier),
                "code_challenge_method": "S256",
            }
        )
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    def token_form(self, code: str, client_id: str) -> dict[str, str]:
        return {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": self.code_verifier,
            "client_id": client_id,
        }

    def code_from(self, query: Mapping[str, str]) -> str:
        """The code of the redirect back, after checking its state (CSRF) and that it is no error."""
        error = query.get("error")
        if error:
            detail = query.get("error_description", "")
            raise FlowError(
                f"The identity provider refused the sign-in: {error[:100]} {detail[:200]}".strip()
            )
        if not secrets.compare_digest(query.get("state", ""), self.state):
            raise FlowError("The sign-in's state does not match: start the sign-in again")
        code = query.get("code")
        if not code or len(code) > 4096:
            raise FlowError("The identity provider sent no authorization code")
        return code


def id_token_of(response: Any) -> str:
    """The ID token of a token endpoint response."""
    if not isinstance(response, dict):
        raise FlowError("The token endpoint did not answer with a JSON object")
    if "error" in response:
        raise FlowError(
            f"The token endpoint refused: {str(response['error'])[:100]} {str(response.get('error_description', ''))[:200]}".strip()
        )
    token = response.get("id_token")
    if not isinstance(token, str) or not token:
        raise FlowError("The token endpoint sent no id_token (is the openid scope granted?)")
    return token
