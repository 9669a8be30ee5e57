"""A real OpenID provider for tests (the npm package ``oidc-provider``, run by
``tests/support/oidc_provider.mjs`` on loopback), and a browser sign-in at its pages.

``make test`` installs the package (``npm install``: it is a dev dependency in ``package.json``).
In CI a missing Node.js or package fails the tests that need it; elsewhere they are skipped.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import pathlib
import secrets
import selectors
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

from tests.conftest import REPO_ROOT, require

SCRIPT = REPO_ROOT / "tests" / "support" / "oidc_provider.mjs"
PACKAGE = REPO_ROOT / "node_modules" / "oidc-provider"
PASSWORD = "correct horse battery staple"
STARTUP_SECONDS = 45.0
USERS: dict[str, dict[str, str]] = {
    "alice": {
        "password": PASSWORD,
        "email": "alice@example.com",
        "preferred_username": "alice",
        "name": "Alice",
    },
    "bob": {"password": PASSWORD, "email": "bob@example.com", "preferred_username": "bob", "name": "Bob"},
}


def native_client(client_id: str, algorithm: str = "ES256") -> dict[str, Any]:
    """A public client on a loopback redirect (any port, RFC 8252), as ``openssm login`` is."""
    return {
        "client_id": client_id,
        "application_type": "native",
        "token_endpoint_auth_method": "none",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "id_token_signed_response_alg": algorithm,
    }


def web_client(client_id: str, secret: str, redirect_uri: str, algorithm: str = "RS256") -> dict[str, Any]:
    """A confidential client (the console)."""
    return {
        "client_id": client_id,
        "client_secret": secret,
        "redirect_uris": [redirect_uri],
        "id_token_signed_response_alg": algorithm,
    }


class OidcProvider:
    def __init__(self, clients: list[dict[str, Any]], *, id_token_ttl: int = 3600) -> None:
        self.config = {"clients": clients, "users": USERS, "idTokenTtl": id_token_ttl}
        self.process: subprocess.Popen[bytes] | None = None
        self.issuer = ""

    def start(self, log_path: pathlib.Path | None = None) -> OidcProvider:
        node = shutil.which("node")
        require(node is not None, "Node.js is not installed (scripts/install-system-deps installs it)")
        require(PACKAGE.is_dir(), "npm package oidc-provider is missing: run `npm install` (make test does)")
        assert node is not None
        log = log_path or pathlib.Path(tempfile.mkdtemp(prefix="oidc-provider-")) / "provider.log"
        with log.open("wb") as errors:
            self.process = subprocess.Popen(
                [node, str(SCRIPT), json.dumps(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
                cwd=REPO_ROOT,
            )
        assert self.process.stdout is not None
        # The provider prints its issuer once it listens; wait for that line with a deadline.
        line = b""
        deadline = time.monotonic() + STARTUP_SECONDS
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n") and time.monotonic() < deadline and self.process.poll() is None:
                if selector.select(timeout=0.5):
                    chunk = os.read(self.process.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    line += chunk
        if not line.endswith(b"\n"):
            self.stop()
            raise RuntimeError(
                f"oidc-provider did not start (exit {self.process.poll()}):\n{log.read_text()}"
            )
        self.issuer = json.loads(line.splitlines()[0])["issuer"]
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def host_port(self) -> str:
        """The issuer without its scheme: IAM's name for it, and its condition keys' prefix."""
        return self.issuer.split("://", 1)[1]

    def discovery(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.issuer + "/.well-known/openid-configuration", timeout=10) as answer:
            return dict(json.load(answer))


@contextlib.contextmanager
def running_provider(clients: list[dict[str, Any]], **options: Any) -> Iterator[OidcProvider]:
    provider = OidcProvider(clients, **options).start()
    try:
        yield provider
    finally:
        provider.stop()


def loopback_only(page: Any) -> None:
    """The browser reaches loopback only (nothing of a page may go to the internet)."""

    def route(handle: Any) -> None:
        host = urllib.parse.urlsplit(handle.request.url).hostname or ""
        if host in ("127.0.0.1", "localhost", "::1"):
            handle.continue_()
        else:
            handle.abort()

    page.route("**/*", route)


def sign_in_at_provider(
    page: Any, username: str, password: str = PASSWORD, *, shots: str | None = None
) -> None:
    """Fill the provider's sign-in form, then allow the client on its consent page."""
    from tests.browser.conftest import screenshot

    page.wait_for_selector("#username")
    page.fill("#username", username)
    page.fill("#password", password)
    if shots:
        screenshot(page, f"{shots}-provider-signin")
    page.click("#sign-in")
    page.wait_for_selector("#allow")
    if shots:
        screenshot(page, f"{shots}-provider-consent")
    page.click("#allow")


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def id_token_via_browser(
    browser: Any, provider: OidcProvider, client_id: str, username: str = "alice"
) -> str:
    """An ID token for ``username`` from the provider, by its authorization code flow with PKCE
    (the browser signs in at the provider's pages; its redirect to the loopback callback is caught)."""
    discovery = provider.discovery()
    verifier, challenge = _pkce()
    redirect_uri = "http://127.0.0.1:9/callback"  # never listened on: the browser's request is caught
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid email profile",
            "state": secrets.token_urlsafe(16),
            "nonce": secrets.token_urlsafe(16),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    context = browser.new_context()
    try:
        page = context.new_page()
        loopback_only(page)
        caught: list[str] = []

        def callback(route: Any) -> None:
            caught.append(route.request.url)
            route.fulfill(status=200, body="ok")

        page.route(f"{redirect_uri}*", callback)
        page.goto(f"{discovery['authorization_endpoint']}?{query}")
        sign_in_at_provider(page, username)
        deadline = time.monotonic() + 30
        while not caught and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert caught, "the provider did not redirect back"
    finally:
        context.close()
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(caught[0]).query)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
        "client_id": client_id,
    }
    return str(token_request(discovery["token_endpoint"], form)["id_token"])


def token_request(url: str, form: Mapping[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return dict(json.load(answer))
    except urllib.error.HTTPError as error:
        raise AssertionError(f"token endpoint: {error.code} {error.read()!r}") from None


def aws_env(tmp: Any, **values: str) -> dict[str, str]:
    """An environment for the real AWS CLI with no credentials but those given, and files in ``tmp``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=str(tmp / "aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp / "aws-credentials"),
        AWS_DEFAULT_REGION="us-east-1",
        HOME=str(tmp),
    )
    env.update(values)
    return env
