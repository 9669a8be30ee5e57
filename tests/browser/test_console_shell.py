"""The operator's path in a real browser: sign in, see the node, open a shell, resize, Ctrl-C,
paste, terminate from the sessions page, replay the recording."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest

from tests.browser.conftest import has_horizontal_scroll, screenshot, sign_in
from tests.e2e.harness import Agent, Server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TERMINAL = "#terminal .xterm-rows"
WAIT_MS = 30_000


def terminal_text(page: Any, selector: str = TERMINAL) -> str:
    return str(page.inner_text(selector)).replace("\xa0", " ")


def wait_for_text(page: Any, pattern: str, selector: str = TERMINAL, timeout: int = WAIT_MS) -> re.Match[str]:
    page.wait_for_function(
        """([selector, pattern]) => {
            const node = document.querySelector(selector);
            return node && new RegExp(pattern, "m").test(node.innerText.replace(/\\u00a0/g, " "));
        }""",
        arg=[selector, pattern],
        timeout=timeout,
    )
    found = re.search(pattern, terminal_text(page, selector), re.MULTILINE)
    assert found
    return found


def run(page: Any, command: str) -> None:
    page.keyboard.type(command)
    page.keyboard.press("Enter")


def paste(page: Any, text: str) -> None:
    """A real paste event on xterm's input element, as the browser fires it for Ctrl+V."""
    page.evaluate(
        """(text) => {
            const data = new DataTransfer();
            data.setData("text/plain", text);
            const target = document.querySelector("#terminal textarea");
            target.dispatchEvent(new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true}));
        }""",
        text,
    )


def test_sign_in_shell_resize_paste_terminate_and_replay(browser: Any, system: tuple[Server, Agent]) -> None:
    server, agent = system
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    page.goto(f"{server.endpoint}/console/")
    page.wait_for_selector("#signin-form")
    screenshot(page, "01-signin")
    sign_in(page, server)

    # Nodes: the agent's node is Online and offers "Start session".
    row = page.locator(f'tr[data-instance-id="{agent.instance_id}"]')
    row.wait_for()
    assert row.locator(".ping").inner_text() == "Online"
    assert row.locator("a.start-session").is_visible()
    assert not has_horizontal_scroll(page)
    screenshot(page, "02-nodes")

    # Shell: 6*7 comes back as 42.
    row.locator("a.start-session").click()
    page.wait_for_url("**/console/shell?target=*")
    page.wait_for_selector(TERMINAL)
    page.click("#terminal")
    wait_for_text(page, r"[$#]\s*$")  # a prompt
    run(page, "echo $((6*7))")
    wait_for_text(page, r"^42\s*$")
    session_id = page.get_attribute("body", "data-session-id")
    assert session_id and session_id.startswith("admin-")

    # Resize: the window shrinks, xterm refits, the agent's PTY gets the new size.
    holder = page.locator("#terminal")
    before = (holder.get_attribute("data-rows"), holder.get_attribute("data-cols"))
    run(page, "stty size")
    wait_for_text(page, rf"^{before[0]} {before[1]}\s*$")
    page.set_viewport_size({"width": 900, "height": 600})
    page.wait_for_function(
        "([r, c]) => { const t = document.querySelector('#terminal'); return t.dataset.rows !== r || t.dataset.cols !== c; }",
        arg=list(before),
    )
    after = (holder.get_attribute("data-rows"), holder.get_attribute("data-cols"))
    assert after != before
    run(page, "clear; stty size")
    wait_for_text(page, rf"^{after[0]} {after[1]}\s*$")
    screenshot(page, "03-shell")

    # Ctrl-C interrupts a foreground command.
    run(page, "clear; sleep 300")
    page.wait_for_timeout(500)
    page.keyboard.press("Control+C")
    run(page, "echo interrupted-$((40+2))")
    wait_for_text(page, r"^interrupted-42\s*$", timeout=10_000)

    # A large paste arrives whole: 64 KiB in 1 KiB frames, checked by its SHA-256 on the node.
    lines = [f"{i:05d} {'abcdefghijklmnopqrstuvwxyz0123456789' * 1}{'-' * 21}" for i in range(1024)]
    text = "\n".join(lines) + "\n"
    expected = hashlib.sha256(text.encode()).hexdigest()
    run(page, "clear; stty -echo; sha256sum; stty echo")
    page.wait_for_timeout(300)
    paste(page, text)
    page.keyboard.press("Control+D")
    wait_for_text(page, rf"^{expected}  -\s*$", timeout=60_000)

    # Terminate from the sessions page (a second tab); the shell shows why it ended.
    sessions = context.new_page()
    sessions.on("pageerror", lambda exc: errors.append(str(exc)))
    sessions.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    sessions.goto(f"{server.endpoint}/console/sessions")
    active = sessions.locator(f'#active-body tr[data-session-id="{session_id}"]')
    active.wait_for()
    screenshot(sessions, "04-sessions-active")
    active.locator("button.terminate").click()
    page.wait_for_selector("#shell-banner:not(.hidden)", timeout=WAIT_MS)
    assert page.get_attribute("body", "data-session-ended") == "terminated"
    assert "Session terminated" in page.inner_text("#banner-title")
    assert "Terminated by arn:aws:iam::" in page.inner_text("#banner-detail")
    screenshot(page, "05-shell-terminated")

    # History lists it with its reason and recording; replay it at 16x and see the 42 again.
    history = sessions.locator(f'#history-body tr[data-session-id="{session_id}"]')
    history.wait_for(timeout=WAIT_MS)
    assert "Terminated by" in history.inner_text()
    assert not has_horizontal_scroll(sessions)  # 1280 wide, long ARNs in the reason column
    screenshot(sessions, "06-sessions-history")
    history.locator("a.replay").click()
    sessions.wait_for_url("**/console/replay?session=*")
    sessions.select_option("#replay-speed", "16")
    sessions.click("#replay-play")
    try:
        sessions.wait_for_selector("body[data-replay-ended]", state="attached", timeout=60_000)
    finally:
        screenshot(sessions, "07-replay")
        print(errors, sessions.inner_text("#replay-position"))
    replayed = terminal_text(sessions, "#player .xterm-rows")
    assert expected in replayed or "interrupted-42" in replayed

    assert not [e for e in errors if "favicon" not in e], errors
    context.close()
