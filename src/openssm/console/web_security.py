"""Browser-facing protections of the console, as small functions: cookie attributes, CSRF tokens,
Origin checks, the Content-Security-Policy and sign-in throttling."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Final

from aiohttp import web

from openssm.bus.failures import FailureLog

COOKIE_BASENAME: Final = "openssm-console"
CSRF_HEADER: Final = "X-CSRF-Token"
# A year, as browsers' preload lists ask; not includeSubDomains: other hosts under the console's
# domain are not the console's to decide.
HSTS: Final = "max-age=31536000"


def cookie_name(secure: bool) -> str:
    """Under TLS the ``__Host-`` prefix makes the browser refuse the cookie unless Secure, Path=/ and
    host-only, so a sibling subdomain cannot plant or override it."""
    return f"__Host-{COOKIE_BASENAME}" if secure else COOKIE_BASENAME


def set_session_cookie(response: web.StreamResponse, token: str, secure: bool) -> None:
    """The console cookie: never readable by scripts, never sent cross-site, Secure under TLS; a
    session cookie (no Max-Age), the server-side row expires it."""
    response.set_cookie(cookie_name(secure), token, path="/", httponly=True, samesite="Strict", secure=secure)


def clear_session_cookie(response: web.StreamResponse, secure: bool) -> None:
    response.del_cookie(cookie_name(secure), path="/", secure=secure, httponly=True, samesite="Strict")


def csrf_token_for(cookie_token: str) -> str:
    """The CSRF token belonging to a console session: derived from the cookie token, so the server
    can recompute it for the page without storing it in clear (only its hash is stored)."""
    return hmac.new(cookie_token.encode(), b"openssm-console-csrf", hashlib.sha256).hexdigest()


def csrf_matches(presented: str | None, stored_hash: str) -> bool:
    if not presented or len(presented) > 256:
        return False
    return hmac.compare_digest(hashlib.sha256(presented.encode()).hexdigest(), stored_hash)


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, lower-case, default ports dropped; None if it has none."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        return None
    scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" if port in (None, default) else f"{scheme}://{host}:{port}"


def allowed_origins(request_scheme: str, request_host: str | None, public_urls: Iterable[str]) -> set[str]:
    """The console's own origin (as the browser reached it) and every gateway node's public origin."""
    origins = {origin for url in public_urls if (origin := origin_of(url))}
    if request_host:
        own = origin_of(f"{request_scheme}://{request_host}")
        if own:
            origins.add(own)
    return origins


def origin_allowed(origin_header: str | None, allowed: set[str]) -> bool:
    """A browser always sends Origin on WebSocket upgrades and on POSTs; "null" (sandboxed or
    opaque origins) and foreign origins are refused."""
    if origin_header is None:
        return False
    origin = origin_of(origin_header)
    return origin is not None and origin in allowed


def websocket_sources(public_urls: Iterable[str]) -> list[str]:
    """``ws(s)://host:port`` for the gateway nodes, for the CSP ``connect-src``."""
    sources = []
    for url in public_urls:
        origin = origin_of(url)
        if origin:
            sources.append(origin.replace("https://", "wss://", 1).replace("http://", "ws://", 1))
    return sorted(set(sources))


def content_security_policy(connect_sources: Iterable[str]) -> str:
    """Scripts only from our own files (no inline script, no eval). xterm.js's DOM renderer writes
    a ``<style>`` element at run time, hence inline styles are allowed; styles cannot run code."""
    connect = " ".join(["'self'", *connect_sources])
    return (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        f"font-src 'self'; connect-src {connect}; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ThrottleDecision:
    allowed: bool
    retry_after: int  # seconds; 0 when allowed


class SignInThrottle:
    """Failed sign-ins per key (client address, and access key id): after ``free_failures`` within
    ``window`` seconds, each further attempt must wait, doubling up to ``max_delay``.

    The failures are kept in ``log``: in memory on a node of its own, in Redis when the nodes share
    one (``Bus.failure_log``), so every node behind a load balancer sees the same count. ``clock``
    gives wall-clock seconds (what nodes have in common).
    """

    def __init__(
        self,
        log: FailureLog,
        *,
        free_failures: int = 5,
        window: float = 300.0,
        base_delay: float = 2.0,
        max_delay: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.log = log
        self.free_failures = free_failures
        self.window = window
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._clock = clock

    async def check(self, keys: Iterable[str]) -> ThrottleDecision:
        now = self._clock()
        wait = 0.0
        for key in keys:
            times = await self.log.recent(key, now, self.window)
            extra = len(times) - self.free_failures
            if extra < 0:
                continue
            delay = min(self.max_delay, self.base_delay * (2**extra))
            wait = max(wait, times[-1] + delay - now)
        if wait <= 0:
            return ThrottleDecision(True, 0)
        return ThrottleDecision(False, max(1, int(wait + 0.999)))

    async def failed(self, keys: Iterable[str]) -> None:
        now = self._clock()
        for key in keys:
            await self.log.add(key, now, self.window, keep=self.free_failures + 32)

    async def succeeded(self, keys: Iterable[str]) -> None:
        for key in keys:
            await self.log.clear(key)
