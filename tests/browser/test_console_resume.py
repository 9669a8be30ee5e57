"""The browser console's shell survives a server restart, as the CLI's does: it keeps resuming with
AWS's backoff for the resume window and says so in the terminal."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

from openssm.client.datachannel import RECONNECTED, RECONNECTING
from tests.browser.conftest import sign_in
from tests.browser.test_console_shell import TERMINAL, run, terminal_text, wait_for_text
from tests.e2e.harness import Agent, Server, running_system
from tests.e2e.test_faults_restart import restart

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Agent]]:
    """A system of this module's own: its server is killed and started again."""
    with running_system(tmp_path_factory.mktemp("console-resume"), ("--session-resume-window", "60")) as pair:
        yield pair


@pytest.mark.timeout(240)
def test_shell_comes_back_after_a_server_restart(browser: Any, system: tuple[Server, Agent]) -> None:
    server, agent = system
    page = browser.new_page(viewport={"width": 1280, "height": 800})  # a context of its own
    sign_in(page, server)
    page.goto(f"{server.endpoint}/console/shell?target={agent.instance_id}")
    page.wait_for_selector(TERMINAL)
    page.click("#terminal")
    wait_for_text(page, r"[$#]\s*$")  # a prompt
    run(page, "echo before-$((6*7))")
    wait_for_text(page, r"^before-42\s*$")

    restart(server, signal.SIGKILL)  # the data channel drops; the API is away for the restart

    wait_for_text(page, rf"^\[openssm\] {RECONNECTING}\s*$")
    wait_for_text(page, rf"^\[openssm\] {RECONNECTED}\s*$", timeout=90_000)
    run(page, "echo after-$((6*7))")
    wait_for_text(page, r"^after-42\s*$")
    assert page.get_attribute("body", "data-session-ended") is None, terminal_text(page)
    page.close()
