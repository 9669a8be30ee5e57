"""Under TLS the console cookie is Secure (and ``__Host-``), and the shell's data channel is wss://."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from tests.browser.conftest import screenshot, sign_in
from tests.e2e.harness import Agent, start_tls_server
from tests.support.tls import self_signed

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_tls_console_cookie_and_wss_shell(
    browser: Any, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    # The agent (Python ssl) and boto3 trust our self-signed server certificate.
    server = start_tls_server(tmp_path / "server", cert, key, cert, monkeypatch)
    agent = Agent(server, tmp_path / "agent")
    try:
        agent.register()
        agent.start()
        context = browser.new_context(viewport={"width": 1280, "height": 800}, ignore_https_errors=True)
        page = context.new_page()
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        sign_in(page, server)
        cookies = context.cookies()
        assert [c["name"] for c in cookies] == ["__Host-openssm-console"]
        assert cookies[0]["secure"] and cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict"

        page.goto(f"{server.endpoint}/console/shell?target={agent.instance_id}")
        page.wait_for_selector("#terminal .xterm-rows")
        page.click("#terminal")
        page.keyboard.type("echo tls-$((6*7))")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => /^tls-42\\s*$/m.test(document.querySelector('#terminal .xterm-rows').innerText"
            ".replace(/\\u00a0/g, ' '))",
            timeout=30_000,
        )
        assert sockets and all(url.startswith("wss://127.0.0.1:") for url in sockets)
        screenshot(page, "09-shell-tls")
        context.close()
    finally:
        agent.stop()
        server.stop()
