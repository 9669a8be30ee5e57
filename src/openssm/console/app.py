"""The browser console, served under ``/console/`` by the same aiohttp application as the API.

Pages are static HTML + JS modules; the JSON endpoints under ``/console/api/`` act for the signed-in
principal through the API's own handlers (see :mod:`openssm.console.actor`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import urllib.parse
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from openssm.api import handlers  # noqa: F401 - the actor runs the API's registered operations
from openssm.bus.failures import FailureLogUnavailable
from openssm.console import access_routes, join_routes, pages, routes, web_security
from openssm.console.actor import ActionFailed, ConsoleActor
from openssm.console.jsonio import error as _error
from openssm.console.jsonio import json_body as _json_body
from openssm.console.jsonio import text as _text
from openssm.console.oidc_signin import CALLBACK_PATH, START_PATH, OidcSignIn
from openssm.console.routes import Handler, SignedInHandler
from openssm.console.sessions_store import ConsoleSession, find_valid, revoke
from openssm.console.sessions_store import create as create_session
from openssm.console.signin import SignInError, SignInForm, verify_sign_in
from openssm.security import client_facts
from openssm.security.facts import RequestFacts
from openssm.security.identity import identity_for_key, principal_for_key
from openssm.services import Services
from openssm.store import access_keys, gateway_nodes

log = logging.getLogger(__name__)

PREFIX: Final = "/console"
GATEWAY_URLS_TTL: Final = 10.0  # seconds
ME_META: Final = "openssm-me"  # the meta element of a signed-in page that holds /console/api/me's answer


@dataclasses.dataclass(frozen=True, slots=True)
class SignedInAs:
    """A request's valid console session: the row, the cookie's token and the access key it stands for."""

    session: ConsoleSession
    token: str
    key: access_keys.AccessKeyRow


class Console:
    def __init__(self, services: Services) -> None:
        self.services = services

        # Per access key: 5 free failures. Per client address: more, as many users may share a NAT.
        # Counted across the nodes when they share a Redis; times from the one clock.
        def wall() -> float:
            return services.clock.now().timestamp()

        self.key_throttle = web_security.SignInThrottle(
            services.bus.failure_log("signin-key"), free_failures=5, clock=wall
        )
        self.ip_throttle = web_security.SignInThrottle(
            services.bus.failure_log("signin-ip"), free_failures=20, clock=wall
        )
        self._gateway_urls: tuple[float, list[str]] | None = None

    # -- request context ---------------------------------------------------------------------------

    def facts(self, request: web.Request) -> RequestFacts:
        return client_facts(request, self.services.config, self.services.config.region)

    def secure(self, request: web.Request) -> bool:
        return self.facts(request).secure_transport

    def cookie_name(self, request: web.Request) -> str:
        return web_security.cookie_name(self.secure(request))

    async def gateway_urls(self) -> list[str]:
        """This server's and every gateway node's public URL (cached briefly: asked on each response)."""
        now = self.services.clock.monotonic()
        if self._gateway_urls is None or now - self._gateway_urls[0] > GATEWAY_URLS_TTL:
            urls = await gateway_nodes.public_urls(self.services.engine)
            self._gateway_urls = (now, [self.services.config.public_url, *urls])
        return self._gateway_urls[1]

    async def allowed_origins(self, request: web.Request) -> set[str]:
        scheme = "https" if self.secure(request) else "http"
        return web_security.allowed_origins(scheme, request.host, await self.gateway_urls())

    async def session_of(self, request: web.Request) -> SignedInAs | None:
        token = request.cookies.get(self.cookie_name(request))
        if not token:
            return None
        session = await find_valid(self.services.engine, token, self.services.clock.now())
        if session is None:
            return None
        # The console stands for the key it was opened with: deactivating or deleting the key (or
        # the user), or the end of the role session's credentials, ends its console sessions too.
        key = await access_keys.find(self.services.engine, session.access_key_id)
        if key is None or key.status != "Active" or key.principal_name != session.user_name:
            return None
        if key.expires_at is not None and key.expires_at <= self.services.clock.now():
            return None
        return SignedInAs(session, token, key)

    async def actor_for(self, request: web.Request, signed_in: SignedInAs) -> ConsoleActor | None:
        key, session = signed_in.key, signed_in.session
        principal = await principal_for_key(self.services, key)
        if principal is None:
            return None
        # A console session is a temporary credential, as AWS's console sessions are: its requests
        # carry aws:MultiFactorAuthPresent (true after a TOTP code) and aws:TokenIssueTime.
        identity = dataclasses.replace(
            identity_for_key(key, principal, self.services.config.region, "ssm"),
            temporary=True,
            token_issued_at=key.created_at if key.temporary else session.created_at,
            mfa_authenticated_at=session.mfa_authenticated_at,
        )
        return ConsoleActor(self.services, identity, self.facts(request))

    # -- pages ---------------------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("page", "")
        if name not in pages.SIGNED_IN_PAGES:
            raise web.HTTPNotFound()
        if name in pages.TERMINAL_PAGES and not pages.vendor_built():
            raise web.HTTPServiceUnavailable(
                text="The console's terminal assets are not built: run `make console-assets` "
                "(npm install + scripts/build-console-assets) and restart the server."
            )
        found = await self.session_of(request)
        actor = None if found is None else await self.actor_for(request, found)
        if found is None or actor is None:
            target = urllib.parse.quote(request.path_qs, safe="")
            raise web.HTTPFound(f"{PREFIX}/signin?next={target}")
        # Who is signed in and the CSRF token go in the page (no-store, readable by this origin
        # only), so its script can make its first state-changing request without asking first.
        return pages.html_response(name, {ME_META: json.dumps(self.who(found.session, found.token, actor))})

    async def signin_page(self, request: web.Request) -> web.StreamResponse:
        if await self.session_of(request) is not None:
            raise web.HTTPFound(f"{PREFIX}/nodes")
        return pages.html_response("signin")

    async def index(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{PREFIX}/nodes" if await self.session_of(request) else f"{PREFIX}/signin")

    # -- sign-in / sign-out --------------------------------------------------------------------------

    async def signin(self, request: web.Request) -> web.StreamResponse:
        if not web_security.origin_allowed(
            request.headers.get("Origin"), await self.allowed_origins(request)
        ):
            return _error(403, "BadOrigin", "Sign-in must come from the console page.")
        body = await _json_body(request)
        form = SignInForm(
            access_key_id=_text(body, "access_key_id"),
            secret_access_key=_text(body, "secret_access_key"),
            password=_text(body, "password") or None,
            mfa_code=_text(body, "mfa_code") or None,
        )
        facts = self.facts(request)
        ip_keys, key_keys = [facts.source_ip], [form.access_key_id.strip()[:64]]
        try:
            waits = [
                (await self.ip_throttle.check(ip_keys)).retry_after,
                (await self.key_throttle.check(key_keys)).retry_after,
            ]
        except FailureLogUnavailable:
            log.warning("console sign-in refused: the shared failure count is unreachable", exc_info=True)
            return _error(503, "ServiceUnavailable", "Sign-in is unavailable for a moment. Try again.")
        if max(waits) > 0:
            response = _error(
                429,
                "TooManyAttempts",
                f"Too many failed sign-ins. Try again in {max(waits)} seconds.",
            )
            response.headers["Retry-After"] = str(max(waits))
            return response
        try:
            signed_in = await verify_sign_in(self.services, form)
        except SignInError as exc:
            if exc.counts_as_failure:
                with contextlib.suppress(FailureLogUnavailable):  # the refusal stands either way
                    await self.ip_throttle.failed(ip_keys)
                    await self.key_throttle.failed(key_keys)
                log.info(
                    "console sign-in refused for key %s from %s", form.access_key_id[:32], facts.source_ip
                )
            payload: dict[str, Any] = {"error": "SignInFailed", "message": exc.message}
            if exc.needs:
                payload["needs"] = exc.needs
            return web.json_response(payload, status=401)
        with contextlib.suppress(FailureLogUnavailable):
            await self.key_throttle.succeeded(key_keys)
        user_name = signed_in.user_name
        token, _ = await create_session(
            self.services.engine,
            user_name=user_name,
            access_key_id=form.access_key_id.strip(),
            source_ip=facts.source_ip,
            now=self.services.clock.now(),
            mfa_authenticated_at=signed_in.mfa_authenticated_at,
        )
        log.info("console sign-in: %s from %s", user_name, facts.source_ip)
        response = web.json_response({"user": user_name})
        web_security.set_session_cookie(response, token, facts.secure_transport)
        return response

    async def signout(
        self, request: web.Request, session: ConsoleSession, actor: ConsoleActor
    ) -> web.StreamResponse:
        await revoke(self.services.engine, session.id_hash, self.services.clock.now())
        response = web.json_response({"signed_out": True})
        web_security.clear_session_cookie(response, self.secure(request))
        return response

    def who(self, session: ConsoleSession, token: str, actor: ConsoleActor) -> dict[str, str]:
        """Who is signed in, and the CSRF token of the session: ``/console/api/me``, and the
        ``openssm-me`` meta element of every signed-in page."""
        principal = actor.identity.principal
        return {
            "user": session.user_name,
            "arn": principal.arn,
            "account": principal.account,
            "region": self.services.config.region,
            "csrf_token": web_security.csrf_token_for(token),
            "expires_at": session.expires_at.isoformat(),
        }

    async def me(
        self, request: web.Request, session: ConsoleSession, actor: ConsoleActor
    ) -> web.StreamResponse:
        token = request.cookies.get(self.cookie_name(request), "")
        return web.json_response(self.who(session, token, actor))

    # -- wrappers ------------------------------------------------------------------------------------

    def signed_in(self, handler: SignedInHandler, *, changes_state: bool) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            found = await self.session_of(request)
            if found is None:
                return _error(401, "NotSignedIn", "Your console session has ended. Sign in again.")
            session = found.session
            if changes_state:
                origin_ok = web_security.origin_allowed(
                    request.headers.get("Origin"), await self.allowed_origins(request)
                )
                csrf_ok = web_security.csrf_matches(
                    request.headers.get(web_security.CSRF_HEADER), session.csrf_hash
                )
                if not (origin_ok and csrf_ok):
                    return _error(403, "BadCsrfToken", "The request did not come from this console page.")
            actor = await self.actor_for(request, found)
            if actor is None:
                return _error(401, "NotSignedIn", "The user of this console session no longer exists.")
            try:
                return await handler(request, session, actor)
            except ActionFailed as exc:
                return _error(exc.status, exc.code, exc.message)

        return wrapped


def _security_headers_middleware(console: Console) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        is_upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if is_upgrade and "Origin" in request.headers:
            # Browsers always send Origin on WebSocket upgrades (AWS's plugin and agent never do):
            # a page from another site must not open data channels with a token it obtained.
            if not web_security.origin_allowed(
                request.headers["Origin"], await console.allowed_origins(request)
            ):
                log.info("refused WebSocket upgrade from origin %r", request.headers["Origin"][:200])
                return web.Response(status=403, text="Origin not allowed")
        response = await handler(request)
        if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
            sources = web_security.websocket_sources(await console.gateway_urls())
            response.headers["Content-Security-Policy"] = web_security.content_security_policy(sources)
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "same-origin"
            response.headers["X-Frame-Options"] = "DENY"
            response.headers.setdefault("Cache-Control", "no-store")
            if console.secure(request):
                # Reached over TLS (or through a trusted proxy that says so): the browser keeps to
                # HTTPS for this host from now on, so a network attacker cannot downgrade a later
                # visit to plain HTTP and read the sign-in or the cookie.
                response.headers["Strict-Transport-Security"] = web_security.HSTS
        return response

    return middleware


def _add_oidc_routes(router: web.UrlDispatcher, console: Console) -> None:
    """``/console/api/signin-options`` (what the sign-in page offers), and "Sign in with <provider>"
    when the server is given ``--oidc-…`` options."""
    settings = console.services.config.web_identity.console

    async def no_options(request: web.Request) -> web.StreamResponse:
        return web.json_response({"oidc": None})

    if settings is None:
        router.add_get(PREFIX + "/api/signin-options", no_options)
        return
    oidc = OidcSignIn(console.services, settings)

    async def start(request: web.Request) -> web.StreamResponse:
        return await oidc.start(request, console.facts(request))

    async def callback(request: web.Request) -> web.StreamResponse:
        return await oidc.callback(request, console.facts(request))

    router.add_get(PREFIX + "/api/signin-options", oidc.options)
    router.add_get(START_PATH, start)
    router.add_get(CALLBACK_PATH, callback)


def install(app: web.Application, services: Services) -> None:
    """Mount the console under ``/console/`` (``/`` stays the API's: Query requests may be GETs)."""
    console = Console(services)
    app.middlewares.append(_security_headers_middleware(console))
    router = app.router
    router.add_get(PREFIX, console.index)
    router.add_get(PREFIX + "/", console.index)
    router.add_get(PREFIX + "/signin", console.signin_page)
    router.add_get(PREFIX + "/static/{path:.+}", pages.static_file)
    router.add_get(pages.ASSETS_PREFIX + "/{version:[0-9a-f]{16}}/{path:.+}", pages.versioned_file)
    router.add_post(PREFIX + "/api/signin", console.signin)
    _add_oidc_routes(router, console)
    router.add_post(PREFIX + "/api/signout", console.signed_in(console.signout, changes_state=True))
    router.add_get(PREFIX + "/api/me", console.signed_in(console.me, changes_state=False))
    routes.add_routes(router, services, console.signed_in)  # JSON for the pages: nodes, sessions, activations
    access_routes.add_routes(router, services, console.signed_in)  # access requests (just-in-time access)
    join_routes.add_routes(router, console.signed_in)  # live-session join: Watch, Join, refuse joins
    router.add_get(PREFIX + "/{page}", console.page)
