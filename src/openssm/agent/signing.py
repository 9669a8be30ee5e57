"""Credentials and request signing for everything the agent sends after registration."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Protocol

from openssm.auth import sigv4
from openssm.auth.credentials_file import Credentials
from openssm.errors import OpenSSMError


class CredentialsError(OpenSSMError, RuntimeError):
    """The node has no usable credentials; the text says why."""


class CredentialSource(Protocol):
    async def current(self) -> Credentials: ...


class StaticCredentials:
    """Fixed credentials (e.g. from the environment for nodes with an identity of their own)."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    async def current(self) -> Credentials:
        return self._credentials


def host_header(url: str) -> str:
    """The Host header a client sends for ``url`` (port only when not the scheme's default)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default_port = 443 if parts.scheme in {"https", "wss"} else 80
    if parts.port is not None and parts.port != default_port:
        host = f"{host}:{parts.port}"
    return host


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    credentials: Credentials,
    region: str,
    service: str,
    signed: Sequence[str],
) -> dict[str, str]:
    """``headers`` plus Host and the SigV4 headers; ``signed`` lists the names to sign.

    ``x-amz-date`` and, with temporary credentials, ``x-amz-security-token`` are always signed,
    as the real agent does.
    """
    all_headers = {"Host": host_header(url), **headers}
    names = [name.lower() for name in signed]
    names.append("x-amz-date")
    if credentials.session_token:
        names.append("x-amz-security-token")
    auth = sigv4.sign_hmac(
        method,
        url,
        all_headers,
        body,
        access_key_id=credentials.access_key_id,
        secret_key=credentials.secret_access_key,
        session_token=credentials.session_token,
        region=region,
        service=service,
        signed_header_names=sorted(set(names)),
    )
    return {**all_headers, **auth}
