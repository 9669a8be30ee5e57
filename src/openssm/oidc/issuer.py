"""Issuer URLs and discovery documents (OpenID Connect Discovery 1.0), checked.

Self-hosted identity providers live on internal hosts: an issuer may carry a port and a path; it
must be ``https://``, except on a loopback host, where plain ``http://`` is accepted (a provider
on the same machine, as in tests). Every endpoint a discovery document names must be on the
issuer's own host, so that verifying a token never reaches anywhere but the issuer.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

from openssm.errors import OpenSSMError

MAX_URL_CHARS: Final = 255  # IAM's limit on an OIDC provider's URL
MAX_DOCUMENT_BYTES: Final = 256 * 1024  # discovery documents and key sets are a few KiB
WELL_KNOWN: Final = "/.well-known/openid-configuration"


class IssuerError(OpenSSMError, ValueError):
    """An issuer URL or a discovery document OpenSSM will not use; the message says why."""


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True, slots=True)
class Issuer:
    url: str  # as written: "https://idp.example.internal:8443/realms/ops"
    scheme: str
    host: str  # lower case, IPv6 without brackets

    @property
    def iam_url(self) -> str:
        """The URL without its scheme: IAM's name for the provider and its condition-key prefix."""
        return self.url.split("://", 1)[1]

    @property
    def discovery_url(self) -> str:
        return self.url.rstrip("/") + WELL_KNOWN


def _parts(url: str, what: str) -> urllib.parse.SplitResult:
    if len(url) > MAX_URL_CHARS * 8 or any(char.isspace() for char in url):
        raise IssuerError(f"{what} {url[:80]!r} is not a URL")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise IssuerError(f"{what} {url[:80]!r} is not a URL: {exc}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise IssuerError(f"{what} {url[:80]!r} must be an https:// URL with a host")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise IssuerError(
            f"{what} {url[:80]!r} must use https:// (plain http:// is accepted only on a loopback host)"
        )
    if parts.username is not None or parts.password is not None:
        raise IssuerError(f"{what} {url[:80]!r} must not carry a user name or password")
    return parts


def parse_issuer(url: str) -> Issuer:
    """An issuer URL: ``https://host[:port][/path]`` (or ``http://`` on loopback), no query or fragment."""
    if len(url) > MAX_URL_CHARS:
        raise IssuerError(f"The issuer URL must be at most {MAX_URL_CHARS} characters")
    parts = _parts(url, "The issuer URL")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise IssuerError(f"The issuer URL {url[:80]!r} must not have a query or fragment")
    assert parts.hostname is not None
    return Issuer(url, parts.scheme, parts.hostname.lower())


def issuer_for_iam_url(iam_url: str, scheme: str) -> Issuer:
    return parse_issuer(f"{scheme}://{iam_url}")


@dataclasses.dataclass(frozen=True, slots=True)
class Discovery:
    issuer: str
    jwks_uri: str
    authorization_endpoint: str | None
    token_endpoint: str | None
    device_authorization_endpoint: str | None
    signing_algorithms: tuple[str, ...]


def _endpoint(document: Mapping[str, Any], name: str, issuer: Issuer, *, required: bool) -> str | None:
    value = document.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise IssuerError(f"The discovery document of {issuer.url} has no {name}")
    parts = _parts(value, f"{name} of {issuer.url}")
    if (parts.hostname or "").lower() != issuer.host:
        raise IssuerError(
            f"{name} {value[:80]!r} is not on the issuer's host {issuer.host}: OpenSSM only talks to the issuer"
        )
    return value


def parse_discovery(issuer: Issuer, document: Any) -> Discovery:
    """The parts of a discovery document OpenSSM uses; its ``issuer`` must be the one asked for."""
    if not isinstance(document, dict):
        raise IssuerError(f"The discovery document of {issuer.url} is not a JSON object")
    if document.get("issuer") != issuer.url:
        shown = str(document.get("issuer"))[:80]
        raise IssuerError(
            f"The discovery document at {issuer.discovery_url} names issuer {shown!r}, not {issuer.url!r}"
        )
    jwks_uri = _endpoint(document, "jwks_uri", issuer, required=True)
    assert jwks_uri is not None
    algorithms = document.get("id_token_signing_alg_values_supported") or []
    return Discovery(
        issuer=issuer.url,
        jwks_uri=jwks_uri,
        authorization_endpoint=_endpoint(document, "authorization_endpoint", issuer, required=False),
        token_endpoint=_endpoint(document, "token_endpoint", issuer, required=False),
        device_authorization_endpoint=_endpoint(
            document, "device_authorization_endpoint", issuer, required=False
        ),
        signing_algorithms=tuple(str(a) for a in algorithms if isinstance(a, str)),
    )
