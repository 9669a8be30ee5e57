"""How a server node takes part in OpenID Connect (``openssm server --oidc-…``)."""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Mapping
from typing import Any, Final

# Which claims name a user's role session, tried in order (the first one present wins).
SESSION_NAME_CLAIMS: Final = ("preferred_username", "email", "sub")
_UNSAFE: Final = re.compile(r"[^\w+=,.@-]")


def session_name_for(claims: Mapping[str, Any]) -> str | None:
    """The role session name for the user an ID token names: the first of ``SESSION_NAME_CLAIMS``
    they have, in the characters a session name allows (it also starts their session ids,
    ``<name>-<17 hex>``); None if the token names nobody usable."""
    for claim in SESSION_NAME_CLAIMS:
        value = claims.get(claim)
        if isinstance(value, str) and value.strip():
            name = _UNSAFE.sub("-", value.strip())[:64]
            if len(name) >= 2:
                return name
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class ConsoleSignIn:
    """The console's "Sign in with <provider>": the authorization code flow, then the role."""

    issuer: str
    client_id: str
    client_secret: str | None = dataclasses.field(repr=False)  # None: a public client (PKCE only)
    role_arn: str
    display_name: str


@dataclasses.dataclass(frozen=True, slots=True)
class WebIdentitySettings:
    """``ca_bundle``: PEM certificates to trust for identity providers' TLS (their discovery
    documents and keys), instead of the system's; ``console``: the console's sign-in, if any."""

    ca_bundle: pathlib.Path | None = None
    console: ConsoleSignIn | None = None
