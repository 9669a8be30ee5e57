"""The console's HTTP surface against a real server: cookies, CSRF, Origin checks (also on WebSocket
upgrades), CSP, sign-in throttling, sign-out revocation, password + TOTP sign-in set up through the
IAM API, and acting with the signed-in principal's permissions only."""

from __future__ import annotations

import base64
import html
import http.client
import json
import pathlib
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration.api_harness import ApiServer

from openssm.security.login_secrets import totp

ORIGIN_HEADER = "Origin"


class Browserish:
    """Just enough of a browser: one cookie, the Origin header, the CSRF header."""

    def __init__(self, server: ApiServer, origin: str | None = None) -> None:
        self.server = server
        self.origin = origin if origin is not None else server.endpoint
        self.cookie: str | None = None
        self.csrf: str | None = None

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        sent = dict(headers or {})
        if self.origin:
            sent.setdefault(ORIGIN_HEADER, self.origin)
        if self.cookie:
            sent["Cookie"] = self.cookie
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        payload = response.read()
        conn.close()
        return response.status, response.headers, payload

    def sign_in(
        self, key: str, secret: str, **extra: str
    ) -> tuple[int, dict[str, Any], http.client.HTTPMessage]:
        status, headers, payload = self.request(
            "POST", "/console/api/signin", {"access_key_id": key, "secret_access_key": secret, **extra}
        )
        cookie = headers.get("Set-Cookie")
        if status == 200 and cookie:
            self.cookie = cookie.split(";", 1)[0]
            me = self.get_json("/console/api/me")[1]
            self.csrf = me["csrf_token"]
        return status, json.loads(payload), headers

    def get_json(self, path: str) -> tuple[int, dict[str, Any]]:
        status, _, payload = self.request("GET", path)
        return status, json.loads(payload)

    def post_json(self, path: str, body: Any = None, csrf: str | None = None) -> tuple[int, dict[str, Any]]:
        token = csrf if csrf is not None else self.csrf
        status, _, payload = self.request("POST", path, body or {}, {"X-CSRF-Token": token or ""})
        return status, json.loads(payload)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    instance = ApiServer(tmp_path_factory.mktemp("console-http"), trusted_proxies=("127.0.0.1/32",)).start()
    try:
        yield instance
    finally:
        instance.stop()


def new_user(server: ApiServer, name: str, actions: list[str] | None) -> tuple[str, str]:
    iam = server.client("iam")
    iam.create_user(UserName=name)
    if actions:
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def test_pages_carry_a_csp_without_inline_script(server: ApiServer) -> None:
    client = Browserish(server)
    status, headers, body = client.request("GET", "/console/signin")
    assert status == 200
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src", 1)[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp
    assert f"ws://127.0.0.1:{server.port}" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    # Every script is an external file: nothing inline for the CSP to have to allow.
    scripts = re.findall(rb"<script([^>]*)>(.*?)</script>", body, re.S)
    assert scripts and all(b"src=" in attrs and not inner.strip() for attrs, inner in scripts)
    static = pathlib.Path(__file__).resolve().parents[2] / "src" / "openssm" / "console" / "static"
    pages = list(static.glob("*.html"))
    assert len(pages) == 7
    for page in pages:
        text = page.read_text()
        assert not re.search(r"\son[a-z]+\s*=", text), f"inline event handler in {page.name}"
        assert "javascript:" not in text
        assert all(src for src in re.findall(r"<script([^>]*)>", text)) and "<script>" not in text


def test_assets_are_kept_for_good_at_versioned_addresses_and_revalidated_elsewhere(server: ApiServer) -> None:
    """A page names its scripts and stylesheets under /console/assets/<version>/: the browser keeps
    them without asking again (a returning user's page loads nothing but itself). Another version
    (a page from another release) and /console/static/ are asked again on each use, the ETag
    making that a 304; every asset keeps the console's security headers."""
    client = Browserish(server)
    status, _, page = client.request("GET", "/console/signin")
    assets = re.search(rb'src="(/console/assets/[0-9a-f]{16})/js/signin.js"', page)
    assert status == 200 and assets is not None
    prefix = assets.group(1).decode()
    status, headers, body = client.request("GET", f"{prefix}/js/common.js")
    assert status == 200 and headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert (
        headers["Content-Type"].startswith("text/javascript")
        and headers["X-Content-Type-Options"] == "nosniff"
    )
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    static = pathlib.Path(__file__).resolve().parents[2] / "src" / "openssm" / "console" / "static"
    assert body == (static / "js" / "common.js").read_bytes()
    for stale in ("/console/assets/0123456789abcdef/js/common.js", "/console/static/js/common.js"):
        status, headers, again = client.request("GET", stale)
        assert status == 200 and again == body and headers["Cache-Control"] == "no-cache", stale
        status, _, _ = client.request("GET", stale, headers={"If-None-Match": headers["ETag"]})
        assert status == 304, stale
    for outside in ("/../app.py", "/js/..%2F..%2Fapp.py", "/../../pages.py"):
        status, _, _ = client.request("GET", prefix + outside)
        assert status == 404, outside


def test_signed_out_requests_go_to_sign_in(server: ApiServer) -> None:
    client = Browserish(server)
    status, headers, _ = client.request("GET", "/console/nodes")
    assert status == 302 and headers["Location"].startswith("/console/signin?next=")
    status, body = client.get_json("/console/api/nodes")
    assert status == 401 and body["error"] == "NotSignedIn"
    status, _, _ = client.request("GET", "/console/static/../app.py")
    assert status == 404
    status, _, _ = client.request("GET", "/console/static/js/..%2F..%2Fapp.py")
    assert status == 404


def test_cookie_flags_and_secure_behind_a_tls_proxy(server: ApiServer) -> None:
    key, secret = server.admin_credentials
    client = Browserish(server)
    status, _, headers = client.sign_in(key, secret)
    assert status == 200
    cookie = headers["Set-Cookie"]
    assert cookie.startswith("openssm-console=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie
    assert "Strict-Transport-Security" not in headers  # plain HTTP: HSTS there means nothing

    proxied = Browserish(server, origin=f"https://127.0.0.1:{server.port}")
    status, headers, _ = proxied.request(
        "POST",
        "/console/api/signin",
        {"access_key_id": key, "secret_access_key": secret},
        {"X-Forwarded-Proto": "https"},
    )
    assert status == 200
    cookie = headers["Set-Cookie"]
    assert cookie.startswith("__Host-openssm-console=") and "Secure" in cookie and "HttpOnly" in cookie
    assert headers["Strict-Transport-Security"] == "max-age=31536000"


def test_state_changes_need_the_csrf_token_and_our_origin(server: ApiServer) -> None:
    key, secret = server.admin_credentials
    client = Browserish(server)
    assert client.sign_in(key, secret)[0] == 200
    assert client.csrf
    body = {"iam_role": "OpenSSMNodeRole"}
    status, answer = client.post_json("/console/api/activations", body, csrf="")
    assert status == 403 and answer["error"] == "BadCsrfToken"
    status, answer = client.post_json("/console/api/activations", body, csrf="0" * 64)
    assert status == 403
    foreign = Browserish(server, origin="https://evil.example")
    foreign.cookie, foreign.csrf = client.cookie, client.csrf
    status, answer = foreign.post_json("/console/api/activations", body)
    assert status == 403
    status, answer = client.post_json("/console/api/activations", body)
    assert status == 200 and answer["ActivationId"] and "--code" in answer["RegisterCommand"]
    # Sign-in itself only from our own pages.
    assert Browserish(server, origin="https://evil.example").sign_in(key, secret)[0] == 403
    assert Browserish(server, origin="").sign_in(key, secret)[0] == 403


def test_signed_in_pages_carry_who_is_signed_in_and_the_csrf_token(server: ApiServer) -> None:
    """Each signed-in page holds /console/api/me's answer in a meta element, so its script makes its
    first state-changing request (Start session) without asking for the token first. The page is
    never stored; the token still has to come back in the header, from our origin."""
    key, secret = server.admin_credentials
    client = Browserish(server)
    assert client.sign_in(key, secret)[0] == 200
    status, headers, page = client.request("GET", "/console/shell?target=mi-0123456789abcdef0")
    found = re.search(rb'<meta name="openssm-me" content="([^"]*)">', page)
    assert status == 200 and found is not None and headers["Cache-Control"] == "no-store"
    me = json.loads(html.unescape(found.group(1).decode()))
    assert me == client.get_json("/console/api/me")[1] and me["csrf_token"] == client.csrf
    assert me["user"] == "admin" and me["arn"].endswith(":user/admin")
    status, answer = client.post_json("/console/api/activations", {}, csrf=me["csrf_token"])
    assert status == 200 and answer["ActivationId"]
    other = Browserish(server)  # another session: another token, which the first one's refuses
    assert other.sign_in(key, secret)[0] == 200 and other.csrf != client.csrf
    assert client.post_json("/console/api/activations", {}, csrf=other.csrf)[0] == 403
    # Signed out, no page (and so no token): the sign-in page, which carries none.
    status, headers, _ = Browserish(server).request("GET", "/console/shell")
    assert status == 302 and headers["Location"].startswith("/console/signin")
    status, _, page = Browserish(server).request("GET", "/console/signin")
    assert status == 200 and b"openssm-me" not in page


def test_websocket_upgrades_from_foreign_origins_are_refused(server: ApiServer) -> None:
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
    }
    status, _, _ = Browserish(server, origin="https://evil.example").request(
        "GET", "/v1/data-channel/admin-0123456789abcdef0?role=publish_subscribe", headers=upgrade
    )
    assert status == 403
    # Our own origin, and no Origin at all (AWS's plugin and agent never send one), pass the check.
    for origin in (server.endpoint, ""):
        status, _, _ = Browserish(server, origin=origin).request(
            "GET", "/v1/data-channel/admin-0123456789abcdef0?role=publish_subscribe", headers=upgrade
        )
        assert status == 101


def test_failed_sign_ins_are_throttled(server: ApiServer) -> None:
    key, secret = new_user(server, "throttled", None)
    client = Browserish(server)
    for _ in range(5):
        status, body, _ = client.sign_in(key, "wrong-secret")
        assert status == 401 and "not correct" in body["message"]
    status, body, headers = client.sign_in(key, secret)  # even the right secret waits now
    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert "Too many failed sign-ins" in body["message"]


def test_sign_out_revokes_the_session(server: ApiServer) -> None:
    key, secret = server.admin_credentials
    client = Browserish(server)
    assert client.sign_in(key, secret)[0] == 200
    assert client.get_json("/console/api/me")[0] == 200
    status, _ = client.post_json("/console/api/signout")
    assert status == 200
    assert client.get_json("/console/api/me")[0] == 401


def test_deactivating_the_key_ends_console_sessions(server: ApiServer) -> None:
    key, secret = new_user(server, "keyholder", ["ssm:DescribeSessions"])
    client = Browserish(server)
    assert client.sign_in(key, secret)[0] == 200
    assert client.get_json("/console/api/sessions?state=History")[0] == 200
    server.client("iam").update_access_key(UserName="keyholder", AccessKeyId=key, Status="Inactive")
    assert client.get_json("/console/api/sessions?state=History")[0] == 401


def test_console_acts_with_the_principals_permissions_only(server: ApiServer) -> None:
    key, secret = new_user(server, "lister", ["ssm:DescribeInstanceInformation"])
    client = Browserish(server)
    assert client.sign_in(key, secret)[0] == 200
    assert client.get_json("/console/api/nodes")[0] == 200
    status, body = client.get_json("/console/api/sessions?state=Active")
    assert status == 403 and body["error"] == "AccessDeniedException"
    assert "ssm:DescribeSessions" in body["message"]
    status, body = client.post_json("/console/api/activations", {"iam_role": "OpenSSMNodeRole"})
    assert status == 403 and "ssm:CreateActivation" in body["message"]
    status, body = client.post_json("/console/api/sessions", {"target": "mi-0123456789abcdef0"})
    assert status == 403 and "ssm:StartSession" in body["message"]


def test_password_and_totp_sign_in_set_up_through_iam(server: ApiServer) -> None:
    key, secret = new_user(server, "mfa-user", ["ssm:DescribeSessions"])
    iam = server.client("iam")
    iam.create_login_profile(UserName="mfa-user", Password="correct horse battery")
    assert iam.get_login_profile(UserName="mfa-user")["LoginProfile"]["UserName"] == "mfa-user"
    with pytest.raises(iam.exceptions.EntityAlreadyExistsException):
        iam.create_login_profile(UserName="mfa-user", Password="another password")
    device = iam.create_virtual_mfa_device(VirtualMFADeviceName="mfa-user-phone")["VirtualMFADevice"]
    seed_text = device["Base32StringSeed"].decode()
    seed = base64.b32decode(seed_text + "=" * (-len(seed_text) % 8))
    now = time.time()
    step_start = now - now % 30
    iam.enable_mfa_device(
        UserName="mfa-user",
        SerialNumber=device["SerialNumber"],
        AuthenticationCode1=totp(seed, step_start - 30),
        AuthenticationCode2=totp(seed, step_start),
    )
    assert [d["SerialNumber"] for d in iam.list_mfa_devices(UserName="mfa-user")["MFADevices"]] == [
        device["SerialNumber"]
    ]

    client = Browserish(server)
    status, body, _ = client.sign_in(key, secret)
    assert status == 401 and body["needs"] == "password"
    status, body, _ = client.sign_in(key, secret, password="wrong password!")
    assert status == 401 and "not correct" in body["message"]
    status, body, _ = client.sign_in(key, secret, password="correct horse battery")
    assert status == 401 and body["needs"] == "mfa"
    status, body, _ = client.sign_in(key, secret, password="correct horse battery", mfa_code="000000")
    assert status == 401
    # The codes that enabled the device are spent (as on AWS); the next step's code is good.
    spent = totp(seed, step_start)
    assert client.sign_in(key, secret, password="correct horse battery", mfa_code=spent)[0] == 401
    code = totp(seed, step_start + 30)
    status, body, _ = client.sign_in(key, secret, password="correct horse battery", mfa_code=code)
    assert status == 200 and body["user"] == "mfa-user"
    # The same code cannot be used twice.
    status, _, _ = Browserish(server).sign_in(key, secret, password="correct horse battery", mfa_code=code)
    assert status == 401

    iam.deactivate_mfa_device(UserName="mfa-user", SerialNumber=device["SerialNumber"])
    iam.delete_login_profile(UserName="mfa-user")
    assert Browserish(server).sign_in(key, secret)[0] == 200
