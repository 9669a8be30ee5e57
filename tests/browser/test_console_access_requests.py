"""The access requests page: a requester asks for an hour on a node, an approver approves it on the
approvers' page, the requester opens a shell there from the console; the approver revokes the grant and
the requester's shell ends. Each user sees only the buttons their policies allow, and nobody is
offered the approval of their own request."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import has_horizontal_scroll, screenshot, sign_in
from tests.browser.test_console_access import make_user
from tests.browser.test_console_session_end import TERMINAL
from tests.e2e.harness import Agent, Server
from tests.support.access_policies import APPROVER, REQUESTER, with_statement

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CONSOLE = {  # what the console's pages read
    "Effect": "Allow",
    "Action": ["ssm:DescribeInstanceInformation", "ssm:DescribeSessions", "ssm:GetConnectionStatus"],
    "Resource": "*",
}


def test_a_request_approved_on_the_approvers_page_opens_a_shell_until_revoked(
    browser: Any, system: tuple[Server, Agent]
) -> None:
    server, agent = system
    target = agent.instance_id
    assert target is not None
    alice_keys, bob_keys = (
        make_user(server, "alice", with_statement(REQUESTER, CONSOLE)),
        make_user(server, "bob", with_statement(APPROVER, CONSOLE)),
    )

    requester = browser.new_context(viewport={"width": 1280, "height": 900})
    alice = requester.new_page()
    sign_in(alice, server, alice_keys)
    alice.goto(f"{server.endpoint}/console/access")
    alice.fill("#request-target", target)
    alice.select_option("#request-duration", "3600")
    alice.fill("#request-reason", "restart the stuck service")
    alice.click("#request-submit")
    alice.locator("#access-message .message.info").wait_for()
    request_id = alice.inner_text("#access-message").split()[1]
    mine = alice.locator(f'#requests-body tr[data-request-id="{request_id}"]')
    mine.wait_for()
    assert "Pending" in mine.inner_text() and alice.inner_text("#requests-title") == "Your requests"
    waiting = alice.locator(f'#pending-body tr[data-request-id="{request_id}"]')
    assert waiting.locator("button.approve").count() == 0  # never one's own
    assert "someone else decides" in waiting.inner_text()
    screenshot(alice, "30-access-requested")

    approver = browser.new_context(viewport={"width": 1280, "height": 900})
    bob = approver.new_page()
    sign_in(bob, server, bob_keys)
    bob.goto(f"{server.endpoint}/console/access")
    pending = bob.locator(f'#pending-body tr[data-request-id="{request_id}"]')
    pending.wait_for()
    assert "alice" in pending.inner_text() and "restart the stuck service" in pending.inner_text()
    assert bob.inner_text("#requests-title") == "All requests"
    screenshot(bob, "31-access-approvers-page")
    pending.locator("button.approve").click()
    bob.locator("#access-message .message.info").wait_for()
    assert f"{request_id} is approved." in bob.inner_text("#access-message")
    granted = bob.locator(f'#requests-body tr[data-request-id="{request_id}"]')
    bob.wait_for_function(
        "(id) => (document.querySelector(`#requests-body tr[data-request-id='${id}'] .status`) || {}).textContent === 'Approved'",
        arg=request_id,
    )
    assert "approved by bob" in granted.inner_text()
    screenshot(bob, "32-access-approved")

    # The grant is alice's: the console opens a shell on the node for her.
    alice.reload()
    shell_link = alice.locator(f'#requests-body tr[data-request-id="{request_id}"] a.open-shell')
    shell_link.wait_for()
    shell_link.click()
    alice.wait_for_selector(TERMINAL)
    alice.wait_for_function(
        "(sel) => /[$#]\\s*$/m.test(document.querySelector(sel).innerText.replace(/\\u00a0/g, ' '))",
        arg=TERMINAL,
        timeout=30_000,
    )
    alice.click("#terminal")
    alice.keyboard.type("echo granted-$((6*7))")
    alice.keyboard.press("Enter")
    alice.wait_for_function(
        "(sel) => document.querySelector(sel).innerText.includes('granted-42')", arg=TERMINAL
    )
    screenshot(alice, "33-access-granted-shell")

    # Revoked on the approvers' page: alice's shell ends, and says why.
    granted.locator("button.revoke").click()
    bob.wait_for_function(
        "(id) => (document.querySelector(`#requests-body tr[data-request-id='${id}'] .status`) || {}).textContent === 'Revoked'",
        arg=request_id,
    )
    alice.wait_for_selector("#shell-banner:not(.hidden)", timeout=30_000)
    assert f"Access request {request_id} was revoked" in alice.inner_text("body")
    screenshot(alice, "34-access-revoked-shell")

    narrow = approver.new_page()
    narrow.set_viewport_size({"width": 390, "height": 844})
    narrow.goto(f"{server.endpoint}/console/access")
    narrow.locator(f'#requests-body tr[data-request-id="{request_id}"]').wait_for()
    assert not has_horizontal_scroll(narrow)
    screenshot(narrow, "35-access-narrow")
    requester.close()
    approver.close()
