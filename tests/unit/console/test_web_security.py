"""Cookie, CSRF, Origin, CSP and throttling rules of the console (pure functions)."""

from __future__ import annotations

from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from openssm.bus.failures import MemoryFailureLog
from openssm.console import web_security as ws


def test_cookie_name_uses_host_prefix_only_under_tls() -> None:
    assert ws.cookie_name(True) == "__Host-openssm-console"
    assert ws.cookie_name(False) == "openssm-console"


def test_session_cookie_attributes() -> None:
    response = web.Response()
    ws.set_session_cookie(response, "tok", secure=True)
    header = response.cookies["__Host-openssm-console"].OutputString()
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Secure" in header and "Path=/" in header
    assert "Domain" not in header and "Max-Age" not in header
    plain = web.Response()
    ws.set_session_cookie(plain, "tok", secure=False)
    assert "Secure" not in plain.cookies["openssm-console"].OutputString()


def test_clearing_the_cookie_expires_it() -> None:
    response = web.Response()
    ws.clear_session_cookie(response, secure=False)
    header = response.cookies["openssm-console"].OutputString()
    assert "Max-Age=0" in header or "expires=Thu, 01 Jan 1970" in header


def test_csrf_token_is_bound_to_the_session_token() -> None:
    import hashlib

    token = ws.csrf_token_for("session-a")
    stored = hashlib.sha256(token.encode()).hexdigest()
    assert ws.csrf_matches(token, stored)
    assert not ws.csrf_matches(ws.csrf_token_for("session-b"), stored)
    assert not ws.csrf_matches(None, stored)
    assert not ws.csrf_matches("", stored)
    assert not ws.csrf_matches("x" * 10_000, stored)


def test_origin_normalisation() -> None:
    assert ws.origin_of("http://127.0.0.1:8080/console/") == "http://127.0.0.1:8080"
    assert ws.origin_of("HTTPS://Example.COM:443") == "https://example.com"
    assert ws.origin_of("wss://gw.example:8443/v1/x") == "https://gw.example:8443"
    assert ws.origin_of("ws://[::1]:80/") == "http://[::1]"
    assert ws.origin_of("null") is None
    assert ws.origin_of("file:///etc/passwd") is None
    assert ws.origin_of("http://host:99999") is None


def test_allowed_origins_are_ours_and_the_gateways() -> None:
    allowed = ws.allowed_origins("http", "127.0.0.1:8080", ["http://127.0.0.1:8080", "https://node2.example"])
    assert ws.origin_allowed("http://127.0.0.1:8080", allowed)
    assert ws.origin_allowed("https://node2.example", allowed)
    assert not ws.origin_allowed("http://127.0.0.1:8081", allowed)
    assert not ws.origin_allowed("https://127.0.0.1:8080", allowed)  # scheme matters
    assert not ws.origin_allowed("http://evil.example", allowed)
    assert not ws.origin_allowed("null", allowed)
    assert not ws.origin_allowed(None, allowed)


@given(st.text(max_size=200))
def test_origin_check_never_raises(value: str) -> None:
    assert ws.origin_allowed(value, {"http://a.example"}) in (True, False)


def test_csp_forbids_inline_script_and_framing() -> None:
    policy = ws.content_security_policy(ws.websocket_sources(["https://gw.example", "http://10.0.0.1:8080"]))
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["connect-src"] == "'self' ws://10.0.0.1:8080 wss://gw.example"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_throttle_allows_free_failures_then_doubles_the_wait() -> None:
    clock = FakeClock()
    throttle = ws.SignInThrottle(
        MemoryFailureLog(), free_failures=3, window=300, base_delay=2, max_delay=60, clock=clock
    )
    for _ in range(3):
        assert (await throttle.check(["k"])).allowed
        await throttle.failed(["k"])
    decision = await throttle.check(["k"])
    assert not decision.allowed and decision.retry_after == 2
    clock.now += 2
    assert (await throttle.check(["k"])).allowed
    await throttle.failed(["k"])
    assert (await throttle.check(["k"])).retry_after == 4
    clock.now += 4
    await throttle.failed(["k"])
    assert (await throttle.check(["k"])).retry_after == 8
    assert (await throttle.check(["other"])).allowed


async def test_throttle_forgets_after_the_window_and_on_success() -> None:
    clock = FakeClock()
    throttle = ws.SignInThrottle(MemoryFailureLog(), free_failures=1, window=60, clock=clock)
    await throttle.failed(["k"])
    await throttle.failed(["k"])
    assert not (await throttle.check(["k"])).allowed
    clock.now += 61
    assert (await throttle.check(["k"])).allowed
    await throttle.failed(["k"])
    await throttle.failed(["k"])
    await throttle.succeeded(["k"])
    assert (await throttle.check(["k"])).allowed


async def test_throttle_memory_is_bounded() -> None:
    log = MemoryFailureLog(max_keys=100)
    throttle = ws.SignInThrottle(log, clock=FakeClock())
    for i in range(1000):
        await throttle.failed([f"ip-{i}"])
    assert len(log) == 100
