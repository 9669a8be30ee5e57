"""The console's "Sign in with <provider>": OpenID Connect's authorization code flow with PKCE, state
and nonce, ending in the configured role's session, obtained exactly as ``aws sts
assume-role-with-web-identity`` obtains it (the same checks: the IAM OIDC provider, its client ids,
the issuer's keys, the role's trust policy).

1. ``GET /console/oidc/start``: a fresh state, nonce and PKCE verifier go into a short-lived cookie,
   encrypted under the server's master key (so any node of a cluster can finish the sign-in, and
   nothing is stored for sign-ins that are never finished); the browser goes to the provider.
2. ``GET /console/oidc/callback``: the state must match the cookie's; the code is exchanged at the
   provider's token endpoint (with the client secret, if any, and the verifier); the ID token must
   carry the nonce; AssumeRoleWithWebIdentity gives the role session; the console session is bound
   to its credentials and ends when they do.

The pending cookie is ``SameSite=Lax`` (it must come back on the provider's top-level redirect);
the console's own cookie stays ``Strict``, so the callback answers with a page that moves on by
itself (a same-site navigation, which carries the Strict cookie) rather than with a redirect.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import html
import json
import logging
import urllib.parse
from typing import Any, Final

from aiohttp import web

from openssm.console import web_security
from openssm.console.sessions_store import create as create_session
from openssm.oidc.authorize import FlowError, PendingSignIn, id_token_of
from openssm.oidc.settings import ConsoleSignIn, session_name_for
from openssm.oidc.tokens import TokenError, unverified_claims
from openssm.security.errors import SecurityError
from openssm.security.facts import RequestFacts
from openssm.security.issuer_keys import ISSUER_KEYS, IssuerUnreachable
from openssm.security.web_identity import assume_role_with_web_identity
from openssm.services import Services
from openssm.store.secrets import SecretCipherError
from openssm.transport.json_fetch import FetchError, fetch_json

log = logging.getLogger(__name__)

PENDING_COOKIE: Final = "openssm-oidc"
PENDING_PATH: Final = "/console/oidc/"
PENDING_SECONDS: Final = 600
START_PATH: Final = "/console/oidc/start"
CALLBACK_PATH: Final = "/console/oidc/callback"
_PURPOSE: Final = "openssm-console-oidc"


def session_name_from(claims: dict[str, Any]) -> str:
    name = session_name_for(claims)
    if name is None:
        raise TokenError("missing_claim", "The ID token names no user (preferred_username, email or sub)")
    return name


@dataclasses.dataclass(frozen=True, slots=True)
class _Pending:
    flow: PendingSignIn
    started: float  # epoch seconds by the server's clock
    next_page: str


class OidcSignIn:
    def __init__(self, services: Services, settings: ConsoleSignIn) -> None:
        self.services = services
        self.settings = settings

    # -- the pending sign-in cookie ---------------------------------------------------------------
    def _seal(self, pending: _Pending) -> str:
        flow = pending.flow
        record = {
            "purpose": _PURPOSE,
            "state": flow.state,
            "nonce": flow.nonce,
            "verifier": flow.code_verifier,
            "redirect_uri": flow.redirect_uri,
            "started": pending.started,
            "next": pending.next_page,
        }
        blob = self.services.cipher.encrypt(json.dumps(record).encode())
        return base64.urlsafe_b64encode(blob).decode().rstrip("=")

    def _open(self, sealed: str | None) -> _Pending | None:
        if not sealed or len(sealed) > 4096:
            return None
        try:
            blob = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
            record = json.loads(self.services.cipher.decrypt(blob))
            if record.get("purpose") != _PURPOSE:
                return None
            flow = PendingSignIn(record["state"], record["nonce"], record["verifier"], record["redirect_uri"])
            pending = _Pending(flow, float(record["started"]), str(record["next"]))
        except (SecretCipherError, binascii.Error, ValueError, KeyError, TypeError):
            return None
        age = self.services.clock.now().timestamp() - pending.started
        return pending if 0 <= age <= PENDING_SECONDS else None

    def _redirect_uri(self, request: web.Request, facts: RequestFacts) -> str:
        scheme = "https" if facts.secure_transport else "http"
        return f"{scheme}://{request.host}{CALLBACK_PATH}"

    # -- handlers ------------------------------------------------------------------------------------
    async def options(self, request: web.Request) -> web.StreamResponse:
        """What the sign-in page offers besides access keys."""
        return web.json_response({"oidc": {"name": self.settings.display_name, "start": START_PATH}})

    async def start(self, request: web.Request, facts: RequestFacts) -> web.StreamResponse:
        next_page = request.query.get("next", "")
        if not next_page.startswith("/console/") or next_page.startswith("/console/oidc/"):
            next_page = "/console/nodes"
        try:
            discovery = await ISSUER_KEYS.discovery(
                self.settings.issuer, self.services.clock, self.services.config.web_identity.ca_bundle
            )
        except IssuerUnreachable as exc:
            return _back_to_signin(f"{self.settings.display_name} cannot be reached: {exc}")
        if discovery.authorization_endpoint is None or discovery.token_endpoint is None:
            return _back_to_signin(f"{self.settings.display_name} offers no authorization code flow")
        flow = PendingSignIn.new(self._redirect_uri(request, facts))
        pending = _Pending(flow, self.services.clock.now().timestamp(), next_page[:512])
        response = _redirect(
            flow.authorization_url(discovery.authorization_endpoint, self.settings.client_id)
        )
        response.set_cookie(
            PENDING_COOKIE,
            self._seal(pending),
            path=PENDING_PATH,
            max_age=PENDING_SECONDS,
            httponly=True,
            samesite="Lax",
            secure=facts.secure_transport,
        )
        return response

    async def callback(self, request: web.Request, facts: RequestFacts) -> web.StreamResponse:
        pending = self._open(request.cookies.get(PENDING_COOKIE))
        if pending is None:
            return _back_to_signin("The sign-in took too long or was started elsewhere: sign in again.")
        try:
            code = pending.flow.code_from(dict(request.query))
            id_token = await self._exchange(pending.flow, code)
            session_name = session_name_from(unverified_claims(id_token))
            assumed = await assume_role_with_web_identity(
                self.services,
                role_arn=self.settings.role_arn,
                session_name=session_name,
                token=id_token,
                duration_seconds=None,
                facts=facts,
                nonce=pending.flow.nonce,
            )
        except (FlowError, TokenError) as exc:
            log.info("console OIDC sign-in refused from %s: %s", facts.source_ip, exc)
            return _back_to_signin(str(exc))
        except SecurityError as exc:  # AssumeRoleWithWebIdentity's refusal, in AWS's words
            log.info("console OIDC sign-in refused from %s: %s %s", facts.source_ip, exc.code, exc.message)
            return _back_to_signin(f"{exc.code}: {exc.message}")
        credentials = assumed.credentials
        token, _ = await create_session(
            self.services.engine,
            user_name=session_name,
            access_key_id=credentials.access_key_id,
            source_ip=facts.source_ip,
            now=self.services.clock.now(),
            not_after=credentials.expires_at,
        )
        log.info(
            "console sign-in through %s: %s as %s", self.settings.display_name, session_name, assumed.role.arn
        )
        response = _moving_on(pending.next_page)
        web_security.set_session_cookie(response, token, facts.secure_transport)
        response.del_cookie(PENDING_COOKIE, path=PENDING_PATH)
        return response

    async def _exchange(self, flow: PendingSignIn, code: str) -> str:
        config = self.services.config.web_identity
        try:
            discovery = await ISSUER_KEYS.discovery(
                self.settings.issuer, self.services.clock, config.ca_bundle
            )
            if discovery.token_endpoint is None:
                raise FlowError("The identity provider has no token endpoint")
            secret = self.settings.client_secret
            # client_secret_basic: both parts form-encoded first (RFC 6749, section 2.3.1).
            basic = (_form(self.settings.client_id), _form(secret)) if secret is not None else None
            answer = await fetch_json(
                discovery.token_endpoint,
                form=flow.token_form(code, self.settings.client_id),
                basic_auth=basic,
                ca_bundle=config.ca_bundle,
            )
        except (IssuerUnreachable, FetchError) as exc:
            raise FlowError(f"The identity provider could not be reached: {exc}") from None
        return id_token_of(answer)


def _form(value: str) -> str:
    return urllib.parse.quote_plus(value)


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location})


def _back_to_signin(message: str) -> web.Response:
    """The sign-in page, saying what went wrong (it shows ``error`` as text, never as markup)."""
    return _redirect("/console/signin?" + urllib.parse.urlencode({"error": message[:300]}))


def _moving_on(next_page: str) -> web.Response:
    target = html.escape(next_page, quote=True)
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="0;url={target}"><title>Signed in · OpenSSM</title></head>'
        f'<body><p>Signed in. <a href="{target}">Continue to the console</a>.</p></body></html>'
    )
    return web.Response(text=body, content_type="text/html")
