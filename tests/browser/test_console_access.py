"""What a principal without the right to start sessions sees; failed sign-in; narrow screens;
activations; sign-out."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from openssm.security.login_secrets import totp
from tests.browser.conftest import has_horizontal_scroll, screenshot, sign_in
from tests.e2e.harness import Agent, Server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

VIEW_ONLY_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["ssm:DescribeInstanceInformation", "ssm:DescribeSessions", "ssm:GetConnectionStatus"],
            "Resource": "*",
        }
    ],
}


def make_user(server: Server, name: str, policy: dict[str, Any] | None) -> tuple[str, str]:
    iam = server.client("iam")
    iam.create_user(UserName=name)
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName="console", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def test_view_only_user_sees_no_start_session_and_a_clear_denial(
    browser: Any, system: tuple[Server, Agent]
) -> None:
    server, agent = system
    credentials = make_user(server, "viewer", VIEW_ONLY_POLICY)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, server, credentials)
    row = page.locator(f'tr[data-instance-id="{agent.instance_id}"]')
    row.wait_for()
    assert row.locator(".ping").inner_text() == "Online"
    assert row.locator("a.start-session").count() == 0
    assert "not permitted" in row.inner_text()  # tags need ssm:ListTagsForResource
    # Search and filter narrow the list in place.
    page.fill("#node-search", "no-such-node")
    page.locator("td.empty").wait_for()
    assert row.count() == 0 and "No node matches." in page.inner_text("#nodes-body")
    assert agent.instance_id is not None
    page.fill("#node-search", agent.instance_id[-6:])
    row.wait_for()
    page.select_option("#node-status", "ConnectionLost")
    page.locator("td.empty").wait_for()
    page.select_option("#node-status", "Online")
    row.wait_for()
    screenshot(page, "10-nodes-view-only")

    page.goto(f"{server.endpoint}/console/shell?target={agent.instance_id}")
    message = page.locator("#shell-message .message.error")
    message.wait_for()
    text = message.inner_text()
    assert f"You are not allowed to start a session on {agent.instance_id}" in text
    assert "ssm:StartSession" in text
    assert page.locator("#terminal").is_hidden()
    screenshot(page, "11-shell-denied")
    # No session was created for the refused attempt.
    assert not [
        s
        for s in server.client("ssm").describe_sessions(State="Active")["Sessions"]
        if s["Owner"].endswith("/viewer")
    ]
    context.close()


def test_user_without_permissions_sees_nothing_listed(browser: Any, system: tuple[Server, Agent]) -> None:
    server, agent = system
    credentials = make_user(server, "nobody", None)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, server, credentials)
    page.locator("#nodes-message .message.error").wait_for()
    assert "not allowed to list managed nodes" in page.inner_text("#nodes-message")
    assert agent.instance_id not in page.inner_text("body")
    page.goto(f"{server.endpoint}/console/sessions")
    page.locator("#sessions-message .message.error").wait_for()
    assert "not allowed to list sessions" in page.inner_text("#sessions-message")
    screenshot(page, "12-sessions-denied")
    context.close()


def test_wrong_secret_is_refused_and_sign_out_revokes(browser: Any, system: tuple[Server, Agent]) -> None:
    server, _ = system
    key, _secret = server.admin_credentials
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{server.endpoint}/console/signin")
    page.fill("#access-key-id", key)
    page.fill("#secret-access-key", "not-the-secret")
    page.click("#signin-button")
    page.locator("#signin-message .message.error").wait_for()
    assert "not correct" in page.inner_text("#signin-message")
    screenshot(page, "13-signin-refused")

    sign_in(page, server)
    cookies = context.cookies()
    assert any(
        c["name"] == "openssm-console" and c["httpOnly"] and c["sameSite"] == "Strict" for c in cookies
    )
    page.click("#sign-out")
    page.wait_for_url("**/console/signin")
    # The old cookie no longer opens anything, even if replayed.
    replay = browser.new_context()
    replay.add_cookies(cookies)
    other = replay.new_page()
    other.goto(f"{server.endpoint}/console/nodes")
    assert "/console/signin" in other.url
    replay.close()
    context.close()


def test_narrow_viewport_lists_do_not_scroll_sideways(browser: Any, system: tuple[Server, Agent]) -> None:
    server, agent = system
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    page = context.new_page()
    sign_in(page, server)
    page.locator(f'tr[data-instance-id="{agent.instance_id}"]').wait_for()
    assert not has_horizontal_scroll(page)
    screenshot(page, "20-mobile-nodes")
    # A finished session so the history list has a real row (long ARNs included) to lay out.
    ssm = server.client("ssm")
    finished = ssm.start_session(Target=agent.instance_id)["SessionId"]
    ssm.terminate_session(SessionId=finished)
    page.goto(f"{server.endpoint}/console/sessions")
    page.wait_for_selector(f'#history-body tr[data-session-id="{finished}"]', timeout=30_000)
    assert not has_horizontal_scroll(page)
    screenshot(page, "21-mobile-sessions")
    page.goto(f"{server.endpoint}/console/activations")
    page.wait_for_selector("#activation-form")
    assert not has_horizontal_scroll(page)
    screenshot(page, "22-mobile-activations")
    context.close()


def test_create_activation_shows_the_register_command(browser: Any, system: tuple[Server, Agent]) -> None:
    server, _ = system
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, server)
    page.goto(f"{server.endpoint}/console/activations")
    page.fill("#activation-name", "web-01")
    page.fill("#activation-description", "from the console")
    page.click("#activation-create")
    page.locator("#activation-result:not(.hidden)").wait_for()
    command = page.inner_text("#activation-command")
    activation_id = page.inner_text("#activation-id")
    assert f"--id {activation_id}" in command
    assert f"--endpoint {server.endpoint}" in command
    assert "--code " in command
    page.click("#activation-copy")
    page.wait_for_function("document.querySelector('#activation-copied').textContent.length > 0")
    listed = server.client("ssm").describe_activations()["ActivationList"]
    assert any(a["ActivationId"] == activation_id and a["DefaultInstanceName"] == "web-01" for a in listed)
    page.locator(f"text={activation_id}").nth(1).wait_for()  # also in the list below
    screenshot(page, "30-activations")
    context.close()


def test_password_and_mfa_fields_appear_when_the_user_has_them(
    browser: Any, system: tuple[Server, Agent]
) -> None:
    server, _ = system
    key, secret = make_user(server, "mfa-operator", VIEW_ONLY_POLICY)
    iam = server.client("iam")
    iam.create_login_profile(UserName="mfa-operator", Password="long enough password")
    device = iam.create_virtual_mfa_device(VirtualMFADeviceName="mfa-operator")["VirtualMFADevice"]
    seed_text = device["Base32StringSeed"].decode()
    seed = base64.b32decode(seed_text + "=" * (-len(seed_text) % 8))
    step_start = time.time() // 30 * 30
    iam.enable_mfa_device(
        UserName="mfa-operator",
        SerialNumber=device["SerialNumber"],
        AuthenticationCode1=totp(seed, step_start - 30),
        AuthenticationCode2=totp(seed, step_start),
    )
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{server.endpoint}/console/signin")
    assert page.locator("#password").is_hidden() and page.locator("#mfa-code").is_hidden()
    page.fill("#access-key-id", key)
    page.fill("#secret-access-key", secret)
    page.click("#signin-button")
    page.locator("#password").wait_for()
    page.fill("#password", "long enough password")
    page.click("#signin-button")
    page.locator("#mfa-code").wait_for()
    screenshot(page, "14-signin-mfa")
    page.fill("#mfa-code", totp(seed, time.time() + 30))  # the next step: never used by enable above
    page.click("#signin-button")
    page.wait_for_url("**/console/nodes")
    assert page.inner_text(".who .user") == "mfa-operator"
    context.close()


def test_foreign_origin_cannot_open_a_data_channel(browser: Any, system: tuple[Server, Agent]) -> None:
    """The page served from another origin (http://localhost:… while the server's public URL is
    http://127.0.0.1:…) gets its WebSocket upgrade refused, and says so."""
    server, agent = system
    other_origin = server.endpoint.replace("127.0.0.1", "localhost")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{other_origin}/console/signin")
    key, secret = server.admin_credentials
    page.fill("#access-key-id", key)
    page.fill("#secret-access-key", secret)
    page.click("#signin-button")
    page.wait_for_url("**/console/nodes")
    page.goto(f"{other_origin}/console/shell?target={agent.instance_id}")
    page.wait_for_selector("#shell-banner:not(.hidden)", timeout=30_000)
    assert page.get_attribute("body", "data-session-ended") == "unreachable"
    assert "public URL" in page.inner_text("#banner-detail")
    context.close()
