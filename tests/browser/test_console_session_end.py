"""The shell page says why a session ended: the shell exited, or the node's agent went away."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from tests.browser.conftest import screenshot, sign_in
from tests.e2e.harness import Agent, Server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TERMINAL = "#terminal .xterm-rows"


def open_shell(page: Any, server: Server, agent: Agent) -> None:
    page.goto(f"{server.endpoint}/console/shell?target={agent.instance_id}")
    page.wait_for_selector(TERMINAL)
    page.wait_for_function(
        "(sel) => /[$#]\\s*$/m.test(document.querySelector(sel).innerText.replace(/\\u00a0/g, ' '))",
        arg=TERMINAL,
        timeout=30_000,
    )
    page.click("#terminal")


def test_exit_then_agent_gone(browser: Any, system: tuple[Server, Agent]) -> None:
    server, agent = system
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, server)

    open_shell(page, server, agent)
    page.keyboard.type("exit")
    page.keyboard.press("Enter")
    page.wait_for_selector("#shell-banner:not(.hidden)", timeout=30_000)
    assert page.get_attribute("body", "data-session-ended") == "exited"
    assert page.inner_text("#banner-title") == "Session ended"

    open_shell(page, server, agent)
    assert agent.process is not None
    agent.process.stop(signal.SIGKILL)  # the node vanishes mid-session
    page.wait_for_selector("#shell-banner:not(.hidden)", timeout=60_000)
    assert page.get_attribute("body", "data-session-ended") == "agent-gone"
    assert "agent" in page.inner_text("#banner-title").lower()
    screenshot(page, "08-shell-agent-gone")

    # The nodes page shows it lost its connection and offers no session on it.
    page.goto(f"{server.endpoint}/console/nodes")
    row = page.locator(f'tr[data-instance-id="{agent.instance_id}"]')
    page.wait_for_function(
        "(id) => { const r = document.querySelector(`tr[data-instance-id='${id}'] .ping`);"
        " return r && r.textContent === 'ConnectionLost'; }",
        arg=agent.instance_id,
        timeout=30_000,
    )
    assert row.locator("a.start-session").count() == 0
    context.close()
