"""Live-session join in a real browser: the owner's shell, a watcher (an IAM user allowed only to
watch) who sees the last screen and the owner's output, a co-typist tab whose command runs in the
owner's shell, and the owner refusing joins from the sessions page, which ends the watcher."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.browser.conftest import screenshot, sign_in
from tests.browser.test_console_shell import run, wait_for_text
from tests.e2e.harness import Agent, Server
from tests.support.join_policies import WATCHER

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LIST_SESSIONS = {"Effect": "Allow", "Action": "ssm:DescribeSessions", "Resource": "*"}


def _watcher_credentials(server: Server) -> tuple[str, str]:
    iam = server.client("iam")
    iam.create_user(UserName="watcher")
    policy = {**WATCHER, "Statement": [*WATCHER["Statement"], LIST_SESSIONS]}
    iam.put_user_policy(UserName="watcher", PolicyName="watch", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="watcher")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def test_watch_join_and_refuse_from_the_console(browser: Any, system: tuple[Server, Agent]) -> None:
    server, agent = system
    errors: list[str] = []
    owner_context = browser.new_context(viewport={"width": 1280, "height": 800})
    owner = owner_context.new_page()
    owner.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(owner, server)
    owner.goto(f"{server.endpoint}/console/shell?target={agent.instance_id}")
    owner.wait_for_function("() => document.body.dataset.sessionId")
    session_id = owner.evaluate("() => document.body.dataset.sessionId")
    owner.locator("#terminal").click()
    run(owner, "echo before-$((20+1))")
    wait_for_text(owner, "^before-21")

    # The watcher sees Watch (its policy allows ReadOnly only), not Join, and no join policy.
    watcher_context = browser.new_context(viewport={"width": 1280, "height": 800})
    watcher = watcher_context.new_page()
    watcher.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(watcher, server, _watcher_credentials(server))
    watcher.goto(f"{server.endpoint}/console/sessions")
    row = watcher.locator(f'#active-body tr[data-session-id="{session_id}"]')
    row.locator("a.watch").wait_for()
    assert row.locator("a.join").count() == 0 and row.locator("button.join-policy").count() == 0
    screenshot(watcher, "join-01-sessions-watch")
    row.locator("a.watch").click()
    watcher.wait_for_url("**/console/shell?join=*")
    wait_for_text(watcher, "before-21")  # the last screen
    wait_for_text(watcher, r"\[openssm\] watcher joined \(read-only\)")
    wait_for_text(owner, r"\[openssm\] watcher joined \(read-only\)")
    run(owner, "echo owner-$((6*7))")
    wait_for_text(watcher, "^owner-42")
    screenshot(watcher, "join-02-watching")

    # A second tab of the owner's joins read-write: its command runs in the same shell.
    sessions_page = owner_context.new_page()
    sessions_page.goto(f"{server.endpoint}/console/sessions")
    own_row = sessions_page.locator(f'#active-body tr[data-session-id="{session_id}"]')
    own_row.locator("a.join").wait_for()
    screenshot(sessions_page, "join-03-sessions-owner")
    typist = owner_context.new_page()
    typist.goto(f"{server.endpoint}/console/shell?join={session_id}&mode=type")
    wait_for_text(typist, r"\[openssm\] admin joined \(read-write\)")
    typist.locator("#terminal").click()
    run(typist, "echo typed-$((40+2))")
    for page in (owner, watcher, typist):
        wait_for_text(page, "^typed-42")
    screenshot(owner, "join-04-owner-sees-joiners")

    # The owner refuses joins: the watcher's session ends for it, the owner's shell goes on.
    sessions_page.reload()
    own_row.locator("button.join-policy").click()
    watcher.wait_for_function("() => document.body.dataset.sessionEnded")
    wait_for_text(owner, r"\[openssm\] watcher left")
    screenshot(watcher, "join-05-refused")
    run(owner, "echo still-$((5*5))")
    wait_for_text(owner, "^still-25")
    own_row.locator("button.join-policy", has_text="Allow joins").wait_for()
    assert errors == []
    for context in (owner_context, watcher_context):
        context.close()
