"""The shell page says when the session ended because it sat idle (preferences: 1-minute timeout)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.browser.conftest import screenshot, sign_in
from tests.e2e.harness import Agent, Server

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

PREFERENCES = "SSM-SessionManagerRunShell"


def set_idle_timeout(server: Server, minutes: int) -> None:
    content = json.dumps(
        {
            "schemaVersion": "1.0",
            "description": "Session Manager preferences",
            "sessionType": "Standard_Stream",
            "inputs": {"idleSessionTimeout": str(minutes)},
        }
    )
    ssm = server.client("ssm")
    try:
        ssm.create_document(Name=PREFERENCES, Content=content, DocumentType="Session", DocumentFormat="JSON")
    except ssm.exceptions.DocumentAlreadyExists:
        version = ssm.update_document(Name=PREFERENCES, Content=content, DocumentVersion="$LATEST")
        ssm.update_document_default_version(
            Name=PREFERENCES, DocumentVersion=version["DocumentDescription"]["DocumentVersion"]
        )


def test_idle_timeout_banner(browser: Any, system: tuple[Server, Agent]) -> None:
    server, agent = system
    set_idle_timeout(server, 1)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, server)
    page.goto(f"{server.endpoint}/console/shell?target={agent.instance_id}")
    page.wait_for_selector("body[data-session-id]")
    session_id = page.get_attribute("body", "data-session-id")
    page.wait_for_selector("#shell-banner:not(.hidden)", timeout=150_000)
    assert page.get_attribute("body", "data-session-ended") == "idle"
    assert "idle timeout" in page.inner_text("#banner-title")
    screenshot(page, "08b-shell-idle-timeout")
    history = server.client("ssm").describe_sessions(State="History")["Sessions"]
    assert [s["Details"] for s in history if s["SessionId"] == session_id] == ["Session idle timeout"]
    context.close()
